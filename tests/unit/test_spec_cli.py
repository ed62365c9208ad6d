"""`ainative apply --dry-run` on bad files: exit 2, the file and line on stderr, no traceback,
and none of the user's code run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ainative import errors
from ainative.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]

BAD = {
    "empty-kind.yaml": (b"kind:\n", "empty-kind.yaml:1"),
    "bad-yaml.yaml": (b"kind: Queue\nname: [unclosed\n", "bad-yaml.yaml:2"),
    "not-utf8.yaml": (b"kind: Queue\nname: \xff\n", "not-utf8.yaml:2"),
    "bomb.yaml": (b"a: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n".encode()
        for i in range(8)), "bomb.yaml:"),
    "nan.yaml": (b"kind: Queue\nname: q\nweight: .nan\n", "nan.yaml:3: Queue.weight"),
    "two-budgets.yaml": (b"kind: Queue\nname: q\n---\nkind: Budget\nqueue: q\nusd: 5\n---\n"
                         b"kind: Budget\nqueue: q\nusd: 500000\n", "two-budgets.yaml:9"),
    "dup-key.yaml": (b"kind: Queue\nname: q\nname: r\n", "dup-key.yaml:3: duplicate key"),
    "tag.yaml": (b"kind: Queue\nname: !!python/object/apply:os.system [id]\n", "tag.yaml:2"),
    "workers.yaml": (b"kind: KubeRayCluster\nname: c\nworker_groups: 5\n", "workers.yaml:3"),
    "syntax.yaml": (b"kind: TrainJob\nentrypoint: broken_user_mod:train\n", "syntax.yaml:2"),
}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "broken_user_mod.py").write_text("def train(:\n")
    for name, (data, _) in BAD.items():
        (tmp_path / name).write_bytes(data)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", sorted(BAD))
def test_apply_dry_run_on_bad_files_exits_2_with_file_and_line(workdir, capsys, name):
    assert cli.main(["apply", "--dry-run", name]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ainative: error: ") and BAD[name][1] in err, err
    assert "Traceback" not in err


def test_missing_file_exits_2(workdir, capsys):
    assert cli.main(["apply", "--dry-run", "nope.yaml"]) == 2
    assert "nope.yaml: cannot read spec file" in capsys.readouterr().err


def test_dry_run_checks_entrypoints_without_importing(workdir, capsys):
    marker = workdir / "imported"
    (workdir / "user_job.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                         "def train(config):\n    pass\n")
    (workdir / "job.yaml").write_text("kind: TrainJob\nentrypoint: user_job:train\n---\n")
    assert cli.main(["apply", "--dry-run", "job.yaml"]) == 0
    assert "job.yaml: TrainJob train: valid" in capsys.readouterr().out
    assert not marker.exists()


def test_example_spec_dry_run_in_a_fresh_process(workdir):
    """The whole CLI path in a real process: the example is valid, a bad file is exit 2."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    ok = subprocess.run([sys.executable, "-m", "ainative.cli.main", "apply", "--dry-run",
                         str(ROOT / "examples" / "specs" / "train.yaml")], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "ainative.cli.main", "apply", "--dry-run",
                          "bomb.yaml"], cwd=workdir, env=env, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "bomb.yaml:" in bad.stderr and "Traceback" not in bad.stderr


def test_load_yaml_reads_other_formats_with_the_same_limits(tmp_path):
    from ainative import errors, spec

    path = tmp_path / "cluster.yaml"
    path.write_text("name: c\nworker_groups: []\n---\n")
    assert spec.load_yaml(path) == [{"name": "c", "worker_groups": []}]
    path.write_bytes(b"name: c\nname: d\n")
    with pytest.raises(errors.SpecError, match="cluster.yaml:2: duplicate key 'name'"):
        spec.load_yaml(path)
    with pytest.raises(errors.SpecError, match="cannot read spec file"):
        spec.load_yaml(tmp_path / "missing.yaml")


def test_cluster_file_is_read_with_the_spec_limits(tmp_path):
    """``ainative simulate --cluster FILE`` reads through the same hostile-input-safe loader."""
    import time

    from ainative.sim import cluster as cluster_file

    bomb = tmp_path / "bomb.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    bomb.write_text("\n".join(lines) + "\nnodes: *a11\n")
    started = time.process_time()
    with pytest.raises(errors.SpecError) as info:
        cluster_file.load(bomb)
    assert time.process_time() - started < 1.0
    assert str(bomb) in str(info.value)
    dup = tmp_path / "dup.yaml"
    dup.write_text("nodes: []\nnodes: []\n")
    with pytest.raises(errors.SpecError):
        cluster_file.load(dup)
