"""Configs of a training job: where checkpoints go and how failures are handled."""

from __future__ import annotations

from ainative import config, errors


@config.config_dataclass
class CheckpointConfig:
    """Where and how many checkpoints are kept: ``<path>/<job name>/checkpoint_<step>``."""

    path: str = "~/.ainative/checkpoints"
    """A local directory, a ``file://`` URI, or any URI pyarrow.fs understands (``s3://``, ``gs://``)."""
    keep: int | None = 2
    """Committed checkpoints to keep (oldest deleted first); None keeps every one."""

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.strip():
            raise errors.ConfigError(
                f"CheckpointConfig.path must be a directory or URI such as 'file:///tmp/ckpt', "
                f"got {self.path!r}", field="path", value=self.path)
        if self.keep is not None:
            config.require_int("CheckpointConfig", "keep", self.keep, minimum=1, maximum=100_000)


@config.config_dataclass
class FailureConfig:
    """What counts as a failure and how often the job is restarted after one."""

    max_restarts: int = 3
    """Restarts after system failures (a worker or node died, a hang); 0 fails at the first one."""
    retry_user_errors: bool = False
    """Also restart when user code raises; off because a bug raises again on every restart."""
    progress_timeout_s: float | None = 300.0
    """A rank that reports nothing for this long is hung (frozen collective); None disables."""
    collective_timeout_s: float = 120.0
    """torch.distributed timeout: a collective waiting on a dead peer errors after this long."""
    rendezvous_timeout_s: float = 60.0
    """How long the ranks may take to join the process group (the TCP store and the backend's
    connections); a join that broke or hangs fails the attempt after this long (a system failure:
    restarted) instead of after ``collective_timeout_s``. The shorter of the two is used."""
    start_timeout_s: float = 60.0
    """How long to wait for the gang (placement group) when it could fit but does not yet."""
    standby_workers: int = 0
    """Warm spare processes kept on each node the job runs on (``torch`` imported, no resources
    held): a restart adopts one for each new rank on that node instead of starting a process and
    importing torch (seconds). Each costs a Python process with torch loaded; set it to the number
    of ranks that could move onto one node when another dies. 0: off."""
    liveness_timeout_s: float | None = 1.5
    """A rank on another machine than the controller that answers none of the controller's UDP
    liveness probes (about 15 per timeout) for this long is lost: its node is treated as
    partitioned or dead and the job restarts without it, before Ray's health check declares the
    node dead. Lower notices sooner but takes a stall that long (a frozen machine, a link down
    for a moment) for a lost node. A rank whose probes were never answered (UDP filtered) is left
    to Ray's health check. None: off."""

    def __post_init__(self) -> None:
        config.require_int("FailureConfig", "max_restarts", self.max_restarts, minimum=0,
                           maximum=1_000_000)
        if not isinstance(self.retry_user_errors, bool):
            raise errors.ConfigError(
                f"FailureConfig.retry_user_errors must be True or False, got {self.retry_user_errors!r}",
                field="retry_user_errors", value=self.retry_user_errors)
        config.require_seconds("FailureConfig", "progress_timeout_s", self.progress_timeout_s,
                               allow_none=True)
        config.require_seconds("FailureConfig", "collective_timeout_s", self.collective_timeout_s)
        config.require_seconds("FailureConfig", "rendezvous_timeout_s", self.rendezvous_timeout_s)
        config.require_seconds("FailureConfig", "start_timeout_s", self.start_timeout_s)
        config.require_int("FailureConfig", "standby_workers", self.standby_workers, minimum=0,
                           maximum=64)
        config.require_seconds("FailureConfig", "liveness_timeout_s", self.liveness_timeout_s,
                               allow_none=True)
        if self.liveness_timeout_s is not None and not 0.2 <= self.liveness_timeout_s <= 600:
            raise errors.ConfigError(
                f"FailureConfig.liveness_timeout_s must be between 0.2 and 600 seconds (or None to "
                f"turn the probes off), got {self.liveness_timeout_s!r}",
                field="liveness_timeout_s", value=self.liveness_timeout_s)
