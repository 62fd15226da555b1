"""The deletion-cost controller of a region (voxplane/controllers/deletion_cost): it keeps each agent
pod's `controller.kubernetes.io/pod-deletion-cost` equal to its worker's active jobs, so a pool the
autoscaler shrinks loses idle workers first. Its ConfigMap (the pools and the query; no secret),
ServiceAccount, a Role and RoleBinding in each tenant namespace that has agent pools (list and
patch pods, nothing else), a ValidatingAdmissionPolicy that narrows its patches to the one
annotation (RBAC cannot), Deployment, NetworkPolicy, PDB and PodMonitor.

It runs in the system namespace on the SFU's media pool, like the gateway and Redis: its token can
patch every tenant's pods, so it never shares a node with tenant code. It reads the active jobs
from the Prometheus the autoscaler queries (the same series, per pod), so it needs no route to any
tenant pod: its NetworkPolicy lets it reach DNS, Prometheus and the API server, nothing else.
"""

from __future__ import annotations

import urllib.parse
from typing import Sequence

from .. import __version__
from ..controllers.deletion_cost.config import Config, Pool
from ..controllers.deletion_cost.decide import ANNOTATION
from ..manifest.model import Agent, Region
from .agent_pool import SCRAPE_INTERVAL_SECONDS
from .common import (
    ACTIVE_JOBS_METRIC,
    ANNOTATION_CONFIG_CHECKSUM,
    K8sObject,
    RESTRICTED_CONTAINER,
    checksum,
    config_map,
    labels,
    metadata,
    pdb,
    placement,
    pod_monitor,
    region_source,
    restricted_pod,
    selector,
    service_account,
    system_namespace,
    tenant_namespace,
)
from .network import NAMESPACE_NAME_LABEL, cidr, dns_egress, monitoring_peer, network_policy, ports, rule

NAME = "pod-deletion-cost"
COMPONENT = "controller"
#: The image's repository under the stack's `voxplane:imageRegistry`; the stack builds it from the
#: controller package (voxplane/components/deletion_cost.py).
REPOSITORY = "voxplane-deletion-cost"
METRICS_PORT = 9103
CONFIG_DIR = "/etc/voxplane-deletion-cost"
CONFIG_FILE = "config.json"
#: Read as often as Prometheus scrapes the workers (their PodMonitors' interval): more often would
#: read the same samples again.
INTERVAL_SECONDS = float(SCRAPE_INTERVAL_SECONDS)
#: The write budget, client-go's default client limits (5 requests/s, burst 10): a pool whose calls
#: all change at once is brought up to date over a few rounds, busy workers first.
WRITES_PER_SECOND = 5.0
BURST = 10
#: The API server's ports: the `kubernetes` Service's (443) and kube-apiserver's own default (6443),
#: which a CNI sees after the Service's address is translated to an endpoint.
API_SERVER_PORTS = (443, 6443)
EPHEMERAL_STORAGE = "64Mi"


def controller_labels(region: Region) -> dict[str, str]:
    return labels(region, name=NAME, component=COMPONENT, version=__version__)


def pools(region: Region, agents: Sequence[Agent]) -> tuple[Pool, ...]:
    """Every agent pool of the region: its namespace and its pods' selector (agent_pool.py's)."""
    out = []
    for agent in sorted(agents, key=lambda a: (a.tenant, a.name)):
        if region.name not in agent.regions:
            continue
        lab = labels(region, name=agent.name, component="agent", tenant=agent.tenant, agent=agent.name)
        out.append(Pool(tenant_namespace(region, agent.tenant), agent.name, selector(lab)))
    return tuple(out)


def active_jobs_query(pool_list: Sequence[Pool]) -> str:
    """Each agent pod's active jobs: the gauge the pools' ScaledObjects sum, per (namespace, pod),
    from the pools' own PodMonitors (`job="<namespace>/<name>"`, as prometheus-operator labels
    them; `pod` and `namespace` are the target labels it adds)."""
    jobs = "|".join(f"{p.namespace}/{p.name}" for p in pool_list)  # DNS labels and "/": no regex syntax
    return f'max by (namespace, pod) ({ACTIVE_JOBS_METRIC}{{job=~"{jobs}"}})'


def controller_config(region: Region, agents: Sequence[Agent]) -> Config:
    found = pools(region, agents)
    return Config(
        prometheus_url=region.kubernetes.prometheus_url.rstrip("/"),
        query=active_jobs_query(found),
        pools=found,
        interval_seconds=INTERVAL_SECONDS,
        writes_per_second=WRITES_PER_SECOND,
        burst=BURST,
        metrics_port=METRICS_PORT,
    )


def build_deletion_cost(region: Region, agents: Sequence[Agent], *, image: str) -> list[K8sObject]:
    """The controller's objects; none when the region runs no agent pool. The Deployment runs
    `image` (the component passes the image it builds from the controller package)."""
    config = controller_config(region, agents)
    if not config.pools:
        return []
    ns = system_namespace(region)
    lab = controller_labels(region)
    src = region_source(region)
    text = config.to_json()
    objects: list[K8sObject] = [
        config_map(NAME, ns, lab, {CONFIG_FILE: text}, src),
        service_account(NAME, ns, lab, src),
    ]
    for tenant_ns in config.namespaces:
        objects += _rbac(ns, tenant_ns, lab, src)
    objects += _admission_policy(region, ns, config.namespaces, lab, src)
    disruption = pdb(NAME, ns, lab)
    disruption["metadata"]["annotations"] = dict(src)
    policy = _network_policy(region, ns, lab)
    policy["metadata"]["annotations"] = dict(src)
    objects += [_deployment(region, ns, lab, text, image), disruption, policy, pod_monitor(NAME, ns, lab, annotations=src)]
    return objects


def admission_policy_name(region: Region) -> str:
    """`<prefix>-pod-deletion-cost`: the policy is cluster-scoped, the prefix keeps regions apart."""
    return f"{region.kubernetes.namespace_prefix}-{NAME}"


def _admission_policy(region: Region, ns: str, namespaces: Sequence[str], lab: dict[str, str],
                      src: dict[str, str]) -> list[K8sObject]:
    """The API server refuses any change the controller's account makes to a pod but its
    deletion-cost annotation: `patch` on pods (RBAC's finest grain) would let it change labels,
    other annotations or a container's image. Evaluated by the API server (CEL), for that account's
    requests in the tenant namespaces only."""
    name = admission_policy_name(region)
    account = f"system:serviceaccount:{ns}:{NAME}"
    key = ANNOTATION

    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": metadata(name, None, lab, src),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"],
                                                    "resources": ["pods"]}]},
            "matchConditions": [{"name": "deletion-cost-controller", "expression": f"request.userInfo.username == '{account}'"}],
            "variables": [
                {"name": "now", "expression": "has(object.metadata.annotations) ? object.metadata.annotations : {}"},
                {"name": "was", "expression": "has(oldObject.metadata.annotations) ? oldObject.metadata.annotations : {}"},
            ],
            "validations": [
                {"expression": f"variables.now.all(k, k == '{key}' || (k in variables.was && variables.was[k] == variables.now[k]))"
                               f" && variables.was.all(k, k == '{key}' || k in variables.now)",
                 "message": f"{NAME} may change the annotation {key} only"},
                {"expression": "object.spec == oldObject.spec", "message": f"{NAME} may not change a pod's spec"},
                {"expression": "(has(object.metadata.labels) ? object.metadata.labels : {}) == "
                               "(has(oldObject.metadata.labels) ? oldObject.metadata.labels : {})",
                 "message": f"{NAME} may not change a pod's labels"},
                {"expression": "(has(object.metadata.finalizers) ? object.metadata.finalizers : []) == "
                               "(has(oldObject.metadata.finalizers) ? oldObject.metadata.finalizers : [])"
                               " && (has(object.metadata.ownerReferences) ? object.metadata.ownerReferences : []) == "
                               "(has(oldObject.metadata.ownerReferences) ? oldObject.metadata.ownerReferences : [])",
                 "message": f"{NAME} may not change a pod's finalizers or owners"},
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": metadata(name, None, lab, src),
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchExpressions": [
                {"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": sorted(namespaces)}]}},
        },
    }
    return [policy, binding]


def _rbac(ns: str, tenant_ns: str, lab: dict[str, str], src: dict[str, str]) -> list[K8sObject]:
    """List the agent pods and patch their annotation, in one tenant namespace: no get, no watch
    (each round lists), no other resource, no other namespace. (RBAC cannot narrow a patch to one
    annotation; the controller sends a merge patch of that key alone.)"""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(NAME, tenant_ns, lab, src),
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "patch"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(NAME, tenant_ns, lab, src),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": ns}],
    }
    return [role, binding]


def _deployment(region: Region, ns: str, lab: dict[str, str], config_text: str, image: str) -> K8sObject:
    container = {
        "name": "controller",
        "image": image,
        "command": ["python", "-m", "voxplane.controllers.deletion_cost", "run", "--config", f"{CONFIG_DIR}/{CONFIG_FILE}"],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        # Ready once a round has read Prometheus and the pods; alive while its loop turns.
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 10, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 20, "timeoutSeconds": 5,
                          "failureThreshold": 3},
        # Off the call path: a CPU limit throttles nobody's call (unlike the SFU's or a worker's).
        "resources": {"requests": {"cpu": "50m", "memory": "160Mi", "ephemeral-storage": EPHEMERAL_STORAGE},
                      "limits": {"cpu": "500m", "memory": "160Mi", "ephemeral-storage": EPHEMERAL_STORAGE}},
        "securityContext": {**RESTRICTED_CONTAINER, "readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
    }
    pod_spec = {
        "serviceAccountName": NAME,
        # The one platform workload that calls the API: its own account's token (bound, rotated
        # by the kubelet; the client re-reads it), and only here (the account itself mounts none).
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
        "securityContext": restricted_pod(),
        # It may patch every tenant's pods: never on a node where tenant code runs.
        **placement(region.livekit.node_pool),
        "containers": [container],
        "volumes": [{"name": "config", "configMap": {"name": NAME, "defaultMode": 0o440,
                                                     "items": [{"key": CONFIG_FILE, "path": CONFIG_FILE}]}}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(NAME, ns, lab, region_source(region)),
        "spec": {
            # One writer: a second replica would only double the API writes. While it is away the
            # costs stay as written and the ReplicaSet falls back on its other ranking rules.
            "replicas": 1,
            "selector": {"matchLabels": selector(lab)},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": dict(lab),
                             "annotations": {ANNOTATION_CONFIG_CHECKSUM: checksum(config_text), **region_source(region)}},
                "spec": pod_spec,
            },
        },
    }


def _prometheus_port(region: Region) -> int:
    url = urllib.parse.urlsplit(region.kubernetes.prometheus_url)
    return url.port or (443 if url.scheme == "https" else 80)


def _network_policy(region: Region, ns: str, lab: dict[str, str]) -> K8sObject:
    """In: Prometheus on the metrics port. Out: DNS (Prometheus' Service name), Prometheus'
    namespace on its port, and the API server's addresses (`kubernetes.api_server_cidrs`, else the
    node ranges) on 443 and 6443. No tenant pod is reachable from it."""
    api_server = [{"ipBlock": {"cidr": cidr(c)}}
                  for c in (region.kubernetes.api_server_cidrs or region.kubernetes.node_cidrs)]
    return network_policy(
        NAME, ns, lab, selector(lab),
        ingress=[rule([monitoring_peer(region)], ports(("TCP", METRICS_PORT)), direction="ingress")],
        egress=[
            dns_egress(),
            rule([monitoring_peer(region)], ports(("TCP", _prometheus_port(region))), direction="egress"),
            rule(api_server, ports(*(("TCP", p) for p in API_SERVER_PORTS)), direction="egress"),
        ],
    )
