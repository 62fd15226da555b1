"""Who may talk to whom, asked of a real NetworkPolicy evaluator over every example region's render.

The evaluator is cyclonus' policy engine (tools/npeval: github.com/mattfenwick/cyclonus v0.5.6
pkg/matcher, the engine behind its offline `analyze --mode query-traffic`; kubernetes-sigs
network-policy-api's policy-assistant is its successor but is not served by the Go module proxy:
its module path does not match its folder). It reads the rendered NetworkPolicies as the API
server stores them and answers each flow with the NetworkPolicy API's semantics (default deny per
direction once a policy selects a pod, OR of rules, namespace and pod selectors, ipBlock/except,
named ports, endPort). No cluster and no CNI: kwok enforces nothing.

The SFU and the SIP bridge run with host networking. Most CNIs never match them with pod
selectors: their traffic comes from node addresses. Every flow that involves them is asked both
ways: as the pods (`sfu_pod`, for CNIs that identify host-network pods) and as a node address
(`node`, everyone else); both answers must be what the platform needs.

Never skipped: without Go or the module proxy the build fails the test with its reason.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import urllib.parse
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Optional

import pytest

from voxplane.deploy.render import render
from voxplane.desired.llm_router import has_router
from voxplane.manifest.servers import SERVERS

from ..support.repo import REPO
from ._helpers import REGIONS, project, region

ENSURE = REPO / "scripts" / "ensure-tool.sh"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def npeval() -> Path:
    proc = subprocess.run(["bash", str(ENSURE), "npeval", "--print-path"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        pytest.fail(f"cannot build tools/npeval ({ENSURE.name} exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return Path(proc.stdout.strip())


# --- the cluster the flows run in ------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """A traffic end: a pod (namespace, labels, address) or an address outside the pod network."""

    ip: str
    namespace: Optional[str] = None
    labels: tuple[tuple[str, str], ...] = ()

    def wire(self) -> dict[str, Any]:
        if self.namespace is None:
            return {"IP": self.ip}
        return {"IP": self.ip, "Internal": {"PodLabels": dict(self.labels), "Namespace": self.namespace,
                                            "NamespaceLabels": {"kubernetes.io/metadata.name": self.namespace}}}


def pod(namespace: str, labels: dict[str, str], ip: str) -> Peer:
    return Peer(ip, namespace, tuple(sorted(labels.items())))


#: Pod addresses: a range no example region declares as nodes (us-east's pods live there).
POD_NET = ipaddress.ip_network("100.64.0.0/16")
#: Public addresses: a client, a carrier that is not on a region's list, Hugging Face's CDN.
CLIENT = Peer("203.0.113.7")
INTERNET_HOST = Peer("198.51.100.20")


@cache
def rendered(name: str) -> list[dict[str, Any]]:
    return render(name, REPO).kubernetes


def policies(name: str) -> list[dict[str, Any]]:
    return [o for o in rendered(name) if o["kind"] == "NetworkPolicy"]


def labels_of(name: str, kind: str, namespace: str, obj_name: str) -> dict[str, str]:
    """The pod template labels of a rendered workload."""
    (obj,) = [o for o in rendered(name) if o["kind"] == kind and o["metadata"]["name"] == obj_name
              and o["metadata"]["namespace"] == namespace]
    return dict(obj["spec"]["template"]["metadata"]["labels"])


class Cluster:
    """The pods of one region's render, each with an address, plus the peers around them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.region = region(name)
        self.agents = project().agents_in(name)
        prefix = self.region.kubernetes.namespace_prefix
        self.system, self.inference = f"{prefix}-system", f"{prefix}-inference"
        hosts = POD_NET.hosts()
        self._next = lambda: str(next(hosts))
        # The SFU's (and SIP bridge's) node: an address in the first node range.
        first = self.region.kubernetes.node_cidrs[0]
        self.node = Peer(str(next(ipaddress.ip_network(first if "/" in first else f"{first}/32").hosts())))
        self.sfu_pod = pod(self.system, labels_of(name, "Deployment", self.system, "livekit"), self.node.ip)
        self.sip_pod = (pod(self.system, labels_of(name, "Deployment", self.system, "livekit-sip"), self.node.ip)
                        if self.region.sip is not None else None)
        self.gateway = pod(self.system, labels_of(name, "Deployment", self.system, "livekit-gateway"), self._next())
        self.redis = (pod(self.system, labels_of(name, "StatefulSet", self.system, "livekit-redis"), self._next())
                      if self.region.livekit.redis.mode == "in-cluster" else None)
        self.models = {m: pod(self.inference, labels_of(name, "StatefulSet", self.inference, m), self._next())
                       for m in self.region.models}
        self.agent_pods = {(a.tenant, a.name): pod(f"{prefix}-t-{a.tenant}",
                                                   labels_of(name, "Deployment", f"{prefix}-t-{a.tenant}", a.name),
                                                   self._next())
                           for a in self.agents}
        self.deletion_cost = pod(self.system, labels_of(name, "Deployment", self.system, "pod-deletion-cost"),
                                 self._next())
        # An LLM with more than one replica is reached through its router (desired/llm_router.py).
        self.routers = {m: pod(self.inference, labels_of(name, "Deployment", self.inference, f"{m}-router"), self._next())
                        for m, model in self.region.models.items() if has_router(model)}
        self.monitoring = pod("monitoring", {"app.kubernetes.io/name": "prometheus"}, self._next())
        self.dns = pod("kube-system", {"k8s-app": "kube-dns"}, self._next())
        self.stranger = pod("default", {"app": "anything"}, self._next())
        self.system_stranger = pod(self.system, {"app": "debug"}, self._next())
        self.inference_stranger = pod(self.inference, {"app": "debug"}, self._next())

    def host_network(self, which: str) -> list[Peer]:
        """Both views of a host-network component: its pod, and its node's address."""
        p = self.sfu_pod if which == "sfu" else self.sip_pod
        assert p is not None
        return [p, self.node]


def ask(binary: Path, name: str, flows: list[tuple[Peer, Peer, str, int]]) -> list[bool]:
    """Allowed? for each (source, destination, protocol, port), under the region's policies."""
    traffic = [{"Source": s.wire(), "Destination": d.wire(), "Protocol": proto, "ResolvedPort": port,
                "ResolvedPortName": ""} for s, d, proto, port in flows]
    proc = subprocess.run([str(binary)], input=json.dumps({"policies": policies(name), "traffic": traffic}),
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return [a["allowed"] for a in json.loads(proc.stdout)]


def check(binary: Path, name: str, want: list[tuple[Peer, Peer, str, int, bool, str]]) -> None:
    """Every flow answered as `want` says; the failures listed with their reason."""
    got = ask(binary, name, [(s, d, proto, port) for s, d, proto, port, _, _ in want])
    wrong = [f"{why}: {s.namespace or s.ip} -> {d.namespace or d.ip} {proto}/{port} "
             f"{'allowed' if g else 'denied'}, want {'allowed' if w else 'denied'}"
             for (s, d, proto, port, w, why), g in zip(want, got) if g != w]
    assert not wrong, f"{name}:\n" + "\n".join(wrong)


# --- the flows -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [r for r in REGIONS if region(r).livekit.redis.mode == "in-cluster"])
def test_redis_admits_only_the_sfu_and_the_sip_bridge(npeval, name):
    c = Cluster(name)
    assert c.redis is not None
    port = 6379
    want: list[tuple[Peer, Peer, str, int, bool, str]] = []
    for which in ("sfu", "sip"):
        for view in c.host_network(which):
            want.append((view, c.redis, "TCP", port, True, f"{which} reaches its Redis"))
    others = [c.gateway, c.monitoring, c.stranger, c.system_stranger, c.inference_stranger, *c.models.values(),
              *c.agent_pods.values(), CLIENT]
    want += [(o, c.redis, "TCP", port, False, "only the SFU and SIP bridge reach Redis") for o in others]
    # Redis calls no one.
    want += [(c.redis, c.dns, "UDP", 53, False, "Redis needs no egress"),
             (c.redis, INTERNET_HOST, "TCP", 443, False, "Redis needs no egress"),
             (c.redis, c.gateway, "TCP", 8080, False, "Redis needs no egress")]
    check(npeval, name, want)


@pytest.mark.parametrize("name", REGIONS)
def test_a_model_admits_only_the_agents_that_use_it_and_prometheus(npeval, name):
    c = Cluster(name)
    want: list[tuple[Peer, Peer, str, int, bool, str]] = []
    for model_name, model_pod in c.models.items():
        port = c.region.models[model_name].port
        router = c.routers.get(model_name)
        for agent in c.agents:
            uses = any(spec.model == model_name for spec in agent.inference.roles().values())
            me = c.agent_pods[(agent.tenant, agent.name)]
            if router is None:
                want.append((me, model_pod, "TCP", port, uses,
                             f"{agent.scoped_name} {'uses' if uses else 'does not use'} {model_name}"))
            else:
                want.append((me, router, "TCP", port, uses,
                             f"{agent.scoped_name} {'uses' if uses else 'does not use'} {model_name}, through its router"))
                want.append((me, model_pod, "TCP", port, False, f"{agent.scoped_name} reaches {model_name} only through its router"))
        if router is not None:
            want.append((router, model_pod, "TCP", port, True, f"the router calls {model_name}'s replicas"))
        scraped = SERVERS[c.region.models[model_name].server_name].metrics_path is not None
        want.append((c.monitoring, model_pod, "TCP", port, scraped,
                     "Prometheus scrapes the model" if scraped else "a server without metrics is not scraped"))
        for who in [*c.host_network("sfu"), *(c.host_network("sip") if c.sip_pod else []), c.gateway, c.stranger,
                    c.inference_stranger, CLIENT]:
            want.append((who, model_pod, "TCP", port, False, "neither SFU, SIP nor anyone else calls a model"))
        other_name, other = next((m, p) for m, p in c.models.items() if m != model_name)
        want += [
            (model_pod, c.dns, "UDP", 53, True, "the model server resolves names"),
            (model_pod, INTERNET_HOST, "TCP", 443, True, "weights come from Hugging Face over HTTPS"),
            (model_pod, Peer("10.1.2.3"), "TCP", 443, False, "HTTPS to public addresses only"),
            (model_pod, Peer("169.254.169.254"), "TCP", 80, False, "no cloud metadata"),
            (model_pod, other, "TCP", c.region.models[other_name].port, False, "models do not call each other"),
            *[(model_pod, a, "TCP", 9100, False, "models do not call agents") for a in c.agent_pods.values()],
        ]
    check(npeval, name, want)


@pytest.mark.parametrize("name", REGIONS)
def test_metrics_ports_admit_only_the_monitoring_namespace(npeval, name):
    c = Cluster(name)
    lk = c.region.livekit
    targets: list[tuple[Peer, int, str]] = [(c.sfu_pod, lk.ports.prometheus, "SFU"), (c.gateway, 9102, "gateway")]
    if c.sip_pod is not None:
        assert c.region.sip is not None
        targets.append((c.sip_pod, c.region.sip.prometheus_port, "SIP bridge"))
    targets += [(a, 9100, f"agent {t}/{n}") for (t, n), a in c.agent_pods.items()]
    want: list[tuple[Peer, Peer, str, int, bool, str]] = []
    for target, port, what in targets:
        want.append((c.monitoring, target, "TCP", port, True, f"Prometheus scrapes the {what}"))
        for who in [c.stranger, c.system_stranger, CLIENT, *[a for a in c.agent_pods.values() if a != target]]:
            want.append((who, target, "TCP", port, False, f"{what} metrics are Prometheus' only"))
    check(npeval, name, want)


@pytest.mark.parametrize("name", REGIONS)
def test_the_deletion_cost_controller_reaches_prometheus_and_the_api_server_only(npeval, name):
    """It reads Prometheus and patches pods through the API server; no tenant pod is reachable from
    it (it never reads a worker directly), and nothing but Prometheus reaches it."""
    c = Cluster(name)
    me = c.deletion_cost
    k = c.region.kubernetes
    first = (k.api_server_cidrs or k.node_cidrs)[0]
    api_server = Peer(str(next(ipaddress.ip_network(first if "/" in first else f"{first}/32").hosts())))
    want: list[tuple[Peer, Peer, str, int, bool, str]] = [
        (me, c.dns, "UDP", 53, True, "it resolves Prometheus' Service name"),
        (me, c.monitoring, "TCP", urllib.parse.urlsplit(c.region.kubernetes.prometheus_url).port or 80, True,
         "it queries Prometheus (the port of the region's prometheus_url)"),
        (me, api_server, "TCP", 443, True, "it lists and patches pods (the kubernetes Service's port)"),
        (me, api_server, "TCP", 6443, True, "it lists and patches pods (kube-apiserver's own port)"),
        (me, api_server, "TCP", 22, False, "the API server's ports only"),
        (me, INTERNET_HOST, "TCP", 443, False, "nothing outside the cluster"),
        (me, Peer("169.254.169.254"), "TCP", 80, False, "no cloud metadata"),
        (me, c.gateway, "TCP", 8080, False, "it never talks to LiveKit"),
        *[(me, a, "TCP", port, False, "it reads no worker directly") for a in c.agent_pods.values()
          for port in (8081, 9100)],
        (c.monitoring, me, "TCP", 9103, True, "Prometheus scrapes its metrics"),
        *[(who, me, "TCP", 9103, False, "its metrics are Prometheus' only")
          for who in [c.stranger, c.system_stranger, CLIENT, *c.agent_pods.values()]],
    ]
    check(npeval, name, want)


@pytest.mark.parametrize("name", REGIONS)
def test_public_media_and_signalling_stay_open(npeval, name):
    """The SFU's and SIP bridge's public ports, where a CNI does apply policies to them."""
    c = Cluster(name)
    lk = c.region.livekit
    p = lk.ports
    want: list[tuple[Peer, Peer, str, int, bool, str]] = [
        (CLIENT, c.sfu_pod, "TCP", p.http, True, "clients' signalling (through the load balancer)"),
        (CLIENT, c.sfu_pod, "TCP", p.rtc_tcp, True, "ICE/TCP"),
        (CLIENT, c.sfu_pod, "UDP", p.rtc_udp.start, True, "ICE/UDP range start"),
        (CLIENT, c.sfu_pod, "UDP", p.rtc_udp.end, True, "ICE/UDP range end"),
        (c.gateway, c.sfu_pod, "TCP", p.http, True, "the gateway forwards to livekit-server"),
        (c.gateway, c.node, "TCP", p.http, True, "the gateway forwards to livekit-server (node view)"),
        (c.gateway, INTERNET_HOST, "TCP", p.http, False, "the gateway reaches only the SFU"),
        (c.sfu_pod, CLIENT, "UDP", 61234, True, "media to each participant's own port"),
        (c.sfu_pod, c.dns, "UDP", 53, True, "the SFU resolves names"),
        (c.sfu_pod, INTERNET_HOST, "TCP", 443, False, "the SFU calls nothing over TCP but Redis"),
    ]
    if lk.turn.enabled:
        want += [(CLIENT, c.sfu_pod, "TCP", lk.turn.tls_port, True, "TURN/TLS"),
                 (CLIENT, c.sfu_pod, "UDP", lk.turn.udp_port, True, "TURN/UDP")]
    sip = c.region.sip
    if sip is not None and c.sip_pod is not None:
        carriers = [Peer(a.split("/")[0]) for a in sip.carrier_addresses] or [CLIENT]
        for carrier in carriers:
            want += [(carrier, c.sip_pod, "UDP", sip.sip_port, True, "SIP/UDP from a carrier"),
                     (carrier, c.sip_pod, "TCP", sip.sip_port, True, "SIP/TCP from a carrier"),
                     (carrier, c.sip_pod, "UDP", sip.rtp_ports.start, True, "RTP from a carrier")]
        if sip.carrier_addresses:
            want.append((CLIENT, c.sip_pod, "UDP", sip.sip_port, False, "SIP only from the listed carriers"))
        want += [(c.sip_pod, c.sfu_pod, "TCP", lk.ports.http, True, "the bridge joins rooms"),
                 (c.sip_pod, c.node, "TCP", lk.ports.http, True, "the bridge joins rooms (node view)"),
                 (c.sip_pod, CLIENT, "UDP", 40002, True, "RTP to a carrier's media port")]
    check(npeval, name, want)


@pytest.mark.parametrize("name", REGIONS)
def test_tenant_media_goes_to_the_sfu_nodes_only(npeval, name):
    """Agents send media to the SFU at its node addresses (and pods), never to the internet; no
    STUN or TURN, no SFU API port (only through the gateway)."""
    c = Cluster(name)
    p = c.region.livekit.ports
    want: list[tuple[Peer, Peer, str, int, bool, str]] = []
    for agent in c.agent_pods.values():
        for sfu in c.host_network("sfu"):
            want += [(agent, sfu, "UDP", p.rtc_udp.start, True, "media to the SFU"),
                     (agent, sfu, "UDP", p.rtc_udp.end, True, "media to the SFU"),
                     (agent, sfu, "TCP", p.rtc_tcp, True, "ICE/TCP to the SFU"),
                     (agent, sfu, "TCP", p.http, False, "the SFU API only through the gateway"),
                     (agent, sfu, "TCP", p.prometheus, False, "not the SFU metrics")]
        want += [(agent, INTERNET_HOST, "UDP", p.rtc_udp.start, False, "no media to the internet"),
                 (agent, INTERNET_HOST, "TCP", p.rtc_tcp, False, "no ICE/TCP to the internet"),
                 (agent, INTERNET_HOST, "UDP", 3478, False, "no STUN/TURN"),
                 (agent, INTERNET_HOST, "UDP", 19302, False, "no STUN"),
                 (agent, c.gateway, "TCP", 8080, True, "signalling through the gateway"),
                 (agent, c.dns, "UDP", 53, True, "DNS"),
                 (agent, c.stranger, "TCP", 80, False, "nothing else in the cluster")]
    check(npeval, name, want)


@pytest.mark.parametrize("name", REGIONS)
def test_platform_namespaces_deny_by_default(npeval, name):
    c = Cluster(name)
    want: list[tuple[Peer, Peer, str, int, bool, str]] = []
    for ns_pod in (c.system_stranger, c.inference_stranger):
        want += [(c.stranger, ns_pod, "TCP", 8080, False, "default deny: ingress"),
                 (c.monitoring, ns_pod, "TCP", 8080, False, "default deny: ingress"),
                 (ns_pod, INTERNET_HOST, "TCP", 443, False, "default deny: egress"),
                 (ns_pod, c.dns, "UDP", 53, False, "default deny: egress")]
    check(npeval, name, want)


# --- where the peers come from ---------------------------------------------------------------------


def test_monitoring_namespace_is_declared_or_follows_prometheus_url():
    """`kubernetes.monitoring_namespace`, else an in-cluster prometheus_url's namespace, else monitoring."""
    import dataclasses

    from voxplane.desired.network import monitoring_namespace

    r = region("us-east")

    def with_k8s(**changes):
        return dataclasses.replace(r, kubernetes=dataclasses.replace(r.kubernetes, **changes))

    assert monitoring_namespace(r) == "monitoring"  # http://prometheus-operated.monitoring.svc:9090
    assert monitoring_namespace(with_k8s(prometheus_url="http://prom.observability.svc.cluster.local:9090")) == "observability"
    assert monitoring_namespace(with_k8s(prometheus_url="https://prometheus.example.com")) == "monitoring"
    assert monitoring_namespace(with_k8s(prometheus_url="http://prom.observability.svc:9090",
                                         monitoring_namespace="metrics")) == "metrics"


def test_metrics_follow_the_monitoring_namespace():
    """Moving Prometheus moves every metrics rule with it (a region whose prometheus_url is elsewhere)."""
    import dataclasses

    from voxplane.desired.gateway import build_gateway
    from voxplane.desired.sfu import build_sfu
    from voxplane.desired.tenant import build_tenant

    r = region("us-east")
    moved = dataclasses.replace(r, kubernetes=dataclasses.replace(
        r.kubernetes, prometheus_url="http://prom.observability.svc:9090"))
    agents = project().agents_in("us-east")
    objs = build_sfu(moved) + build_gateway(moved, agents, image="") + [
        o for t in moved.tenants.values() for o in build_tenant(moved, t, [a for a in agents if a.tenant == t.name])]
    nps = [o for o in objs if o["kind"] == "NetworkPolicy"]
    texts = json.dumps(nps)
    assert '"kubernetes.io/metadata.name": "observability"' in texts
    assert '"kubernetes.io/metadata.name": "monitoring"' not in texts


def test_node_addresses_become_ipblocks():
    from voxplane.desired.network import cidr, node_peers

    assert cidr("10.1.2.3") == "10.1.2.3/32" and cidr("10.0.0.0/8") == "10.0.0.0/8"
    assert node_peers(region("us-east")) == [{"ipBlock": {"cidr": c}} for c in
                                             ["10.40.0.0/20", "10.40.16.0/20", "10.40.32.0/20"]]
    # The default: every private range (regions/local.yaml sets none).
    assert [p["ipBlock"]["cidr"] for p in node_peers(region("local"))] == ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
