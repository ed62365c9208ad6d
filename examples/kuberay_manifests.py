"""Build and validate KubeRay manifests from one ainative spec; no Kubernetes cluster needed.

    python examples/kuberay_manifests.py                  # print a summary
    python examples/kuberay_manifests.py --out manifests  # also write the YAML files

Works the same under `ray job submit --working-dir . -- python examples/kuberay_manifests.py`:
building manifests needs neither Ray nor an API server.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

import ainative as ai


def cluster_auth(manifest: dict) -> dict:
    return manifest["spec"]["authOptions"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="folder to write the manifests to")
    args = parser.parse_args()

    spec = ai.KubeRayClusterConfig(
        name="research", namespace="ml", ray_version="2.60.0",
        image="rayproject/ray:2.60.0-py311-gpu",
        head=ai.NodeGroupConfig(cpus=4, memory="16Gi"),
        worker_groups=[
            ai.NodeGroupConfig(name="h100", accelerator=ai.Accelerator("H100", count=8), cpus=96,
                               memory="1Ti", replicas=2, min_replicas=0, max_replicas=8),
            ai.NodeGroupConfig(name="l4", accelerator=ai.Accelerator("L4"), cpus=8,
                               memory="32Gi", replicas=0, max_replicas=16),
            ai.NodeGroupConfig(name="cpu", cpus=16, memory="64Gi", replicas=1),
        ],
        autoscaling=True, gang_scheduler="kueue", queue="team-a",
        # secure defaults: Ray token auth is on (auth="token"), the dashboard listens on 127.0.0.1
        # and the head Service stays ClusterIP; a NetworkPolicy is opt-in
        network_policy=True, allowed_namespaces=["notebooks"])
    # the model factory must be importable in the pods (here examples.serve_classifier:classifier)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from examples.serve_classifier import classifier

    endpoint = ai.Endpoint(
        classifier, name="chat", route="/v1/chat",
        resources=ai.Resources(cpus=2, accelerator=ai.Accelerator("L4", count=0.5)),
        batching=ai.BatchingConfig(max_batch_size=16, max_wait_ms=5),
        autoscaling=ai.AutoscalingConfig(min_replicas=1, max_replicas=8, latency_slo_ms=200))

    manifests = {
        "raycluster": ai.kuberay.raycluster_manifest(spec),
        "rayjob": ai.kuberay.rayjob_manifest(
            {"name": "finetune", "entrypoint": "python -m mypkg.finetune --epochs 3"}, spec,
            runtime_env={"env_vars": {"HF_HOME": "/data/hf"}}, active_deadline_s=6 * 3600),
        # an ai.Endpoint becomes the same Serve application Endpoint.deploy() runs
        "rayservice": ai.kuberay.rayservice_manifest(endpoint, spec),
        "networkpolicy": ai.kuberay.networkpolicy_manifest(spec),
        "role": ai.kuberay.role_manifest("ml"),
    }
    secret = ai.kuberay.auth_secret_manifest(spec)  # created by `ainative up` next to the cluster
    assert secret is not None
    print(f"auth: {cluster_auth(manifests['raycluster'])}; token Secret "
          f"{secret['metadata']['name']} (key auth_token), never in the RayCluster")
    cluster = manifests["raycluster"]
    print(f"RayCluster {cluster['metadata']['name']}: labels {cluster['metadata']['labels']}")
    for group in cluster["spec"]["workerGroupSpecs"]:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        print(f"  group {group['groupName']:5s} replicas {group['minReplicas']}..{group['maxReplicas']}"
              f"  limits {limits}  ray resources {group.get('resources', {})}")
    job = manifests["rayjob"]["spec"]
    print(f"RayJob finetune: entrypoint {job['entrypoint']!r}, {job['submissionMode']}, "
          f"shutdownAfterJobFinishes {job['shutdownAfterJobFinishes']}")
    print("RayService chat serveConfigV2:\n  " +
          manifests["rayservice"]["spec"]["serveConfigV2"].replace("\n", "\n  ").rstrip())
    for name in ("raycluster", "rayjob", "rayservice"):
        ai.kuberay.validate(manifests[name])  # CRD schema + operator rules, again, explicitly
    print("all manifests validate against the KubeRay v1.7.0 CRDs and operator rules")

    try:  # a typo is caught with its JSON path, before anything is sent
        broken = yaml.safe_load(yaml.safe_dump(cluster))
        broken["spec"]["workerGroupSpecs"][0]["minReplicas"] = 9
        ai.kuberay.validate(broken)
    except ai.errors.KubeRayValidationError as exc:
        print(f"caught as expected: {exc}")

    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        files = {**manifests, "secret": ai.kuberay.auth_secret_manifest(spec, token="replace-me")}
        for name, manifest in files.items():
            (out / f"{name}.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
        print(f"wrote {len(files)} files to {out}/")


if __name__ == "__main__":
    main()
