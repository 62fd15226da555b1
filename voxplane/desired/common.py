"""Names, labels and small helpers every builder shares.

Object metadata contract (what drift and `status` select on, README "Kubernetes drift"): every object carries `app.kubernetes.io/managed-by: voxplane`
and `app.kubernetes.io/part-of: <region>`; objects an agent or tenant owns also carry
`voxplane.io/agent` / `voxplane.io/tenant` and the annotation `voxplane.io/source`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence

from ..manifest.model import Agent, Model, NodePool, Region, Resources

K8sObject = dict[str, Any]

MANAGED_BY = "voxplane"
LABEL_AGENT = "voxplane.io/agent"
LABEL_TENANT = "voxplane.io/tenant"
LABEL_GPU_GROUP = "voxplane.io/gpu-group"
ANNOTATION_SOURCE = "voxplane.io/source"
ANNOTATION_CONFIG_CHECKSUM = "voxplane.io/config-checksum"
#: Media pods must not get a service-mesh sidecar: it would sit in the RTP path.
NO_MESH = {"sidecar.istio.io/inject": "false", "linkerd.io/inject": "disabled"}
#: The NVIDIA device plugin's extended resource.
GPU_RESOURCE = "nvidia.com/gpu"
#: GPU Feature Discovery's product label, the portable GPU selector across clouds.
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


@dataclass(frozen=True)
class SecretValue:
    """A secret the builder cannot know: the component resolves it to a Pulumi secret Output, and
    render prints it redacted. `kind` is "config" (stack config secret `name`), "livekit-secret"
    (the API secret of LiveKit key `name`), "livekit-keys" (the server's keys file) or "derived"
    (a platform-internal password, e.g. the in-cluster Redis's, derived from the root secret)."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"<secret {self.kind}:{self.name}>"


@dataclass(frozen=True)
class SecretFingerprint:
    """A short keyed fingerprint of the secrets in `sources`, for a pod template annotation: the
    component resolves it to HMAC-SHA256(root secret, purpose label, region, the values), truncated
    (components/secrets.py). One-way and keyed, so it reveals nothing of the values; it changes
    whenever one of them does (a rotated `livekitRootSecret`, a new config secret), so the
    workload's pods roll and read the new values. Render shows the fingerprint of its placeholders."""

    sources: tuple[SecretValue, ...]

    def __str__(self) -> str:
        return "<fingerprint of " + ", ".join(str(s) for s in self.sources) + ">"


#: Pod template annotation holding a `SecretFingerprint` of the secrets the pods read.
ANNOTATION_SECRET_FINGERPRINT = "voxplane.io/secret-fingerprint"


def secret_fingerprint(*sources: Optional[SecretValue]) -> dict[str, Any]:
    """The pod template annotation for the secrets in `sources` (None entries skipped); empty when
    there are none."""
    present = tuple(s for s in sources if s is not None)
    return {ANNOTATION_SECRET_FINGERPRINT: SecretFingerprint(present)} if present else {}


# --- names -------------------------------------------------------------------------------------


def system_namespace(region: Region) -> str:
    return f"{region.kubernetes.namespace_prefix}-system"


def inference_namespace(region: Region) -> str:
    return f"{region.kubernetes.namespace_prefix}-inference"


def tenant_namespace(region: Region, tenant: str) -> str:
    return f"{region.kubernetes.namespace_prefix}-t-{tenant}"


def service_host(region: Region, service: str, namespace: str) -> str:
    return f"{service}.{namespace}.svc.{region.kubernetes.cluster_domain}"


LIVEKIT_SERVICE = "livekit"
#: The platform's keys: the only ones livekit-server knows. The admin key is the control plane's
#: and the SIP bridge's; the gateway key is what the gateway signs forwarded requests with; the
#: recovery key is the lost-agent recovery controller's (livekit-server signs its webhooks with it).
ADMIN_KEY = "vx-admin"
GATEWAY_KEY = "vx-gateway"
RECOVERY_KEY = "vx-recovery"
#: The lost-agent recovery controller's Service (voxplane/controllers/recovery) and the port and
#: path livekit-server sends its webhooks to.
RECOVERY_SERVICE = "agent-recovery"
RECOVERY_WEBHOOK_PORT = 8080
RECOVERY_WEBHOOK_PATH = "/webhook"
#: The authorizing gateway's Service (voxplane/gateway): tenants reach LiveKit only through it.
GATEWAY_SERVICE = "livekit-gateway"
#: Its Service port: LiveKit's usual one, so a gateway URL looks like a LiveKit URL.
GATEWAY_PORT = 7880
#: Prefix of tenant key names; no platform key starts with it, so no tenant name can collide.
TENANT_KEY_PREFIX = "vxt-"


def livekit_internal_url(region: Region) -> str:
    """The in-cluster WebSocket URL of livekit-server itself: the SIP bridge and the gateway."""
    host = service_host(region, LIVEKIT_SERVICE, system_namespace(region))
    return f"ws://{host}:{region.livekit.ports.http}"


def gateway_internal_url(region: Region) -> str:
    """The in-cluster WebSocket URL agents use (`LIVEKIT_URL`): the gateway's."""
    return f"ws://{service_host(region, GATEWAY_SERVICE, system_namespace(region))}:{GATEWAY_PORT}"


def recovery_webhook_url(region: Region) -> str:
    """Where livekit-server sends its webhooks: the recovery controller's Service."""
    host = service_host(region, RECOVERY_SERVICE, system_namespace(region))
    return f"http://{host}:{RECOVERY_WEBHOOK_PORT}{RECOVERY_WEBHOOK_PATH}"


def tenant_api_key(tenant: str) -> str:
    """The LiveKit API key name of a tenant. Its secret is derived per region, never stored, and
    known only to the gateway: livekit-server does not accept it."""
    return f"{TENANT_KEY_PREFIX}{tenant}"


def platform_api_keys() -> list[str]:
    """The keys in livekit-server's key file."""
    return sorted([ADMIN_KEY, GATEWAY_KEY, RECOVERY_KEY])


def has_llm_router(model: Model) -> bool:
    """Whether agents reach the model through a router (voxplane/desired/llm_router.py): an LLM
    served by vLLM that may run more than one replica."""
    return model.kind == "llm" and model.server_name == "vllm" and model.max_replicas > 1


def llm_router_name(model: Model) -> str:
    """The router's objects and Service: `<model>-router`."""
    return f"{model.name}-router"


def model_service(model: Model) -> str:
    """The Service agents reach the model at: its router's, when it has one."""
    return llm_router_name(model) if has_llm_router(model) else model.name


def model_base_url(region: Region, model_name: str) -> str:
    model = region.models[model_name]
    return f"http://{service_host(region, model_service(model), inference_namespace(region))}:{model.port}/v1"


# --- metadata ----------------------------------------------------------------------------------


def labels(
    region: Region,
    *,
    name: str,
    component: str,
    instance: Optional[str] = None,
    version: Optional[str] = None,
    tenant: Optional[str] = None,
    agent: Optional[str] = None,
) -> dict[str, str]:
    """Kubernetes recommended labels plus voxplane ownership."""
    out = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": instance or name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": region.name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }
    if version:
        out["app.kubernetes.io/version"] = version
    if tenant:
        out[LABEL_TENANT] = tenant
    if agent:
        out[LABEL_AGENT] = agent
    return out


def selector(object_labels: Mapping[str, str]) -> dict[str, str]:
    """The stable subset of labels used in selectors (never the version)."""
    keys = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/part-of")
    return {k: object_labels[k] for k in keys if k in object_labels}


def metadata(
    name: str,
    namespace: Optional[str],
    object_labels: Mapping[str, str],
    annotations: Optional[Mapping[str, str]] = None,
) -> dict[str, Any]:
    return prune(
        {
            "name": name,
            "namespace": namespace,
            "labels": dict(object_labels),
            "annotations": dict(annotations) if annotations else None,
        }
    )


def agent_source(agent: Agent) -> dict[str, str]:
    return {ANNOTATION_SOURCE: agent.source.file} if agent.source else {}


def region_source(region: Region) -> dict[str, str]:
    return {ANNOTATION_SOURCE: region.source.file} if region.source else {}


# --- pod pieces --------------------------------------------------------------------------------


def placement(pool: Optional[NodePool]) -> dict[str, Any]:
    """nodeSelector and tolerations of a node pool, ready to merge into a pod spec."""
    if pool is None:
        return {}
    return prune(
        {
            "nodeSelector": dict(pool.selector),
            "tolerations": [
                prune({"key": t.key, "operator": "Equal" if t.value is not None else "Exists",
                       "value": t.value, "effect": t.effect})
                for t in pool.tolerations
            ]
            or None,
        }
    )


def resources(spec: Resources) -> dict[str, Any]:
    """Requests for CPU, memory and ephemeral storage; memory and ephemeral-storage limits equal to
    their requests, no CPU limit (throttling a media or agent process mid-call is worse than
    sharing spare CPU). Disk request = limit: the scheduler never overcommits a node's disk, so a
    pod writing past its limit is evicted alone, not its neighbours under disk pressure."""
    requests = prune({"cpu": spec.cpu, "memory": spec.memory, "ephemeral-storage": spec.ephemeral_storage})
    limits = prune({"memory": spec.memory, "ephemeral-storage": spec.ephemeral_storage})
    return prune({"requests": requests or None, "limits": limits or None})


def scratch_volume(name: str, size: Optional[str], *, memory: bool = False) -> dict[str, Any]:
    """An emptyDir, always bounded: on disk it counts toward the pod's ephemeral storage, in
    memory (`memory=True`) toward its memory limit."""
    empty: dict[str, Any] = {"medium": "Memory"} if memory else {}
    if size:
        empty["sizeLimit"] = size
    return {"name": name, "emptyDir": empty}


def image_ref(repository: str, tag: str, digest: Optional[str] = None) -> str:
    """`repository:tag`, pinned to `@digest` when there is one."""
    return f"{repository}:{tag}@{digest}" if digest else f"{repository}:{tag}"


RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def restricted_pod(uid: int = 10001) -> dict[str, Any]:
    """Pod-level security context of the `restricted` Pod Security Standard."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def env_value(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def env_secret(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def secret(
    name: str, namespace: str, object_labels: Mapping[str, str], string_data: Mapping[str, Any],
    annotations: Optional[Mapping[str, str]] = None,
) -> K8sObject:
    """An Opaque Secret; values are usually `SecretValue` markers, resolved by the component."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(name, namespace, object_labels, annotations),
        "type": "Opaque",
        "stringData": dict(string_data),
    }


def config_map(
    name: str, namespace: str, object_labels: Mapping[str, str], data: Mapping[str, str],
    annotations: Optional[Mapping[str, str]] = None,
) -> K8sObject:
    """A ConfigMap; never give it a secret."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(name, namespace, object_labels, annotations),
        "data": dict(data),
    }


#: `spec.trafficDistribution` of the Services whose callers should stay in their own zone. In
#: Kubernetes v1.34 `PreferClose` is GA (the ServiceTrafficDistribution gate is locked on since
#: v1.33) and every release since v1.31 accepts it; `PreferSameZone`, its new name, is beta in
#: v1.34 (gate PreferSameTrafficDistribution) and refused by older API servers. Both make the
#: EndpointSlice controller hint each ready endpoint for its own zone (k8s.io/endpointslice
#: trafficdist); kube-proxy then sends a client to the endpoints of its zone, or to all of them
#: when its zone has none (pkg/proxy/topology.go).
PREFER_CLOSE = "PreferClose"


def service(
    name: str, namespace: str, object_labels: Mapping[str, str], ports: Sequence[tuple[str, int]],
    annotations: Optional[Mapping[str, str]] = None, *, headless: bool = False, same_zone: bool = False,
) -> K8sObject:
    """A Service over the pods of `object_labels`, one TCP port per (container port name, port).
    Headless (no virtual IP, a DNS name per pod) for a StatefulSet's `serviceName`. `same_zone`:
    traffic to its virtual IP stays in the caller's zone where the zone has a ready endpoint
    (PREFER_CLOSE), for backends called on every turn of a call (the models, their router)."""
    assert not (headless and same_zone), "a headless Service has no virtual IP to route"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, namespace, object_labels, annotations),
        "spec": {
            **({"clusterIP": "None"} if headless else {"type": "ClusterIP"}),
            "selector": selector(object_labels),
            "ports": [{"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}
                      for port_name, port in ports],
            **({"trafficDistribution": PREFER_CLOSE} if same_zone else {}),
        },
    }


def service_account(name: str, namespace: str, object_labels: Mapping[str, str],
                    annotations: Optional[Mapping[str, str]] = None) -> K8sObject:
    """A ServiceAccount of one workload, with no API token mounted into its pods: the platform's
    workloads never call the Kubernetes API, and a pod's token is the first thing a compromised
    process would use."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(name, namespace, object_labels, annotations),
        "automountServiceAccountToken": False,
    }


def pdb(name: str, namespace: str, object_labels: Mapping[str, str], *, max_unavailable: int = 1) -> K8sObject:
    """A PodDisruptionBudget: voluntary evictions (node drains, consolidation) take one pod at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(name, namespace, object_labels),
        "spec": {"maxUnavailable": max_unavailable, "selector": {"matchLabels": selector(object_labels)}},
    }


def pod_monitor(
    name: str, namespace: str, object_labels: Mapping[str, str], *, port: str = "metrics", path: str = "/metrics",
    annotations: Optional[Mapping[str, str]] = None,
) -> K8sObject:
    """A prometheus-operator PodMonitor scraping the pods of `object_labels` on the named `port`."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": metadata(name, namespace, object_labels, annotations),
        "spec": {
            "selector": {"matchLabels": selector(object_labels)},
            "podMetricsEndpoints": [{"port": port, "path": path, "interval": "15s"}],
        },
    }


def namespace(name: str, object_labels: Mapping[str, str], *, pod_security: str = "restricted") -> K8sObject:
    """A namespace with its Pod Security admission level."""
    lab = dict(object_labels)
    lab["pod-security.kubernetes.io/enforce"] = pod_security
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": lab}}


# --- data helpers ------------------------------------------------------------------------------


def prune(value: Any) -> Any:
    """Drop None values (recursively) so manifests carry no null noise."""
    if isinstance(value, dict):
        return {k: prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [prune(v) for v in value if v is not None]
    return value


def checksum(data: Any) -> str:
    """Stable sha256 of JSON-able data; changes to a config roll the pods that mount it."""
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def object_key(obj: K8sObject) -> tuple[str, str, str]:
    """(kind, namespace, name): the identity of an object in a region."""
    meta = obj.get("metadata", {})
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def walk_secret_values(value: Any) -> Iterable[SecretValue]:
    if isinstance(value, SecretValue):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from walk_secret_values(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk_secret_values(v)


#: livekit-agents serves health (`/`) and worker info (`/worker`) on 8081 in production mode.
AGENT_HEALTH_PORT = 8081
#: Port the platform asks workers to serve Prometheus metrics on (lk_agents_active_job_count).
AGENT_METRICS_PORT = 9100
#: The gauge livekit-agents exports per worker (telemetry/metrics.py): its active jobs (calls).
ACTIVE_JOBS_METRIC = "lk_agents_active_job_count"


def active_jobs_selector(namespace: str, podmonitor: str) -> str:
    """The PromQL selector of an agent pool's active-jobs series: what the pool's ScaledObject
    sums, and what a model whose server exports no metrics sums over the pools that use it.
    prometheus-operator labels PodMonitor targets with `namespace` (the pod's) and
    `job="<namespace>/<podmonitor name>"` when no jobLabel is set (pkg/prometheus/promcfg.go,
    generatePodMonitorConfig)."""
    return f'{ACTIVE_JOBS_METRIC}{{namespace="{namespace}",job="{namespace}/{podmonitor}"}}'
