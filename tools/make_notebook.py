"""Writes examples/quickstart.ipynb from the cells below (the notebook is generated so that its
code stays reviewable as Python; the tests execute the written notebook with nbclient)."""

from __future__ import annotations

from pathlib import Path

import nbformat

CELLS: list[tuple[str, str]] = [
    ("md", """# ainative quickstart

Connect to Ray, give a team a queue with a budget, shuffle a dataset, train on a 2-worker gang with
a live progress widget, deploy the model as an autoscaled endpoint and query it, then plot what
the dashboard shows, from its JSON API: the loss curve, the endpoint's latency against its SLO and
the team's spend against its budget; and read the cost report.
Runs on a laptop: an embedded Ray with 4 *logical* H100s."""),
    ("code", """import os
import tempfile
import time

import ainative as ai

work = tempfile.mkdtemp(prefix="ainative-nb-")
cluster = ai.connect(num_cpus=6, num_gpus=4, accelerator_type="H100", include_dashboard=False)
print(cluster.resources().table())"""),
    ("md", """## A queue with a budget
The scheduler admits team-a's jobs and endpoint replicas within its quota and meters each into a
SQLite ledger; the budget warns at 5% (a line on the spend plot below) and stops work at 100%."""),
    ("code", """ledger = os.environ["AINATIVE_LEDGER"] = os.path.join(work, "ledger.sqlite")
ai.scheduling.configure([ai.Queue("team-a", quota={"H100": 4}, budget=ai.Budget(usd=2.00, warn_at=0.05))],
                        prices=ai.PriceTable({"H100": 4.00}), fresh=True)
next(q for q in ai.scheduling.status()["queues"] if q["name"] == "team-a")["budget"]"""),
    ("md", "## Generate and shuffle a dataset"),
    ("code", """from ainative import demo
ds = ai.data.range(8_000, num_blocks=4).map_batches(demo.add_features).shuffle(seed=0)
ds.count(), ds.schema()"""),
    ("md", "## Train on a 2-worker gang (gloo DDP), with a live progress widget"),
    ("code", """job = ai.TrainJob(demo.train_fn, workers=2, name="nb-train", queue="team-a",
                  resources=ai.Resources(cpus=1, accelerator=ai.Accelerator("H100")),
                  config={"steps": 40, "batch_size": 256, "checkpoint_every": 5},
                  checkpoint=ai.CheckpointConfig(path=os.path.join(work, "ckpt"), keep=2),
                  datasets={"train": ds}, progress=True)
result = job.run()
result.status, result.restarts, result.metrics"""),
    ("md", """## The loss curve, read from the dashboard's JSON API
`ainative.dashboard.api` is what `ainative dashboard` serves at `/api/v1/...`: the same numbers
here as on its pages. A job's loss comes from its event log (each checkpoint records it); the
full per-step history is also in `result.history`."""),
    ("code", """import matplotlib.pyplot as plt
from ainative.dashboard import api as dash

metrics = dash.job_events("nb-train")["summary"]["metrics"]   # GET /api/v1/jobs/nb-train/events
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot([m["step"] for m in metrics], [m["loss"] for m in metrics], marker="o")
ax.set_yscale("log")
ax.set_xlabel("step")
ax.set_ylabel("MSE loss")
ax.set_title(f"training loss ({len(metrics)} checkpoints)")
plt.show()"""),
    ("md", "## Deploy the trained model as an endpoint and query it"),
    ("code", """ckpt = result.checkpoint.removeprefix("file://")       # the latest committed checkpoint
ep = ai.Endpoint(lambda: demo.LinearModel(ckpt), name="nb-regressor", route="/nb", queue="team-a",
                 resources=ai.Resources(cpus=0.5, accelerator=ai.Accelerator("H100", count=0.5)),
                 batching=ai.BatchingConfig(max_batch_size=16, max_wait_ms=5),
                 autoscaling=ai.AutoscalingConfig(min_replicas=1, max_replicas=2, latency_slo_ms=150))
h = ep.deploy()
h.url, h.predict([1.0, 1.0])"""),
    ("md", """## Latency against the SLO, from the same API
A background thread samples `/api/v1/endpoints` while a bounded load runs; the SLO line is the
one the endpoint reports (its `latency_slo_ms`)."""),
    ("code", """import threading
import requests
from concurrent.futures import ThreadPoolExecutor

samples, stop = [], threading.Event()

def sample():
    while not stop.is_set():
        row = next((e for e in dash.endpoints(window_s=2.0)["endpoints"] if e["name"] == "nb-regressor"), None)
        if row and row.get("p50_ms") is not None:
            samples.append((time.time(), row["p50_ms"], row["p99_ms"], row.get("latency_slo_ms")))
        stop.wait(0.5)

def call(i):
    r = requests.post(h.url, json=[i % 3, i % 5], timeout=15)
    return r.status_code

sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
with ThreadPoolExecutor(16) as pool:          # 400 requests, bounded, to 127.0.0.1
    codes = list(pool.map(call, range(400)))
time.sleep(1.0)
stop.set()
sampler.join()
slo = samples[-1][3]                                    # the endpoint's SLO, as the API reports it
t0 = samples[0][0]
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot([s[0] - t0 for s in samples], [s[1] for s in samples], label="p50")
ax.plot([s[0] - t0 for s in samples], [s[2] for s in samples], label="p99")
ax.axhline(slo, color="tab:red", linestyle="--", label=f"SLO {slo:g} ms")
ax.set_xlabel("seconds")
ax.set_ylabel("ms")
ax.set_title(f"endpoint latency vs SLO ({codes.count(200)}/{len(codes)} ok)")
ax.legend()
plt.show()
h.metrics().to_dict()"""),
    ("md", "## Spend against the budget, from the same API (the scheduler's ledger and team-a's budget)"),
    ("code", """spend = dash.cost(since="1d", path=ledger)                # GET /api/v1/cost
budget = spend["budgets"]["team-a"]                       # usd, warn_at, warn_usd, period
fig, ax = plt.subplots(figsize=(6, 3))
for s in spend["series"]:
    ax.plot([t - spend["times"][0] for t in spend["times"]], s["usd"], label=f"spend: {s['team']}")
ax.axhline(budget["usd"], color="tab:red", linestyle="--", label=f"budget ${budget['usd']:g}")
ax.axhline(budget["warn_usd"], color="tab:orange", linestyle=":", label=f"warn at {budget['warn_at']:.0%}")
ax.set_yscale("symlog", linthresh=0.01)
ax.set_xlabel("seconds")
ax.set_ylabel("USD (cumulative)")
ax.set_title(f"spend ${spend['report']['total_usd']:.4f} of ${budget['usd']:g}")
ax.legend()
plt.show()"""),
    ("md", "## Cost report, then release everything"),
    ("code", """report = ai.cost.report(by="job", path=ledger)
print(report.table())
h.delete()
ai.scheduling.shutdown()
cluster.shutdown()"""),
]


def build() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, src in CELLS:
        nb.cells.append(nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src))
    return nb


if __name__ == "__main__":
    path = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"
    nbformat.write(build(), path)
    print(path)
