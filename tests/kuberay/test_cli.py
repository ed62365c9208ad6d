"""`ainative up / down / submit` through a kubeconfig that points at the fake API server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ainative.cli import main as cli
from tests.kuberay.fake_apiserver import FakeApiServer
from tests.kuberay.fake_operator import FakeOperator

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "kuberay"


@pytest.fixture
def kubeconfig(apiserver: FakeApiServer, tmp_path: Path) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": apiserver.url}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u"}}]}))
    return str(path)


def test_up_dry_run_prints_a_valid_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    from ainative.cluster import kuberay

    assert cli.main(["up", str(EXAMPLES / "cluster.yaml"), "--dry-run"]) == 0
    manifest, secret = yaml.safe_load_all(capsys.readouterr().out)
    kuberay.validate(manifest)
    assert [g["groupName"] for g in manifest["spec"]["workerGroupSpecs"]] == ["h100", "cpu"]
    # the token Secret the RayCluster references, its value never printed
    assert manifest["spec"]["authOptions"] == {"mode": "token", "secretName": "research-ray-auth"}
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "research-ray-auth"
    assert secret["stringData"]["auth_token"].startswith("<random token")


def test_up_submit_down(kubeconfig: str, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = str(EXAMPLES / "cluster.yaml")
    assert cli.main(["up", cluster, "--kubeconfig", kubeconfig, "--timeout-s", "10"]) == 0
    out = capsys.readouterr().out
    assert "created and ready" in out and "ray://research-head-svc.ml.svc:10001" in out
    assert cli.main(["up", cluster, "--kubeconfig", kubeconfig, "--timeout-s", "10"]) == 0
    assert "adopted" in capsys.readouterr().out
    job = str(EXAMPLES / "job.yaml")
    assert cli.main(["submit", job, "--kuberay", cluster, "--kubeconfig", kubeconfig,
                     "--timeout-s", "10"]) == 0
    assert '"jobDeploymentStatus": "Complete"' in capsys.readouterr().out
    assert cli.main(["down", "research", "-n", "ml", "--kubeconfig", kubeconfig]) == 0
    assert "deleted" in capsys.readouterr().out
    assert cli.main(["down", "research", "-n", "ml", "--kubeconfig", kubeconfig]) == 0
    assert "not found" in capsys.readouterr().out


def test_failed_job_exits_1(kubeconfig: str, operator: FakeOperator, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    operator.script("broken", "failed")
    job = tmp_path / "job.yaml"
    job.write_text("name: broken\nentrypoint: python -c 'raise SystemExit(1)'\n")
    code = cli.main(["submit", str(job), "--kuberay", str(EXAMPLES / "cluster.yaml"),
                     "--kubeconfig", kubeconfig, "--timeout-s", "10"])
    assert code == 1 and "AppFailed" in capsys.readouterr().out


def test_bad_cluster_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    bad = tmp_path / "cluster.yaml"
    bad.write_text("name: Research_1\n")
    assert cli.main(["up", str(bad), "--dry-run"]) == cli.EXIT_USAGE
    assert "KubeRayClusterConfig.name" in capsys.readouterr().err


def test_missing_kubeconfig_is_typed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["down", "x", "--kubeconfig", str(tmp_path / "nope")])
    assert code == cli.EXIT_ERROR and "KubeRayError" in capsys.readouterr().err


def test_example_spec_places_every_document(capsys: pytest.CaptureFixture[str]) -> None:
    spec, cluster = str(EXAMPLES / "serve_and_train.yaml"), str(EXAMPLES / "cluster.yaml")
    assert cli.main(["apply", spec, "--kuberay", cluster, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Endpoint iris -> RayService ml/iris: valid" in out
    assert "TrainJob iris-train -> RayJob ml/iris-train: valid" in out


def test_example_script_builds_every_manifest(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = EXAMPLES.parents[1]
    run = subprocess.run([sys.executable, str(root / "examples" / "kuberay_manifests.py"),
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "all manifests validate" in run.stdout
    assert {p.stem for p in tmp_path.glob("*.yaml")} == {
        "raycluster", "rayjob", "rayservice", "networkpolicy", "role", "secret"}


def test_kuberay_dry_run_runs_no_user_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`apply --kuberay --dry-run` finds the entry point in its source; the module never runs,
    and the manifest still names the user's module."""
    marker = tmp_path / "imported"
    (tmp_path / "kr_user_job.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                             "def train(config):\n    pass\n")
    (tmp_path / "job.yaml").write_text("kind: TrainJob\nname: kr-job\nentrypoint: kr_user_job:train\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.main(["apply", "job.yaml", "--kuberay", str(EXAMPLES / "cluster.yaml"), "--dry-run"]) == 0
    assert "TrainJob kr-job -> RayJob" in capsys.readouterr().out
    assert not marker.exists()
