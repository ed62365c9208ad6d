"""`ainative up cluster.yaml`, `ainative down NAME`, `ainative submit job.yaml --kuberay cluster.yaml`.

A cluster file holds one ``kind: KubeRayCluster`` document (the fields of
``ai.KubeRayClusterConfig``; ``kind`` may be left out). A job file holds ``kind: TrainJob``
documents (the golden-path spec) or plain ``{name, entrypoint}`` documents.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

EXAMPLES = """examples:
  ainative up examples/kuberay/cluster.yaml --dry-run      # print the validated RayCluster
  ainative up examples/kuberay/cluster.yaml --timeout-s 900
  ainative submit examples/kuberay/job.yaml --kuberay examples/kuberay/cluster.yaml
  ainative down research --namespace ml"""


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: KUBECONFIG or "
                                                      "~/.kube/config; in a pod: its service account)")
    p.add_argument("--context", default=None, help="kubeconfig context")
    p.add_argument("--timeout-s", type=float, default=900.0, help="how long to wait (seconds)")


def register(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("up", help="create (or adopt) a Ray cluster on Kubernetes through KubeRay "
                                  "and wait until it is ready", formatter_class=fmt, epilog=EXAMPLES)
    p.add_argument("cluster", help="YAML file with a KubeRayCluster document")
    p.add_argument("--dry-run", action="store_true", help="print the validated manifest only")
    _client_args(p)
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="delete a KubeRay cluster (or RayJob / RayService) we own",
                       formatter_class=fmt, epilog=EXAMPLES)
    p.add_argument("name", help="object name")
    p.add_argument("--namespace", "-n", default="default")
    p.add_argument("--kind", default="RayCluster", choices=["RayCluster", "RayJob", "RayService"])
    p.add_argument("--owner", default="ainative", help="owner label value we created it with")
    p.add_argument("--force", action="store_true", help="delete even if the owner label differs")
    _client_args(p)
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("submit", help="run the jobs of a spec as RayJobs on a new KubeRay cluster",
                       formatter_class=fmt, epilog=EXAMPLES)
    p.add_argument("job", help="YAML file with TrainJob (or {name, entrypoint}) documents")
    p.add_argument("--kuberay", required=True, metavar="CLUSTER_YAML",
                   help="the KubeRayCluster spec that each RayJob's cluster is built from")
    p.add_argument("--no-wait", action="store_true", help="return once submitted")
    p.add_argument("--dry-run", action="store_true", help="print the validated RayJobs only")
    _client_args(p)
    p.set_defaults(func=cmd_submit)


def load_cluster_spec(path: str) -> Any:
    """The KubeRayClusterConfig of a cluster file (SpecError with file:line on any problem)."""
    from ainative import kuberay_apply

    return kuberay_apply.load_cluster_spec(path)


def _dump(manifests: list[dict[str, Any]]) -> str:
    """YAML documents for --dry-run (a generated token is shown redacted, never printed)."""
    import yaml

    from ainative.cluster.kuberay import security

    return yaml.safe_dump_all([security.redacted(m) for m in manifests], sort_keys=False)


def _client(args: argparse.Namespace) -> Any:
    import logging
    import sys

    from ainative.cluster.kuberay.client import KubeRayClient

    # show each status transition while waiting (on stderr, so stdout stays parseable)
    progress = logging.getLogger("ainative.cluster.kuberay")
    if not progress.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("  %(message)s"))
        progress.addHandler(handler)
        progress.setLevel(logging.INFO)

    return KubeRayClient(kubeconfig=args.kubeconfig, context=args.context)


def cmd_up(args: argparse.Namespace) -> int:
    from ainative.cluster import kuberay

    from ainative.cluster.kuberay import security

    spec = load_cluster_spec(args.cluster)
    if args.dry_run:
        print(_dump([kuberay.raycluster_manifest(spec), *security.companions(spec, spec.name)]),
              end="")
        return 0
    cluster = kuberay.up(spec, timeout_s=args.timeout_s, client=_client(args))
    verb = "created" if cluster.created else "adopted"
    print(f"RayCluster {cluster.namespace}/{cluster.name} {verb} and ready\n"
          f"  address:   {cluster.address}\n  dashboard: {cluster.dashboard_url}\n"
          f"  from outside the cluster: kubectl port-forward -n {cluster.namespace} "
          f"svc/{cluster.head_service} 10001:10001 8265:8265")
    if cluster.auth_secret:
        print(f"  token auth: export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=\"$(kubectl get secret -n "
              f"{cluster.namespace} {cluster.auth_secret} -o jsonpath='{{.data.auth_token}}' | "
              "base64 -d)\"  (or os.environ.update(cluster.auth_env()) in Python)")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from ainative.cluster import kuberay

    gone = kuberay.down(args.name, args.namespace, kind=args.kind, owner=args.owner,
                        force=args.force, timeout_s=args.timeout_s, client=_client(args))
    print(f"{args.kind} {args.namespace}/{args.name} " + ("deleted" if gone else "not found"))
    return 0


def _jobs(path: str) -> list[Any]:
    from ainative import kuberay_apply

    return kuberay_apply.load_jobs(path)


def cmd_submit(args: argparse.Namespace) -> int:
    from ainative import errors
    from ainative.cluster import kuberay

    spec = load_cluster_spec(args.kuberay)
    jobs = _jobs(args.job)
    if not jobs:
        raise errors.SpecError(f"{args.job}: no jobs in it", file=args.job, line=1, field="kind")
    if args.dry_run:
        from ainative.cluster.kuberay import security

        out: list[dict[str, Any]] = []
        for job in jobs:
            manifest = kuberay.rayjob_manifest(job, spec)
            out += [manifest, *security.companions(spec, manifest["metadata"]["name"])]
        print(_dump(out), end="")
        return 0
    client = _client(args)
    handles = [kuberay.submit(j, spec, client=client) for j in jobs]
    ok = True
    for handle in handles:
        print(f"RayJob {handle.namespace}/{handle.name} submitted")
        if args.no_wait:
            continue
        status = handle.wait(timeout_s=args.timeout_s)
        ok = ok and status.succeeded
        print(json.dumps({"name": status.name, "jobDeploymentStatus": status.deployment_status,
                          "jobStatus": status.job_status, "reason": status.reason,
                          "message": status.message}))
    return 0 if ok else 1
