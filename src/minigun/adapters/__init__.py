"""Thin adapters that run minigun pipelines as tasks of Airflow, Prefect, Dagster and Luigi.

Each adapter module imports its orchestrator, so import the one you use
(``minigun.adapters.airflow``, ``.prefect``, ``.dagster``, ``.luigi``); this package
imports none of them. Every adapter does the same four things and nothing more:

1. turn the platform's configuration into a :class:`minigun.runner.RunSpec`;
2. call :func:`minigun.runner.run_isolated`, so the pipeline and every process it
   forks live in a child process group, never in the orchestrator's worker;
3. relay the child's log lines to the platform's logger;
4. map the :class:`~minigun.runner.RunOutcome` onto the platform's own idea of
   success, skip, retry and failure (see :mod:`minigun.adapters._common`).

Retry arguments that belong to the orchestrator (Airflow ``retries``, Prefect
``retries``, a Dagster ``RetryPolicy``) keep their native meaning; the runner's own
in-attempt retries are ``runner_retries`` in every adapter.
"""
