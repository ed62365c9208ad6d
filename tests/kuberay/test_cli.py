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
    manifest = yaml.safe_load(capsys.readouterr().out)
    kuberay.validate(manifest)
    assert [g["groupName"] for g in manifest["spec"]["workerGroupSpecs"]] == ["h100", "cpu"]


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
