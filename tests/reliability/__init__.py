"""The reliability suite (issue 10): ``tox -e reliability``.

- ``test_conservation.py``: conservation as a hypothesis property over random graphs
  (chains, fan-out, fan-in, diamonds, bounded cycles), executors, failures, policies
  and retries, checked against a plain-Python interpreter of the same graph.
- ``test_faults.py``: SIGKILL and SIGSTOP of fork children, hangs under a run
  timeout, SIGTERM at random moments, a full disk, ``MemoryError``.
- ``test_bad_inputs.py``: the catalogue of bad inputs (``catalogue.py`` holds the
  row type and how each surface is tried).
- ``test_soak.py``: 500 runs from one process; ``test_volume.py``: 10,000,000 items.
- ``*_issue10.py``: the checks of issue 10's findings (each failed before its fix).

``faulty.py`` holds the pipelines the runner's children import; ``support.py`` the
counts printed at the end (``reliability: examples run N, faults injected N, ...``)
and the shared assertions.
"""
