"""The runner's child: what runs one pipeline in the process group a runner started.

``main`` (the entry point), ``guard`` (the lifetime guard: no runner, no group),
``channel`` (structured records back to the runner) and ``drive`` (one run from start
to exit code, also used by ``minigun run --in-process`` and ``minigun replay``). This
package imports neither click nor rich, so the child starts fast.
"""
