/* ainative dashboard: one page per resource, each polling /api/v1/<resource> every 1.5 s.
   Plots use uPlot (shipped beside this file); everything else is plain DOM. */
"use strict";

const POLL_MS = 1500;
const PAGES = ["cluster", "queues", "jobs", "endpoints", "cost"];
const COLORS = ["#2563eb", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d"];
const STATE_COLORS = {
  submitted: "#cbd5e1", admitted: "#93c5fd", scheduling: "#fcd34d", pending: "#fcd34d",
  running: "#10b981", restarting: "#f59e0b", resizing: "#f59e0b", stopping: "#fb923c",
  preempted: "#ef4444", stopped: "#ef4444", errored: "#dc2626", failed: "#dc2626",
  finished: "#6b7280", succeeded: "#6b7280",
};
const page = PAGES.includes(location.pathname.slice(1)) ? location.pathname.slice(1) : "cluster";
const main = document.getElementById("main");
const live = document.getElementById("live");
const charts = {};
const local = { gpuHistory: [], selectedJob: null };

// ------------------------------------------------------------------------------------- helpers
function esc(v) {
  return String(v == null ? "" : v).replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function num(v, digits) {
  if (v == null || Number.isNaN(v)) return "–";
  const d = digits == null ? (Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2) : digits;
  return Number(v).toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: 0 });
}
function usd(v) { return v == null ? "–" : "$" + Number(v).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }); }
function gpus(map) {
  const parts = Object.entries(map || {}).filter(([, v]) => v).map(([k, v]) => `${num(v)} ${esc(k)}`);
  return parts.length ? parts.join(", ") : '<span class="muted">–</span>';
}
function ago(ts) {
  if (!ts) return "–";
  const s = Math.max(0, Date.now() / 1000 - ts);
  return s < 60 ? `${Math.round(s)} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : `${(s / 3600).toFixed(1)} h ago`;
}
function dur(s) {
  if (s == null) return "–";
  return s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;
}
function clock(ts) { return new Date(ts * 1000).toLocaleTimeString("en-GB", { hour12: false }); }
function kpi(label, value, key) {
  return `<div class="kpi"><div class="v" data-k="${esc(key || label)}">${value}</div><div class="l">${esc(label)}</div></div>`;
}
function badge(state) { return `<span class="badge b-${esc(state)}">${esc(state)}</span>`; }
function bar(used, total) {
  if (!total) return '<div class="bar"></div>';
  const pct = Math.min(100, (100 * used) / total);
  return `<div class="bar" title="${num(used)} / ${num(total)}"><span class="${used > total ? "over" : ""}" style="left:0;width:${pct}%"></span></div>`;
}
function empty(title, data) {
  return `<div class="empty" data-empty="1"><h2>${esc(title)}</h2><p>${esc(data.error || "")}</p>` +
    `<code>${esc(data.fix || "")}</code></div>`;
}
function slot(id) { return document.getElementById(id); }
function setHTML(id, html) { const el = slot(id); if (el && el.innerHTML !== html) el.innerHTML = html; }

// uPlot: created once per container, then only fed new data.
function plot(id, series, data, opts) {
  const el = slot(id);
  if (!el || typeof uPlot === "undefined") return;
  if (data[0].length < 2) {   // one sample is no line: say so rather than draw an empty axis
    if (!charts[id]) setHTML(id, '<p class="muted">collecting samples&hellip;</p>');
    return;
  }
  const width = Math.max(300, el.clientWidth || 600);
  const key = id + ":" + series.map((s) => s.label).join("|");
  if (!charts[id] || charts[id].key !== key) {
    if (charts[id]) charts[id].u.destroy();
    el.innerHTML = "";
    const o = {
      width, height: (opts && opts.height) || 220,
      // at least a minute of x axis, so that the first samples do not stretch over years
      scales: { x: { time: true, range: (u, lo, hi) => (hi - lo < 60 ? [hi - 60, hi + 1] : [lo, hi]) }, y: { range: (u, lo, hi) => [Math.min(0, lo), hi > 0 ? hi * 1.1 : 1] } },
      axes: [{ stroke: "#6b7280", grid: { stroke: "#f0f1f3" } },
        { stroke: "#6b7280", grid: { stroke: "#f0f1f3" }, label: (opts && opts.ylabel) || "", size: 56 }],
      series: [{}].concat(series),
      legend: { live: false },
    };
    charts[id] = { u: new uPlot(o, data, el), key };
  } else {
    charts[id].u.setData(data);
    if (Math.abs(charts[id].u.width - width) > 4) charts[id].u.setSize({ width, height: charts[id].u.height });
  }
}
function line(label, color, extra) { return Object.assign({ label, stroke: color, width: 2, points: { show: false } }, extra || {}); }

// ------------------------------------------------------------------------------------- cluster
function layoutCluster() {
  return `<h1>Cluster <span class="sub">nodes, GPUs by type and who holds them</span></h1>
    <div id="c-kpis" class="kpis"></div>
    <div class="card"><h2>Nodes</h2><div id="c-nodes"></div></div>
    <div class="grid2"><div class="card"><h2>GPU holders</h2><div id="c-holders"></div></div>
    <div class="card"><h2>GPUs in use <span class="sub">since this page opened</span></h2><div id="c-chart" class="chart"></div></div></div>`;
}
function renderCluster(d) {
  if (!d.available) return setHTML("c-nodes", empty("Not connected to a Ray cluster", d));
  const acc = Object.values(d.accelerators || {});
  let k = kpi("nodes", num(d.nodes.length), "nodes");
  for (const a of acc) k += kpi(`${a.type} GPUs free / total`, `${num(a.free)} / ${num(a.total)}`, `gpus-${a.type}`);
  if (!acc.length) k += kpi("GPUs", "none", "gpus-none");
  k += kpi("CPUs free / total", `${num(d.cpus_free)} / ${num(d.cpus_total)}`, "cpus");
  if (d.external) {   // the scheduler's count: GPUs held by work it did not admit
    const total = Object.values(d.external).reduce((s, v) => s + v, 0);
    k += kpi("GPUs in external use", num(total), "gpus-external");
  } else {
    const ext = d.nodes.reduce((s, n) => s + (n.gpus_unattributed || 0), 0);
    k += kpi("GPUs held outside gangs", num(ext), "gpus-unattributed");
  }
  setHTML("c-kpis", k);
  const rows = d.nodes.map((n) => {
    const held = (d.holders || []).filter((h) => h.node_id === n.node_id)
      .map((h) => `${esc(h.holder)} <span class="muted">×${num(h.gpus)}</span>`);
    for (const [ep, c] of Object.entries(n.replicas || {})) held.push(`endpoint ${esc(ep)} <span class="muted">${c} replica(s)</span>`);
    if (n.gpus_external) held.push(`<span class="muted">external (not admitted): ${num(n.gpus_external)} GPU</span>`);
    else if (n.gpus_unattributed) held.push(`<span class="muted">other: ${num(n.gpus_unattributed)} GPU</span>`);
    return `<tr data-node="${esc(n.node_id)}"><td class="mono">${esc(n.node_id.slice(0, 12))}</td>
      <td>${n.is_head ? "head" : "worker"}</td><td>${esc(n.accelerator_type || "–")}</td>
      <td>${bar(n.gpus_total - n.gpus_free, n.gpus_total)}</td>
      <td class="n" data-k="node-gpus">${num(n.gpus_total - n.gpus_free)} / ${num(n.gpus_total)}</td>
      <td class="n">${num(n.cpus_total - n.cpus_free)} / ${num(n.cpus_total)}</td>
      <td class="n">${num(n.memory_bytes / 2 ** 30, 1)} GiB</td><td>${held.join("<br>") || '<span class="muted">idle</span>'}</td></tr>`;
  }).join("");
  setHTML("c-nodes", `<table><thead><tr><th>node</th><th>role</th><th>type</th><th>GPU use</th><th class="n">GPUs used</th>
    <th class="n">CPUs used</th><th class="n">memory</th><th>held by</th></tr></thead><tbody>${rows}</tbody></table>`);
  const holders = (d.holders || []).map((h) => `<tr><td>${esc(h.holder)}</td><td>${esc(h.kind)}</td>
    <td class="mono">${esc(h.node_id.slice(0, 12))}</td><td class="n">${num(h.gpus)}</td></tr>`).join("");
  setHTML("c-holders", holders ? `<table><thead><tr><th>holder</th><th>kind</th><th>node</th><th class="n">GPUs</th></tr></thead><tbody>${holders}</tbody></table>`
    : '<p class="muted">No gang holds GPUs right now.</p>');
  const used = d.nodes.reduce((s, n) => s + n.gpus_total - n.gpus_free, 0);
  const total = d.nodes.reduce((s, n) => s + n.gpus_total, 0);
  local.gpuHistory.push([d.ts, used, total]);
  if (local.gpuHistory.length > 600) local.gpuHistory.shift();
  const h = local.gpuHistory;
  plot("c-chart", [line("GPUs in use", COLORS[0]), line("GPUs total", "#9ca3af", { dash: [5, 4] })],
    [h.map((r) => r[0]), h.map((r) => r[1]), h.map((r) => r[2])], { ylabel: "GPUs", height: 200 });
}

// -------------------------------------------------------------------------------------- queues
function layoutQueues() {
  return `<h1>Queues <span class="sub">quota, use, borrowing and why jobs wait</span></h1>
    <div id="q-kpis" class="kpis"></div><div class="card"><h2>Queues</h2><div id="q-table"></div></div>
    <div class="card"><h2>Pending jobs <span class="sub">the scheduler's reason for each</span></h2><div id="q-pending"></div></div>`;
}
function renderQueues(d) {
  if (!d.available) { setHTML("q-kpis", ""); setHTML("q-pending", "<p class=\"muted\">No scheduler, so no job waits in a queue.</p>"); return setHTML("q-table", empty("No scheduler", d)); }
  const pending = d.queues.reduce((s, q) => s + q.pending.length, 0);
  const running = d.queues.reduce((s, q) => s + q.running.length, 0);
  setHTML("q-kpis", kpi("policy", esc(d.policy || "–"), "policy") + kpi("running jobs", num(running), "running") +
    kpi("pending jobs", num(pending), "pending") + kpi("preemptions", num(d.preemptions || 0), "preemptions") +
    kpi("GPUs free", gpus(d.free), "free"));
  const rows = d.queues.map((q) => {
    const types = Object.keys(Object.assign({}, q.quota, q.used));
    const useBars = types.map((t) => `${bar(q.used[t] || 0, q.quota[t] || 0)}`).join("");
    return `<tr data-queue="${esc(q.name)}"><td><b>${esc(q.name)}</b></td><td>${esc(q.cohort || "–")}</td>
      <td class="n">${num(q.weight)}</td><td>${gpus(q.quota)}</td><td data-k="used">${gpus(q.used)}</td><td>${useBars}</td>
      <td data-k="borrowed">${gpus(q.borrowed)}</td><td data-k="lent">${gpus(q.lent)}</td>
      <td class="n">${num(q.share, 3)}</td><td class="n" data-k="q-running">${q.running.length}</td>
      <td class="n" data-k="q-pending">${q.pending.length}</td></tr>`;
  }).join("");
  setHTML("q-table", `<table><thead><tr><th>queue</th><th>cohort</th><th class="n">weight</th><th>quota</th><th>used</th>
    <th>use vs quota</th><th>borrowed</th><th>lent</th><th class="n">share</th><th class="n">running</th><th class="n">pending</th></tr></thead><tbody>${rows}</tbody></table>`);
  const whys = d.queues.flatMap((q) => q.pending.map((p) => `<div class="why" data-job="${esc(p.job_id)}"><b>${esc(q.name)}</b> · ${esc(p.why)}</div>`));
  const warns = (d.warnings || []).map((w) => `<div class="warnline">${esc(w)}</div>`);
  setHTML("q-pending", whys.concat(warns).join("") || '<p class="muted">Nothing is waiting.</p>');
}

// ---------------------------------------------------------------------------------------- jobs
function layoutJobs() {
  return `<h1>Jobs <span class="sub">state timelines from the event log</span></h1>
    <div id="j-kpis" class="kpis"></div><div class="card"><h2>Jobs</h2><div id="j-table"></div>
    <div class="legend" id="j-legend"></div></div>
    <div class="card"><h2 id="j-title">Events</h2><div id="j-loss" class="chart" style="min-height:0"></div><div id="j-events" class="events"></div></div>`;
}
function timeline(job, now) {
  const t = job.timeline;
  if (!t.length) return "";
  const start = t[0].ts;
  const done = ["succeeded", "failed", "errored", "finished", "stopped"].includes(job.state);
  const end = done ? t[t.length - 1].ts : now;
  const span = Math.max(end - start, 1e-3);
  return `<div class="timeline" title="${esc(t.map((s) => `${clock(s.ts)} ${s.state}`).join("\n"))}">` + t.map((s, i) => {
    const next = i + 1 < t.length ? t[i + 1].ts : end;
    const w = Math.max(0.5, (100 * (next - s.ts)) / span);
    return `<i style="width:${w}%;background:${STATE_COLORS[s.state] || "#cbd5e1"}"></i>`;
  }).join("") + "</div>";
}
function renderJobs(d) {
  if (!d.available) return setHTML("j-table", empty("No jobs yet", d));
  const count = (s) => d.jobs.filter((j) => j.state === s).length;
  setHTML("j-kpis", kpi("jobs", num(d.jobs.length), "jobs") + kpi("running", num(count("running")), "jobs-running") +
    kpi("succeeded", num(count("succeeded")), "jobs-succeeded") + kpi("failed", num(count("failed") + count("errored")), "jobs-failed") +
    kpi("restarts", num(d.jobs.reduce((s, j) => s + j.restarts, 0)), "restarts"));
  const rows = d.jobs.map((j) => `<tr class="click${local.selectedJob === j.name ? " sel" : ""}" data-job="${esc(j.name)}">
    <td><b>${esc(j.name)}</b></td><td data-k="state">${badge(j.state)}</td><td>${esc(j.queue || "–")}</td>
    <td>${timeline(j, d.ts)}</td><td class="n">${dur((j.last_ts || 0) - (j.first_ts || 0))}</td>
    <td class="n" data-k="restarts">${j.restarts}</td><td class="n">${j.preemptions || 0}</td>
    <td class="n" data-k="checkpoints">${j.checkpoints}</td><td class="n">${j.last_step == null ? "–" : j.last_step}</td>
    <td class="muted">${ago(j.last_ts)}</td></tr>`).join("");
  setHTML("j-table", rows ? `<table><thead><tr><th>job</th><th>state</th><th>queue</th><th>timeline</th><th class="n">for</th>
    <th class="n">restarts</th><th class="n">preempted</th><th class="n">checkpoints</th><th class="n">step</th><th>last event</th></tr></thead><tbody>${rows}</tbody></table>`
    : '<p class="muted">No job has written an event yet.</p>');
  setHTML("j-legend", ["submitted", "scheduling", "running", "restarting", "stopping", "preempted", "failed", "succeeded"]
    .map((s) => `<i style="background:${STATE_COLORS[s]}"></i>${s}`).join(""));
  if (!local.selectedJob && d.jobs.length) local.selectedJob = d.jobs[0].name;
  if (local.selectedJob) loadEvents(local.selectedJob);
}
async function loadEvents(name) {
  const d = await getJSON(`/api/v1/jobs/${encodeURIComponent(name)}/events`);
  if (!d) return;
  setHTML("j-title", `Events of ${esc(name)} <span class="sub"><a href="/api/v1/jobs/${encodeURIComponent(name)}/events">raw log (JSON)</a> · <span class="mono">ainative logs ${esc(name)}</span></span>`);
  const rows = (d.events || []).slice().reverse().slice(0, 200).map((e) => {
    const rest = Object.entries(e).filter(([k]) => !["ts", "job", "event"].includes(k))
      .map(([k, v]) => `${esc(k)}=${esc(typeof v === "object" ? JSON.stringify(v) : v)}`).join(" ");
    return `<tr><td class="mono muted">${clock(e.ts)}</td><td>${badge(e.event)}</td><td class="mono">${rest}</td></tr>`;
  }).join("");
  setHTML("j-events", `<table><tbody>${rows}</tbody></table>`);
  const m = (d.summary && d.summary.metrics) || [];
  if (m.length > 1) plot("j-loss", [line("loss", COLORS[0])], [m.map((r) => r.ts), m.map((r) => r.loss)], { ylabel: "loss", height: 180 });
}

// ----------------------------------------------------------------------------------- endpoints
function layoutEndpoints() {
  return `<h1>Endpoints <span class="sub">latency against the SLO, replicas, batches, failures</span></h1><div id="e-list"></div>`;
}
function renderEndpoints(d) {
  if (!d.available) return setHTML("e-list", empty("Not connected to a Ray cluster", d));
  if (!d.endpoints.length) {
    return setHTML("e-list", empty("No endpoint is deployed", { fix: "ainative.Endpoint(model, name='my-model').deploy()  # or: ainative serve deploy spec.yaml" }));
  }
  const list = slot("e-list");
  for (const e of d.endpoints) {
    const id = "ep-" + e.name.replace(/[^A-Za-z0-9_-]/g, "_");
    if (!slot(id)) {
      list.insertAdjacentHTML("beforeend", `<div class="card" id="${id}" data-endpoint="${esc(e.name)}"><h2>${esc(e.name)}</h2>
        <div class="kpis" id="${id}-k"></div><div class="grid2"><div><h2 class="sub">latency (ms)</h2><div id="${id}-lat" class="chart"></div></div>
        <div><h2 class="sub">replicas and requests/s</h2><div id="${id}-rep" class="chart"></div></div></div>
        <div class="grid2"><div><h2 class="sub">batch sizes (requests per model call)</h2><div id="${id}-hist"></div></div>
        <div><h2 class="sub">failed and shed (cumulative)</h2><div id="${id}-fail" class="chart"></div></div></div></div>`);
    }
    if (e.error) { setHTML(id + "-k", `<div class="warnline">${esc(e.error)}</div>`); continue; }
    const slo = e.latency_slo_ms;
    setHTML(id + "-k", kpi("replicas", num(e.replicas), "replicas") + kpi("requests/s", num(e.qps), "qps") +
      kpi("p50", `${num(e.p50_ms)} ms`, "p50") +
      kpi("p99", `${num(e.p99_ms)} ms` + (e.slo_ok == null ? "" : " " + badge(e.slo_ok ? "ok" : "bad").replace(">ok<", ">within SLO<").replace(">bad<", ">over SLO<")), "p99") +
      kpi("latency SLO", slo == null ? '<span class="muted small">not reported</span>' : `${num(slo)} ms`, "slo") +
      kpi("requests", num(e.requests_total), "requests") + kpi("failed", num(e.failed_total), "failed") + kpi("shed", num(e.shed_total), "shed"));
    const h = e.history || [];
    const ts = h.map((r) => r.ts);
    const lat = [line("p50", COLORS[0]), line("p99", COLORS[3])];
    const latData = [ts, h.map((r) => r.p50_ms), h.map((r) => r.p99_ms)];
    if (slo != null) { lat.push(line("SLO", "#dc2626", { dash: [6, 4], width: 1.5 })); latData.push(h.map(() => slo)); }
    plot(id + "-lat", lat, latData, { ylabel: "ms" });
    plot(id + "-rep", [line("replicas", COLORS[1]), line("req/s", COLORS[2])], [ts, h.map((r) => r.replicas), h.map((r) => r.qps)], { ylabel: "" });
    plot(id + "-fail", [line("failed", "#dc2626"), line("shed", "#d97706")], [ts, h.map((r) => r.failed_total), h.map((r) => r.shed_total)], { ylabel: "requests", height: 160 });
    const bs = Object.entries(e.batch_sizes || {}).map(([k, v]) => [Number(k), v]).sort((a, b) => a[0] - b[0]);
    const max = Math.max(1, ...bs.map((b) => b[1]));
    setHTML(id + "-hist", bs.length ? `<div class="hist">${bs.map(([k, v]) => `<div style="height:${Math.max(2, (100 * v) / max)}%" title="${v} calls of ${k}"></div>`).join("")}</div>
      <div class="hist-l">${bs.map(([k]) => `<span>${k}</span>`).join("")}</div>` : '<p class="muted">No batch yet.</p>');
  }
  for (const card of list.querySelectorAll("[data-endpoint]")) {
    if (!d.endpoints.some((e) => e.name === card.dataset.endpoint)) card.remove();
  }
}

// ---------------------------------------------------------------------------------------- cost
function layoutCost() {
  return `<h1>Cost <span class="sub">spend per team from the ledger, against budgets</span></h1>
    <div id="k-kpis" class="kpis"></div><div class="card"><h2>Cumulative spend (USD) <span class="sub" id="k-note"></span></h2><div id="k-chart" class="chart"></div></div>
    <div class="grid2"><div class="card"><h2>By team</h2><div id="k-table"></div></div>
    <div class="card"><h2>Guardrail events <span class="sub">warnings, stops, refusals</span></h2><div id="k-events" class="events"></div></div></div>`;
}
function renderCost(d) {
  if (!d.available) { setHTML("k-kpis", ""); return setHTML("k-chart", empty("No spend ledger", d)); }
  const r = d.report || { rows: [], total_usd: 0, total_gpu_hours: 0 };
  const warns = (d.events || []).filter((e) => e.kind === "warn").length;
  const stops = (d.events || []).filter((e) => e.kind === "stop").length;
  setHTML("k-kpis", kpi("spend", usd(r.total_usd), "total-usd") + kpi("GPU-hours", num(r.total_gpu_hours, 3), "gpu-hours") +
    kpi("budget warnings", num(warns), "warnings") + kpi("stops", num(stops), "stops") + kpi("idle reclaims", num(d.idle_stops || 0), "idle"));
  const series = [], data = [d.times || []];
  d.series.forEach((s, i) => { series.push(line(s.team, COLORS[i % COLORS.length])); data.push(s.usd); });
  const budgets = d.budgets || {};
  // a budget line for every queue budget, in its team's colour (a budget without spend yet too)
  const teams = d.series.map((s) => s.team).concat(Object.keys(budgets).filter((t) => !d.series.some((s) => s.team === t)));
  teams.forEach((team, i) => {
    const b = budgets[team];
    if (!b || b.usd == null) return;
    series.push(line(`${team} budget`, COLORS[i % COLORS.length], { dash: [8, 4], width: 1.5 }));
    data.push(data[0].map(() => b.usd));
    if (b.warn_usd != null) { series.push(line(`${team} warn`, COLORS[i % COLORS.length], { dash: [2, 4], width: 1 })); data.push(data[0].map(() => b.warn_usd)); }
  });
  setHTML("k-note", Object.keys(budgets).length ? "dashed: budget · dotted: warning level"
    : "no queue budget reported by the scheduler");
  if (data[0].length) plot("k-chart", series, data, { ylabel: "USD" });
  else setHTML("k-chart", '<p class="muted">The ledger has no charge yet.</p>');
  const budgetCell = (team) => {
    const b = budgets[team];
    if (!b || b.usd == null) return '<span class="muted">–</span>';
    const per = b.period ? `/${esc(b.period)}` : "";
    return `<span data-k="row-budget">${usd(b.usd)}${per}</span> <span class="muted">warn at <span data-k="row-warn">${usd(b.warn_usd)}</span></span>`;
  };
  const rows = r.rows.map((x) => `<tr data-team="${esc(x.key)}"><td>${esc(x.key)}</td><td class="n" data-k="row-usd">${usd(x.cost_usd)}</td>
    <td class="n">${num(x.gpu_hours, 3)}</td><td class="n">${x.charges}</td><td>${budgetCell(x.key)}</td></tr>`).join("");
  setHTML("k-table", rows ? `<table><thead><tr><th>team</th><th class="n">USD</th><th class="n">GPU-hours</th><th class="n">charges</th><th>budget</th></tr></thead><tbody>${rows}</tbody></table>` : '<p class="muted">No spend yet.</p>');
  const ev = (d.events || []).slice().reverse().map((e) => `<tr><td class="mono muted">${clock(e.ts)}</td>
    <td>${badge(e.kind === "stop" || e.kind === "refuse" ? "bad" : "warn").replace(/>(bad|warn)</, `>${esc(e.kind)}<`)}</td>
    <td>${esc(e.job || "")}</td><td>${esc(e.reason || "")}</td><td>${esc(e.message || "")}</td></tr>`).join("");
  setHTML("k-events", ev ? `<table><tbody>${ev}</tbody></table>` : '<p class="muted">No warning or stop so far.</p>');
}

// ---------------------------------------------------------------------------------------- loop
const VIEWS = {
  cluster: [layoutCluster, renderCluster, "cluster"], queues: [layoutQueues, renderQueues, "queues"],
  jobs: [layoutJobs, renderJobs, "jobs"], endpoints: [layoutEndpoints, renderEndpoints, "endpoints"],
  cost: [layoutCost, renderCost, "cost"],
};
async function getJSON(url) {
  try {
    const r = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (r.status === 401) { location.href = "/login"; return null; }
    return await r.json();
  } catch (err) {
    live.className = "live err";
    live.textContent = "disconnected";
    return null;
  }
}
async function tick() {
  const [, render, resource] = VIEWS[page];
  const d = await getJSON(`/api/v1/${resource}`);
  if (d) {
    render(d);
    main.dataset.updated = String(Date.now());
    live.className = d.available === false ? "live err" : "live ok";
    live.textContent = `updated ${new Date().toLocaleTimeString("en-GB", { hour12: false })}`;
  }
  setTimeout(tick, POLL_MS);
}
function start() {
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === page);
  document.title = `${page[0].toUpperCase()}${page.slice(1)} · ainative`;
  main.dataset.page = page;
  main.innerHTML = VIEWS[page][0]();
  main.addEventListener("click", (ev) => {
    const row = ev.target.closest("tr[data-job]");
    if (row) { local.selectedJob = row.dataset.job; loadEvents(local.selectedJob); }
  });
  tick();
}
start();
