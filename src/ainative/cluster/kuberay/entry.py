"""Run an ainative TrainJob shipped inside a RayJob: ``python -m ainative.cluster.kuberay.entry``.

``rayjob_manifest(TrainJob(...), spec)`` cloudpickles the TrainJob (functions of importable modules
by reference, functions of ``__main__`` by value, as Ray does for remote functions), base64-encodes
it into the ``AINATIVE_TRAINJOB`` environment variable of the RayJob's runtime env, and sets this
module as the entrypoint. In the cluster it decodes the job, joins the RayJob's Ray cluster
(``RAY_ADDRESS`` is set by KubeRay's submitter) and calls ``TrainJob.run()``; the exit status is
what KubeRay reports as ``jobStatus``. The image needs the same ainative version.
"""

from __future__ import annotations

import base64
import sys
from typing import Any

from ainative import errors

ENV_VAR = "AINATIVE_TRAINJOB"
# Kubernetes objects are capped at ~1.5 MiB; a job this big belongs in the image, not the spec.
MAX_PAYLOAD_BYTES = 256 * 1024


def is_train_job(job: Any) -> bool:
    """An ainative TrainJob (or look-alike): runnable, with a train function."""
    return callable(getattr(job, "run", None)) and callable(getattr(job, "train_fn", None))


def encode(job: Any) -> str:
    from ray import cloudpickle

    try:
        payload = base64.b64encode(cloudpickle.dumps(job)).decode("ascii")
    except Exception as exc:  # cloudpickle raises many types for unpicklable state
        raise errors.ConfigError(
            f"TrainJob {getattr(job, 'name', job)!r} cannot be serialized into a RayJob ({exc}); "
            "give an entrypoint command instead", field="train_job", value=repr(job)) from None
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise errors.ConfigError(
            f"TrainJob {job.name!r} serializes to {len(payload)} bytes (> {MAX_PAYLOAD_BYTES}); it "
            "captures large data. Put the code in the image and pass an entrypoint instead",
            field="train_job", value=len(payload))
    return payload


def decode(payload: str) -> Any:
    from ray import cloudpickle

    return cloudpickle.loads(base64.b64decode(payload))


def main() -> int:
    import os

    payload = os.environ.get(ENV_VAR)
    if not payload:
        print(f"{ENV_VAR} is not set: nothing to run", file=sys.stderr)
        return 2
    job = decode(payload)
    result = job.run()
    print(f"ainative TrainJob {job.name}: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
