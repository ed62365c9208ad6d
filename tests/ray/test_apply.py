"""`ainative apply`: a multi-document spec (queue, budget, dataset, training job) runs in order on
the cluster; a bad spec stops before anything runs, with file, line and field, and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import ainative as ai
from ainative import apply, errors

ROOT = Path(__file__).resolve().parents[2]


def test_apply_runs_every_document_in_order(ray_local, tmp_path, no_leaks):
    text = (ROOT / "examples" / "specs" / "train.yaml").read_text()
    spec = tmp_path / "train.yaml"
    spec.write_text(text.replace("/tmp/ainative-spec-train", str(tmp_path / "ckpt")))
    lines: list[str] = []
    try:
        results = apply.apply_file(str(spec), out=lines.append)
    finally:
        ai.scheduling.shutdown()
    assert [(r["kind"], r["name"]) for r in results] == [
        ("Queue", "team-a"), ("Dataset", "ids"), ("TrainJob", "spec-train")]
    train = results[-1]
    assert train["ok"] and train["status"] == "succeeded"
    assert train["metrics"]["rows"] * train["metrics"]["world_size"] == 20000  # one epoch over the ranks
    assert any("configured queues: team-a" in line for line in lines)


def test_dry_run_validates_without_running(tmp_path):
    results = apply.apply_file(str(ROOT / "examples" / "specs" / "train.yaml"), dry_run=True, out=lambda s: None)
    assert all(r["dry_run"] and r["ok"] for r in results) and len(results) == 4


def test_bad_spec_fails_before_anything_runs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Queue\nname: q\nquota: {H100: 1}\n---\nkind: TrainJob\nname: t\n"
                   "entrypoint: examples.spec_train:train_fn\nwokers: 2\n")
    with pytest.raises(errors.SpecError, match=r"bad.yaml:8: TrainJob.wokers: unknown field 'wokers' "
                                               r"\(did you mean 'workers'\?\)"):
        apply.apply_file(str(bad), out=lambda s: None)
    out = subprocess.run([sys.executable, "-m", "ainative.cli.main", "apply", str(bad)], capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 2
    assert "bad.yaml:8" in out.stderr and "did you mean 'workers'" in out.stderr
