"""Writes examples/quickstart.ipynb from the cells below (the notebook is generated so that its
code stays reviewable as Python; the tests execute the written notebook with nbclient)."""

from __future__ import annotations

from pathlib import Path

import nbformat

CELLS: list[tuple[str, str]] = [
    ("md", """# ainative quickstart

Connect to Ray, shuffle a dataset, train on a 2-worker gang with a live progress widget, plot the
loss curve, deploy the model as an autoscaled endpoint, query it, plot latency percentiles, and
read the cost report. Runs on a laptop: an embedded Ray with 4 *logical* H100s."""),
    ("code", """import os
import tempfile
import time

import ainative as ai

work = tempfile.mkdtemp(prefix="ainative-nb-")
cluster = ai.connect(num_cpus=6, num_gpus=4, accelerator_type="H100", include_dashboard=False)
print(cluster.resources().table())"""),
    ("md", "## Budget and metering\nEvery job admitted from now on is metered into a SQLite ledger."),
    ("code", """prices = ai.PriceTable({"H100": 4.00})
guard = ai.cost.enable(prices=prices, ledger_path=os.path.join(work, "ledger.sqlite"), probe=None)"""),
    ("md", "## Generate and shuffle a dataset"),
    ("code", """from ainative import demo
ds = ai.data.range(8_000, num_blocks=4).map_batches(demo.add_features).shuffle(seed=0)
ds.count(), ds.schema()"""),
    ("md", "## Train on a 2-worker gang (gloo DDP), with a live progress widget"),
    ("code", """job = ai.TrainJob(demo.train_fn, workers=2, name="nb-train",
                  resources=ai.Resources(cpus=1, accelerator=ai.Accelerator("H100")),
                  config={"steps": 40, "batch_size": 256, "checkpoint_every": 10},
                  checkpoint=ai.CheckpointConfig(path=os.path.join(work, "ckpt"), keep=2),
                  datasets={"train": ds}, progress=True)
result = job.run()
result.status, result.restarts, result.metrics"""),
    ("code", """import matplotlib.pyplot as plt

steps = [r["step"] for r in result.history]
losses = [r["loss"] for r in result.history]
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(steps, losses)
ax.set_yscale("log")
ax.set_xlabel("step")
ax.set_ylabel("MSE loss")
ax.set_title("training loss")
plt.show()"""),
    ("md", "## Deploy the trained model as an endpoint and query it"),
    ("code", """ckpt = result.checkpoint.removeprefix("file://")       # the latest committed checkpoint
ep = ai.Endpoint(lambda: demo.LinearModel(ckpt), name="nb-regressor", route="/nb",
                 resources=ai.Resources(cpus=0.5, accelerator=ai.Accelerator("H100", count=0.5)),
                 batching=ai.BatchingConfig(max_batch_size=16, max_wait_ms=5),
                 autoscaling=ai.AutoscalingConfig(min_replicas=1, max_replicas=2, latency_slo_ms=150))
h = ep.deploy()
h.url, h.predict([1.0, 1.0])"""),
    ("code", """import requests
from concurrent.futures import ThreadPoolExecutor

def call(i):
    t = time.perf_counter()
    r = requests.post(h.url, json=[i % 3, i % 5], timeout=15)
    return (time.perf_counter() - t) * 1000, r.status_code

with ThreadPoolExecutor(16) as pool:          # 200 requests, bounded, to 127.0.0.1
    results = list(pool.map(call, range(200)))
lat = sorted(ms for ms, code in results if code == 200)
pcts = {p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))] for p in (50, 90, 95, 99)}
fig, ax = plt.subplots(figsize=(6, 3))
ax.bar([f"p{p}" for p in pcts], list(pcts.values()))
ax.set_ylabel("ms")
ax.set_title(f"latency, {len(lat)}/{len(results)} ok")
plt.show()
h.metrics().to_dict()"""),
    ("md", "## Cost report, then release everything"),
    ("code", """report = ai.cost.report(by="job", path=guard.ledger_path)
print(report.table())
h.delete()
ai.cost.disable()
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
