"""Serve's start on a busy machine: the HTTP port ainative picks can be taken by another process
before Serve's proxy binds it (seen in a busy fresh-clone run: "Failed to bind to address
'127.0.0.1:45869'"); ``ensure_serve`` then starts Serve again on another port."""

from __future__ import annotations

import socket

import requests


def test_serve_starts_on_another_port_when_its_port_was_taken_meanwhile(ray_local, monkeypatch):
    from ray import serve

    from ainative.serve import _runtime

    serve.shutdown()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    taken = blocker.getsockname()[1]
    picks = [taken]           # the first pick is a port someone else holds by the time of the bind
    real = _runtime._free_port
    monkeypatch.setattr(_runtime, "_free_port", lambda: picks.pop() if picks else real())
    try:
        port = _runtime.ensure_serve()
        assert port != taken and not picks
        # Serve's proxy answers on the new port (no application yet: its health check says the
        # route table is empty, which only the proxy says)
        answer = requests.get(f"http://127.0.0.1:{port}/-/healthz", timeout=30)
        assert answer.status_code == 200 or "Route table" in answer.text, answer.text
    finally:
        blocker.close()
        serve.shutdown()
