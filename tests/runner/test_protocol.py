"""The runner-child protocol's pieces: records, the record buffer, levels, agreement."""

from __future__ import annotations

import logging

from minigun.exit_codes import ExitCode
from minigun.runner import protocol
from minigun.runner.isolated import agree
from minigun.runner.logs import LineBuffer
from minigun.runner.process import _RecordBuffer


def test_records_round_trip_and_stay_one_line() -> None:
    record = protocol.log_record(30, "a\nb é", logger="x", created=1.5)
    line = protocol.encode(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert "é".encode() in line  # UTF-8 as it is, not \\u escapes
    assert protocol.decode_record(line) == record


def test_the_record_buffer_reassembles_split_records_and_drops_garbage() -> None:
    buffer = _RecordBuffer()
    data = (
        protocol.encode(protocol.progress_record({"total_produced": 3}))
        + b"not json\n"
        + b'{"kind": "unknown"}\n'
        + protocol.encode(protocol.result_record({"status": "succeeded"}))
    )
    records = []
    for i in range(0, len(data), 7):  # arrives in small pieces
        records += buffer.feed(data[i : i + 7])
    assert [r["kind"] for r in records] == ["progress", "result"]
    assert buffer.flush() == []


def test_a_big_record_has_no_line_limit() -> None:
    big = protocol.encode(protocol.result_record({"blob": "x" * 5_000_000}))
    assert _RecordBuffer().feed(big)[0]["result"]["blob"] == "x" * 5_000_000


def test_stderr_tracebacks_are_errors_from_first_line_to_exception() -> None:
    buffer = LineBuffer("stderr")
    text = (
        "before\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "ValueError: first\n"
        "\n"
        "During handling of the above exception, another exception occurred:\n"
        "\n"
        "Traceback (most recent call last):\n"
        "    raise\n"
        "KeyError: 'second'\n"
        "after\n"
    )
    levels = [(str(line), line.level) for line in buffer.feed(text.encode())]
    assert levels[0] == ("before", logging.WARNING)
    # Every line of both chained tracebacks (a blank separator may read as stderr's own).
    assert all(level == logging.ERROR for text, level in levels[1:-1] if text)
    assert levels[-1] == ("after", logging.WARNING)


def test_stdout_is_info() -> None:
    (line,) = LineBuffer("stdout").feed(b"hello\n")
    assert (line.stream, line.level) == ("stdout", logging.INFO)


def test_the_result_agrees_with_the_exit_code() -> None:
    same = {"status": "succeeded", "exit_code": 0, "ok": True}
    assert agree(same, ExitCode.OK) is same
    assert agree(None, ExitCode.KILLED) is None
    fixed = agree({"status": "stopped", "exit_code": 143, "ok": False}, ExitCode.TIMEOUT)
    assert fixed is not None
    assert (fixed["status"], fixed["exit_code"], fixed["ok"]) == ("timeout", 124, False)
    assert fixed["child"] == {"status": "stopped", "exit_code": 143}
