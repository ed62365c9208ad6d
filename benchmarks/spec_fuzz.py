"""Robustness of the spec loader: N hostile inputs through ``spec.parse`` + ``spec.build``; counts of
clean errors, crashes (any other exception) and hangs, and the slowest input.

Three generators, a third of the inputs each, seeded so that runs are comparable: documents written
by ``yaml.safe_dump`` from spec-like structures, byte mutations of real specs, and hand-written
hostile YAML combined with random bytes (the cases of ``tests/unit/test_spec_fuzz.py``). Each input
gets ``--timeout`` seconds of CPU time (SIGVTALRM, so the machine's load does not matter) before it
counts as a hang.

    .venv/bin/python benchmarks/spec_fuzz.py --inputs 9000             # this checkout
    PYTHONPATH=/path/to/old/src python benchmarks/spec_fuzz.py          # another version, same inputs
"""

from __future__ import annotations

import argparse
import collections
import inspect
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.unit import test_spec_fuzz as cases  # noqa: E402

from ainative import errors, spec  # noqa: E402

SCALARS: list[Any] = [None, True, False, 0, -1, 1, 2.5, 10**20, float("nan"), float("inf"), "", "x",
                      "H100", "nvidia-h100", "team-a", "tests.unit.specmods:train_fn", "m:f", "..:x",
                      "PACK", "month", "16Gi", [], {}]


class Hang(Exception):
    pass


def _hang(*_: Any) -> None:
    raise Hang()


def _value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 3 and roll < 0.15:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 3 and roll < 0.3:
        return {rng.choice(["a", "type", "count", "H100", "name"]): _value(rng, depth + 1)
                for _ in range(rng.randint(0, 3))}
    return rng.choice(SCALARS)


def generated(rng: random.Random) -> bytes:
    docs = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice([*spec.KINDS, "TrainJb", ""])
        fields = cases.FIELDS.get(kind, cases.FIELDS["TrainJob"])
        doc: dict[str, Any] = {"kind": kind}
        for name in rng.sample(fields, min(len(fields), rng.randint(0, 6))):
            doc[name] = _value(rng)
        docs.append(doc)
    return yaml.safe_dump_all(docs, sort_keys=False).encode()


def mutated(rng: random.Random) -> bytes:
    data = bytearray(rng.choice(cases.SEEDS))
    for _ in range(rng.randint(1, 8)):
        pos = rng.randint(0, max(0, len(data) - 1))
        op = rng.choice(["replace", "insert", "delete", "duplicate"])
        if op == "replace" and data:  # half the time a byte that means something to YAML
            data[pos] = rng.choice(b":-[]{}&*!|>'\"#%@`,?\n \t0.") if rng.random() < 0.5 \
                else rng.randint(0, 255)
        elif op == "insert":
            data[pos:pos] = rng.choice([b"&a ", b"*a", b"!!python/object:os.system ", b"? ",
                                        b"---\n", b"<<: ", b".nan", b"\n  ", b"[", b"{", b"~"])
        elif op == "delete":
            del data[pos:pos + rng.randint(1, 20)]
        else:
            data[pos:pos] = data[pos:pos + rng.randint(1, 80)]
    return bytes(data)


def hostile(rng: random.Random) -> bytes:
    parts = [rng.choice(cases.HOSTILE) for _ in range(rng.randint(1, 3))]
    noise = bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 16))) if rng.random() < 0.2 else b""
    return b"\n".join(p if isinstance(p, bytes) else p.encode("utf-8", "surrogatepass")
                      for p in parts) + noise


def run_one(data: bytes, path: Path) -> None:
    """What ``ainative apply --dry-run FILE`` does (older versions: import instead of check)."""
    path.write_bytes(data)
    docs = spec.load(path)
    dry = "import_code" in inspect.signature(spec.build).parameters
    for d in docs:
        if d.kind != "Dataset":
            spec.build(d, import_code=False) if dry else spec.build(d)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=3000)
    parser.add_argument("--timeout", type=float, default=2.0, help="CPU seconds before a hang")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", default="after", help="results/spec_fuzz_<label>.json")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    makers = [generated, mutated, hostile]
    signal.signal(signal.SIGVTALRM, _hang)
    counts: collections.Counter[str] = collections.Counter(
        {"valid": 0, "clean errors": 0, "crashes": 0, "hangs": 0})
    crashes: collections.Counter[str] = collections.Counter()
    slowest = (0.0, b"")
    scratch = Path(tempfile.mkdtemp(prefix="ainative-fuzz-")) / "fuzz.yaml"
    start = time.perf_counter()
    for i in range(args.inputs):
        data = makers[i % 3](rng)
        t0 = time.process_time()
        signal.setitimer(signal.ITIMER_VIRTUAL, args.timeout)
        try:
            run_one(data, scratch)
            counts["valid"] += 1
        except Hang:
            counts["hangs"] += 1
        except errors.ConfigError:
            counts["clean errors"] += 1
        except BaseException as exc:  # noqa: BLE001 - counting what escapes is the point
            if isinstance(exc, KeyboardInterrupt):
                raise
            counts["crashes"] += 1
            crashes[type(exc).__name__] += 1
        finally:
            signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        used = time.process_time() - t0
        if used > slowest[0]:
            slowest = (used, data)
    result = {"inputs": args.inputs, "seed": args.seed, "timeout_s": args.timeout, **counts,
              "crash_types": dict(crashes), "slowest_cpu_s": round(slowest[0], 3),
              "slowest_input": slowest[1][:160].decode("utf-8", "replace"),
              "wall_s": round(time.perf_counter() - start, 1), "load_avg": os.getloadavg()[0]}
    print(json.dumps(result, indent=2))
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / f"spec_fuzz_{args.label}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
