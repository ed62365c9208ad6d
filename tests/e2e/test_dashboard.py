"""The dashboard in a real headless Chromium (Debian's chromium + chromedriver through Selenium)
against a live local cluster: two queues in one cohort, a running TrainJob, a second job waiting
for GPUs (with the scheduler's reason), an Endpoint under a light bounded load on 127.0.0.1, and a
spend ledger. Each page must render without console errors and show the JSON API's numbers; the
jobs page must follow a job to "succeeded" without a reload. Screenshots go to
``$AINATIVE_TEST_ARTIFACTS/dashboard`` (default ``tests/artifacts/dashboard``, gitignored)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ARTIFACTS = Path(os.environ.get("AINATIVE_TEST_ARTIFACTS") or Path(__file__).parents[1] / "artifacts") / "dashboard"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1440,1000")


def hold_until_told(config):
    """Reports a falling loss, checkpoints every 5 steps, returns once the stop file exists."""
    import os
    import tempfile
    import time

    import ainative as ai

    ctx = ai.train.get_context()
    step = 0
    while step < config["min_steps"] or not os.path.exists(config["stop_file"]):
        step += 1
        metrics = {"step": step, "loss": 1.0 / step}
        if step % 5 == 0:
            with tempfile.TemporaryDirectory() as d:
                if ctx.rank == 0:
                    with open(os.path.join(d, "state.txt"), "w") as fh:
                        fh.write(str(step))
                ai.train.report(metrics, checkpoint=d if ctx.rank == 0 else None)
        else:
            ai.train.report(metrics)
        time.sleep(0.2)


class Doubler:
    def __call__(self, batch):
        import time

        time.sleep(0.004 + 0.001 * len(batch))
        return [2 * x for x in batch]


def wait_for(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # the page or the API is between two states
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; last: {last!r}")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """Cluster, scheduler, jobs, endpoint, load and dashboard; everything stopped afterwards."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("no Chromium here: `apt-get install chromium chromium-driver` (.ci/run installs them)")
    from ray import cloudpickle

    import ainative as ai
    from ainative import cost, scheduling
    from ainative.dashboard import server
    from ainative.policy.engine import PolicyConfig
    from tests.support import clusters

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    work = tmp_path_factory.mktemp("dash")
    env = {"AINATIVE_SCHEDULER_STATE_DIR": str(work / "sched"), "AINATIVE_LEDGER": str(work / "ledger.sqlite")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    clusters.local_ray()
    budget = ai.Budget(usd=5.0, period="day", warn_at=0.05)      # far above what the test spends
    queues = [ai.Queue("team-a", quota={"H100": 2}, cohort="lab", budget=budget),
              ai.Queue("team-b", quota={"H100": 2}, cohort="lab")]
    prices = ai.PriceTable({"H100": 4.0})
    scheduling.configure(queues, prices, policy=PolicyConfig(min_runtime_s=0, preempt_retry_s=0), fresh=True,
                         guardrails=cost.scheduler_guardrails(queues, prices, ledger_path=env["AINATIVE_LEDGER"]))
    stop_a, stop_b = str(work / "stop-a"), str(work / "stop-b")
    res = ai.Resources(cpus=0.25, accelerator=ai.Accelerator("H100"))
    handles, ep, dash, load_stop = [], None, None, threading.Event()
    try:
        handles.append(ai.TrainJob(hold_until_told, workers=2, name="dash-train", queue="team-a", resources=res,
                                   config={"stop_file": stop_a, "min_steps": 12},
                                   checkpoint=ai.CheckpointConfig(path=str(work / "ckpt-a"), keep=2),
                                   progress=False).submit())
        wait_for(lambda: handles[0].status() == "running", 120, "dash-train running")
        handles.append(ai.TrainJob(hold_until_told, workers=3, name="dash-wait", queue="team-b", resources=res,
                                   config={"stop_file": stop_b, "min_steps": 3},
                                   checkpoint=ai.CheckpointConfig(path=str(work / "ckpt-b"), keep=1),
                                   progress=False).submit())
        ep = ai.Endpoint(Doubler, name="dash-ep", resources=ai.Resources(cpus=0.25),
                         batching=ai.BatchingConfig(max_batch_size=8, max_wait_ms=5),
                         autoscaling=ai.AutoscalingConfig(min_replicas=1, max_replicas=2, latency_slo_ms=200)
                         ).deploy()
        threading.Thread(target=_light_load, args=(ep.url, load_stop), daemon=True).start()
        srv, thread, url = server.start_in_thread()
        dash = (srv, thread)
        yield {"url": url, "jobs": handles, "stop_a": stop_a, "stop_b": stop_b}
    finally:
        load_stop.set()
        for path in (stop_a, stop_b):
            Path(path).touch()
        for h in handles:
            h.wait(timeout_s=120)
        if ep is not None:
            ep.delete()
        if dash is not None:
            server.stop(*dash)
        scheduling.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _light_load(url: str, stop: threading.Event, rate: float = 8.0, limit: int = 3000) -> None:
    """At most ``limit`` requests at ``rate`` per second, to 127.0.0.1 only."""
    session = requests.Session()
    for i in range(limit):
        if stop.wait(1.0 / rate):
            return
        try:
            session.post(url, json=[i % 7, 1.0], timeout=5)
        except requests.RequestException:
            pass


@pytest.fixture(scope="module")
def browser(live):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="ainative-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def api(live, resource):
    return requests.get(f"{live['url']}/api/v1/{resource}", timeout=10).json()


def open_page(browser, live, page):
    browser.get(f"{live['url']}/{page}")
    wait_for(lambda: browser.find_element("id", "main").get_attribute("data-updated"), 30, f"{page} rendered")


def text(browser, css):
    return browser.find_element("css selector", css).text.strip()


def console_errors(browser):
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def shot(browser, name):
    browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def fmt(v):
    return f"{v:g}"


def test_cluster_page_shows_gpus_and_holders(browser, live):
    open_page(browser, live, "cluster")

    def agrees():
        d = api(live, "cluster")
        h100 = d["accelerators"]["H100"]
        shown = text(browser, '[data-k="gpus-H100"]')
        holders = browser.find_element("id", "c-holders").text
        return shown == f"{fmt(h100['free'])} / {fmt(h100['total'])}" and "dash-train" in holders and \
            text(browser, '[data-k="nodes"]') == str(len(d["nodes"]))
    wait_for(agrees, 30, "cluster KPIs equal to /api/v1/cluster")
    wait_for(lambda: browser.execute_script(
        "return document.querySelectorAll('#c-chart .uplot').length === 1 && local.gpuHistory.length >= 4"),
        30, "GPU chart drawn from a few samples")
    shot(browser, "cluster")
    assert console_errors(browser) == []


def test_queues_page_shows_use_and_why_a_job_waits(browser, live):
    open_page(browser, live, "queues")

    def agrees():
        d = api(live, "queues")
        a = next(q for q in d["queues"] if q["name"] == "team-a")
        b = next(q for q in d["queues"] if q["name"] == "team-b")
        row_a = browser.find_element("css selector", '[data-queue="team-a"]')
        whys = [e.text for e in browser.find_elements("css selector", ".why")]
        return (a["used"]["H100"] == 2 and b["pending"]
                and row_a.find_element("css selector", '[data-k="used"]').text == "2 H100"
                and row_a.find_element("css selector", '[data-k="q-running"]').text == str(len(a["running"]))
                and any(b["pending"][0]["why"] in w for w in whys))
    wait_for(agrees, 60, "team-a using 2 H100 and team-b's waiting job with its reason")
    shot(browser, "queues")
    assert console_errors(browser) == []


def chart_series(browser, chart_id):
    """[(label, first value)] of a uPlot chart as drawn on the page (series 0 is the x axis)."""
    return browser.execute_script(
        "const c = charts[arguments[0]]; if (!c) return null;"
        "return c.u.series.slice(1).map((s, i) => [s.label, c.u.data[i + 1][0]]);", chart_id)


def test_endpoints_page_tracks_the_endpoint(browser, live):
    open_page(browser, live, "endpoints")

    def agrees():
        d = api(live, "endpoints")
        e = next(x for x in d["endpoints"] if x["name"] == "dash-ep")
        card = browser.find_element("css selector", '[data-endpoint="dash-ep"]')
        return e["requests_total"] > 0 and e["replicas"] >= 1 and \
            card.find_element("css selector", '[data-k="replicas"]').text == str(e["replicas"]) and \
            len(card.find_elements("css selector", ".uplot")) == 3 and \
            card.find_elements("css selector", ".hist div")
    wait_for(agrees, 60, "the endpoint card agreeing with /api/v1/endpoints")
    # the SLO the endpoint was deployed with: in the API, as a KPI, and as a line on the latency plot
    slo = next(x for x in api(live, "endpoints")["endpoints"] if x["name"] == "dash-ep")["latency_slo_ms"]
    assert slo == 200
    assert text(browser, '[data-endpoint="dash-ep"] [data-k="slo"]') == f"{fmt(slo)} ms"
    wait_for(lambda: ("SLO", slo) in [tuple(x) for x in chart_series(browser, "ep-dash-ep-lat") or []], 30,
             "an SLO line at the API's latency_slo_ms on the latency plot")
    # the request count moves while the page stays open (no reload)
    first = int(text(browser, '[data-endpoint="dash-ep"] [data-k="requests"]').replace(",", ""))
    wait_for(lambda: int(text(browser, '[data-endpoint="dash-ep"] [data-k="requests"]').replace(",", "")) > first,
             30, "the request count to grow")
    shot(browser, "endpoints")
    assert console_errors(browser) == []


def test_cost_page_shows_spend_from_the_ledger(browser, live):
    open_page(browser, live, "cost")

    def agrees():
        d = api(live, "cost")
        keys = {r["key"] for r in d["report"]["rows"]}
        shown = {e.get_attribute("data-team") for e in browser.find_elements("css selector", "[data-team]")}
        return d["available"] and "team-a" in keys and keys == shown and \
            browser.find_elements("css selector", "#k-chart .uplot")
    wait_for(agrees, 90, "team-a's spend in the ledger and on the page")
    # team-a's budget and warn lines, at the API's values, drawn and written beside its spend
    budget = api(live, "cost")["budgets"]["team-a"]
    assert budget["usd"] == 5.0 and budget["warn_usd"] == pytest.approx(0.25)
    wait_for(lambda: {("team-a budget", budget["usd"]), ("team-a warn", budget["warn_usd"])}
             <= {tuple(x) for x in chart_series(browser, "k-chart") or []}, 30,
             "team-a's budget and warn lines on the spend plot")
    row = '[data-team="team-a"] [data-k="row-{}"]'
    assert text(browser, row.format("budget")) == f"${budget['usd']:.2f}/day"
    assert text(browser, row.format("warn")) == f"${budget['warn_usd']:.2f}"
    shot(browser, "cost")
    assert console_errors(browser) == []


def test_jobs_page_follows_a_job_to_success_without_reload(browser, live):
    open_page(browser, live, "jobs")
    row = '[data-job="dash-train"] [data-k="state"]'
    wait_for(lambda: text(browser, row) == "running", 30, "dash-train shown running")
    d = api(live, "jobs")
    job = next(j for j in d["jobs"] if j["name"] == "dash-train")
    assert text(browser, '[data-job="dash-train"] [data-k="restarts"]') == str(job["restarts"])
    # the loss curve of the selected job: the losses its checkpoint events carry, per the API
    browser.find_element("css selector", 'tr[data-job="dash-train"]').click()

    def loss_drawn():
        losses = [m["loss"] for m in api(live, "jobs/dash-train/events")["summary"]["metrics"]]
        drawn = browser.execute_script("const c = charts['j-loss']; return c ? c.u.data[1] : null")
        return drawn and len(drawn) >= 2 and drawn == losses[:len(drawn)]
    wait_for(loss_drawn, 60, "dash-train's loss curve equal to its events' losses")
    shot(browser, "jobs-running")
    browser.execute_script("window.__same_page = 42")
    Path(live["stop_a"]).touch()
    wait_for(lambda: text(browser, row) == "succeeded", 90, "dash-train shown succeeded")
    assert browser.execute_script("return window.__same_page") == 42, "the page reloaded"
    final = next(j for j in api(live, "jobs")["jobs"] if j["name"] == "dash-train")
    assert final["state"] == "succeeded" and final["checkpoints"] >= 2
    wait_for(lambda: text(browser, '[data-job="dash-train"] [data-k="checkpoints"]') == str(final["checkpoints"]),
             10, "checkpoint count equal to the API's")
    # the waiting job gets team-a's lent GPUs once they are free
    wait_for(lambda: text(browser, '[data-job="dash-wait"] [data-k="state"]') == "running", 90,
             "dash-wait admitted once GPUs were free")
    shot(browser, "jobs-finished")
    Path(live["stop_b"]).touch()
    assert console_errors(browser) == []


def test_a_missing_scheduler_is_an_empty_state_not_an_error(browser, live):
    from ainative import scheduling

    Path(live["stop_b"]).touch()
    for h in live["jobs"]:
        h.wait(timeout_s=120)
    scheduling.shutdown()
    open_page(browser, live, "queues")
    wait_for(lambda: "scheduling.configure" in text(browser, "[data-empty]"), 30, "the empty state with its fix")
    assert requests.get(f"{live['url']}/api/v1/queues", timeout=10).status_code == 200
    shot(browser, "queues-empty")
    assert console_errors(browser) == []
