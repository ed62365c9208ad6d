"""The Ray actor behind one rank: starts ``train_fn`` in a thread and answers polls.

``start`` returns at once; the train thread joins the process group and runs ``train_fn``, so the
controller can keep polling (liveness, reports, logs) and ask for a stop while training runs.
``torch`` is imported in the background as soon as the actor exists, overlapping with the
controller's rank assignment.
"""

from __future__ import annotations

import inspect
import os
import sys
import threading
import time
import traceback
from collections import deque
from typing import Any

from ainative.cluster import liveness
from ainative.train import _context, _dist

# Substrings of collective errors caused by a peer that died or went away (not a user bug).
_PEER_ERRORS = ("connection closed by peer", "connection reset", "broken pipe", "gloo", "nccl",
                "timed out", "timeout", "socket", "store", "distbackenderror", "distnetworkerror")


class _RankLog:
    """A stdout/stderr wrapper that prefixes each line with the rank and keeps recent lines."""

    def __init__(self, stream: Any, rank: int, lines: deque[str]) -> None:
        self._stream, self._prefix, self._lines, self._partial = stream, f"[rank {rank}] ", lines, ""

    def write(self, text: str) -> int:
        self._partial += text
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            self._lines.append(self._prefix + line)
            self._stream.write(self._prefix + line + "\n")
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _preimport() -> None:
    # DistributedDataParallel's first construction imports torch._dynamo (~800 modules, ~1 s):
    # do it here, overlapped with rank assignment and the rendezvous, not on the first step.
    try:
        import torch  # noqa: F401
        import torch._dynamo  # noqa: F401
        import torch.distributed  # noqa: F401
        import torch.nn.parallel  # noqa: F401
    except ImportError:
        pass


class TrainWorker:
    """One rank of a training job (used as a Ray actor class)."""

    def __init__(self, job_name: str, rank: int, cpus: float) -> None:
        self.job_name, self.rank, self.cpus = job_name, rank, cpus
        self._state = "idle"
        self._error: dict[str, Any] | None = None
        self._lines: deque[str] = deque(maxlen=2000)
        self._session: _context.Session | None = None
        # Reports handed to a poll stay here until a later poll acknowledges them: a poll whose
        # reply the controller gave up on (a slow, loaded machine) must not lose its reports.
        self._unacked: list[tuple[int, tuple[Any, ...]]] = []
        self._seq = 0
        self._stop_mode: str | None = None
        self._probe: Any = None                 # utilisation probe, read at most once per second
        self._probe_at = 0.0
        self._utilization: float | None = None
        self._preimport = threading.Thread(target=_preimport, daemon=True)
        self._preimport.start()
        # answers the controller's UDP liveness probes (FailureConfig.liveness_timeout_s)
        self._liveness = liveness.Responder()

    def __repr__(self) -> str:  # Ray prefixes forwarded log lines with this
        return f"TrainWorker({self.job_name}, rank={self.rank})"

    def info(self, want_port: bool, rank: int | None = None) -> dict[str, Any]:
        """Where this process runs; ``rank`` renames it (a warm standby adopted by a new gang)."""
        import ray

        if rank is not None:
            self.rank = rank

        ctx = ray.get_runtime_context()
        return {"node_id": ctx.get_node_id(), "ip": _dist.node_ip(), "pid": os.getpid(),
                "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
                "port": _dist.free_port("0.0.0.0") if want_port else None,
                "liveness": [self._liveness.port, self._liveness.key.hex()]}

    def start(self, spec: dict[str, Any]) -> None:
        """Begin running ``spec['fn']`` in the train thread; returns at once."""
        if not isinstance(sys.stdout, _RankLog):
            sys.stdout = _RankLog(sys.__stdout__, self.rank, self._lines)
            sys.stderr = _RankLog(sys.__stderr__, self.rank, self._lines)
        if self._state in ("running", "starting"):
            raise RuntimeError(f"rank {self.rank} is still {self._state}; cannot restart it")
        # a restart in place: the previous attempt's thread has ended; start clean
        self._state, self._error, self._stop_mode, self._session = "starting", None, None, None
        self._unacked = []          # the previous attempt's reports went with its failure
        self._set_probe(spec.get("probe"))
        threading.Thread(target=self._train, args=(spec,), daemon=True,
                         name=f"ainative-train-rank{self.rank}").start()

    def _train(self, spec: dict[str, Any]) -> None:
        try:
            self._setup(spec)
            self._state = "running"
            fn = spec["fn"]
            config = dict(spec["config"] or {})
            if _takes_args(fn):
                fn(config)
            else:
                fn()
            self._state = "finished"
            _dist.destroy_process_group()
        except _context.StopTraining:
            self._state = "stopped"
        except BaseException as exc:  # everything user code raises crosses back as data
            text = f"{type(exc).__name__}: {exc}".lower()
            self._error = {"type": type(exc).__name__, "message": str(exc),
                           "traceback": traceback.format_exc(),
                           "peer": any(s in text for s in _PEER_ERRORS)}
            self._state = "error"
        finally:
            if self._session is not None:
                self._session.last_progress = time.monotonic()

    def _setup(self, spec: dict[str, Any]) -> None:
        # torch must not be imported by two threads at once: c10d's init aborts the process
        # (seen when the train thread's first torch.distributed import raced the pre-import).
        self._preimport.join()
        _context._set_session(None)
        try:  # left over from the previous attempt of a reused process
            _dist.destroy_process_group()
        except Exception:
            pass
        if spec.get("cuda_visible_devices") is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = spec["cuda_visible_devices"]
        import torch

        # Ray sets OMP_NUM_THREADS=1; give torch the cores this rank reserved (as torchrun would).
        threads = max(1, int(self.cpus))
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        device = torch.device("cpu")
        if spec["gpu_index"] is not None and torch.cuda.is_available():
            device = torch.device("cuda", spec["gpu_index"])
            torch.cuda.set_device(device)
        ctx = _context.TrainContext(
            job_name=self.job_name, rank=self.rank, world_size=spec["world_size"],
            local_rank=spec["local_rank"], local_world_size=spec["local_world_size"],
            node_rank=spec["node_rank"], node_id=spec["node_id"], device=device,
            gpu_ids=spec["gpu_ids"], restarts=spec["restarts"], step=spec["start_step"],
            _stop_mode=self._stop_mode)
        for key, value in (("LOCAL_RANK", ctx.local_rank), ("LOCAL_WORLD_SIZE", ctx.local_world_size),
                           ("NODE_RANK", ctx.node_rank)):
            os.environ[key] = str(value)
        session = _context.Session(
            context=ctx, storage=spec["storage"], checkpoint_step=spec["checkpoint_step"],
            datasets=spec["datasets"] or {}, data_states=spec["data_states"] or {},
            shard_factory=spec["shard_factory"])
        self._session = session
        _context._set_session(session)
        backend = _dist.pick_backend(device.type == "cuda")
        _dist.init_process_group(rank=self.rank, world_size=ctx.world_size,
                                 master_addr=spec["master_addr"], master_port=spec["master_port"],
                                 backend=backend, timeout_s=spec["collective_timeout_s"],
                                 rendezvous_timeout_s=spec.get("rendezvous_timeout_s"))
        session.last_progress = time.monotonic()

    def _set_probe(self, spec: str | None) -> None:
        from ainative.cost import probes

        try:
            self._probe = probes.worker_probe(spec)
        except Exception as exc:  # checked in the driver already; never fail training for it
            print(f"utilisation probe {spec!r} unavailable: {exc}", file=sys.__stderr__)
            self._probe = None

    def _read_utilization(self) -> float | None:
        """The probe's reading in this process (the accelerators this rank holds), once a second."""
        now = time.monotonic()
        if self._probe is not None and self._state == "running" and now - self._probe_at >= 1.0:
            self._probe_at = now
            try:
                value = self._probe()
                self._utilization = None if value is None else min(1.0, max(0.0, float(value)))
            except Exception:
                self._utilization = None
        return self._utilization if self._state == "running" else None

    def poll(self, ack: int = 0) -> dict[str, Any]:
        """State, the rank-0 reports after ``ack`` (the ``seq`` of the last reply the caller got),
        new log lines, seconds since this rank's last report and the accelerator utilisation its
        probe read (None: unknown)."""
        s = self._session
        self._unacked = [(seq, r) for seq, r in self._unacked if seq > ack]
        since = 0.0
        if s is not None:
            with s.lock:
                while s.outbox:
                    self._seq += 1
                    self._unacked.append((self._seq, s.outbox.popleft()))
            since = time.monotonic() - s.last_progress
        reports = [r for _, r in self._unacked]
        lines = []
        while self._lines:
            lines.append(self._lines.popleft())
        return {"state": self._state, "reports": reports, "seq": self._seq,
                "since_progress_s": since,
                "error": self._error, "lines": lines,
                "step": s.context.step if s is not None else None,
                "utilization": self._read_utilization()}

    def request_stop(self, mode: str) -> None:
        """``mode``: "checkpoint" ends at the next report with a checkpoint, "now" at any report."""
        self._stop_mode = mode
        if self._session is not None:
            self._session.context._stop_mode = mode


def _takes_args(fn: Any) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
               for p in params)
