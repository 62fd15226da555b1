"""Turn built objects (plain dicts) into typed pulumi_kubernetes resources, children of a component.

Builders stay pure; this is the one place that knows which SDK class registers which kind, how a
`SecretValue` becomes a Pulumi secret, and in what order objects must exist.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Mapping, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from voxplane.desired.common import K8sObject, SecretFingerprint, SecretValue

from .images import IMAGE_PLACEHOLDER
from .secrets import SecretResolver

# Typed SDK classes for the built-in kinds; anything else (KEDA, Karpenter, Prometheus operator)
# is a CustomResource. A typed class gets the SDK's await logic and schema-aware diffs.
_TYPED: dict[tuple[str, str], Callable[..., pulumi.CustomResource]] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "Secret"): k8s.core.v1.Secret,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("v1", "ResourceQuota"): k8s.core.v1.ResourceQuota,
    ("v1", "LimitRange"): k8s.core.v1.LimitRange,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("apps/v1", "StatefulSet"): k8s.apps.v1.StatefulSet,
    ("apps/v1", "DaemonSet"): k8s.apps.v1.DaemonSet,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
}

#: Apply order: namespaces, then what pods read, then workloads, then what watches workloads.
_ORDER = {
    "Namespace": 0,
    "ServiceAccount": 1,
    "Secret": 1,
    "ConfigMap": 1,
    "ResourceQuota": 1,
    "LimitRange": 1,
    "NetworkPolicy": 1,
    "PersistentVolumeClaim": 1,
    "Service": 2,
    "Deployment": 3,
    "StatefulSet": 3,
    "DaemonSet": 3,
}


def sort_objects(objects: Sequence[K8sObject]) -> list[K8sObject]:
    """Stable apply order (kind rank, then namespace and name)."""
    return sorted(
        objects,
        key=lambda o: (_ORDER.get(o["kind"], 4), o["metadata"].get("namespace", ""), o["kind"], o["metadata"]["name"]),
    )


#: pulumi-kubernetes: force server-side apply conflicts for this object (its `patchForce` annotation).
PATCH_FORCE_ANNOTATION = "pulumi.com/patchForce"


def resolve_secrets(value: Any, secrets: SecretResolver) -> Any:
    """Replace every `SecretValue` marker with a secret Output and every `SecretFingerprint` with
    its (plain) fingerprint Output."""
    if isinstance(value, SecretValue):
        return secrets.resolve(value)
    if isinstance(value, SecretFingerprint):
        return secrets.fingerprint(value)
    if isinstance(value, dict):
        return {k: resolve_secrets(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_secrets(v, secrets) for v in value]
    return value


def register_object(
    prefix: str,
    obj: K8sObject,
    secrets: SecretResolver,
    opts: pulumi.ResourceOptions,
    *,
    image: Optional[pulumi.Input[str]] = None,
) -> pulumi.CustomResource:
    """Register one object as a child resource named `<prefix>-<kind>-<name>`; `image` replaces
    the image placeholder of a workload's first container."""
    obj = resolve_secrets(copy.deepcopy(obj), secrets)
    if image is not None:
        obj = with_image(obj, image)
    api_version, kind = obj["apiVersion"], obj["kind"]
    # The manifests own every field voxplane declares: `pulumi up` takes a field back from whoever
    # changed it outside git (a `kubectl scale`, an edit) instead of failing on the server-side
    # apply conflict. Fields an autoscaler owns are not sent at all (ignore_changes).
    meta = {**obj["metadata"], "annotations": {**obj["metadata"].get("annotations", {}), PATCH_FORCE_ANNOTATION: "true"}}
    name = f"{prefix}-{kind.lower()}-{meta['name']}"
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    if kind == "Secret":
        # Whatever the values, the whole Secret payload is a Pulumi secret in state and previews.
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["data", "stringData"]))
    typed = _TYPED.get((api_version, kind))
    if typed is not None:
        return typed(name, metadata=meta, opts=opts, **_snake_top_level(body))
    return k8s.apiextensions.CustomResource(name, api_version=api_version, kind=kind, metadata=meta, opts=opts, **body)


def register_all(
    prefix: str,
    objects: Sequence[K8sObject],
    secrets: SecretResolver,
    opts: pulumi.ResourceOptions,
    *,
    ignore_changes: Optional[Mapping[tuple[str, str], list[str]]] = None,
    images: Optional[Mapping[tuple[str, str], pulumi.Input[str]]] = None,
) -> dict[tuple[str, str, str], pulumi.CustomResource]:
    """Register objects in apply order. Objects in a namespace created here depend on it;
    `ignore_changes` maps (kind, name) to fields an autoscaler owns, `images` to the image a
    workload built with the placeholder runs (possibly an Output: a pushed digest)."""
    created: dict[tuple[str, str, str], pulumi.CustomResource] = {}
    namespaces: dict[str, pulumi.CustomResource] = {}
    # What pods read: a workload is updated only once its Secrets and ConfigMaps are, so pods that
    # a new secret fingerprint or config checksum starts never read the old values.
    read_by_pods: list[pulumi.CustomResource] = []
    for obj in sort_objects(objects):
        meta = obj["metadata"]
        deps: list[pulumi.Resource] = []
        ns = meta.get("namespace")
        if ns in namespaces:
            deps.append(namespaces[ns])
        if obj["kind"] in _WORKLOADS:
            deps += read_by_pods
        extra = pulumi.ResourceOptions(depends_on=deps) if deps else pulumi.ResourceOptions()
        ignored = (ignore_changes or {}).get((obj["kind"], meta["name"]))
        if ignored:
            extra = pulumi.ResourceOptions.merge(extra, pulumi.ResourceOptions(ignore_changes=ignored))
        resource = register_object(prefix, obj, secrets, pulumi.ResourceOptions.merge(opts, extra),
                                   image=(images or {}).get((obj["kind"], meta["name"])))
        created[(obj["kind"], ns or "", meta["name"])] = resource
        if obj["kind"] == "Namespace":
            namespaces[meta["name"]] = resource
        if obj["kind"] in ("Secret", "ConfigMap"):
            read_by_pods.append(resource)
    return created


_WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")


def with_image(obj: K8sObject, image: pulumi.Input[str]) -> K8sObject:
    """`obj` (a copy already) with its first container's placeholder image replaced by `image`;
    set after the copy because an Output cannot be deep-copied with the plain data."""
    container = obj["spec"]["template"]["spec"]["containers"][0]
    if container["image"] != IMAGE_PLACEHOLDER:
        raise ValueError(f"{obj['kind']} {obj['metadata']['name']!r} was not built with the image placeholder")
    container["image"] = image
    return obj


_TOP_LEVEL = {
    "stringData": "string_data",
    "binaryData": "binary_data",
    "immutable": "immutable",
    "automountServiceAccountToken": "automount_service_account_token",
    "imagePullSecrets": "image_pull_secrets",
}


def _snake_top_level(body: dict[str, Any]) -> dict[str, Any]:
    """Typed classes take top-level fields as snake_case keyword arguments (`string_data`);
    nested dicts keep the Kubernetes (camelCase) field names."""
    return {_TOP_LEVEL.get(k, k): v for k, v in body.items()}
