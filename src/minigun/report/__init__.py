"""Showing a finished run: the per-stage table, ``minigun report``'s renderers, the timeline.

Everything here works on plain data -- the result JSON (``minigun.result/1``) and the
live ``snapshot()`` dicts -- and imports neither the engine, the runner nor the CLI,
so the adapters, the metrics sinks and the CLI can all use it:

- :mod:`minigun.report.table`: :func:`~minigun.report.table.stage_table`, the one
  function that makes the per-stage table (the report, the Prefect artifact, the
  Dagster metadata, the Airflow XCom and the metrics all read their rows from it);
- :mod:`minigun.report.timeline`: what the CLI samples from progress snapshots during a
  run, kept in the result file for the charts;
- :mod:`minigun.report.render` (text and markdown) and :mod:`minigun.report.html`
  (one self-contained page with inline SVG charts).
"""
