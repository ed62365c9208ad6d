"""The event log survives what a crash or a hostile value leaves behind (no Ray)."""

from __future__ import annotations

import json
import logging
import os
import threading

import pytest

from ainative import events
from ainative.cli import main as cli


@pytest.fixture
def log_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path))
    return tmp_path


def test_half_written_last_line_is_skipped_and_counted(log_dir):
    events.emit("j", "start")
    events.emit("j", "running", step=3)
    with open(log_dir / "j.jsonl", "ab") as f:
        f.write(b'{"ts": 1.0, "job": "j", "ev')  # the writer died mid-line
    records, skipped = events.read_counted("j")
    assert [r["event"] for r in records] == ["start", "running"]
    assert skipped == 1
    assert [r["event"] for r in events.read("j")] == ["start", "running"]


def test_corrupt_lines_of_every_kind_are_skipped(log_dir):
    events.emit("j", "first")
    with open(log_dir / "j.jsonl", "ab") as f:
        f.write(b"\xff\xfe not utf-8\n")           # undecodable bytes
        f.write(b"[1, 2, 3]\n")                    # JSON, but not an event object
        f.write(b"\n   \n")                        # blank lines are not counted
        f.write(b"[" * 5000 + b"\n")               # deep nesting
        f.write(b"{\"event\": \"second\"}\n")
    records, skipped = events.read_counted("j")
    assert [r["event"] for r in records] == ["first", "second"]
    assert skipped == 3


def test_missing_log_reads_empty(log_dir):
    assert events.read_counted("nobody") == ([], 0)


def test_logs_cli_prints_the_good_lines_and_reports_the_skipped(log_dir, capsys):
    events.emit("j", "start", reason="queued")
    with open(log_dir / "j.jsonl", "ab") as f:
        f.write(b'{"ts": "not a time", "job": "j", "event": "odd"}\n{"trunc')
    assert cli.main(["logs", "j"]) == 0
    out, err = capsys.readouterr()
    assert "start reason=queued" in out and "odd" in out
    assert "skipped 1 unparsable line" in err


def test_follow_skips_a_corrupt_complete_line_and_waits_for_an_incomplete_one(log_dir):
    events.emit("j", "a")
    with open(log_dir / "j.jsonl", "ab") as f:
        f.write(b"garbage\n")
    events.emit("j", "b")
    with open(log_dir / "j.jsonl", "ab") as f:
        f.write(b'{"event": "c"')                  # not yet complete: not yielded
    got = [r["event"] for r in events.follow("j", poll_s=0.01, stop_after_s=0.3)]
    assert got == ["a", "b"]


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")

    def __str__(self) -> str:
        raise RuntimeError("no str either")


def test_emit_never_raises_on_values_it_cannot_encode(log_dir):
    cycle: list = []
    cycle.append(cycle)
    deep: list = []
    node = deep
    for _ in range(5000):
        node.append([])
        node = node[0]
    values = {"cycle": cycle, "odd_keys": {(1, 2): "tuple key"}, "deep": deep,
              "unprintable": Unprintable(), "a_set": {1, 2}, "nan": float("nan")}
    for name, value in values.items():
        record = events.emit("j", name, value=value)
        assert record["event"] == name
    records, skipped = events.read_counted("j")
    assert skipped == 0
    assert [r["event"] for r in records] == list(values)
    by_name = {r["event"]: r for r in records}
    assert by_name["unprintable"]["value"] == "<unrepresentable Unprintable>"
    assert "tuple key" in by_name["odd_keys"]["value"]
    assert by_name["a_set"]["value"] == "{1, 2}"           # str() through json's default=


def test_emit_never_raises_when_the_directory_cannot_be_written(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the directory should be")
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(blocker / "events"))
    with caplog.at_level(logging.WARNING, logger="ainative.events"):
        record = events.emit("j", "start")
    assert record["event"] == "start"
    assert "could not write event" in caplog.text


def test_emit_never_raises_on_a_non_string_job(log_dir):
    assert events.emit(12345, "start")["job"] == 12345  # type: ignore[arg-type]
    assert events.read("12345")[0]["event"] == "start"


def test_concurrent_emits_write_whole_lines(log_dir):
    def writer(n: int) -> None:
        for i in range(200):
            events.emit("j", "tick", writer=n, i=i, pad="x" * 500)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records, skipped = events.read_counted("j")
    assert skipped == 0 and len(records) == 800
    lines = (log_dir / "j.jsonl").read_bytes().splitlines()
    assert all(json.loads(line)["event"] == "tick" for line in lines)
    assert os.path.getsize(log_dir / "j.jsonl") == sum(len(line) + 1 for line in lines)
