"""The pieces every NetworkPolicy of a region shares, and the default-deny policies of the
platform's own namespaces (`<prefix>-system`, `<prefix>-inference`).

Every namespace voxplane creates denies all ingress and egress by default; each workload's own
policy then admits exactly the flows it needs (its builder says which and why): tenant agents in
tenant.py, the gateway in gateway.py, the SFU in sfu.py, the SIP bridge in sip.py, Redis in
redis.py, each model in inference.py.

Host networking. The SFU and the SIP bridge run with `hostNetwork: true`. NetworkPolicy leaves
host-network pods undefined, and in the common CNIs (Calico, Cilium, the cloud providers' own)
pod and namespace selectors never match them: their traffic is node traffic, from and to node
addresses. So (1) the policies selecting the SFU and SIP pods document and, on a CNI that does
apply them, enforce their flows, and always keep their public media and signalling open (the
node firewall, `firewall_rules` in the stack outputs, is what actually guards those ports);
(2) every rule that admits the SFU or SIP bridge as a peer names both their pods (for CNIs that
identify host-network pods) and the node address ranges (`kubernetes.node_cidrs`, for all others).

Probes: the kubelet probes pods from their own node, which the common CNIs always admit (it is not
a NetworkPolicy peer), so no policy lists the health ports for it.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence

from ..manifest.model import Region
from .common import K8sObject, inference_namespace, metadata, system_namespace

#: The label the API server puts on every namespace (its name): the one selector nobody can forge.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
#: Default when neither `kubernetes.monitoring_namespace` nor an in-cluster `prometheus_url` says.
DEFAULT_MONITORING_NAMESPACE = "monitoring"
#: "The internet": every IPv4 address except the private, link-local and shared (CGNAT) ranges.
ANYWHERE = "0.0.0.0/0"
PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"]
DEFAULT_DENY = "default-deny"


def cidr(text: str) -> str:
    """A manifest address or CIDR as an `ipBlock.cidr` (which must carry a prefix length)."""
    return text if "/" in text else f"{text}/32"


def monitoring_namespace(region: Region) -> str:
    """Where Prometheus runs: `kubernetes.monitoring_namespace`, else the namespace of an
    in-cluster `prometheus_url` (`http://<service>.<namespace>.svc…`), else `monitoring`."""
    k = region.kubernetes
    if k.monitoring_namespace:
        return k.monitoring_namespace
    host = k.prometheus_url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    parts = host.split(".")
    if len(parts) >= 3 and parts[2] == "svc":
        return parts[1]
    return DEFAULT_MONITORING_NAMESPACE


def namespace_peer(namespace: str, pod_labels: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
    """Pods of `namespace` (all of them, or those with `pod_labels`)."""
    peer: dict[str, Any] = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}
    if pod_labels is not None:
        peer["podSelector"] = {"matchLabels": dict(pod_labels)}
    return peer


def monitoring_peer(region: Region) -> dict[str, Any]:
    return namespace_peer(monitoring_namespace(region))


def node_peers(region: Region) -> list[dict[str, Any]]:
    """The node address ranges: where host-network pods (SFU, SIP bridge) are, as ipBlocks."""
    return [{"ipBlock": {"cidr": cidr(c)}} for c in region.kubernetes.node_cidrs]


def host_network_peers(region: Region, *pod_labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """Host-network pods of the system namespace as peers: by their labels (CNIs that identify
    them) and by the node ranges (every other CNI sees node addresses)."""
    system = system_namespace(region)
    return [namespace_peer(system, labels) for labels in pod_labels] + node_peers(region)


def internet_peer() -> dict[str, Any]:
    """Public addresses only: no private, link-local (cloud metadata) or shared range."""
    return {"ipBlock": {"cidr": ANYWHERE, "except": list(PRIVATE_RANGES)}}


def anywhere_peer() -> dict[str, Any]:
    return {"ipBlock": {"cidr": ANYWHERE}}


def dns_egress() -> dict[str, Any]:
    """Egress rule: cluster DNS (kube-dns / CoreDNS pods in kube-system)."""
    return {
        "to": [namespace_peer("kube-system", {"k8s-app": "kube-dns"})],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }


def ports(*entries: tuple[str, int] | tuple[str, int, int]) -> list[dict[str, Any]]:
    """NetworkPolicy ports from (protocol, port) or (protocol, start, end)."""
    out = []
    for entry in entries:
        if len(entry) == 3:
            out.append({"protocol": entry[0], "port": entry[1], "endPort": entry[2]})
        else:
            out.append({"protocol": entry[0], "port": entry[1]})
    return out


def rule(peers: Iterable[dict[str, Any]] | None, port_list: Sequence[dict[str, Any]], *, direction: str) -> dict[str, Any]:
    """One ingress (`from`) or egress (`to`) rule; `peers` None means any peer."""
    key = "from" if direction == "ingress" else "to"
    out: dict[str, Any] = {}
    if peers is not None:
        out[key] = list(peers)
    if port_list:
        out["ports"] = list(port_list)
    return out


def network_policy(
    name: str,
    namespace: str,
    object_labels: Mapping[str, str],
    pod_selector: Mapping[str, str],
    *,
    ingress: Sequence[dict[str, Any]],
    egress: Sequence[dict[str, Any]],
    annotations: Optional[Mapping[str, str]] = None,
) -> K8sObject:
    """A policy for the pods with `pod_selector` governing both directions: what `ingress` and
    `egress` do not admit is denied (an empty list admits nothing)."""
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": dict(pod_selector)},
        "policyTypes": ["Ingress", "Egress"],
    }
    if ingress:
        spec["ingress"] = list(ingress)
    if egress:
        spec["egress"] = list(egress)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(name, namespace, object_labels, annotations),
        "spec": spec,
    }


def default_deny(namespace: str, object_labels: Mapping[str, str]) -> K8sObject:
    """No ingress and no egress for any pod of `namespace` that no other policy admits."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(DEFAULT_DENY, namespace, object_labels),
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }


def build_platform_default_deny(region: Region) -> list[K8sObject]:
    """Default deny in `<prefix>-system` and `<prefix>-inference` (labels as their namespaces')."""
    from .namespaces import inference_namespace_labels, system_namespace_labels

    return [
        default_deny(system_namespace(region), system_namespace_labels(region)),
        default_deny(inference_namespace(region), inference_namespace_labels(region)),
    ]
