"""Dead-letter files: private, exclusive, one write per record, readable after a crash,
and a full disk fails the run instead of crashing it. Real files, real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import minigun as mg
from minigun.core.dead_letters import DeadLetter, DeadLetterWriter
from support import full_env, untraced_env, wait_until


class Boom(RuntimeError):
    pass


def _failing(n: int = 5, execution: str = "inline", **settings: object) -> mg.RunResult:
    class AlwaysFails(mg.Pipeline):
        @mg.producer
        def src(self):
            yield from range(n)

        @mg.consumer(on_error="dead_letter")
        def sink(self, x):
            raise Boom(f"item {x}")

    return AlwaysFails().run(execution=execution, **settings)


def test_files_are_0600_and_a_new_directory_0700_even_under_umask_000(tmp_path: Path) -> None:
    """Finding 11: files were created 0644 (0666 under umask 000)."""
    directory = tmp_path / "new" / "letters"
    old = os.umask(0)
    try:
        result = _failing(dead_letter_dir=str(directory))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(result.dead_letter_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700


def test_a_symlink_at_the_old_predictable_name_receives_nothing(tmp_path: Path) -> None:
    """Finding 12: ``NAME-STAMP-PID.jsonl`` was opened for append through a planted symlink."""
    victim = tmp_path / "victim.txt"
    victim.write_text("")
    letters = tmp_path / "letters"
    letters.mkdir()
    name = f"{__name__}.AlwaysFails".replace(":", ".")
    now = time.time()
    for delta in range(-1, 6):
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(now + delta))
        for candidate in (f"{name}-{stamp}-{os.getpid()}.jsonl", f"{name}-{stamp}.jsonl"):
            (letters / candidate).symlink_to(victim)
    result = _failing(dead_letter_dir=str(letters))
    assert victim.read_text() == ""
    assert not Path(result.dead_letter_file).is_symlink()
    assert len(mg.read_dead_letters(result.dead_letter_file)) == 5


def test_a_taken_name_is_never_opened_a_fresh_one_is_picked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even a name guessed right (here: forced) is skipped, symlink or regular file."""
    import secrets

    suffixes = iter(["aaaa", "bbbb", "cccc"])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(suffixes))
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    writer = DeadLetterWriter(tmp_path, "pkg.mod:Job")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    prefix = f"pkg.mod.Job-{stamp}-{os.getpid()}"
    (tmp_path / f"{prefix}-aaaa.jsonl").symlink_to(victim)
    (tmp_path / f"{prefix}-bbbb.jsonl").write_text("someone else's\n")
    assert writer.write(DeadLetter("s", 1, "e", "tb", 1, 0.0))
    writer.close()
    assert writer.path is not None and writer.path.name.endswith("-cccc.jsonl")
    assert victim.read_text() == "keep"
    assert (tmp_path / f"{prefix}-bbbb.jsonl").read_text() == "someone else's\n"


def test_each_record_is_one_write_of_the_whole_line(tmp_path: Path) -> None:
    """Traced with strace-free means: the writer's own byte count equals the file's."""
    writer = DeadLetterWriter(tmp_path, "job")
    big = "x" * 3_000_000
    for i in range(3):
        assert writer.write(DeadLetter("s", big + str(i), "e", "tb", 1, 0.0))
    writer.close()
    assert writer.path is not None
    data = writer.path.read_bytes()
    assert data.count(b"\n") == 3 and data.endswith(b"\n")
    assert [d.item[-1] for d in mg.read_dead_letters(writer.path)] == ["0", "1", "2"]


def _records(path: Path, n: int) -> list[bytes]:
    writer = DeadLetterWriter(path, "job")
    for i in range(n):
        writer.write(DeadLetter("work", (i, "x" * 100), "Boom", "tb", 1, 0.0))
    writer.close()
    assert writer.path is not None
    return writer.path.read_bytes().splitlines(keepends=True)


@pytest.mark.parametrize("cut", [1, 50, -2])
def test_a_torn_last_record_is_reported_and_the_rest_is_read(
    tmp_path: Path, cut: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Finding 5: one torn last record made the reader reject the whole file."""
    lines = _records(tmp_path, 4)
    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(b"".join(lines[:3]) + lines[3][:cut])
    letters = mg.read_dead_letters(torn)
    assert [d.item for d in letters] == [(0, "x" * 100), (1, "x" * 100), (2, "x" * 100)]
    assert letters.torn == 1 and letters.torn_bytes == len(lines[3][:cut])
    assert "torn" in caplog.text and "torn.jsonl:4" in caplog.text


def test_a_whole_last_record_without_its_newline_is_not_torn(tmp_path: Path) -> None:
    lines = _records(tmp_path, 2)
    path = tmp_path / "no-newline.jsonl"
    path.write_bytes(lines[0] + lines[1].rstrip(b"\n"))
    letters = mg.read_dead_letters(path)
    assert len(letters) == 2 and letters.torn == 0


def test_a_garbled_record_in_the_middle_is_an_error_naming_its_line(tmp_path: Path) -> None:
    lines = _records(tmp_path, 3)
    path = tmp_path / "garbled.jsonl"
    path.write_bytes(lines[0] + lines[1][:20] + b"\n" + lines[2])
    with pytest.raises(ValueError, match=r"garbled.jsonl:2: not a dead-letter record"):
        mg.read_dead_letters(path)


WRITE_FOREVER = textwrap.dedent(
    """
    import sys
    from minigun.core.dead_letters import DeadLetter, DeadLetterWriter
    writer = DeadLetterWriter(sys.argv[1], "job")
    big = "x" * int(sys.argv[2])
    i = 0
    while True:
        writer.write(DeadLetter("work", [i, big], "Boom", "tb", 1, 0.0))
        i += 1
    """
)


def _jsonl_in(directory: Path):
    return lambda: list(directory.glob("*.jsonl")) if directory.exists() else []


def test_sigkill_during_a_large_write_leaves_a_file_the_reader_reads(tmp_path: Path) -> None:
    """Finding 5: SIGKILL while a large record was written left an unreadable file.

    A writer appends 32 MB records; it is killed the moment the file's size is not
    a whole number of records (a write is under way). Whether the kernel finished
    that write or not, the reader returns every complete record and reports at
    most one torn record. Up to eight kills try to land one mid-write.
    """
    size_of_item = 32 * 1024 * 1024
    line = DeadLetter("work", [0, "x" * size_of_item], "Boom", "tb", 1, 0.0).to_line()
    torn_seen = False
    for attempt in range(8):
        directory = tmp_path / f"run{attempt}"
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITE_FOREVER, str(directory), str(size_of_item)],
            env=untraced_env(full_env()),
        )
        try:
            files = wait_until(_jsonl_in(directory), 60, "the dead-letter file")
            (path,) = files
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # a tight poll: a write lasts milliseconds
                size = path.stat().st_size
                if size % len(line) and size < 9 * len(line):
                    break
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        letters = mg.read_dead_letters(path)
        data_size = path.stat().st_size
        assert letters.torn in (0, 1)
        assert [d.item[0] for d in letters] == list(range(len(letters)))
        assert all(len(d.item[1]) == size_of_item for d in letters)
        assert data_size == len(letters) * len(line) + letters.torn_bytes
        del letters
        if data_size % len(line):
            torn_seen = True
            break
    assert torn_seen, "no SIGKILL landed during a write in 8 tries"


DISK_FULL = textwrap.dedent(
    """
    import json, resource, signal, sys
    import minigun as mg

    class Full(mg.Pipeline):
        @mg.producer
        def src(self):
            yield from range(200)

        @mg.consumer(on_error="dead_letter")
        def sink(self, x):
            raise ValueError("x" * 200)

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))
    result = Full().run(execution=sys.argv[1], dead_letter_dir=sys.argv[2])
    data = result.to_dict()
    print(json.dumps({
        "status": data["status"], "exit_code": data["exit_code"],
        "error": data["error"], "in_memory": len(result.dead_letters),
        "count": data["dead_letter_count"], "written": data["dead_letters_written"],
        "file": data["dead_letter_file"], "produced": data["stats"]["total_produced"],
    }))
    """
)


@pytest.mark.parametrize("execution", ["inline", "thread"])
def test_a_full_disk_fails_the_run_and_keeps_every_dead_letter_in_memory(
    execution: str, tmp_path: Path
) -> None:
    """Finding 5: ``run()`` raised OSError (EFBIG) out of the engine."""
    directory = tmp_path / "letters"
    proc = subprocess.run(
        [sys.executable, "-c", DISK_FULL, execution, str(directory)],
        capture_output=True,
        text=True,
        env=untraced_env(full_env()),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "failed" and out["exit_code"] == 1
    assert out["error"]["type"] == "DeadLetterWriteError"
    assert "dead letters could not be written to" in out["error"]["message"]
    assert out["file"] in out["error"]["message"]
    assert "Traceback" not in out["error"]["traceback"]
    assert out["in_memory"] == out["count"] > out["written"] > 0
    # the torn part of the record that did not fit was cut: the file reads whole
    letters = mg.read_dead_letters(out["file"])
    assert len(letters) == out["written"] and letters.torn == 0


def test_a_full_disk_under_the_cli_is_one_failed_run_not_an_engine_traceback(
    tmp_path: Path,
) -> None:
    job = tmp_path / "job.py"
    job.write_text(
        textwrap.dedent(
            """
            import minigun as mg

            class Full(mg.Pipeline):
                @mg.producer
                def src(self):
                    yield from range(200)

                @mg.consumer(on_error="dead_letter")
                def sink(self, x):
                    raise ValueError("x" * 200)
            """
        )
    )
    limit = textwrap.dedent(
        """
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))
        from minigun.cli import main
        sys.argv = ["minigun", *sys.argv[1:]]
        main()
        """
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            limit,
            "run",
            "--in-process",
            f"{job}:Full",
            "--dead-letter-dir",
            str(tmp_path / "letters"),
        ],
        capture_output=True,
        text=True,
        env=untraced_env(full_env()),
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "dead letters could not be written to" in proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("execution", ["inline", "thread"])
def test_a_directory_that_cannot_be_created_fails_the_run_with_a_clear_error(
    execution: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = _failing(execution=execution, dead_letter_dir=str(blocker / "letters"))
    assert result.status == "failed" and result.exit_code == mg.ExitCode.FAILED
    assert isinstance(result.error, mg.MinigunError) and isinstance(result.error, OSError)
    assert str(result.error).startswith(f"dead letters could not be written to {blocker}")
    assert "Not a directory" in str(result.error)
    assert result.dead_letter_file is None
    kept = len(result.dead_letters)
    assert kept == result.stats.stages["sink"]["dead_letters"] >= 1  # all in memory
