"""The LiveKit SFU (livekit-server) of a region: config, keys, Deployment, Service, PDB, and the
firewall rules its media nodes need.

Host networking: WebRTC needs the node's own address and a UDP range Kubernetes cannot declare
(docs: "LiveKit pods require direct access to the network with host networking … limited to one
LiveKit pod per node"). On SIGTERM the server stops taking rooms and waits for participants to
leave, so pods get a long grace period (default 5 h).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..manifest.model import Region
from .common import (
    ANNOTATION_CONFIG_CHECKSUM,
    K8sObject,
    LIVEKIT_SERVICE,
    NO_MESH,
    RECOVERY_WEBHOOK_PORT,
    SecretValue,
    checksum,
    config_map,
    env_value,
    image_ref,
    metadata,
    pdb,
    platform_api_keys,
    pod_monitor,
    region_source,
    resources,
    secret,
    secret_fingerprint,
    selector,
    service,
    service_account,
    system_namespace,
)
from .media import container_security, host_port, media_pod_spec, media_strategy, sfu_labels
from .livekit_config import CONFIG_DIR, CONFIG_FILE, CONFIG_PATH, KEYS_FILE, TURN_CERT_DIR, server_config, to_yaml
from .network import anywhere_peer, dns_egress, monitoring_peer, namespace_peer, network_policy, ports, rule
from .recovery import recovery_selector
from .redis import (
    REDIS_PORT,
    redis_address,
    redis_labels,
    redis_password_env,
    redis_password_source,
)

CONFIG_MAP = "livekit-config"
KEYS_SECRET = "livekit-keys"
#: Annotation: digest of the API key *names* in the key file. The server reads the key file once
#: at start, so a new tenant key must roll the pods.
ANNOTATION_KEYS_CHECKSUM = "voxplane.io/keys-checksum"
#: The server rejects a key file whose "others" permission bits are set (ErrKeyFileIncorrectPermission).
KEY_FILE_MODE = 0o600
#: An Internet-facing rule's source.
ANYWHERE = "0.0.0.0/0"


def api_key_names(region: Region) -> list[str]:
    """The keys in the server's key file: the platform's only (admin and gateway). Tenant keys
    are the gateway's alone, so no tenant credential is accepted by the server itself."""
    return platform_api_keys()


def build_sfu(region: Region) -> list[K8sObject]:
    """ConfigMap, keys Secret, Deployment, Service, PodDisruptionBudget, NetworkPolicy and
    PodMonitor of the SFU."""
    ns = system_namespace(region)
    lab = sfu_labels(region)
    config = server_config(region, redis_address=redis_address(region))
    return [
        _config_map(region, ns, lab, config),
        _keys_secret(region, ns, lab),
        service_account(LIVEKIT_SERVICE, ns, lab, region_source(region)),
        _deployment(region, ns, lab, config),
        _service(region, ns, lab),
        pdb(LIVEKIT_SERVICE, ns, lab),
        _network_policy(region, ns, lab),
        # livekit_room_total and the node stats; a model that scales to zero wakes on the rooms.
        pod_monitor(LIVEKIT_SERVICE, ns, lab, annotations=region_source(region)),
    ]


def _network_policy(region: Region, ns: str, lab: dict[str, str]) -> K8sObject:
    """The SFU's flows. It runs with host networking, so on most CNIs no NetworkPolicy applies to
    it at all (see network.py): what is stated here holds where the CNI does apply it, and never
    closes what must stay open. The node firewall (`firewall_rules`) guards the public ports.

    In: clients from anywhere on the API/signalling port (behind the public URL's load balancer;
    the gateway and the SIP bridge use it in-cluster), the ICE/TCP port, the ICE/UDP range and, with
    TURN, its ports; Prometheus only on the metrics port. Out: UDP anywhere (media goes to each
    participant's own address and port, and STUN to public servers finds the node's external IP),
    Redis, the recovery controller's webhook port, DNS."""
    lk = region.livekit
    p = lk.ports
    public = ports(("TCP", p.http), ("TCP", p.rtc_tcp), ("UDP", p.rtc_udp.start, p.rtc_udp.end))
    if lk.turn.enabled:
        public += ports(("TCP", lk.turn.tls_port), ("UDP", lk.turn.udp_port))
    if lk.redis.mode == "in-cluster":
        redis_rule = rule([namespace_peer(ns, selector(redis_labels(region)))], ports(("TCP", REDIS_PORT)), direction="egress")
    else:
        # An external Redis is an address voxplane cannot resolve: its port, to any address.
        port = int(redis_address(region).rsplit(":", 1)[1])
        redis_rule = rule(None, ports(("TCP", port)), direction="egress")
    return network_policy(
        LIVEKIT_SERVICE, ns, lab, selector(lab),
        ingress=[
            rule([anywhere_peer()], public, direction="ingress"),
            rule([monitoring_peer(region)], ports(("TCP", p.prometheus)), direction="ingress"),
        ],
        egress=[
            rule(None, [{"protocol": "UDP"}], direction="egress"),
            redis_rule,
            # Webhooks (participants leaving rooms) to the lost-agent recovery controller.
            rule([namespace_peer(ns, recovery_selector(region))], ports(("TCP", RECOVERY_WEBHOOK_PORT)),
                 direction="egress"),
            dns_egress(),
        ],
        annotations=region_source(region),
    )


def _config_map(region: Region, ns: str, lab: dict[str, str], config: dict[str, Any]) -> K8sObject:
    return config_map(CONFIG_MAP, ns, lab, {CONFIG_FILE: to_yaml(config)}, region_source(region))


def _keys_secret(region: Region, ns: str, lab: dict[str, str]) -> K8sObject:
    return secret(KEYS_SECRET, ns, lab, {KEYS_FILE: SecretValue("livekit-keys", region.name)}, region_source(region))


def _deployment(region: Region, ns: str, lab: dict[str, str], config: dict[str, Any]) -> K8sObject:
    lk = region.livekit
    ports = lk.ports
    container_ports = [
        host_port("http", ports.http, "TCP"),
        host_port("rtc-tcp", ports.rtc_tcp, "TCP"),
        host_port("metrics", ports.prometheus, "TCP"),
    ]
    # The ICE/UDP range is not declared: Kubernetes has no port ranges; host networking is what
    # makes it reachable.
    env = list(redis_password_env(region))
    volumes: list[dict[str, Any]] = [
        {
            "name": "config",
            # Config and key file side by side in /etc/livekit; 0600 (+ group read from fsGroup)
            # leaves the "others" bits at 0 as the server requires.
            "projected": {
                "defaultMode": KEY_FILE_MODE,
                "sources": [
                    {"configMap": {"name": CONFIG_MAP, "items": [{"key": CONFIG_FILE, "path": CONFIG_FILE}]}},
                    {"secret": {"name": KEYS_SECRET, "items": [{"key": KEYS_FILE, "path": KEYS_FILE}]}},
                ],
            },
        }
    ]
    mounts: list[dict[str, Any]] = [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}]
    if lk.turn.enabled:
        container_ports += [
            host_port("turn-tls", lk.turn.tls_port, "TCP"),
            host_port("turn-udp", lk.turn.udp_port, "UDP"),
        ]
        if lk.turn.tls_secret:
            env += [
                env_value("LIVEKIT_TURN_CERT", f"{TURN_CERT_DIR}/tls.crt"),
                env_value("LIVEKIT_TURN_KEY", f"{TURN_CERT_DIR}/tls.key"),
            ]
            volumes.append({"name": "turn-tls", "secret": {"secretName": lk.turn.tls_secret, "defaultMode": 0o440}})
            mounts.append({"name": "turn-tls", "mountPath": TURN_CERT_DIR, "readOnly": True})
    health = {"httpGet": {"path": "/", "port": "http"}}
    container = {
        "name": "livekit-server",
        "image": image_ref(lk.image, lk.version, lk.digest),
        "args": ["--config", CONFIG_PATH],
        "env": env or None,
        "ports": container_ports,
        # GET / answers 200, or 406 when the node's stats are older than 4 s.
        "readinessProbe": {**health, "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 3},
        # Liveness is only "the API port accepts connections", not GET /: the stats behind GET /
        # are refreshed by a keepalive over Redis pub/sub (RedisRouter.statsWorker), so a Redis
        # outage would fail it on every node at once and the restarts would drop calls whose
        # media does not need Redis at all.
        "livenessProbe": {"tcpSocket": {"port": "http"}, "initialDelaySeconds": 10, "periodSeconds": 10,
                          "timeoutSeconds": 5, "failureThreshold": 6},
        "resources": resources(lk.resources),
        "securityContext": container_security(container_ports),
        "volumeMounts": mounts,
    }
    annotations = {
        **NO_MESH,
        ANNOTATION_CONFIG_CHECKSUM: checksum(config),
        ANNOTATION_KEYS_CHECKSUM: checksum(api_key_names(region)),
        # The key file and the Redis password derive from the root secret: rotating it rolls the pods.
        **secret_fingerprint(SecretValue("livekit-keys", region.name), redis_password_source(region)),
        **region_source(region),
    }
    pod_spec = media_pod_spec(
        lab,
        lk.node_pool,
        container,
        grace_seconds=lk.drain_seconds,
        ports=container_ports,
        volumes=volumes,
        service_account=LIVEKIT_SERVICE,
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(LIVEKIT_SERVICE, ns, lab, region_source(region)),
        "spec": {
            "replicas": lk.nodes,
            "selector": {"matchLabels": selector(lab)},
            "strategy": media_strategy(),
            "template": {"metadata": {"labels": lab, "annotations": annotations}, "spec": pod_spec},
        },
    }


def _service(region: Region, ns: str, lab: dict[str, str]) -> K8sObject:
    """The in-cluster URL (`livekit_internal_url`): agents and the SIP bridge connect here. Clients
    come in through the public URL's TLS load balancer instead."""
    ports = region.livekit.ports
    return service(LIVEKIT_SERVICE, ns, lab, [("http", ports.http), ("metrics", ports.prometheus)], region_source(region))


# --- firewall rules ----------------------------------------------------------------------------


def _rule(
    name: str, protocol: str, ports: str, sources: Sequence[str], nodes: Mapping[str, str], purpose: str
) -> dict[str, Any]:
    return {
        "name": name,
        "protocol": protocol,
        "ports": ports,
        "sources": list(sources),
        "nodes": ",".join(f"{k}={v}" for k, v in sorted(nodes.items())),
        "purpose": purpose,
    }


def firewall_rules(region: Region) -> list[dict[str, Any]]:
    """Inbound rules the region's media and SIP nodes need (data for the stack outputs; voxplane
    does not own cloud firewalls). `ports` is "N" or "start-end", `sources` CIDRs, `nodes` the node
    pool's selector as `k=v[,k=v]`."""
    lk = region.livekit
    media = lk.node_pool.selector
    anywhere = [ANYWHERE]
    rules = [
        _rule("livekit-rtc-udp", "udp", str(lk.ports.rtc_udp), anywhere, media,
              "WebRTC media (ICE/UDP); each participant uses two ports"),
        _rule("livekit-rtc-tcp", "tcp", str(lk.ports.rtc_tcp), anywhere, media,
              "WebRTC over TCP fallback; must reach the node directly, not a load balancer"),
    ]
    if lk.turn.enabled:
        rules += [
            _rule("livekit-turn-tls", "tcp", str(lk.turn.tls_port), anywhere, media,
                  "TURN/TLS for clients behind restrictive firewalls"),
            _rule("livekit-turn-udp", "udp", str(lk.turn.udp_port), anywhere, media, "TURN/UDP and STUN"),
        ]
    sip = region.sip
    if sip is not None:
        # Carriers only. With no allow-list the port is open and each trunk's allowed_addresses
        # is the only filter.
        carriers = list(sip.carrier_addresses) or anywhere
        pool = sip.node_pool.selector
        rules += [
            _rule("sip-signalling-udp", "udp", str(sip.sip_port), carriers, pool, "SIP signalling from carriers"),
            _rule("sip-signalling-tcp", "tcp", str(sip.sip_port), carriers, pool, "SIP signalling from carriers"),
            _rule("sip-rtp", "udp", str(sip.rtp_ports), carriers, pool, "RTP media of phone calls"),
        ]
    return rules
