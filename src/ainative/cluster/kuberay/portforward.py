"""Reach a KubeRay head from outside the cluster: ``kubectl port-forward`` to 127.0.0.1.

The Kubernetes Python client's port-forward speaks a websocket sub-protocol per connection, which
Ray's gRPC client cannot use as a plain TCP port; ``kubectl port-forward`` gives a real local port.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Mapping

from ainative import errors

_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PortForward:
    """A running ``kubectl port-forward``; ``close()`` (or ``with``) stops it."""

    def __init__(self, process: subprocess.Popen[str], local_ports: dict[str, int]) -> None:
        self.process = process
        self.local_ports = local_ports

    @property
    def address(self) -> str:
        return f"ray://127.0.0.1:{self.local_ports['client']}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.local_ports['dashboard']}"

    @classmethod
    def start(cls, namespace: str, service: str, remote_ports: Mapping[str, int], *,
              timeout_s: float = 30.0, kubectl: str = "kubectl") -> PortForward:
        exe = shutil.which(kubectl)
        if exe is None:
            raise errors.KubeRayError(f"{kubectl!r} not found on PATH; port-forwarding needs "
                                      "kubectl (and RBAC pods/portforward)", kubectl=kubectl)
        local = {key: _free_port() for key in remote_ports}
        argv = [exe, "port-forward", "--address", "127.0.0.1", "-n", namespace, f"svc/{service}",
                *[f"{local[k]}:{remote_ports[k]}" for k in remote_ports]]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen: set[int] = set()
        lines: list[str] = []
        done = threading.Event()

        def read() -> None:
            assert proc.stdout is not None  # Popen(stdout=PIPE) always sets it
            for line in proc.stdout:
                lines.append(line.rstrip())
                match = _FORWARDING.search(line)
                if match:
                    seen.add(int(match.group(1)))
                if seen >= set(local.values()):
                    done.set()
            done.set()

        threading.Thread(target=read, daemon=True, name="kubectl-port-forward").start()
        deadline = time.monotonic() + timeout_s
        done.wait(timeout_s)
        forward = cls(proc, local)
        if seen >= set(local.values()) and proc.poll() is None:
            return forward
        forward.close()
        why = "timed out" if time.monotonic() >= deadline else f"exited ({proc.returncode})"
        raise errors.KubeRayError(f"kubectl port-forward to svc/{service} in {namespace} {why}: "
                                  f"{' | '.join(lines[-5:]) or 'no output'}", argv=argv)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def __enter__(self) -> PortForward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
