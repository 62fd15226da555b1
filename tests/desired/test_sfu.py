"""The SFU (livekit-server), its Redis and the region's firewall rules: builder facts for every
example region, the config against the real server's strict parser, and LiveKitSFU under mocks."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from typing import Any

import pulumi
import pytest

from voxplane.dev.livekit import ensure_livekit_binary
import yaml

from voxplane.components.secrets import SecretResolver
from voxplane.components.sfu import LiveKitSFU, LiveKitSFUArgs
from voxplane.desired.common import (
    ADMIN_KEY,
    ANNOTATION_CONFIG_CHECKSUM,
    ANNOTATION_SOURCE,
    GATEWAY_KEY,
    NO_MESH,
    RECOVERY_KEY,
    SecretValue,
    checksum,
    livekit_internal_url,
    walk_secret_values,
)
from voxplane.desired.livekit_config import server_config
from voxplane.desired.media import LABEL_LIVEKIT
from voxplane.desired.redis import build_redis, redis_address, redis_password_ref
from voxplane.desired.sfu import ANNOTATION_KEYS_CHECKSUM, api_key_names, build_sfu, firewall_rules
from voxplane.manifest.model import Region, SecretRef

from ._helpers import REGIONS, by_kind_and_name, by_name, desired, region, validate_strict


def objects(r: Region) -> dict[tuple[str, str], dict[str, Any]]:
    return by_kind_and_name(build_sfu(r) + build_redis(r))


def deployment(r: Region) -> dict[str, Any]:
    return objects(r)[("Deployment", "livekit")]


def pod(r: Region) -> dict[str, Any]:
    return deployment(r)["spec"]["template"]["spec"]


def container(r: Region) -> dict[str, Any]:
    (c,) = pod(r)["containers"]
    return c


def env(r: Region) -> dict[str, dict[str, Any]]:
    return by_name(container(r).get("env", []))


def with_livekit(r: Region, **changes: Any) -> Region:
    return dataclasses.replace(r, livekit=dataclasses.replace(r.livekit, **changes))


# --- every object ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REGIONS)
def test_every_object_passes_strict_schema(name):
    """Every SFU and Redis object is a valid Kubernetes 1.34 object (strict: no unknown fields)."""
    for obj in objects(region(name)).values():
        validate_strict(obj)


@pytest.mark.parametrize("name", REGIONS)
def test_every_object_is_owned_and_sourced(name):
    """Objects carry managed-by/part-of, the LiveKit deployment label and the region file as source."""
    r = region(name)
    for obj in objects(r).values():
        meta = obj["metadata"]
        assert meta["namespace"] == "vox-system"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "voxplane"
        assert meta["labels"]["app.kubernetes.io/part-of"] == name
        assert meta["labels"][LABEL_LIVEKIT] == "livekit"
        if obj["kind"] != "PodDisruptionBudget":
            assert meta["annotations"][ANNOTATION_SOURCE] == f"regions/{name}.yaml"


# --- config ------------------------------------------------------------------------------------


def test_server_config_us_east_exact():
    """The config holds exactly the keys verified in livekit-server v1.13 (prometheus.port, logging.level, key_file,
    webhook: protocol webhook.WebHookConfig's urls, api_key, filter_params.include_events)."""
    cfg = server_config(region("us-east"), redis_address="livekit-redis.vox-system.svc.cluster.local:6379")
    assert cfg == {
        "port": 7880,
        "rtc": {"tcp_port": 7881, "port_range_start": 50000, "port_range_end": 60000, "use_external_ip": True,
                "advertise_internal_ip": True},
        "redis": {"address": "livekit-redis.vox-system.svc.cluster.local:6379"},
        "region": "us-east",
        "prometheus": {"port": 6789},
        "logging": {"level": "info"},
        "turn": {"enabled": True, "domain": "turn.us-east.voice.example.com", "tls_port": 5349, "udp_port": 3478},
        "room": {"empty_timeout": 300, "departure_timeout": 20},
        "key_file": "/etc/livekit/keys.yaml",
        "webhook": {"api_key": "vx-recovery",
                    "urls": ["http://agent-recovery.vox-system.svc.cluster.local:8080/webhook"],
                    "filter_params": {"include_events": ["participant_connection_aborted", "participant_joined",
                                                         "participant_left"]}},
    }


@pytest.mark.parametrize("name", REGIONS)
def test_config_map_is_the_config_without_secrets(name):
    """ConfigMap livekit-config holds the config as YAML: key_file only, no keys, no secrets, no password."""
    r = region(name)
    cm = objects(r)[("ConfigMap", "livekit-config")]
    text = cm["data"]["config.yaml"]
    assert yaml.safe_load(text) == server_config(r, redis_address=redis_address(r))
    parsed = yaml.safe_load(text)
    assert "keys" not in parsed and parsed["key_file"] == "/etc/livekit/keys.yaml"
    assert "password" not in parsed["redis"]
    for forbidden in ("api_secret", "keys:", "password", "vx-admin"):
        assert forbidden not in text
    assert list(walk_secret_values(cm)) == []


def test_config_follows_region_ports_and_log_level():
    """eu-west's UDP range and local's log level reach the config."""
    eu = server_config(region("eu-west"), redis_address="x:6379")
    assert (eu["rtc"]["port_range_start"], eu["rtc"]["port_range_end"]) == (40000, 49999)
    assert eu["redis"] == {"address": "x:6379"} and "turn" not in eu
    assert server_config(region("local"), redis_address="x:6379")["logging"] == {"level": "debug"}


def test_turn_without_certificate_secret_uses_external_tls():
    """TURN without tls_secret terminates TLS in front of the node (turn.external_tls), mounts no cert."""
    r = region("us-east")
    r = with_livekit(r, turn=dataclasses.replace(r.livekit.turn, tls_secret=None))
    assert server_config(r, redis_address="x:1")["turn"]["external_tls"] is True
    assert "LIVEKIT_TURN_CERT" not in env(r)
    assert [v["name"] for v in pod(r)["volumes"]] == ["config"]


# --- keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REGIONS)
def test_keys_come_from_a_secret_mounted_0600(name):
    """Secret livekit-keys holds keys.yaml (a SecretValue), projected with config.yaml into /etc/livekit with mode 0600."""
    r = region(name)
    secret = objects(r)[("Secret", "livekit-keys")]
    assert secret["stringData"] == {"keys.yaml": SecretValue("livekit-keys", name)}
    (vol,) = [v for v in pod(r)["volumes"] if v["name"] == "config"]
    assert vol["projected"]["defaultMode"] == 0o600
    sources = vol["projected"]["sources"]
    assert {"secret": {"name": "livekit-keys", "items": [{"key": "keys.yaml", "path": "keys.yaml"}]}} in sources
    assert {"configMap": {"name": "livekit-config", "items": [{"key": "config.yaml", "path": "config.yaml"}]}} in sources
    assert container(r)["volumeMounts"][0] == {"name": "config", "mountPath": "/etc/livekit", "readOnly": True}
    assert container(r)["args"] == ["--config", "/etc/livekit/config.yaml"]
    # fsGroup makes the 0600 file group-readable (0640) for the non-root user; others stay 0.
    assert pod(r)["securityContext"]["fsGroup"] == pod(r)["securityContext"]["runAsUser"] == 10001


def test_server_key_file_holds_platform_keys_only():
    """Issue #9: livekit-server knows the platform's keys (admin, gateway, and since issue #19 the
    recovery controller's, which signs its webhooks), never a tenant's (tenant keys are the
    gateway's), so adding a tenant neither changes the key file nor rolls the SFU."""
    r = region("us-east")
    assert api_key_names(r) == sorted([ADMIN_KEY, GATEWAY_KEY, RECOVERY_KEY])
    assert not any(k.startswith("vxt-") for k in api_key_names(r))
    before = deployment(r)["spec"]["template"]["metadata"]["annotations"]
    extra = dict(r.tenants)
    extra["acme"] = dataclasses.replace(next(iter(r.tenants.values())), name="acme")
    after = deployment(dataclasses.replace(r, tenants=extra))["spec"]["template"]["metadata"]["annotations"]
    assert after[ANNOTATION_KEYS_CHECKSUM] == before[ANNOTATION_KEYS_CHECKSUM]
    assert after[ANNOTATION_CONFIG_CHECKSUM] == before[ANNOTATION_CONFIG_CHECKSUM]


# --- the Deployment ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", REGIONS)
def test_host_network_one_pod_per_media_node(name):
    """hostNetwork + ClusterFirstWithHostNet, required anti-affinity on hostname and a hostPort on rtc_tcp."""
    r = region(name)
    spec = pod(r)
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    (term,) = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == deployment(r)["spec"]["selector"]["matchLabels"]
    ports = {p["name"]: p for p in container(r)["ports"]}
    assert ports["rtc-tcp"] == {"name": "rtc-tcp", "containerPort": 7881, "hostPort": 7881, "protocol": "TCP"}
    assert ports["http"]["containerPort"] == 7880 and ports["metrics"]["containerPort"] == 6789
    assert deployment(r)["spec"]["replicas"] == r.livekit.nodes


def test_service_links_are_off():
    """No service-link env: LIVEKIT_PORT=tcp://… from Service `livekit` would be read as the server's `port`."""
    assert pod(region("us-east"))["enableServiceLinks"] is False


def test_media_node_pool_placement():
    """us-east SFU pods select the media pool and tolerate its taint."""
    spec = pod(region("us-east"))
    assert spec["nodeSelector"] == {"voxplane.io/pool": "media"}
    assert spec["tolerations"] == [
        {"key": "voxplane.io/media", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
    ]


@pytest.mark.parametrize("name", REGIONS)
def test_pod_annotations_mesh_off_and_config_checksum(name):
    """Pod template: service-mesh injection off, config checksum of the rendered config, source file."""
    r = region(name)
    ann = deployment(r)["spec"]["template"]["metadata"]["annotations"]
    for k, v in NO_MESH.items():
        assert ann[k] == v
    assert ann[ANNOTATION_CONFIG_CHECKSUM] == checksum(server_config(r, redis_address=redis_address(r)))
    assert ann[ANNOTATION_SOURCE] == f"regions/{name}.yaml"


def test_config_change_changes_checksum():
    """A config change (log level) rolls the pods through the checksum annotation."""
    r = region("us-east")
    a = deployment(r)["spec"]["template"]["metadata"]["annotations"][ANNOTATION_CONFIG_CHECKSUM]
    b = deployment(with_livekit(r, log_level="debug"))["spec"]["template"]["metadata"]["annotations"]
    assert b[ANNOTATION_CONFIG_CHECKSUM] != a


def test_long_drain_and_no_surge():
    """terminationGracePeriodSeconds = drain_seconds (18000 default, 300 local); rolling 1 unavailable, 0 surge."""
    assert pod(region("us-east"))["terminationGracePeriodSeconds"] == 18000
    assert pod(region("eu-west"))["terminationGracePeriodSeconds"] == 18000
    assert pod(region("local"))["terminationGracePeriodSeconds"] == 300
    assert deployment(region("us-east"))["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }


def test_image_probes_and_resources():
    """Image <image>:<version>@<digest> (the example pins it); readiness GET / on http, liveness a TCP check of http (GET / fails with Redis)."""
    c = container(region("us-east"))
    assert c["image"] == "livekit/livekit-server:v1.13.5@sha256:3497163e15c48fef6e7830c78716f9e9d5edc28abf7aa90b61c86e93bbc306b1"
    assert c["readinessProbe"]["httpGet"] == {"path": "/", "port": "http"}
    assert c["livenessProbe"]["tcpSocket"] == {"port": "http"} and "httpGet" not in c["livenessProbe"]
    assert c["resources"] == {"requests": {"cpu": "7", "memory": "8Gi", "ephemeral-storage": "2Gi"},
                              "limits": {"memory": "8Gi", "ephemeral-storage": "2Gi"}}


def test_non_root_without_privilege():
    """Ports >= 1024: non-root, no privilege escalation, all capabilities dropped, read-only root."""
    spec = pod(region("us-east"))
    assert spec["securityContext"]["runAsNonRoot"] is True
    sc = container(region("us-east"))["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["readOnlyRootFilesystem"] is True


def test_turn_on_443_binds_with_net_bind_service_only():
    """TURN/TLS on 443 needs root with only NET_BIND_SERVICE (no sysctl with host networking)."""
    r = region("us-east")
    r = with_livekit(r, turn=dataclasses.replace(r.livekit.turn, tls_port=443))
    sc = container(r)["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    assert sc["allowPrivilegeEscalation"] is False
    assert pod(r)["securityContext"]["runAsUser"] == 0
    validate_strict(deployment(r))


def test_turn_ports_certificate_and_env():
    """us-east TURN: turn-tls/turn-udp host ports, cert Secret mounted, LIVEKIT_TURN_CERT/KEY set."""
    r = region("us-east")
    ports = {p["name"]: p for p in container(r)["ports"]}
    assert ports["turn-tls"] == {"name": "turn-tls", "containerPort": 5349, "hostPort": 5349, "protocol": "TCP"}
    assert ports["turn-udp"] == {"name": "turn-udp", "containerPort": 3478, "hostPort": 3478, "protocol": "UDP"}
    assert env(r)["LIVEKIT_TURN_CERT"]["value"] == "/etc/lkcert/tls.crt"
    assert env(r)["LIVEKIT_TURN_KEY"]["value"] == "/etc/lkcert/tls.key"
    vols = {v["name"]: v for v in pod(r)["volumes"]}
    assert vols["turn-tls"]["secret"]["secretName"] == "turn-us-east-tls"
    assert "turn-tls" not in {p["name"] for p in container(region("eu-west"))["ports"]}


def test_external_redis_password_from_secret_env():
    """eu-west: REDIS_PASSWORD comes from the referenced Secret; in-cluster regions pass their own
    Redis's password, derived into livekit-redis-auth."""
    assert env(region("eu-west"))["REDIS_PASSWORD"] == {
        "name": "REDIS_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "livekit-redis", "key": "password"}},
    }
    assert env(region("us-east"))["REDIS_PASSWORD"] == {
        "name": "REDIS_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "livekit-redis-auth", "key": "password"}},
    }
    assert "NODE_IP" not in env(region("us-east"))  # use_external_ip discovers the public IP


def test_service_and_pdb():
    """Service livekit (ClusterIP, http + metrics) backs the internal URL; PDB allows one pod down."""
    r = region("us-east")
    svc = objects(r)[("Service", "livekit")]
    assert svc["spec"]["type"] == "ClusterIP"
    assert [(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [("http", 7880), ("metrics", 6789)]
    assert svc["spec"]["selector"] == deployment(r)["spec"]["selector"]["matchLabels"]
    assert livekit_internal_url(r) == "ws://livekit.vox-system.svc.cluster.local:7880"
    pdb = objects(r)[("PodDisruptionBudget", "livekit")]
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": svc["spec"]["selector"]}}


# --- Redis -------------------------------------------------------------------------------------


def test_in_cluster_redis_statefulset():
    """us-east: one persistent (appendonly, 16Gi gp3) non-root Redis, its Services, and the address the SFU uses."""
    r = region("us-east")
    objs = objects(r)
    sts = objs[("StatefulSet", "livekit-redis")]
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["serviceName"] == "livekit-redis-headless"
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "16Gi"
    assert claim["spec"]["storageClassName"] == "gp3"
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "redis:7.4.11@sha256:c6eabf748fc7a61dbb5a705c78bcf3d6377b1127a97d0ce965c11c44ba46896f"
    assert c["command"][:2] == ["sh", "-c"] and c["command"][2].endswith("exec redis-server /etc/redis/redis.conf\n")
    assert "appendonly yes" in objs[("ConfigMap", "livekit-redis-config")]["data"]["redis.conf"]
    assert sts["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert objs[("Service", "livekit-redis-headless")]["spec"]["clusterIP"] == "None"
    assert objs[("Service", "livekit-redis")]["spec"]["type"] == "ClusterIP"
    assert redis_address(r) == "livekit-redis.vox-system.svc.cluster.local:6379"
    assert sts["metadata"]["labels"][LABEL_LIVEKIT] == "livekit"
    assert sts["metadata"]["labels"]["app.kubernetes.io/component"] == "redis"
    # On the SFU's media pool (its taint tolerated), never where tenant agents run.
    pod = sts["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"voxplane.io/pool": "media"} == dict(r.livekit.node_pool.selector)
    assert pod["tolerations"] == [{"key": "voxplane.io/media", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]


def test_in_cluster_redis_without_storage_class():
    """local sets no storage class: the PVC leaves it to the cluster default."""
    sts = objects(region("local"))[("StatefulSet", "livekit-redis")]
    assert "storageClassName" not in sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "8Gi"


def test_external_redis():
    """eu-west: no Redis objects, the external address; a password in stack config gets its own Secret."""
    r = region("eu-west")
    assert build_redis(r) == []
    assert redis_address(r) == "redis-livekit.eu-west.internal:6379"
    cfg_pw = with_livekit(r, redis=dataclasses.replace(r.livekit.redis, password=SecretRef(config="redisPassword")))
    (secret,) = build_redis(cfg_pw)
    assert secret["kind"] == "Secret" and secret["stringData"] == {"password": SecretValue("config", "redisPassword")}
    assert env(cfg_pw)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "livekit-redis-auth", "key": "password"}


# --- firewall rules ----------------------------------------------------------------------------


def test_firewall_rules_us_east():
    """Rules: RTC UDP range + TCP, TURN TLS/UDP, SIP UDP/TCP and RTP from the carrier list only."""
    rules = {r["name"]: r for r in firewall_rules(region("us-east"))}
    assert list(rules) == [
        "livekit-rtc-udp", "livekit-rtc-tcp", "livekit-turn-tls", "livekit-turn-udp",
        "sip-signalling-udp", "sip-signalling-tcp", "sip-rtp",
    ]
    assert (rules["livekit-rtc-udp"]["protocol"], rules["livekit-rtc-udp"]["ports"]) == ("udp", "50000-60000")
    assert rules["livekit-rtc-udp"]["sources"] == ["0.0.0.0/0"]
    assert rules["livekit-rtc-udp"]["nodes"] == "voxplane.io/pool=media"
    assert (rules["livekit-rtc-tcp"]["protocol"], rules["livekit-rtc-tcp"]["ports"]) == ("tcp", "7881")
    assert rules["livekit-turn-tls"]["ports"] == "5349" and rules["livekit-turn-udp"]["ports"] == "3478"
    carriers = ["192.76.120.10/32", "64.16.250.10/32", "185.246.41.0/24"]
    for name in ("sip-signalling-udp", "sip-signalling-tcp", "sip-rtp"):
        assert rules[name]["sources"] == carriers
        assert rules[name]["nodes"] == "voxplane.io/pool=sip"
        assert rules[name]["purpose"]
    assert rules["sip-rtp"]["ports"] == "10000-20000" and rules["sip-signalling-tcp"]["protocol"] == "tcp"
    json.dumps(firewall_rules(region("us-east")))  # stack outputs must be plain data


def test_firewall_rules_without_turn_or_sip():
    """eu-west has no TURN; a region without sip has no SIP rules."""
    names = [r["name"] for r in firewall_rules(region("eu-west"))]
    assert "livekit-turn-tls" not in names and names[0] == "livekit-rtc-udp"
    assert (next(r for r in firewall_rules(region("eu-west")) if r["name"] == "livekit-rtc-udp")["ports"]
            == "40000-49999")
    no_sip = dataclasses.replace(region("eu-west"), sip=None)
    assert [r["name"] for r in firewall_rules(no_sip)] == ["livekit-rtc-udp", "livekit-rtc-tcp"]


# --- the real server ---------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("name", REGIONS)
def test_real_server_accepts_the_config(name, tmp_path):
    """livekit-server (strict config) parses the rendered config and a 0640 key file, and gets as far as Redis."""
    r = region(name)
    # Builds (or finds the cached) livekit-server; raises with the build's reason, never skips.
    binary = str(ensure_livekit_binary())
    assert binary.endswith(r.livekit.version), f"the example regions pin {r.livekit.version}; the cached binary is {binary}"
    keys = tmp_path / "keys.yaml"
    keys.write_text("vx-admin: " + "s" * 64 + "\n")
    keys.chmod(0o640)  # what 0600 + fsGroup gives in the pod
    cfg = server_config(r, redis_address="127.0.0.1:1")  # nothing listens on port 1
    # Only what cannot work offline changes: no STUN lookup, the key file's path.
    cfg["rtc"]["use_external_ip"] = False
    cfg["rtc"]["node_ip"] = "127.0.0.1"
    cfg["key_file"] = str(keys)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run(
        [binary, "--config", str(path)], capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)},
    )
    text = out.stdout + out.stderr
    assert "could not parse config" not in text, text
    assert "unable to connect to redis" in text, text


@pytest.mark.integration
def test_real_server_authenticates_to_a_password_protected_redis(tmp_path):
    """The in-cluster Redis requires a password: livekit-server, given only REDIS_PASSWORD in its
    environment (never in the config), connects and becomes healthy; a wrong password does not."""
    import time
    import urllib.request

    from voxplane.dev.ports import free_port

    binary = str(ensure_livekit_binary())
    r = region("us-east")
    redis_port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--requirepass", "p4ss-word"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    http_port = free_port()
    cfg = server_config(r, redis_address=f"127.0.0.1:{redis_port}")
    # The admin key, and the key the server signs its webhooks with (the recovery controller's):
    # livekit-server refuses to start with a webhook key it does not know.
    keys = tmp_path / "keys.yaml"
    key_names = ["vx-admin", *([cfg["webhook"]["api_key"]] if cfg.get("webhook") else [])]
    keys.write_text("".join(f"{name}: {'s' * 64}\n" for name in key_names))
    keys.chmod(0o600)
    cfg["port"] = http_port
    udp = free_port("udp")
    cfg["rtc"].update(use_external_ip=False, node_ip="127.0.0.1", tcp_port=free_port(),
                      port_range_start=udp, port_range_end=udp)
    cfg["prometheus"] = {"port": free_port()}
    cfg.pop("turn", None)
    cfg["key_file"] = str(keys)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))

    def healthy_with(password: str) -> tuple[bool, str]:
        log = tmp_path / f"livekit-{password}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [binary, "--config", str(path)], stdout=out, stderr=subprocess.STDOUT,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "REDIS_PASSWORD": password},
            )
            try:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and proc.poll() is None:
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/", timeout=1) as resp:
                            if resp.status == 200:
                                return True, log.read_text()
                    except OSError:
                        pass
                    time.sleep(0.2)
                return False, log.read_text()
            finally:
                proc.kill()
                proc.wait()

    try:
        ok, text = healthy_with("p4ss-word")
        assert ok, text
        ok, text = healthy_with("not-the-password")
        assert not ok and "redis" in text.lower(), text
    finally:
        redis.kill()
        redis.wait()


# --- the component -----------------------------------------------------------------------------


@pulumi.runtime.test
def test_component_registers_sfu_and_redis(mocked):
    """LiveKitSFU for us-east registers the Deployment (grace 18000), the keys Secret and the Redis StatefulSet."""
    r = region("us-east")
    secrets = SecretResolver(r.name, ["vx-admin", *(f"vx-{t}" for t in r.tenants)])
    sfu = LiveKitSFU("us-east-sfu", LiveKitSFUArgs(region=r, objects=desired("us-east").sfu, secrets=secrets))

    def check(outputs):
        internal, public, service, rules = outputs[:4]
        by_type: dict[str, list[pulumi.runtime.MockResourceArgs]] = {}
        for res in mocked.resources:
            by_type.setdefault(res.typ, []).append(res)
        (dep,) = by_type["kubernetes:apps/v1:Deployment"]
        assert dep.name == "us-east-sfu-deployment-livekit"
        assert dep.inputs["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 18000
        (sts,) = by_type["kubernetes:apps/v1:StatefulSet"]
        assert sts.inputs["metadata"]["name"] == "livekit-redis"
        assert len(by_type["kubernetes:core/v1:Service"]) == 3
        assert {s.inputs["metadata"]["name"] for s in by_type["kubernetes:core/v1:Secret"]} == {"livekit-keys", "livekit-redis-auth"}
        assert internal == "ws://livekit.vox-system.svc.cluster.local:7880"
        assert public == "wss://rtc.us-east.voice.example.com"
        assert service == "livekit"
        assert rules == firewall_rules(r)

    # Wait for every child's registration before looking at the recorder.
    ids = [child.id for child in sfu.children.values()]
    return pulumi.Output.all(sfu.internal_url, sfu.public_url, sfu.service_name, sfu.firewall_rules, *ids).apply(check)


def test_in_cluster_redis_requires_a_derived_password():
    """The in-cluster Redis requires the password of livekit-redis-auth (derived from the root
    secret), from a file its start script writes (`include`d by redis.conf), never its command line;
    its probe authenticates through REDISCLI_AUTH; the SIP config references the password."""
    r = region("us-east")
    objs = {(o["kind"], o["metadata"]["name"]): o for o in build_redis(r)}
    assert objs[("Secret", "livekit-redis-auth")]["stringData"] == {"password": SecretValue("derived", "redis")}
    container = objs[("StatefulSet", "livekit-redis")]["spec"]["template"]["spec"]["containers"][0]
    assert "args" not in container and "requirepass" not in " ".join(container["command"][:2])
    assert 'requirepass "/' in container["command"][2]  # the sed that writes the file
    assert "include /run/redis/auth.conf" in objs[("ConfigMap", "livekit-redis-config")]["data"]["redis.conf"]
    assert "env" not in container  # the password is a mounted file of livekit-redis-auth
    volumes = {v["name"]: v for v in objs[("StatefulSet", "livekit-redis")]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["password"]["secret"]["secretName"] == "livekit-redis-auth"
    assert redis_password_ref(r) == "$(REDIS_PASSWORD)"
