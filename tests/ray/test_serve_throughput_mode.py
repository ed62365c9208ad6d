"""The Python handle under Serve's throughput-optimized mode (``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``).

Serve reads the mode when it is imported, in the driver as in every Ray process, so the test runs a
driver of its own with the variable set and its own embedded Ray: plain synchronous code, code
inside a running event loop (a notebook, an async app), several threads at once, a caller's own
timeout, a model error, and a redeploy of the same name on the other path must all answer through
``predict``. Without ainative's own loop for handle calls the first of them fails with Serve's
"No event loop running" error. And a delete must not wait out the 30 s that Serve holds an
ingress replica open in this mode for load balancers on the replica's own port.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

DRIVER = textwrap.dedent("""
    import asyncio, json, threading, time
    import ainative as ai
    from ainative import errors
    from ray.serve._private import constants

    def model():
        def double(x):
            if x == "raise":
                raise RuntimeError("boom")
            if x == "slow":
                time.sleep(1.5)
                return "slept"
            return x * 2
        return double

    out = {"router_on_callers_loop": not constants.RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP}
    ai.connect(num_cpus=2, include_dashboard=False)
    handle = ai.Endpoint(model, name="tput", resources=ai.Resources(cpus=0.5)).deploy(timeout_s=120)
    out["sync"] = handle.predict(4)

    async def inside_a_loop():
        return handle.predict(5)

    out["in_loop"] = asyncio.run(inside_a_loop())
    answers = {}
    threads = [threading.Thread(target=lambda i=i: answers.__setitem__(i, handle.predict(i)))
               for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    out["threads"] = [answers.get(i) for i in range(6)]
    try:
        handle.predict("slow", timeout_s=0.3)
        out["gave_up"] = False
    except TimeoutError:
        out["gave_up"] = True
    try:
        handle.predict("raise")
        out["error"] = None
    except errors.EndpointError as e:
        out["error"] = e.status_code
    t0 = time.monotonic()
    handle.delete()
    out["delete_s"] = [time.monotonic() - t0]
    again = ai.Endpoint(model, name="tput", resources=ai.Resources(cpus=0.5),
                        fast_path=True).deploy(timeout_s=120)
    out["redeployed_fast_path"] = again.predict(6)
    t0 = time.monotonic()
    again.delete()
    out["delete_s"].append(time.monotonic() - t0)
    print("RESULT " + json.dumps(out), flush=True)
""")


def test_predict_works_in_serves_throughput_optimized_mode(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
    out = subprocess.run([sys.executable, "-c", DRIVER], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=420)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert out.returncode == 0 and lines, (out.stdout[-3000:], out.stderr[-3000:])
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["router_on_callers_loop"], "the mode did not reach Serve in the driver"
    assert result["sync"] == 8
    assert result["in_loop"] == 10
    assert result["threads"] == [0, 2, 4, 6, 8, 10]
    assert result["gave_up"], "predict(timeout_s=0.3) did not raise TimeoutError"
    assert result["error"] == 500
    assert result["redeployed_fast_path"] == 12
    # Serve holds an ingress replica open 30 s after its stop in this mode (direct ingress, for
    # load balancers on the replica's own port) unless told otherwise: each delete took 31 s.
    # ainative sets 2 s for its ingress replicas (serve/_runtime.py, DRAIN_ENV_DEFAULTS).
    assert all(s < 25 for s in result["delete_s"]), result["delete_s"]
