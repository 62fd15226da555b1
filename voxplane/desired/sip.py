"""The LiveKit SIP bridge (livekit-sip) of a region: config, API credentials, Deployment and PDB.

livekit-sip needs host networking ("The container must be run with host networking enabled",
5060 plus a wide RTP range), the same Redis as its SFU (they talk psrpc over it), and a long grace
period: on SIGTERM it waits, without limit, for calls in progress to finish.
"""

from __future__ import annotations

from typing import Any

from ..manifest.model import Region
from .common import (
    ADMIN_KEY,
    ANNOTATION_CONFIG_CHECKSUM,
    K8sObject,
    NO_MESH,
    SecretValue,
    checksum,
    config_map,
    env_secret,
    image_ref,
    livekit_internal_url,
    metadata,
    pdb,
    pod_monitor,
    region_source,
    resources,
    scratch_volume,
    secret,
    secret_fingerprint,
    selector,
    service_account,
    system_namespace,
)
from .media import SIP_NAME, container_security, host_port, media_pod_spec, media_strategy, sfu_selector, sip_labels
from .livekit_config import CONFIG_FILE, sip_config, to_json, to_yaml
from .network import anywhere_peer, cidr, dns_egress, host_network_peers, monitoring_peer, namespace_peer, network_policy, ports, rule
from .redis import (
    REDIS_PORT,
    has_password,
    redis_address,
    redis_labels,
    redis_password_env,
    redis_password_ref,
    redis_password_source,
)

CONFIG_MAP = "livekit-sip-config"
API_SECRET = "livekit-sip-api"
#: cmd/livekit-sip/main.go: `--config-body` / SIP_CONFIG_BODY wins over `--config` (the image's
#: entrypoint passes --config=/sip/config.yaml), so no file needs to be mounted.
CONFIG_BODY_ENV = "SIP_CONFIG_BODY"


def sip_uri(region: Region) -> str:
    """Where carriers send INVITEs."""
    sip = region.sip
    assert sip is not None
    return f"sip:{sip.public_host}:{sip.sip_port}"


def build_sip(region: Region) -> list[K8sObject]:
    """ConfigMap, API Secret, Deployment, PodDisruptionBudget, NetworkPolicy and PodMonitor;
    nothing without a `sip` section."""
    if region.sip is None:
        return []
    ns = system_namespace(region)
    lab = sip_labels(region)
    config = sip_config(
        region,
        redis_address=redis_address(region),
        ws_url=livekit_internal_url(region),
        redis_password=redis_password_ref(region),
    )
    return [
        _config_map(region, ns, lab, config),
        _api_secret(region, ns, lab),
        service_account(SIP_NAME, ns, lab, region_source(region)),
        _deployment(region, ns, lab, config),
        pdb(SIP_NAME, ns, lab),
        _network_policy(region, ns, lab),
        pod_monitor(SIP_NAME, ns, lab, annotations=region_source(region)),
    ]


def _network_policy(region: Region, ns: str, lab: dict[str, str]) -> K8sObject:
    """The SIP bridge's flows. Host networking, as the SFU: most CNIs apply no NetworkPolicy to it
    (see network.py); the node firewall (`firewall_rules`) guards the carrier ports.

    In: SIP signalling (UDP and TCP) and RTP from the carriers (`sip.carrier_addresses`; from
    anywhere when the region lists none, each trunk's allowed_addresses being the filter then);
    Prometheus only on the metrics port. Out: UDP anywhere (RTP to the carriers' media addresses,
    WebRTC media to the SFU, STUN for the external address), livekit-server's API port, Redis,
    DNS."""
    sip = region.sip
    assert sip is not None
    carriers = [{"ipBlock": {"cidr": cidr(c)}} for c in sip.carrier_addresses] or [anywhere_peer()]
    lk = region.livekit
    if lk.redis.mode == "in-cluster":
        redis_rule = rule([namespace_peer(ns, selector(redis_labels(region)))], ports(("TCP", REDIS_PORT)), direction="egress")
    else:
        port = int(redis_address(region).rsplit(":", 1)[1])
        redis_rule = rule(None, ports(("TCP", port)), direction="egress")
    return network_policy(
        SIP_NAME, ns, lab, selector(lab),
        ingress=[
            rule(carriers, ports(("UDP", sip.sip_port), ("TCP", sip.sip_port),
                                 ("UDP", sip.rtp_ports.start, sip.rtp_ports.end)), direction="ingress"),
            rule([monitoring_peer(region)], ports(("TCP", sip.prometheus_port)), direction="ingress"),
        ],
        egress=[
            rule(None, [{"protocol": "UDP"}], direction="egress"),
            rule(host_network_peers(region, sfu_selector(region)), ports(("TCP", lk.ports.http)), direction="egress"),
            redis_rule,
            dns_egress(),
        ],
        annotations=region_source(region),
    )


def _config_map(region: Region, ns: str, lab: dict[str, str], config: dict[str, Any]) -> K8sObject:
    return config_map(CONFIG_MAP, ns, lab, {CONFIG_FILE: to_yaml(config)}, region_source(region))


def _api_secret(region: Region, ns: str, lab: dict[str, str]) -> K8sObject:
    """The platform's admin key: the bridge asks the server to authorize and dispatch each call."""
    return secret(
        API_SECRET, ns, lab,
        {"LIVEKIT_API_KEY": ADMIN_KEY, "LIVEKIT_API_SECRET": SecretValue("livekit-secret", ADMIN_KEY)},
        region_source(region),
    )


def _config_body_env(region: Region, config: dict[str, Any]) -> list[dict[str, Any]]:
    if not has_password(region):
        return [{"name": CONFIG_BODY_ENV, "valueFrom": {"configMapKeyRef": {"name": CONFIG_MAP, "key": CONFIG_FILE}}}]
    # livekit-sip reads the Redis password only from its config. The kubelet expands
    # $(REDIS_PASSWORD) (declared just before) in an inline value, never in a configMapKeyRef, so
    # the body is inline here; it holds the reference, not the password. JSON quotes the value.
    return redis_password_env(region) + [{"name": CONFIG_BODY_ENV, "value": to_json(config)}]


def _deployment(region: Region, ns: str, lab: dict[str, str], config: dict[str, Any]) -> K8sObject:
    sip = region.sip
    assert sip is not None
    ports = [
        host_port("sip-udp", sip.sip_port, "UDP"),
        host_port("sip-tcp", sip.sip_port, "TCP"),
        host_port("health", sip.health_port, "TCP"),
        host_port("metrics", sip.prometheus_port, "TCP"),
    ]
    container = {
        "name": SIP_NAME,
        "image": image_ref(sip.image, sip.version, sip.digest),
        "env": [
            env_secret("LIVEKIT_API_KEY", API_SECRET, "LIVEKIT_API_KEY"),
            env_secret("LIVEKIT_API_SECRET", API_SECRET, "LIVEKIT_API_SECRET"),
            *_config_body_env(region, config),
        ],
        "ports": ports,
        # GET / on the health port: 200 ready, 429 over max_cpu_utilization, 503 starting or
        # stopping. Busy or draining means "send no new calls here": readiness only. There is
        # deliberately no livenessProbe: 429/503 under load would restart a pod carrying calls.
        "readinessProbe": {"httpGet": {"path": "/", "port": "health"}, "periodSeconds": 5, "timeoutSeconds": 3,
                           "failureThreshold": 2},
        "resources": resources(sip.resources),
        "securityContext": container_security(ports),
        # Read-only root filesystem; scratch space for anything the process writes.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    annotations = {
        **NO_MESH,
        ANNOTATION_CONFIG_CHECKSUM: checksum(config),
        # Its API secret and the Redis password derive from the root secret: rotating it rolls the pods.
        **secret_fingerprint(SecretValue("livekit-secret", ADMIN_KEY), redis_password_source(region)),
        **region_source(region),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(SIP_NAME, ns, lab, region_source(region)),
        "spec": {
            "replicas": sip.replicas,
            "selector": {"matchLabels": selector(lab)},
            "strategy": media_strategy(),
            "template": {
                "metadata": {"labels": lab, "annotations": annotations},
                # SIGTERM: stop taking outbound calls, wait for active calls to end (no timeout);
                # the grace period bounds it. Inbound INVITEs are still accepted while draining
                # (livekit/sip#764): take the node out of carrier routing before a rollout.
                "spec": media_pod_spec(lab, sip.node_pool, container, grace_seconds=sip.drain_seconds, ports=ports,
                                       volumes=[scratch_volume("tmp", sip.resources.ephemeral_storage)],
                                       service_account=SIP_NAME),
            },
        },
    }
