"""Reading a region's live objects: one list call per kind, across namespaces, whatever the number
of objects — never a GET per object.

Two lists per namespaced kind at most:
- the objects voxplane owns in the region: label selector
  `app.kubernetes.io/managed-by=voxplane,app.kubernetes.io/part-of=<region>`, full objects;
- the objects without voxplane's labels, for the info-only "unowned" list: selector
  `app.kubernetes.io/managed-by!=voxplane`, metadata only (`PartialObjectMetadataList`, so no
  Secret payload or spec of anyone else's objects is transferred), filtered to the region's
  namespaces here.

Requests go through the `kubernetes` client's `ApiClient` (its configuration, auth and TLS), raw
JSON in and out: no model classes are built for thousands of objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

from ...status import selector as owned_selector

UNOWNED_SELECTOR = "app.kubernetes.io/managed-by!=voxplane"
_METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"


@dataclass(frozen=True)
class KindRef:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def list_path(self) -> str:
        """The list URL across all namespaces (cluster-scoped kinds have only this one)."""
        if "/" in self.api_version:
            return f"/apis/{self.api_version}/{self.plural}"
        return f"/api/{self.api_version}/{self.plural}"

    def __str__(self) -> str:
        return f"{self.api_version} {self.kind}"


#: Every kind voxplane renders. Listed on every run (so an object of a kind no longer declared at
#: all is still found); PersistentVolumeClaims are not, as StatefulSets create labelled ones.
KINDS: tuple[KindRef, ...] = (
    KindRef("v1", "Namespace", "namespaces", namespaced=False),
    KindRef("v1", "ConfigMap", "configmaps"),
    KindRef("v1", "Secret", "secrets"),
    KindRef("v1", "Service", "services"),
    KindRef("v1", "ServiceAccount", "serviceaccounts"),
    KindRef("v1", "ResourceQuota", "resourcequotas"),
    KindRef("v1", "LimitRange", "limitranges"),
    KindRef("apps/v1", "Deployment", "deployments"),
    KindRef("apps/v1", "StatefulSet", "statefulsets"),
    KindRef("apps/v1", "DaemonSet", "daemonsets"),
    KindRef("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    KindRef("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    KindRef("keda.sh/v1alpha1", "ScaledObject", "scaledobjects"),
    KindRef("monitoring.coreos.com/v1", "PodMonitor", "podmonitors"),
    KindRef("monitoring.coreos.com/v1", "ServiceMonitor", "servicemonitors"),
    KindRef("karpenter.sh/v1", "NodePool", "nodepools", namespaced=False),
)
_BY_KIND = {(k.api_version, k.kind): k for k in KINDS}


def kind_ref(api_version: str, kind: str, namespaced: bool) -> KindRef:
    """The known kind, or one named by the usual plural rule (lowercase, +s)."""
    known = _BY_KIND.get((api_version, kind))
    if known is not None:
        return known
    lower = kind.lower()
    if lower.endswith("y"):
        plural = lower[:-1] + "ies"
    elif lower.endswith(("s", "x")):
        plural = lower + "es"
    else:
        plural = lower + "s"
    return KindRef(api_version, kind, plural, namespaced)


class NotServed(Exception):
    """The cluster does not serve this kind (its CRD is not installed)."""


class LiveReader:
    """List calls through one `kubernetes.client.ApiClient`; counts the requests it makes."""

    def __init__(self, api_client: Any, *, timeout: float = 60.0):
        self.api = api_client
        self.timeout = timeout
        self.calls = 0

    @property
    def server(self) -> str:
        return str(self.api.configuration.host)

    def list_objects(self, ref: KindRef, label_selector: str, *, metadata_only: bool = False) -> list[dict[str, Any]]:
        """Every object of `ref` across namespaces matching `label_selector`; `NotServed` on 404."""
        from kubernetes.client import ApiException

        accept = _METADATA_ONLY if metadata_only else "application/json"
        params = self.api.param_serialize(
            method="GET", resource_path=ref.list_path, query_params=[("labelSelector", label_selector)],
            header_params={"Accept": accept}, auth_settings=["BearerToken"],
        )
        self.calls += 1
        response = self.api.call_api(*params, _request_timeout=self.timeout)
        body = response.read()
        if response.status == 404:
            raise NotServed(str(ref))
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response.response, body=body.decode("utf-8", "replace") if body else None)
        items: list[dict[str, Any]] = json.loads(body).get("items") or []
        for item in items:  # list items carry no kind (metadata-only ones: PartialObjectMetadata)
            item["apiVersion"] = ref.api_version
            item["kind"] = ref.kind
        return items

    def owned(self, ref: KindRef, region: str) -> list[dict[str, Any]]:
        return self.list_objects(ref, owned_selector(region))

    def unowned(self, ref: KindRef) -> list[dict[str, Any]]:
        return self.list_objects(ref, UNOWNED_SELECTOR, metadata_only=True)


def object_key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name"))


def namespace_of(obj: dict[str, Any]) -> Optional[str]:
    return (obj.get("metadata") or {}).get("namespace") or None
