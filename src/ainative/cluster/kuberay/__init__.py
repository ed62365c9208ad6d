"""Provision Ray on Kubernetes through KubeRay (the only place that imports ``kubernetes``).
"""
from __future__ import annotations
from ainative.cluster.kuberay.config import KubeRayClusterConfig, NodeGroupConfig
from ainative.cluster.kuberay.manifests import raycluster_manifest, rayjob_manifest, rayservice_manifest
from ainative.cluster.kuberay.schema import validate
