"""``minigun run --dry-run`` (and ``worker --dry-run``): the same checks as a real run,
the same one-line errors and exit 2, the resource plan on success, and nothing run.

Every test runs the real console entry point in a subprocess. The pipeline below
leaves a marker file for every piece of its code that runs, so "nothing ran" is
checked by the files that must not exist."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from support import run_cli

PIPELINE = textwrap.dedent(
    """
    from pathlib import Path

    import minigun as mg

    HERE = Path(__file__).parent


    def mark(name):
        (HERE / name).write_text("ran")


    class Marked(mg.Pipeline):
        def __init__(self, n: int = 3) -> None:
            self.n = n
            mark("init")

        @mg.before_run
        def connect(self):
            mark("before_run")

        @mg.before_fork
        def prepare(self):
            mark("before_fork")

        @mg.producer
        def numbers(self):
            mark("producer")
            yield from range(self.n)

        @mg.processor(execution="ipc_fork", processes=2)
        def work(self, x):
            mark("work")
            return x

        @mg.consumer
        def sink(self, x):
            mark("sink")
    """
)

UNREACHABLE = textwrap.dedent(
    """
    import minigun as mg


    class Broken(mg.Pipeline):
        @mg.producer
        def numbers(self):
            yield 1

        @mg.consumer
        def sink(self, x):
            pass

        @mg.consumer(from_="nowhere")
        def lost(self, x):
            pass
    """
)

RUN_CODE = ("before_run", "before_fork", "producer", "work", "sink")


@pytest.fixture
def job(tmp_path: Path) -> Path:
    path = tmp_path / "marked.py"
    path.write_text(PIPELINE)
    return path


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("minigun: error:")]


def test_a_valid_target_exits_0_and_prints_the_plan(job: Path) -> None:
    proc = run_cli("run", "--dry-run", str(job), "-p", "n=5", cwd=str(job.parent))
    assert proc.returncode == 0, proc.stderr
    assert "target, params and graph are valid; nothing ran" in proc.stdout
    assert "cores: 3 (2 fork processes + 1 parent" in proc.stdout
    assert "recommendation: cpu request 3," in proc.stdout


def test_nothing_but_the_constructor_runs(job: Path) -> None:
    proc = run_cli("run", "--dry-run", str(job), cwd=str(job.parent))
    assert proc.returncode == 0, proc.stderr
    assert (job.parent / "init").exists()  # params are checked by building the pipeline
    ran = [name for name in RUN_CODE if (job.parent / name).exists()]
    assert ran == [], f"--dry-run ran {ran}"
    assert not (job.parent / "minigun-dead-letters").exists()


def test_the_result_file_is_left_alone(job: Path) -> None:
    result = job.parent / "result.json"
    result.write_text('{"old": true}')
    proc = run_cli("run", "--dry-run", str(job), "--result-file", str(result))
    assert proc.returncode == 0, proc.stderr
    assert result.read_text() == '{"old": true}'


def test_a_bad_param_is_the_same_usage_error_as_a_real_run(job: Path) -> None:
    dry = run_cli("run", "--dry-run", str(job), "-p", "n=many", cwd=str(job.parent))
    real = run_cli("run", str(job), "-p", "n=many", cwd=str(job.parent))
    assert dry.returncode == real.returncode == 2
    assert error_lines(dry.stderr) == error_lines(real.stderr)
    assert len(error_lines(dry.stderr)) == 1 and "'many' is not an int" in dry.stderr
    assert dry.stdout == ""


def test_an_unknown_param_is_a_usage_error(job: Path) -> None:
    proc = run_cli("run", "--dry-run", str(job), "-p", "rows=1", cwd=str(job.parent))
    assert proc.returncode == 2
    assert "accepted: n" in proc.stderr


def test_a_bad_target_is_the_same_usage_error_as_a_real_run(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.py")
    dry = run_cli("run", "--dry-run", missing)
    real = run_cli("run", missing)
    assert dry.returncode == real.returncode == 2
    assert (
        error_lines(dry.stderr)
        == error_lines(real.stderr)
        == [f"minigun: error: no such file: {missing}"]
    )


def test_an_invalid_graph_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text(UNREACHABLE)
    dry = run_cli("run", "--dry-run", str(path))
    real = run_cli("run", str(path))
    assert dry.returncode == real.returncode == 2
    assert error_lines(dry.stderr) == error_lines(real.stderr)
    assert "nowhere" in dry.stderr


def test_run_overrides_are_validated_and_shape_the_plan(job: Path) -> None:
    capped = run_cli("run", "--dry-run", str(job), "--max-processes", "1")
    assert capped.returncode == 0, capped.stderr
    assert "cores: 2 (1 fork processes + 1 parent" in capped.stdout
    bad = run_cli("run", "--dry-run", str(job), "--timeout", "0")
    assert bad.returncode == 2 and len(error_lines(bad.stderr)) == 1


def test_worker_dry_run_checks_the_same_way(job: Path) -> None:
    ok = run_cli("worker", "--dry-run", str(job), "--grace", "20", cwd=str(job.parent))
    assert ok.returncode == 0, ok.stderr
    assert "nothing ran" in ok.stdout
    assert not any((job.parent / name).exists() for name in RUN_CODE)
    bad = run_cli("worker", "--dry-run", str(job), "-p", "n=x", cwd=str(job.parent))
    assert bad.returncode == 2 and len(error_lines(bad.stderr)) == 1
