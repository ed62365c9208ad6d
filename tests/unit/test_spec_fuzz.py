"""Hostile specs: whatever bytes a spec file holds, loading it raises only SpecError/ConfigError
(never a traceback of another type), in well under a second, and runs none of the user's code.

Three generators: documents written by ``yaml.safe_dump`` from structures close to real specs,
byte mutations of real spec files, and hand-written hostile YAML (empty values, anchors and alias
bombs, tags, complex keys, deep nesting, non-UTF-8). The fast tier runs a few hundred examples; the
slow tier (``-m slow``) thousands. The worst inputs found are kept below as explicit cases.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ainative import errors, spec

ROOT = Path(__file__).resolve().parents[2]
CPU_LIMIT_S = 1.0  # CPU time, not wall time: the property must not depend on the machine's load

TRAIN = """\
kind: Queue
name: team-a
quota: {H100: 8}
cohort: research
---
kind: Budget
queue: team-a
usd: 100
period: month
---
kind: TrainJob
name: mnist
entrypoint: tests.unit.specmods:train_fn
workers: [1, 2]
resources: {cpus: 1, accelerator: {type: h100, count: 1}}
queue: team-a
checkpoint: {path: /tmp/ckpt, keep: 2}
failure: {max_restarts: 3, progress_timeout_s: 300}
max_runtime_s: 3600
---
kind: Endpoint
name: clf
model: tests.unit.specmods:model_factory
resources: {cpus: 0.5, accelerator: {type: L4, count: 0.5}}
batching: {max_batch_size: 16, max_wait_ms: 5}
autoscaling: {min_replicas: 1, max_replicas: 4, target_concurrency: 2, upscale_delay_s: 1}
---
kind: KubeRayCluster
name: research
head: {cpus: 4, memory: 16Gi}
worker_groups:
  - {name: h100, accelerator: {type: H100, count: 8}, cpus: 96, memory: 1Ti, replicas: 2}
"""
SEEDS = [TRAIN.encode(), (ROOT / "examples" / "specs" / "train.yaml").read_bytes()]


def load_all(data: bytes | str) -> list[Any]:
    """What ``ainative apply --dry-run`` does with a file's contents."""
    docs = spec.parse(data, "fuzz.yaml")
    return [spec.build(d, import_code=False) for d in docs if d.kind != "Dataset"]


def check(data: bytes | str) -> None:
    """The property: only SpecError/ConfigError escape, within CPU_LIMIT_S of CPU time. An input
    over the limit is timed once more: a one-off cost (a collection, a first import) is not the
    input's; an input that is slow to parse is slow both times."""
    used = min(_parse_cpu_s(data), CPU_LIMIT_S)
    if used >= CPU_LIMIT_S:
        used = _parse_cpu_s(data)
    assert used < CPU_LIMIT_S, f"{used:.2f} s of CPU for a {len(data)}-byte input"


def _parse_cpu_s(data: bytes | str) -> float:
    start = time.process_time()
    try:
        load_all(data)
    except errors.ConfigError as exc:  # SpecError is a ConfigError
        if isinstance(exc, errors.SpecError) and exc.details.get("line"):
            assert str(exc).startswith("fuzz.yaml:"), str(exc)
    return time.process_time() - start


# ----------------------------------------------------------------------------- generators

_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["H100", "nvidia-h100", "team-a", "tests.unit.specmods:train_fn", "m:f", "",
                     "PACK", "month", "16Gi", "..:x", "os:system", "USD"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)


def _field_names(kind: str) -> list[str]:
    return sorted(spec.kind_schema(kind).get("properties", {}))


FIELDS = {kind: _field_names(kind) for kind in spec.KINDS}


@st.composite
def spec_like_documents(draw: st.DrawFn) -> str:
    """Documents shaped like real specs, with values of every type (yaml.safe_dump writes them)."""
    docs = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from([*spec.KINDS, "TrainJb", ""]))
        names = FIELDS.get(kind, FIELDS["TrainJob"])
        doc: dict[str, Any] = {"kind": kind}
        for name in draw(st.lists(st.sampled_from(names), max_size=6, unique=True)):
            doc[name] = draw(_VALUES)
        if draw(st.booleans()):
            doc.pop("kind")
        docs.append(doc)
    return yaml.safe_dump_all(docs, sort_keys=False)


@st.composite
def mutated_specs(draw: st.DrawFn) -> bytes:
    """Real spec files with bytes replaced, inserted, deleted or duplicated."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "duplicate"]))
        pos = draw(st.integers(min_value=0, max_value=max(0, len(data) - 1)))
        if op == "replace" and data:
            data[pos] = draw(st.sampled_from(b":-[]{}&*!|>'\"#%@`,?\n \t\x00\xff0.")) \
                if draw(st.booleans()) else draw(st.integers(min_value=0, max_value=255))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from([b"&a ", b"*a", b"!!python/object:os.system ",
                                                  b"? ", b"---\n", b"<<: ", b".nan", b"\n  ",
                                                  b"[", b"{", b"\xc3", b"~", b"!!set "]))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(min_value=1, max_value=20))]
        else:
            end = pos + draw(st.integers(min_value=1, max_value=80))
            data[pos:pos] = data[pos:end]
    return bytes(data)


def _alias_bomb(levels: int, width: int) -> str:
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "kind: Queue\nname: q\n" + "\n".join(lines) + "\n"


HOSTILE: list[bytes | str] = [
    "kind: Queue\nname: q\ncohort:\n",                      # an empty value
    "kind: Queue\nname: q\n---\n",                          # a trailing ---
    "kind: Queue\nname: q\n---\n---\n...\n",
    "kind:\n", "kind: [1]\n", "kind: {a: 1}\n", "? kind\n", "- kind: Queue\n", "42\n", "~\n", "",
    "kind: Queue\nname:\n", "kind: Queue\nname: q\nquota:\n", "kind: Queue\nname: q\nquota: {H100:}\n",
    _alias_bomb(9, 9),                                       # the 531-byte class of bomb
    _alias_bomb(4, 60), _alias_bomb(30, 2),
    "kind: Queue\nname: &n q\ncohort: *n\n",                 # a harmless alias
    "kind: Queue\nname: q\nx: &a [*a]\n",                     # a self-referencing alias
    "kind: Queue\nname: q\nquota: &a {H100: 1, <<: *a}\n",
    "base: &b {kind: Queue, name: q}\n<<: *b\n",              # a merge key
    "kind: Queue\nname: !!python/object:os.system q\n",
    "kind: Queue\nname: !!python/object/apply:os.system ['true']\n",
    "kind: Queue\nname: !!binary aGVsbG8=\n", "kind: Queue\nname: q\nquota: !!set {H100}\n",
    "kind: Queue\nname: q\nquota: !!omap [{H100: 1}]\n", "kind: Queue\nname: !custom q\n",
    "kind: Queue\nname: 2001-01-01\n",                       # a timestamp
    "kind: Queue\n? [a, b]\n: 1\n", "kind: Queue\n? {a: 1}\n: 1\nname: q\n",
    "kind: Queue\nname: q\n1: one\n", "kind: Queue\nname: q\nyes: 1\n", "kind: Queue\n~: 1\n",
    "kind: Queue\nname: q\nname: r\n",                        # a duplicate key
    "kind: Queue\nname: q\nx: " + "[" * 10_000 + "]" * 10_000 + "\n",
    "kind: Queue\nname: q\nx: " + "{a: " * 3_000 + "1" + "}" * 3_000 + "\n",
    "kind: Queue\nname: q\nx:\n" + "".join("  " * i + "- \n" for i in range(200)),
    "kind: Queue\nname: q\nweight: " + "9" * 5_000 + "\n",  # an int too long to convert
    "kind: Queue\nname: q\nweight: .nan\n", "kind: Queue\nname: q\nweight: .inf\n",
    "kind: Queue\nname: q\nweight: 1e999\n", "kind: Queue\nname: q\nquota: {H100: .nan}\n",
    "kind: Queue\nname: q\nquota: {h100: 1, nvidia-h100: 2}\n",
    "kind: Queue\nname: q\n---\nkind: Queue\nname: q\n",   # duplicate queue
    "kind: Queue\nname: q\n---\nkind: Budget\nqueue: q\nusd: 5\n---\nkind: Budget\nqueue: q\n"
    "usd: 500000\n",                                        # two budgets for one queue
    "kind: TrainJob\nentrypoint: tests.unit.specmods:train_fn\n---\n"
    "kind: TrainJob\nentrypoint: tests.unit.specmods:train_fn\n",  # same default name
    "kind: TrainJob\nentrypoint: ..:x\n", "kind: TrainJob\nentrypoint: a..b:c\n",
    "kind: TrainJob\nentrypoint: os:system\nworkers: 1000000000\n",
    "kind: TrainJob\nentrypoint: tests.unit.specmods:nope\n",
    "kind: TrainJob\nentrypoint: tests.unit.specmods:train_fn\nworkers: [1, 2, 3]\n",
    "kind: TrainJob\nentrypoint: tests.unit.specmods:train_fn\nbudget: lots\n",
    "kind: TrainJob\nentrypoint: tests.unit.specmods:train_fn\nresources: {custom: abc}\n",
    "kind: TrainJob\nentrypoint: tests.unit.specmods:train_fn\nresources: {cpus: .inf}\n",
    "kind: Endpoint\nname: e\nmodel: m:f\nbatching: {max_wait_ms: .nan}\n",
    "kind: KubeRayCluster\nname: c\nworker_groups: 5\n",
    "kind: KubeRayCluster\nname: c\nworker_groups: [5]\n",
    "kind: KubeRayCluster\nname: c\nworker_groups:\n",
    "kind: Dataset\nname: d\nsource: {range: {rows: 1e999}}\n",
    "kind: Queue\nname: q\n" + "---\n".join(["kind: Queue\nname: x\n"] * 3),
    "---\n" * 500, "kind: Queue\n" + "x: 1\n" * 1, "a: " + "*a " * 10,
    "kind: Queue\nname: q\n\t bad: indent\n", "kind: Queue\nname: 'unterminated\n",
    "kind: Queue\nname: q\u2028x: 1\n", "\ufeffkind: Queue\nname: q\n",
    b"kind: Queue\nname: \xff\xfe\n", b"\xff\xfekind: Queue\n", b"kind: Queue\nname: \x00\n",
    b"kind: Queue\nname: q\xed\xa0\x80\n",                   # an encoded surrogate
    "kind: Queue\nname: \ud800\n",
    "x" * 300_000,                                            # over the size limit
    # the slowest inputs found (each just under a limit): many anchors, blank lines, a long flow
    # list, a long comment
    "kind: Queue\nname: q\n" + "".join(f"a{i}: &a{i} 1\n" for i in range(9_000))[:120_000],
    "kind: Queue\nname: q\n" + "\n" * 130_000,
    "kind: Queue\nname: q\nx: [" + "1," * 60_000 + "]\n",
    "kind: Queue\nname: q\n#" + "x" * 130_000 + "\n",
    "kind: Queue\nname: q\n" + "".join(f"k{i}: v\n" for i in range(20_000))[:130_000],
]


# ----------------------------------------------------------------------------- properties

FAST = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = settings(max_examples=1_000, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("data", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_inputs_are_spec_errors_and_fast(data):
    check(data)


@FAST
@given(spec_like_documents())
def test_generated_documents(text):
    check(text)


@FAST
@given(mutated_specs())
def test_mutated_specs(data):
    check(data)


@FAST
@given(st.lists(st.sampled_from(HOSTILE[:60]), min_size=1, max_size=3))
def test_hostile_snippets_combined(parts):
    text = b"\n".join(p if isinstance(p, bytes) else p.encode("utf-8", "surrogatepass")
                      for p in parts)
    check(text)


@pytest.mark.slow
@SLOW
@given(spec_like_documents())
def test_generated_documents_slow(text):
    check(text)


@pytest.mark.slow
@SLOW
@given(mutated_specs())
def test_mutated_specs_slow(data):
    check(data)


@pytest.mark.slow
@SLOW
@given(st.lists(st.sampled_from(HOSTILE), min_size=1, max_size=4), st.binary(max_size=64))
def test_hostile_snippets_combined_slow(parts, noise):
    text = b"\n".join(p if isinstance(p, bytes) else p.encode("utf-8", "surrogatepass")
                      for p in parts) + noise
    check(text)


# ----------------------------------------------------------------------------- explicit cases

def _error(data: bytes | str) -> errors.SpecError:
    with pytest.raises(errors.SpecError) as info:
        load_all(data)
    return info.value


def test_the_seeds_are_valid():
    for seed in SEEDS:
        assert load_all(seed)


def test_alias_bomb_is_refused_quickly():
    bomb = _alias_bomb(9, 9)
    assert len(bomb) < 600
    assert "alias" in str(_error(bomb))


def test_empty_values_and_trailing_separators_work():
    (queue,) = load_all("kind: Queue\nname: q\ncohort:\n---\n")
    assert queue.name == "q" and queue.cohort is None


def test_non_utf8_names_the_line():
    err = _error(b"kind: Queue\nname: \xff\n")
    assert str(err).startswith("fuzz.yaml:2: not UTF-8") and err.details["line"] == 2


def test_duplicate_documents_name_both_lines():
    err = _error("kind: Queue\nname: q\n---\nkind: Budget\nqueue: q\nusd: 5\n---\n"
                 "kind: Budget\nqueue: q\nusd: 500000\n")
    assert str(err).startswith("fuzz.yaml:9: Budget.queue: a second Budget for queue 'q'")
    assert "fuzz.yaml:5" in str(err)
    err = _error("kind: Queue\nname: q\n---\nkind: Queue\nname: q\n")
    assert "fuzz.yaml:5" in str(err) and "fuzz.yaml:2" in str(err)
    err = _error("kind: TrainJob\nname: j\nentrypoint: m:f\n---\nkind: TrainJob\nname: j\n"
                 "entrypoint: m:g\n")
    assert "a second TrainJob named 'j'" in str(err)


@pytest.mark.parametrize("text,words", [
    ("kind: Queue\nname: q\nname: r\n", "fuzz.yaml:3: duplicate key 'name' (first at line 2)"),
    ("kind: Queue\nname: q\n1: x\n", "fuzz.yaml:3: keys must be strings"),
    ("kind: Queue\n? [a]\n: 1\n", "fuzz.yaml:2: keys must be strings"),
    ("kind: Queue\nname: !!python/object:os.system q\n", "fuzz.yaml:2: YAML tag"),
    ("kind: Queue\nname: q\nx: &a [*a]\n", "fuzz.yaml:3: an alias refers to a value that contains it"),
    ("kind: Queue\nname: q\nx: " + "[" * 100 + "]" * 100 + "\n", "nested deeper than"),
    ("kind: Queue\nname: q\nweight: .nan\n", "fuzz.yaml:3: Queue.weight: Queue.weight must be a finite"),
    ("kind: Queue\nname: q\nweight: " + "9" * 5_000 + "\n", "fuzz.yaml:3: cannot read value"),
    ("---\n" * 0 + "kind: Queue\nname: q\n---\n" * 101, "more than 100 documents"),
])
def test_explicit_errors(text, words):
    assert words in str(_error(text))


def test_merge_keys_are_supported():
    (queue,) = load_all("kind: Queue\nname: q\n<<: {cohort: research, weight: 2}\nweight: 3\n")
    assert queue.cohort == "research" and queue.weight == 3


def test_dry_run_runs_no_user_code(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    (tmp_path / "userpkg").mkdir()
    (tmp_path / "userpkg" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (tmp_path / "userpkg" / "job.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef train(config):\n    pass\n")
    (tmp_path / "broken.py").write_text("def train(:\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (job,) = load_all("kind: TrainJob\nentrypoint: userpkg.job:train\n")
    assert job.name == "train" and not marker.exists()
    assert "defines no 'nope'" in str(_error("kind: TrainJob\nentrypoint: userpkg.job:nope\n"))
    err = _error("kind: TrainJob\nentrypoint: broken:train\n")
    assert str(err).startswith("fuzz.yaml:2: TrainJob.entrypoint") and "SyntaxError" in str(err)
    assert not marker.exists()
