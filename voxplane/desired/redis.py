"""The Redis of a region's LiveKit deployment.

One Redis per LiveKit deployment, never shared: psrpc pub/sub channels are not separated by
database index, so two deployments on one Redis receive each other's messages (livekit PR #4767,
issue #1777). Standalone, not Redis Cluster (CROSSSLOT errors on deletes, livekit #3654).
livekit-server and livekit-sip both use it (SIP needs it: the SIP API and session state live there).
"""

from __future__ import annotations

from typing import Any, Optional

from ..manifest.model import Region
from .common import (
    K8sObject,
    RESTRICTED_CONTAINER,
    SecretValue,
    config_map,
    env_secret,
    labels,
    metadata,
    placement,
    prune,
    region_source,
    scratch_volume,
    secret,
    secret_fingerprint,
    selector,
    service,
    service_account,
    service_host,
    system_namespace,
)
from .livekit_config import REDIS_PASSWORD_ENV, REDIS_PASSWORD_REF
from .media import LABEL_LIVEKIT, LIVEKIT_DEPLOYMENT, sfu_selector, sip_selector
from .network import host_network_peers, network_policy, ports, rule

REDIS_NAME = "livekit-redis"
REDIS_PORT = 6379
#: The governing (headless) Service of the StatefulSet; clients use the ClusterIP Service.
REDIS_HEADLESS = f"{REDIS_NAME}-headless"
#: Secret holding the password: the in-cluster Redis's own (derived from the stack's root secret),
#: or an external Redis's when it comes from stack config.
REDIS_AUTH_SECRET = f"{REDIS_NAME}-auth"
#: Name the in-cluster Redis password is derived under (see voxplane/livekit/keys.py).
REDIS_DERIVED_SECRET = "redis"
#: uid/gid Redis runs as: no host account (the image's own `redis` user, 999, is a host system
#: account on many distributions). The official image runs any uid: its entrypoint skips the chown
#: and the user switch when not root, and the data volume is writable through fsGroup.
REDIS_UID = 10001
#: The server's settings (no secret): a ConfigMap mounted at CONFIG_DIR.
CONFIG_MAP = f"{REDIS_NAME}-config"
CONFIG_DIR = "/etc/redis"
CONFIG_FILE = "redis.conf"
#: The password's own config file, written at start into a memory-backed volume (never disk) and
#: included by redis.conf: `requirepass` there, not on the command line, where `ps` and the pod
#: spec would show it.
AUTH_DIR = "/run/redis"
AUTH_FILE = f"{AUTH_DIR}/auth.conf"
#: Local disk of the container: logs only (the data is on its volume).
EPHEMERAL_STORAGE = "256Mi"


def redis_labels(region: Region) -> dict[str, str]:
    lab = labels(region, name=REDIS_NAME, component="redis")
    lab[LABEL_LIVEKIT] = LIVEKIT_DEPLOYMENT
    return lab


def redis_address(region: Region) -> str:
    """host:port livekit-server and livekit-sip connect to."""
    redis = region.livekit.redis
    if redis.mode == "external":
        if not redis.address:
            raise ValueError(f"region {region.name}: external redis needs an address")
        return redis.address
    return f"{service_host(region, REDIS_NAME, system_namespace(region))}:{REDIS_PORT}"


def has_password(region: Region) -> bool:
    """The in-cluster Redis always requires a password; an external one when the region names one."""
    return region.livekit.redis.mode == "in-cluster" or region.livekit.redis.password is not None


def redis_password_source(region: Region) -> Optional[SecretValue]:
    """The Redis password as voxplane declares it (derived from the root secret, or a stack config
    secret); None when there is none or it lives in a Secret voxplane does not write."""
    redis = region.livekit.redis
    if redis.password is not None:
        return SecretValue("config", redis.password.config) if redis.password.config else None
    return SecretValue("derived", REDIS_DERIVED_SECRET) if redis.mode == "in-cluster" else None


def redis_password_env(region: Region, name: str = REDIS_PASSWORD_ENV) -> list[dict[str, Any]]:
    """`REDIS_PASSWORD` (or `name`) from a Secret when the Redis has a password (else empty)."""
    ref = region.livekit.redis.password
    if not has_password(region):
        return []
    if ref is not None and ref.secret:
        return [env_secret(name, ref.secret, ref.key or "password")]
    return [env_secret(name, REDIS_AUTH_SECRET, "password")]


def build_redis(region: Region) -> list[K8sObject]:
    """In-cluster mode: a persistent single-replica StatefulSet plus its Services. External mode:
    only a Secret when the password comes from stack config (nothing when it is an existing Secret)."""
    redis = region.livekit.redis
    ns = system_namespace(region)
    lab = redis_labels(region)
    objects: list[K8sObject] = []
    if redis.password is not None and redis.password.config:
        objects.append(_auth_secret(region, ns, lab, SecretValue("config", redis.password.config)))
    elif redis.password is None and redis.mode == "in-cluster":
        # Not reachable from tenant namespaces (default-deny egress), but any other workload in
        # the cluster could talk to an open Redis and rewrite trunks or rooms: require a password.
        objects.append(_auth_secret(region, ns, lab, SecretValue("derived", REDIS_DERIVED_SECRET)))
    if redis.mode == "in-cluster":
        objects += [
            _config_map(region, ns, lab),
            service_account(REDIS_NAME, ns, lab, region_source(region)),
            _headless_service(region, ns, lab),
            _service(region, ns, lab),
            _statefulset(region, ns, lab),
            _network_policy(region, ns, lab),
        ]
    return objects


def _network_policy(region: Region, ns: str, lab: dict[str, str]) -> K8sObject:
    """In: the SFU and the SIP bridge only, on the Redis port. Both run with host networking, so
    they are admitted as pods (CNIs that identify host-network pods) and as node addresses
    (`kubernetes.node_cidrs`, every other CNI); nothing else in the cluster reaches Redis, and the
    password stays required on top. Out: nothing (Redis calls no one, not even DNS)."""
    clients = [sfu_selector(region)] + ([sip_selector(region)] if region.sip is not None else [])
    return network_policy(
        REDIS_NAME, ns, lab, selector(lab),
        ingress=[rule(host_network_peers(region, *clients), ports(("TCP", REDIS_PORT)), direction="ingress")],
        egress=[],
        annotations=region_source(region),
    )


def _auth_secret(region: Region, ns: str, lab: dict[str, str], password: SecretValue) -> K8sObject:
    return secret(REDIS_AUTH_SECRET, ns, lab, {"password": password}, region_source(region))


def _headless_service(region: Region, ns: str, lab: dict[str, str]) -> K8sObject:
    return service(REDIS_HEADLESS, ns, lab, [("redis", REDIS_PORT)], region_source(region), headless=True)


def _service(region: Region, ns: str, lab: dict[str, str]) -> K8sObject:
    """A stable virtual IP: a restarted Redis pod gets a new IP, the address stays."""
    return service(REDIS_NAME, ns, lab, [("redis", REDIS_PORT)], region_source(region))


def redis_conf(region: Region) -> str:
    """redis.conf of the in-cluster Redis: no secret in it (the password is included from AUTH_FILE)."""
    lines = [
        f"port {REDIS_PORT}",
        "dir /data",
        # Room and SIP state (trunks, dispatch rules) survive a restart.
        "appendonly yes",
        # The only clients are the SFU and the SIP bridge (NetworkPolicy), and they authenticate.
        "protected-mode no",
    ]
    if has_password(region):
        lines.append(f"include {AUTH_FILE}")
    return "\n".join(lines) + "\n"


def _config_map(region: Region, ns: str, lab: dict[str, str]) -> K8sObject:
    return config_map(CONFIG_MAP, ns, lab, {CONFIG_FILE: redis_conf(region)}, region_source(region))


#: Where the password's Secret is mounted (key `password`), readable by the Redis group only.
SECRET_DIR = "/run/secrets/redis"
PASSWORD_FILE = f"{SECRET_DIR}/password"
#: Writes AUTH_FILE from the mounted password and starts the server on the config: sed reads the
#: file, so no process has the password in its arguments and no container has it in its
#: environment. Quotes and backslashes are escaped for the config parser (sdssplitargs).
START_SCRIPT = f"""set -eu
umask 077
sed 's/[\\\\"]/\\\\&/g; s/^/requirepass "/; s/$/"/' {PASSWORD_FILE} > {AUTH_FILE}
exec redis-server {CONFIG_DIR}/{CONFIG_FILE}
"""
#: Readiness: redis-cli exits 0 even when Redis answers an error (-LOADING while it replays the
#: append-only file, -NOAUTH), so the reply itself is checked. The password reaches redis-cli as
#: REDISCLI_AUTH, set for that one process from the mounted file (backquotes: the kubelet would
#: try to expand a `$(...)` as a variable reference).
PING_WITH_PASSWORD = (f"REDISCLI_AUTH=\"`cat {PASSWORD_FILE}`\" redis-cli -p {REDIS_PORT} ping | grep -q PONG")
PING = f"redis-cli -p {REDIS_PORT} ping | grep -q PONG"


def _password_volume(region: Region) -> dict[str, Any]:
    """The Secret holding the password, as a file `password`: voxplane's own (derived, or from
    stack config) or the one the region names."""
    ref = region.livekit.redis.password
    name, key = (ref.secret, ref.key or "password") if ref is not None and ref.secret else (REDIS_AUTH_SECRET, "password")
    # 0440: the pod's fsGroup (the redis group) reads it, nobody else.
    return {"name": "password", "secret": {"secretName": name, "items": [{"key": key, "path": "password"}],
                                           "defaultMode": 0o440}}


def _statefulset(region: Region, ns: str, lab: dict[str, str]) -> K8sObject:
    redis = region.livekit.redis
    pvc_spec = prune(
        {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": region.kubernetes.storage_class,
            "resources": {"requests": {"storage": redis.storage}},
        }
    )
    mounts = [
        {"name": "data", "mountPath": "/data"},
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
    ]
    volumes: list[dict[str, Any]] = [{"name": "config", "configMap": {"name": CONFIG_MAP}}]
    if has_password(region):
        command = ["sh", "-c", START_SCRIPT]
        ping: dict[str, Any] = {"exec": {"command": ["sh", "-c", PING_WITH_PASSWORD]}}
        mounts += [{"name": "password", "mountPath": SECRET_DIR, "readOnly": True},
                   {"name": "auth", "mountPath": AUTH_DIR}]
        volumes += [_password_volume(region), scratch_volume("auth", "1Mi", memory=True)]
    else:
        command = ["redis-server", f"{CONFIG_DIR}/{CONFIG_FILE}"]
        ping = {"exec": {"command": ["sh", "-c", PING]}}
    container: dict[str, Any] = {
        "name": "redis",
        "image": redis.image,
        # Not the image's entrypoint (it only chowns /data when started as root, which this pod
        # never is): the command writes the password's config file, then execs redis-server.
        # No password in the environment or on any command line.
        "command": command,
        "ports": [{"name": "redis", "containerPort": REDIS_PORT, "protocol": "TCP"}],
        "readinessProbe": {**ping, "periodSeconds": 5, "timeoutSeconds": 2},
        "livenessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 10, "failureThreshold": 6},
        "resources": {
            "requests": {"cpu": "250m", "memory": "512Mi", "ephemeral-storage": EPHEMERAL_STORAGE},
            "limits": {"memory": "1Gi", "ephemeral-storage": EPHEMERAL_STORAGE},
        },
        "securityContext": {**RESTRICTED_CONTAINER, "readOnlyRootFilesystem": True},
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(REDIS_NAME, ns, lab, region_source(region)),
        "spec": {
            "serviceName": REDIS_HEADLESS,
            "replicas": 1,
            "selector": {"matchLabels": selector(lab)},
            "template": {
                # A new password (a rotated root secret) restarts Redis with it.
                "metadata": prune({"labels": lab, "annotations": secret_fingerprint(redis_password_source(region)) or None}),
                "spec": {
                    # Its own ServiceAccount, no API token: Redis never calls the Kubernetes API.
                    "serviceAccountName": REDIS_NAME,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    # On the SFU's media pool, next to its main client and never on a node that
                    # runs tenant code: Redis holds every tenant's rooms and routing.
                    **placement(region.livekit.node_pool),
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": REDIS_UID,
                        "runAsGroup": REDIS_UID,
                        "fsGroup": REDIS_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": volumes,
                },
            },
            "volumeClaimTemplates": [
                {"metadata": {"name": "data", "labels": lab}, "spec": pvc_spec},
            ],
        },
    }


def redis_password_ref(region: Region) -> Optional[str]:
    """The `$(REDIS_PASSWORD)` reference for configs that cannot read the variable themselves."""
    return REDIS_PASSWORD_REF if has_password(region) else None
