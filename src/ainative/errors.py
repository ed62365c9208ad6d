"""The exception tree of ainative.

Every error a user can see is an :class:`AinativeError`. Messages say what failed, the numbers that
were observed, and the knob to change. All of them survive pickling, so they cross Ray actor
boundaries intact (details included).

::

    AinativeError
    ├── ConfigError (also ValueError)      bad input to a config object, before anything runs
    │   └── SpecError                      a YAML spec: carries file, line and field
    ├── ClusterError                       where Ray runs
    │   ├── ClusterConnectionError         address unreachable, no cluster at it
    │   └── ClusterAuthError               token auth on and no token found
    ├── PlacementError                     gangs (placement groups)
    │   ├── InfeasibleError                can never fit on this cluster
    │   └── PlacementTimeoutError          could fit, did not fit within timeout_s
    ├── TrainingError
    │   ├── TrainingFailedError            user code raised on a rank (rank, node, traceback)
    │   ├── WorkerGroupError               system failure beyond max_restarts, hang detected
    │   └── CheckpointError                checkpoint path not writable / commit failed
    ├── DataError
    │   ├── SchemaMismatchError            blocks with different schemas
    │   └── MapBatchesError                a map_batches function raised (block index, traceback)
    ├── ServeError
    │   ├── ModelLoadError                 the model failed to load in a replica (traceback)
    │   └── EndpointError                  a request failed (status code)
    ├── SchedulingError
    │   ├── UnknownQueueError              (also a ConfigError)
    │   ├── AdmissionError                 rejected at submit (can never be placed, ...)
    │   │   └── AdmissionTimeoutError      not admitted within admission_timeout_s
    │   └── PreemptedError
    ├── BudgetExceededError                a budget refused or stopped work (a reservation over a
    │                                      whole budget is refused at submit)
    └── KubeRayError                       only raised from ainative.cluster.kuberay
        ├── KubeRayAuthError               401 / 403, with the RBAC verbs needed
        ├── KubeRayNotInstalledError       404 on the CRD: the operator is not installed
        ├── KubeRayConflictError           409
        ├── KubeRayValidationError         422 or our own validation; carries the JSON path
        └── KubeRayTimeoutError            with the last observed status
"""

from __future__ import annotations

from typing import Any


def _rebuild(cls: type[AinativeError], message: str, details: dict[str, Any]) -> AinativeError:
    err = cls.__new__(cls)
    AinativeError.__init__(err, message, **details)
    return err


class AinativeError(Exception):
    """Base of every ainative error. ``details`` holds the structured facts behind the message."""

    def __init__(self, message: str = "", **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details)
        for key, value in details.items():
            setattr(self, key, value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.details))

    def __str__(self) -> str:
        return self.message


class ConfigError(AinativeError, ValueError):
    """Bad input to a config object; names the field, the value and the allowed range."""


class SpecError(ConfigError):
    """A YAML spec that does not validate; names the file, the line and the field."""


class ClusterError(AinativeError):
    """Something about where Ray runs."""


class ClusterConnectionError(ClusterError):
    """The address cannot be reached or has no Ray cluster."""


class ClusterAuthError(ClusterError):
    """The cluster has token auth on and no usable token was found."""


class PlacementError(AinativeError):
    """A gang could not be reserved."""


class InfeasibleError(PlacementError):
    """The gang can never fit on this cluster as it is."""


class PlacementTimeoutError(PlacementError):
    """The gang could fit but did not within ``timeout_s``."""


class TrainingError(AinativeError):
    """A training job failed."""


class TrainingFailedError(TrainingError):
    """User code raised on a rank; carries rank, node id and the remote traceback."""


class WorkerGroupError(TrainingError):
    """System failures beyond ``max_restarts``, or a hang that was detected."""


class CheckpointError(TrainingError):
    """A checkpoint could not be written, committed or read."""


class DataError(AinativeError):
    """A dataset operation failed."""


class SchemaMismatchError(DataError):
    """Blocks of one dataset have different schemas."""


class MapBatchesError(DataError):
    """A ``map_batches`` function raised; carries the block index and the remote traceback."""


class ServeError(AinativeError):
    """An inference endpoint failed."""


class ModelLoadError(ServeError):
    """The model failed to load in a replica; carries the replica's traceback."""


class EndpointError(ServeError):
    """A request to an endpoint failed; carries the status code."""


class SchedulingError(AinativeError):
    """Queues, quotas and admission."""


class UnknownQueueError(SchedulingError, ConfigError):
    """A job or budget names a queue that was not configured (bad input: also a ConfigError)."""


class AdmissionError(SchedulingError):
    """A job was rejected at submit; the message says why."""


class PreemptedError(SchedulingError):
    """A job was preempted and could not be resumed."""


class BudgetExceededError(AinativeError):
    """A budget refused or stopped work; says what is left, what was asked and the knob."""


class KubeRayError(AinativeError):
    """Provisioning through KubeRay failed."""


class KubeRayAuthError(KubeRayError):
    """401/403 from the API server; says which RBAC verbs are needed."""


class KubeRayNotInstalledError(KubeRayError):
    """The KubeRay CRDs are not installed on the cluster."""


class KubeRayConflictError(KubeRayError):
    """409: an object of that name exists and is not ours to adopt."""


class KubeRayValidationError(KubeRayError, ConfigError):
    """A manifest does not validate; carries the JSON path."""


class KubeRayTimeoutError(KubeRayError):
    """Waiting for readiness or completion ran out; carries the last observed status."""


class AdmissionTimeoutError(AdmissionError):
    """A job was not admitted within its ``admission_timeout_s``; carries why it still waited."""
