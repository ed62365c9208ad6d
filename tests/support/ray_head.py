"""A `ray start --head` cluster owned by one test: its own HOME (so its auth token lives in a
throw-away ~/.ray/auth_token), its own ports, stopped by process group, never by `ray stop`."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class RayHead:
    home: Path
    port: int
    dashboard_port: int | None
    process: subprocess.Popen
    temp_dir: Path | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def token_path(self) -> Path:
        return self.home / ".ray" / "auth_token"

    def env(self, *, with_token: bool = True, **extra: str) -> dict[str, str]:
        """Environment for a client process: HOME holding the token (or an empty HOME)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
        env["HOME"] = str(self.home if with_token else self.home.parent / "no-token-home")
        Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        env.update(extra)
        return env

    def stop(self) -> None:
        stop_process_groups([self.process])
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


# `ray start --block` takes SIGTERM as "stop gracefully" and then outlives 5 s and more (its GCS
# and monitor linger: measured 8 s, then SIGKILL). A test's cluster keeps nothing worth a graceful
# stop, so teardown waits this long before SIGKILL (as `ray stop --force` does at once).
TERM_GRACE_S = 1.0


def stop_process_groups(procs: Sequence[subprocess.Popen], grace_s: float = TERM_GRACE_S) -> None:
    """SIGTERM every process group at once, SIGKILL those still up after ``grace_s`` in all."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        live = [p for p in procs if p.poll() is None]
        for proc in live:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        for proc in live:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass


def start_head(tmp: Path, *, token: bool = True, num_cpus: int = 2, num_gpus: int = 0,
               resources: str | None = None, dashboard: bool = False,
               timeout_s: float = 60.0) -> RayHead:
    home = tmp / "head-home"
    home.mkdir(parents=True, exist_ok=True)
    ray_bin = str(Path(sys.executable).parent / "ray")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
    # Jobs run `python ...` through the head's PATH: make that this virtual environment's python.
    env.update(HOME=str(home), RAY_USAGE_STATS_ENABLED="0",
               PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""))
    if token:
        # Ray 2.60 turns token auth on for `ray start --head` when a token exists.
        subprocess.run([ray_bin, "get-auth-token", "--generate"], env=env, check=True,
                       capture_output=True, timeout=60)
    port = free_port()
    dash_port = free_port() if dashboard else None
    # A Ray temp dir of its own: a job's driver finds its cluster through the head's temp dir
    # (Ray's job supervisor resolves "auto" from <temp dir>/ray_current_cluster), and in the
    # shared /tmp/ray that names whichever Ray on this machine started last (another test
    # process's, with `make test`'s two workers). Short, under /tmp: Ray's socket paths live in it.
    temp_dir = Path(tempfile.mkdtemp(prefix="rayhead-", dir="/tmp"))
    cmd = [ray_bin, "start", "--head", f"--port={port}", f"--num-cpus={num_cpus}",
           f"--num-gpus={num_gpus}", "--block", "--disable-usage-stats", f"--temp-dir={temp_dir}"]
    if dashboard:
        # The job agent's HTTP port defaults to a fixed 52365: take a free one so that another Ray
        # on this machine cannot leave `ray job submit` with "No available agent".
        cmd += ["--include-dashboard=true", "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dash_port}", f"--dashboard-agent-listen-port={free_port()}"]
    else:
        cmd += ["--include-dashboard=false"]
    if resources:
        cmd.append(f"--resources={resources}")
    log = open(tmp / "ray-head.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=str(tmp))
    head = RayHead(home, port, dash_port, proc, temp_dir)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            head.stop()
            raise RuntimeError(f"ray start exited: {(tmp / 'ray-head.log').read_text()[-2000:]}")
        if _listening(port) and (not dashboard or _listening(dash_port)):
            time.sleep(0.5)
            return head
        time.sleep(0.2)
    head.stop()
    raise TimeoutError(f"ray start --head did not come up in {timeout_s} s")


def _listening(port: int | None) -> bool:
    if port is None:
        return True
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0
