"""``--result-file`` never unlinks or replaces anything but a regular file (issue 10, #13).

As root, ``--result-file /dev/full`` used to unlink the device node and put a regular
file in its place. A path that exists and is not a regular file (a device node, a
FIFO, a directory, a symlink) is now refused at start with one usage line, exit 2,
and left exactly as it was. These tests make their own device nodes and FIFOs in a
temporary directory: the real ``/dev`` is never put at risk, even on the old code.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from minigun.cli import run_cli as run_cli_in_process
from minigun.cli._errors import BadInput
from minigun.cli._output import discard_stale, write_json_atomic
from support import run_cli, target


def make_fifo(path: Path) -> None:
    os.mkfifo(path)


def make_char_device(path: Path) -> None:
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a device node here: {exc}")


def make_link_to_char_device(path: Path) -> None:
    device = path.with_name("device")
    make_char_device(device)
    path.symlink_to(device)


def make_link_to_regular_file(path: Path) -> None:
    real = path.with_name("real.json")
    real.write_text("{}")
    path.symlink_to(real)


def make_directory(path: Path) -> None:
    path.mkdir()


def make_dangling_link(path: Path) -> None:
    path.symlink_to(path.with_name("nowhere"))


NOT_REGULAR: list[tuple[str, Callable[[Path], None], str]] = [
    ("fifo", make_fifo, "is a FIFO"),
    ("char-device", make_char_device, "is a character device"),
    ("link-to-device", make_link_to_char_device, "is a symlink to a character device"),
    ("link-to-file", make_link_to_regular_file, "is a symlink to a regular file"),
    ("dangling-link", make_dangling_link, "is a dangling symlink"),
    ("directory", make_directory, "is a directory"),
]


def snapshot(path: Path) -> tuple[int, int, int]:
    info = os.lstat(path)
    return info.st_ino, info.st_mode, info.st_rdev


@pytest.mark.parametrize(
    ("make", "message"), [c[1:] for c in NOT_REGULAR], ids=[c[0] for c in NOT_REGULAR]
)
def test_discard_stale_refuses_and_keeps_what_is_not_a_regular_file(
    tmp_path: Path, make: Callable[[Path], None], message: str
) -> None:
    path = tmp_path / "result.json"
    make(path)
    before = snapshot(path)
    with pytest.raises(BadInput, match=message):
        discard_stale(str(path))
    assert snapshot(path) == before


def test_discard_stale_removes_a_regular_file_and_accepts_a_new_path(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    discard_stale(str(path))
    path.write_text('{"old": true}')
    discard_stale(str(path))
    assert not path.exists()


def test_write_leaves_a_node_that_appeared_during_the_run_untouched(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    make_fifo(path)
    with pytest.raises(FileExistsError, match="FIFO; left untouched"):
        write_json_atomic(str(path), {"status": "succeeded"})
    assert stat.S_ISFIFO(os.lstat(path).st_mode)
    assert os.listdir(tmp_path) == ["result.json"]  # no temporary file left behind


def test_a_regular_result_file_is_still_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text("old")
    write_json_atomic(str(path), {"status": "succeeded"})
    assert json.loads(path.read_text()) == {"status": "succeeded"}
    assert os.listdir(tmp_path) == ["result.json"]


def test_in_process_run_refuses_a_device_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    device = tmp_path / "full"
    make_char_device(device)
    code = run_cli_in_process(
        ["run", "--in-process", target("Succeed"), "--result-file", str(device)]
    )
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing ran
    assert captured.err == (
        f"minigun: error: --result-file {device} is a character device, not a regular file;"
        " name a regular file or a new path (the result replaces it atomically)\n"
    )
    assert stat.S_ISCHR(os.lstat(device).st_mode)


@pytest.mark.parametrize("kind", ["fifo", "link-to-device"])
def test_minigun_run_refuses_a_non_regular_result_file_and_keeps_it(
    tmp_path: Path, kind: str
) -> None:
    make = {c[0]: c[1] for c in NOT_REGULAR}[kind]
    path = tmp_path / "result.json"
    make(path)
    before = snapshot(path)
    proc = run_cli("run", target("Succeed"), "--result-file", str(path))
    assert proc.returncode == 2, proc.stderr
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"minigun: error: --result-file {path} is a")
    assert proc.stdout == ""
    assert snapshot(path) == before
