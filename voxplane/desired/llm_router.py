"""The router in front of an LLM's replicas: it keeps each call on one replica, so the replica that
served a call's last turn serves its next one, where vLLM's prefix cache already holds the call's
history (a voice call re-sends its whole history every turn; on another replica that prefill is
done again).

The router is vllm-router (the vLLM project's router; its image is built from voxplane/llm_router,
pinned there with hashes), with its `sticky_least_loaded` policy:
- the key is the call: the agent glue sends `x-session-id: <the job's id>` with every LLM request
  (agents/_platform/voxplane_agent.py) and ends the session when the call ends
  (`POST /finish_session?session_id=...`, VOXPLANE_LLM_SESSION_END_URL);
- a call stays on the replica it was given for its life (its next turns find their prefix there);
- a new call goes to the replica with the fewest active calls (ties broken by rendezvous hashing
  of the key): no replica takes a new call while another has fewer, so one long call, or a run of
  them, cannot keep sending new calls to a replica that is already the busiest (the bounded load
  consistent hashing would lack: a key's replica there is fixed whatever its load);
- a session the glue never ended (a crashed worker) expires SESSION_TTL_SECONDS after its last
  request (VLLM_ROUTER_SLL_SESSION_EXPIRATION_IN_S), so it stops counting;
- a replica that fails its health check (/health, every HEALTH_CHECK_SECONDS) takes no requests;
  its calls move to the least-loaded healthy replica.

The router finds the replicas itself (Kubernetes service discovery: Ready pods with the model's
labels, their API port), so it follows the autoscaler: it reads pods in the inference namespace and
nothing else (Role). Its session table is its own: the Service keeps each client (an agent pod) on
one router pod (sessionAffinity ClientIP), so a call's turns meet the table that placed it; each
router pod balances the calls it sees. Rendered for an `llm` served by vLLM with
`max_replicas` > 1; agents then reach the model through the router's Service (common.model_base_url).

Facts (vllm-router 0.1.17, held against the running router by tests/test_llm_router.py): the
`vllm-router` command (its Python launcher), `--policy sticky_least_loaded`, `--service-discovery
--selector k=v ... --service-discovery-namespace --service-discovery-port`, `/liveness` (200 once
serving), `/readiness` (200 with a healthy worker, else 503), `POST /finish_session?session_id=`,
Prometheus metrics on `--prometheus-host/--prometheus-port` (`vllm_router_*`), session key from
the `x-session-id` header first.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..manifest.model import Agent, Model, Region
from .common import (
    LABEL_AGENT,
    RESTRICTED_CONTAINER,
    K8sObject,
    env_value,
    has_llm_router,
    inference_namespace,
    labels,
    llm_router_name,
    metadata,
    pdb,
    pod_monitor,
    region_source,
    restricted_pod,
    selector,
    service,
    service_host,
    tenant_namespace,
)
from .network import anywhere_peer, dns_egress, monitoring_peer, namespace_peer, network_policy, ports, rule

#: Value of `app.kubernetes.io/component` of the router's objects.
COMPONENT = "llm-router"
#: Repository of the router image in the stack's registry.
REPOSITORY = "voxplane-llm-router"
#: The image's command (vllm-router's Python launcher, the wheel's console script).
COMMAND = "vllm-router"
POLICY = "sticky_least_loaded"
#: The header the glue sends the call's key in: the first one vllm-router reads a session from.
SESSION_HEADER = "x-session-id"
#: Where the glue ends a call's session (query parameter `session_id`).
FINISH_SESSION_PATH = "/finish_session"
METRICS_PORT = 29000
HTTP_PORT_NAME = "http"
METRICS_PORT_NAME = "metrics"
#: Two: a rollout or a node drain never leaves the model without a router.
REPLICAS = 2
#: A replica that stopped answering /health leaves the rotation within this.
HEALTH_CHECK_SECONDS = 10
#: A call's session is forgotten this long after its last LLM request, when the glue never ended it.
SESSION_TTL_SECONDS = 900
#: The Service keeps a client on one router pod this long (kube-proxy's maximum is a day): longer
#: than any call.
AFFINITY_SECONDS = 10800
#: Requests in flight finish within this after SIGTERM (a streamed reply takes seconds).
GRACE_SECONDS = 60
EPHEMERAL_STORAGE = "256Mi"
#: Ports of the Kubernetes API the router watches pods through: the `kubernetes` Service's 443
#: and the API servers' own 6443 (NetworkPolicy sees either, depending on the CNI).
API_SERVER_PORTS = (443, 6443)


#: Which models get one, and the name of its objects (common.py: agents' URLs need them too).
has_router = has_llm_router
router_name = llm_router_name


def router_labels(region: Region, model: Model) -> dict[str, str]:
    return labels(region, name=router_name(model), component=COMPONENT)


def session_end_url(region: Region, model: Model) -> str:
    """Where the glue ends a call's session on the model's router."""
    host = service_host(region, router_name(model), inference_namespace(region))
    return f"http://{host}:{model.port}{FINISH_SESSION_PATH}"


def router_args(region: Region, model: Model, model_selector: dict[str, str]) -> list[str]:
    """vllm-router's arguments: listen on the model's port, route with sticky least-loaded over
    the model's Ready pods in the inference namespace, metrics on METRICS_PORT."""
    return [
        "--host", "0.0.0.0",
        "--port", str(model.port),
        "--policy", POLICY,
        "--service-discovery",
        "--selector", *(f"{k}={v}" for k, v in sorted(model_selector.items())),
        "--service-discovery-namespace", inference_namespace(region),
        "--service-discovery-port", str(model.port),
        "--health-check-interval-secs", str(HEALTH_CHECK_SECONDS),
        "--prometheus-host", "0.0.0.0",
        "--prometheus-port", str(METRICS_PORT),
    ]


def build_router(region: Region, model: Model, model_labels: dict[str, str], clients: Sequence[Agent],
                 *, image: str) -> list[K8sObject]:
    """ServiceAccount, Role and RoleBinding (read pods), Deployment, Service, PDB, PodMonitor and
    NetworkPolicy of the model's router; `clients` are the agents that call the model."""
    ns = inference_namespace(region)
    name = router_name(model)
    lab = router_labels(region, model)
    src = region_source(region)
    return [
        _service_account(name, ns, lab, src),
        _role(name, ns, lab, src),
        _role_binding(name, ns, lab, src),
        _deployment(region, model, model_labels, name, ns, lab, src, image),
        _service(model, name, ns, lab, src),
        _pdb(name, ns, lab, src),
        pod_monitor(name, ns, lab, port=METRICS_PORT_NAME, annotations=src),
        _network_policy(region, model, model_labels, name, ns, lab, src, clients),
    ]


def _service_account(name: str, ns: str, lab: dict[str, str], src: dict[str, str]) -> K8sObject:
    # Its token is mounted (the pod spec asks for it): the router watches pods through the API.
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(name, ns, lab, src)}


def _role(name: str, ns: str, lab: dict[str, str], src: dict[str, str]) -> K8sObject:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(name, ns, lab, src),
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
    }


def _role_binding(name: str, ns: str, lab: dict[str, str], src: dict[str, str]) -> K8sObject:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(name, ns, lab, src),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
    }


def _deployment(region: Region, model: Model, model_labels: dict[str, str], name: str, ns: str,
                lab: dict[str, str], src: dict[str, str], image: str) -> K8sObject:
    container: dict[str, Any] = {
        "name": "router",
        "image": image,
        "command": [COMMAND],
        "args": router_args(region, model, selector(model_labels)),
        "env": [env_value("VLLM_ROUTER_SLL_SESSION_EXPIRATION_IN_S", str(SESSION_TTL_SECONDS))],
        "ports": [
            {"name": HTTP_PORT_NAME, "containerPort": model.port, "protocol": "TCP"},
            {"name": METRICS_PORT_NAME, "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        # Ready once a replica of the model is (it has nowhere to send a request before).
        "readinessProbe": {"httpGet": {"path": "/readiness", "port": HTTP_PORT_NAME}, "periodSeconds": 5,
                           "failureThreshold": 2},
        "livenessProbe": {"httpGet": {"path": "/liveness", "port": HTTP_PORT_NAME}, "periodSeconds": 10,
                          "timeoutSeconds": 3, "failureThreshold": 3},
        "resources": {"requests": {"cpu": "500m", "memory": "256Mi", "ephemeral-storage": EPHEMERAL_STORAGE},
                      "limits": {"memory": "512Mi", "ephemeral-storage": EPHEMERAL_STORAGE}},
        "securityContext": {**RESTRICTED_CONTAINER, "readOnlyRootFilesystem": True},
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": name,
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": GRACE_SECONDS,
        "securityContext": restricted_pod(),
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector(lab)},
            }
        ],
        "containers": [container],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, ns, lab, src),
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": selector(lab)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": dict(lab), "annotations": dict(src)}, "spec": pod_spec},
        },
    }


def _service(model: Model, name: str, ns: str, lab: dict[str, str], src: dict[str, str]) -> K8sObject:
    """What agents' VOXPLANE_LLM_BASE_URL points at. ClientIP affinity: an agent pod's calls stay
    with the router pod whose session table placed them."""
    obj = service(name, ns, lab, [(HTTP_PORT_NAME, model.port)], src)
    obj["spec"]["sessionAffinity"] = "ClientIP"
    obj["spec"]["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": AFFINITY_SECONDS}}
    return obj


def _pdb(name: str, ns: str, lab: dict[str, str], src: dict[str, str]) -> K8sObject:
    obj = pdb(name, ns, lab, max_unavailable=1)
    obj["metadata"]["annotations"] = dict(src)
    return obj


def _network_policy(region: Region, model: Model, model_labels: dict[str, str], name: str, ns: str,
                    lab: dict[str, str], src: dict[str, str], clients: Sequence[Agent]) -> K8sObject:
    """In: the agents that call the model, on the API port; Prometheus on the metrics port. Out:
    DNS, the model's pods on their API port, and the Kubernetes API (its address is the
    cluster's, not the manifest's: any address on the API ports)."""
    peers = [namespace_peer(tenant_namespace(region, a.tenant), {LABEL_AGENT: a.name})
             for a in sorted(clients, key=lambda a: (a.tenant, a.name))]
    ingress = [rule([monitoring_peer(region)], ports(("TCP", METRICS_PORT)), direction="ingress")]
    if peers:
        ingress.insert(0, rule(peers, ports(("TCP", model.port)), direction="ingress"))
    return network_policy(
        name, ns, lab, selector(lab),
        ingress=ingress,
        egress=[
            dns_egress(),
            rule([namespace_peer(ns, selector(model_labels))], ports(("TCP", model.port)), direction="egress"),
            rule([anywhere_peer()], ports(*(("TCP", p) for p in API_SERVER_PORTS)), direction="egress"),
        ],
        annotations=src,
    )


def agent_facing_selector(region: Region, model: Model, model_labels: dict[str, str]) -> dict[str, str]:
    """The pods agents reach the model at (on its port): its router's when it has one."""
    return selector(router_labels(region, model)) if has_router(model) else selector(model_labels)
