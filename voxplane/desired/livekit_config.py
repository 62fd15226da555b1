"""The livekit-server and livekit-sip config files of a region, as plain dicts.

livekit-server decodes its config strictly (yaml.v3 `KnownFields`, unless `--disable-strict-config`):
an unknown key stops the server. Every key emitted here was checked against the v1.13.5 structs —
`pkg/config/config.go` (`Config`, `TURNConfig`, `RoomConfig`, `PrometheusConfig`, `LoggingConfig`),
mediatransportutil `rtcconfig.RTCConfig` (inlined under `rtc`), protocol `redis.RedisConfig` and
`logger.Config` — and livekit-sip v1.11.0 `pkg/config/config.go`.

No secret is ever written into these dicts: API keys live in a key file mounted from a Secret
(`key_file`), the Redis password reaches livekit-server as the `REDIS_PASSWORD` variable and
livekit-sip as a `$(REDIS_PASSWORD)` reference expanded by the kubelet, and livekit-sip reads its
API key and secret from `LIVEKIT_API_KEY` / `LIVEKIT_API_SECRET`.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import yaml

from ..controllers.recovery.decide import WEBHOOK_EVENTS
from ..manifest.model import Region
from .common import RECOVERY_KEY, prune, recovery_webhook_url

#: Where the SFU pod mounts its config and key file (one projected volume).
CONFIG_DIR = "/etc/livekit"
CONFIG_FILE = "config.yaml"
KEYS_FILE = "keys.yaml"
KEY_FILE_PATH = f"{CONFIG_DIR}/{KEYS_FILE}"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_FILE}"

#: TURN certificate mount; the server reads the paths from LIVEKIT_TURN_CERT / LIVEKIT_TURN_KEY.
TURN_CERT_DIR = "/etc/lkcert"

#: cmd/server/main.go: flag `--redis-password`, env REDIS_PASSWORD, sets `redis.password`.
REDIS_PASSWORD_ENV = "REDIS_PASSWORD"
#: A kubelet `$(VAR)` reference: livekit-sip has no password variable of its own.
REDIS_PASSWORD_REF = f"$({REDIS_PASSWORD_ENV})"

#: Seconds an empty room is kept (server default 300): long enough for a SIP caller's room to be
#: joined by its dispatched agent, short enough not to hold node capacity.
ROOM_EMPTY_TIMEOUT = 300
#: Seconds a room lives after the last participant leaves (server default 20).
ROOM_DEPARTURE_TIMEOUT = 20


def server_config(region: Region, *, redis_address: str) -> dict[str, Any]:
    """livekit-server's config file for `region` (YAML-ready; keys in the server's own order)."""
    lk = region.livekit
    ports = lk.ports
    return prune(
        {
            "port": ports.http,
            "rtc": {
                "tcp_port": ports.rtc_tcp,
                "port_range_start": ports.rtc_udp.start,
                "port_range_end": ports.rtc_udp.end,
                # Discover the node's public address by STUN: cloud nodes see only their private
                # IP on the interface (1:1 NAT). It also takes precedence over NODE_IP/--node-ip,
                # so the pod does not pass the host IP.
                "use_external_ip": True,
                # Host candidates keep the node's own addresses beside the external one
                # (mediatransportutil: ICEAddressRewriteAppend). Agents in the cluster then reach
                # the SFU at its node address, which their NetworkPolicy admits
                # (`kubernetes.node_cidrs`), instead of hairpinning through the public IP, which
                # would need egress to the whole internet on the media ports.
                "advertise_internal_ip": True,
            },
            # Only the address: a password comes from REDIS_PASSWORD, never from this file.
            "redis": {"address": redis_address},
            "region": region.name,
            # `prometheus.port`; the top-level `prometheus_port` is deprecated in v1.13.
            "prometheus": {"port": ports.prometheus},
            # `logging.level`; the top-level `log_level` is deprecated.
            "logging": {"level": lk.log_level},
            "turn": _turn(region) if lk.turn.enabled else None,
            "room": {"empty_timeout": ROOM_EMPTY_TIMEOUT, "departure_timeout": ROOM_DEPARTURE_TIMEOUT},
            # Keys are read from a Secret-backed file (others-permission bits must be 0).
            "key_file": KEY_FILE_PATH,
            "webhook": webhook(region),
        }
    )


def webhook(region: Region) -> dict[str, Any]:
    """livekit-server's `webhook` (protocol webhook.WebHookConfig): the events the lost-agent
    recovery controller acts on, sent to its Service and signed with its own key."""
    return {
        "api_key": RECOVERY_KEY,
        "urls": [recovery_webhook_url(region)],
        # Only what the controller reads; the rest (tracks, rooms) would be traffic for nothing.
        "filter_params": {"include_events": sorted(WEBHOOK_EVENTS)},
    }


def _turn(region: Region) -> dict[str, Any]:
    turn = region.livekit.turn
    return prune(
        {
            "enabled": True,
            "domain": turn.domain,
            "tls_port": turn.tls_port,
            "udp_port": turn.udp_port,
            # Without a certificate Secret, TLS is terminated in front of the node (load balancer)
            # and the server listens for plain TCP on tls_port.
            "external_tls": True if turn.tls_secret is None else None,
        }
    )


def sip_config(
    region: Region,
    *,
    redis_address: str,
    ws_url: str,
    redis_password: Optional[str] = None,
) -> dict[str, Any]:
    """livekit-sip's config file. `redis_password` is a reference (`$(REDIS_PASSWORD)`), never a
    value; api_key/api_secret are deliberately absent (read from the environment)."""
    sip = region.sip
    if sip is None:
        raise ValueError(f"region {region.name} has no sip section")
    return prune(
        {
            "ws_url": ws_url,
            # Must be the SFU's own Redis: SIP and server talk psrpc over it.
            "redis": {"address": redis_address, "password": redis_password},
            "sip_port": sip.sip_port,
            "rtp_port": str(sip.rtp_ports),  # "start-end", parsed by rtcconfig.PortRange
            "health_port": sip.health_port,
            "prometheus_port": sip.prometheus_port,
            # STUN discovery of the public address advertised in Contact and SDP.
            "use_external_ip": True,
            "logging": {"level": region.livekit.log_level},
        }
    )


def to_yaml(config: dict[str, Any]) -> str:
    """The config file text (key order kept)."""
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def to_json(config: dict[str, Any]) -> str:
    """Compact JSON (valid YAML): every string double-quoted, so a substituted value cannot change
    the document's structure."""
    return json.dumps(config, separators=(",", ":"))
