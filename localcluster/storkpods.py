"""stork-py's components as pods on the real node, from the image `scripts/build-image.sh`
builds, with the shipped manifests' container settings (non-root, read-only root filesystem,
dropped capabilities, probes, the TLS Secret mounted at /tls).

What differs from `manifests/base`, because the local node allows no more: host network (the
node has a loopback-only CNI), pinned to the real node, one replica, the image loaded into
containerd (`imagePullPolicy: Never`), and an apiserver reached through a kubeconfig from a
Secret (no Service routing here, so no in-cluster config) instead of a service account.
"""

from __future__ import annotations

import base64
from typing import Any

import yaml

from localcluster.binaries import REPO
from localcluster.realnode import NODE_NAME, TOLERATION
from storkcore.kube import CONFIG_MAPS, DEPLOYMENTS, SECRETS, ApiError, Kube, Resource

PORTS = {"extender": 8099, "webhook": 8443, "controller": 8098}  # as the shipped manifests bind


def shipped_deployment(component: str) -> dict[str, Any]:
    docs = yaml.safe_load_all((REPO / "manifests" / "base" / f"{component}.yaml").read_text())
    return next(d for d in docs if d and d["kind"] == "Deployment")


def deployment_on_real_node(
    component: str, prefix: str, image: str, extra_args: list[str], tls_secret: str, kubeconfig_secret: str
) -> dict[str, Any]:
    body = shipped_deployment(component)
    name = f"{prefix}-{component}"
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "stork-py"}
    body["metadata"] = {"name": name, "namespace": body["metadata"]["namespace"], "labels": labels}
    body["spec"]["replicas"] = 1
    body["spec"]["selector"] = {"matchLabels": {"app.kubernetes.io/name": name}}
    template = body["spec"]["template"]
    template["metadata"]["labels"] = labels
    pod = template["spec"]
    for unused_here in ("serviceAccountName", "topologySpreadConstraints", "affinity"):
        pod.pop(unused_here, None)
    pod.update(
        hostNetwork=True,
        automountServiceAccountToken=False,
        tolerations=[TOLERATION],
        nodeSelector={"kubernetes.io/hostname": NODE_NAME},
    )
    (container,) = pod["containers"]
    container.update(image=image, imagePullPolicy="Never")
    container["args"] = [*container.get("args", []), "--kubeconfig", "/kube/config", *extra_args]
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            source["configMapRef"]["name"] = f"{prefix}-config"
    container["volumeMounts"] = [*container.get("volumeMounts", []), {"name": "kube", "mountPath": "/kube"}]
    for volume in pod.get("volumes", []):
        if volume.get("secret", {}).get("secretName") == "stork-tls":
            volume["secret"]["secretName"] = tls_secret
    pod["volumes"] = [*pod.get("volumes", []), {"name": "kube", "secret": {"secretName": kubeconfig_secret}}]
    return body


def apply(kube: Kube, resource: Resource, body: dict[str, Any]) -> None:
    namespace = body["metadata"]["namespace"]
    try:
        kube.create(resource, namespace, body)
    except ApiError as err:
        if err.status != 409:
            raise
        current = kube.get(resource, namespace, body["metadata"]["name"])
        assert current is not None
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        kube.request("PUT", resource.object_path(namespace, body["metadata"]["name"]), body=body)


def run_components(
    kube: Kube,
    prefix: str,
    image: str,
    components: dict[str, list[str]],
    config: dict[str, str],
    tls_secret: str,
    kubeconfig: bytes,
    namespace: str = "stork",
) -> None:
    """The ConfigMap, the kubeconfig Secret and one Deployment per component (with its extra args)."""
    apply(
        kube,
        CONFIG_MAPS,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{prefix}-config", "namespace": namespace},
            "data": config,
        },
    )
    apply(
        kube,
        SECRETS,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{prefix}-kubeconfig", "namespace": namespace},
            "data": {"config": base64.b64encode(kubeconfig).decode()},
        },
    )
    for component, extra_args in components.items():
        body = deployment_on_real_node(component, prefix, image, extra_args, tls_secret, f"{prefix}-kubeconfig")
        apply(kube, DEPLOYMENTS, body)


def stop_components(kube: Kube, prefix: str, components: list[str], namespace: str = "stork") -> None:
    for component in components:
        try:
            kube.delete(DEPLOYMENTS, namespace, f"{prefix}-{component}", {"propagationPolicy": "Foreground"})
        except ApiError as err:
            if err.status != 404:
                raise
