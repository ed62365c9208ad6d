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
    start_timeout_s: float = 60.0
    """How long to wait for the gang (placement group) when it could fit but does not yet."""
    standby_workers: int = 0
    """Warm spare processes kept on each node the job runs on (``torch`` imported, no resources
    held): a restart adopts one for each new rank on that node instead of starting a process and
    importing torch (seconds). Each costs a Python process with torch loaded; set it to the number
    of ranks that could move onto one node when another dies. 0: off."""

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
        config.require_seconds("FailureConfig", "start_timeout_s", self.start_timeout_s)
        config.require_int("FailureConfig", "standby_workers", self.standby_workers, minimum=0,
                           maximum=64)
