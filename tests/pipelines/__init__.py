"""Pipelines and helpers for the runner and CLI tests.

The pipelines run in real child processes (``python -m minigun run --in-process``),
which find them through ``PYTHONPATH`` pointing at the ``tests`` directory (see
:func:`support.child_env`). Each one produces one behaviour of the
exit-code contract, so a test can name the behaviour it checks.
"""
