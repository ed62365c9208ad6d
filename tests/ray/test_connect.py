"""connect(): embedded default, idempotent, joining `ray start --head` with token auth, failures."""

import json
import subprocess
import sys
import textwrap

import pytest

import ainative
import ainative.cluster.local
from ainative import errors
from tests.support import ray_head

CHILD = textwrap.dedent("""
    import json, sys
    import ainative
    from ainative import errors
    try:
        c = ainative.connect({args})
        s = c.resources()
        print(json.dumps({{"ok": True, "owned": c.owned, "cpus": s.cpus_total,
                           "accels": {{k: v.total for k, v in s.accelerators.items()}}}}))
        c.shutdown()
    except errors.AinativeError as e:
        print(json.dumps({{"ok": False, "type": type(e).__name__, "msg": str(e)}}))
""")


def run_child(args: str, env=None, timeout=90):
    for attempt in range(2):
        out = subprocess.run([sys.executable, "-c", CHILD.format(args=args)], env=env,
                             capture_output=True, text=True, timeout=timeout)
        # Ray 2.60's own crash, not ours: its OpenTelemetry metrics thread may still collect while
        # ray.shutdown() tears the core worker down (SIGSEGV in MetricReader::Collect, seen once
        # in a quiet `make test`; ray-project/ray#60048 fixed a race of that kind). The child had
        # printed its result; it is run once more, and a second crash fails the test.
        upstream_crash = (out.returncode == -11 and attempt == 0 and out.stdout.strip()
                          and "in shutdown" in out.stderr and "opentelemetry" in out.stderr)
        if not upstream_crash:
            break
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_default_connect_is_embedded_and_idempotent(ray_local):
    again = ainative.connect()
    assert again is ray_local
    summary = again.resources()
    assert summary.accelerators["H100"].total == 4
    assert summary.cpus_total == 4
    assert "H100" in summary.table() and "GPUs by type" in summary.table()
    assert summary.nodes[0].is_head


def test_a_started_clusters_workers_run_at_the_callers_priority(ray_local):
    # Ray's default (nice 15) leaves workers a few per cent of a core when anything else keeps the
    # machine busy; a cluster connect() starts runs them at the caller's own priority.
    import os

    import ray

    @ray.remote(num_cpus=0)
    def niceness() -> int:
        return os.nice(0)

    assert ray.get(niceness.remote(), timeout=60) == os.nice(0)


def test_resource_arguments_only_for_embedded_ray():
    unused = ray_head.free_port()
    result = run_child(f"'127.0.0.1:{unused}', num_gpus=2")
    assert result["type"] == "ConfigError" and "num_gpus" in result["msg"]


def test_unreachable_address_is_a_typed_error():
    unused = ray_head.free_port()
    result = run_child(f"'127.0.0.1:{unused}'")
    assert result["type"] == "ClusterConnectionError"
    assert f"127.0.0.1:{unused}" in result["msg"] and "ray start --head" in result["msg"]


@pytest.mark.parametrize("bad", ["''", "42", "'not an address'"])
def test_malformed_address(bad):
    result = run_child(bad)
    assert result["type"] == "ConfigError"


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    h = ray_head.start_head(tmp_path_factory.mktemp("head"), token=True, num_cpus=2)
    yield h
    h.stop()


def test_join_existing_cluster_with_its_token(head):
    assert head.token_path.is_file()
    result = run_child(f"'{head.address}'", env=head.env(with_token=True))
    assert result == {"ok": True, "owned": False, "cpus": 2.0, "accels": {}}
    # shutdown() of a joined cluster leaves the cluster running: a second client still joins
    result = run_child("", env=head.env(with_token=True, RAY_ADDRESS=head.address))
    assert result["ok"] and result["owned"] is False


def test_join_without_token_names_where_tokens_are_looked_up(head):
    result = run_child(f"'{head.address}'", env=head.env(with_token=False), timeout=60)
    assert result["type"] == "ClusterAuthError"
    for where in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token"):
        assert where in result["msg"]


def test_connect_rejects_non_address_objects():
    with pytest.raises(errors.ConfigError):
        ainative.cluster.local._resolve_address(object())
