"""livekit-server on loopback, from a config mapping: the config voxplane renders for a region runs
as-is except for addresses and ports, which are rewritten so that everything listens on 127.0.0.1
on free ports (`loopback_config`). livekit-server parses its config strictly, so a rendered config
with an unknown key fails to start here exactly as it would in the cluster.

    with RedisServer() as redis, LiveKitServer(config, redis=redis) as lk:
        ...  # lk.url, lk.http_url, lk.api_key, lk.api_secret

The config file is written as JSON, which is valid YAML.
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from .paths import SCRIPTS, write_private
from .ports import LOOPBACK, free_port, free_ports
from .process import HttpServer, answers_ok, installed_binary
from .redis import REMOTE_ONLY_KEYS, RedisServer

__all__ = ["DEFAULT_CONFIG", "LiveKitServer", "ensure_livekit_binary", "loopback_config"]

# The built-in config of `voxplane dev servers up` without --config: voxplane's region configs
# supply the rest.
DEFAULT_CONFIG: Mapping[str, Any] = {
    "region": "local",
    "logging": {"level": "info"},
    "room": {"empty_timeout": 300},
}


def loopback_config(
    config: Mapping[str, Any],
    *,
    port: int,
    rtc_tcp_port: int,
    rtc_udp_port: int,
    redis_address: str | None,
    prometheus_port: int | None = None,
    debug_port: int | None = None,
    webhook_urls: Sequence[str] = (),
) -> dict[str, Any]:
    """A copy of a livekit-server `config` with only addresses and ports changed for loopback.

    Everything else (keys, region, room, logging, limits, the webhook's key and events, ...) is
    kept, so the server still validates the rest of the rendered config. The webhook's URLs (the
    recovery controller's Service, a cluster name) become `webhook_urls`: the loopback controller's,
    or none, so the server never resolves a cluster name off this machine.
    """
    cfg: dict[str, Any] = copy.deepcopy(dict(config))

    cfg["port"] = port
    # Signal/API, Prometheus and debug listeners all bind to these addresses.
    cfg["bind_addresses"] = [LOOPBACK]

    rtc: dict[str, Any] = dict(cfg.get("rtc") or {})
    # A port range wins over udp_port in livekit-server; one muxed UDP port is enough here.
    for key in ("port_range_start", "port_range_end", "interfaces", "turn_servers"):
        rtc.pop(key, None)
    rtc["udp_port"] = rtc_udp_port
    rtc["tcp_port"] = rtc_tcp_port  # note: the ICE/TCP listener binds all interfaces
    rtc["use_external_ip"] = False  # no STUN lookups of a public IP
    rtc["node_ip"] = LOOPBACK  # advertised in ICE candidates
    # Gather and bind only loopback addresses, and allow them as ICE candidates, so clients on
    # this host can reach the media port and nothing else can.
    rtc["enable_loopback_candidate"] = True
    rtc["ips"] = {"includes": [f"{LOOPBACK}/8"]}
    cfg["rtc"] = rtc

    if redis_address is not None:
        # Our Redis is a plain single instance: drop credentials, TLS, sentinel and cluster
        # settings; keep the rest (db, timeouts, pool size).
        redis = {k: v for k, v in (cfg.get("redis") or {}).items() if k not in REMOTE_ONLY_KEYS}
        redis["address"] = redis_address
        cfg["redis"] = redis
    else:
        cfg.pop("redis", None)  # single-node mode (SIP, egress, ingress APIs then refuse)

    # The embedded TURN server would need a domain, TLS certificate and relay ports.
    cfg["turn"] = {"enabled": False}

    cfg.pop("prometheus_port", None)  # deprecated spelling of prometheus.port
    if prometheus_port is not None:
        cfg["prometheus"] = {**(cfg.get("prometheus") or {}), "port": prometheus_port}
    else:
        cfg.pop("prometheus", None)

    if debug_port is not None:
        cfg["debug_handler"] = {**(cfg.get("debug_handler") or {}), "port": debug_port}
    else:
        cfg.pop("debug_handler", None)

    if "webhook" in cfg or webhook_urls:
        cfg["webhook"] = {**(cfg.get("webhook") or {}), "urls": list(webhook_urls)}

    return cfg


def _prometheus_enabled(config: Mapping[str, Any]) -> bool:
    prom = config.get("prometheus") or {}
    return bool(config.get("prometheus_port") or (isinstance(prom, Mapping) and prom.get("port")))


def _debug_enabled(config: Mapping[str, Any]) -> bool:
    dbg = config.get("debug_handler") or {}
    return bool(isinstance(dbg, Mapping) and dbg.get("port"))


class LiveKitServer(HttpServer):
    """livekit-server on loopback, run with `--config FILE` from a config mapping."""

    name = "livekit"
    # livekit-server drains on the first SIGTERM (waiting, without limit, for participants to
    # leave) and shuts down at once on the second. Worse, a SIGTERM that lands within ~100 ms
    # of the health check first passing is lost: Stop() returns early while the server is not
    # yet marked running. The second SIGTERM covers both.
    term_twice = True

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        redis: RedisServer | str | None = None,
        binary: Path | str | None = None,
        startup_timeout: float = 30.0,
        workdir: Path | str | None = None,
        detached: bool = False,
        webhook_urls: Sequence[str] = (),
    ) -> None:
        """`redis` is a RedisServer or a "host:port" address; None runs single-node
        (no SIP/egress/ingress). `binary` defaults to `ensure_livekit_binary()`. `webhook_urls`:
        where the server sends its webhooks (the loopback recovery controller), none by default."""
        super().__init__(workdir, detached)
        source: dict[str, Any] = dict(DEFAULT_CONFIG if config is None else config)
        redis_address = redis.address if isinstance(redis, RedisServer) else redis

        # API keys come from the config; key_file points at a deployment path, so drop it.
        source.pop("key_file", None)
        keys = source.get("keys")
        if isinstance(keys, Mapping) and keys:
            self.api_key, self.api_secret = (str(x) for x in next(iter(keys.items())))
        elif "keys" in source:
            # Present but empty or malformed: let the server reject it with its own message.
            self.api_key, self.api_secret = "", ""
        else:
            self.api_key = "voxplane-dev-" + secrets.token_hex(4)
            self.api_secret = secrets.token_urlsafe(32)  # 43 chars; the server wants >= 32
            source["keys"] = {self.api_key: self.api_secret}

        self.port, tcp_port, prom_port, debug_port = free_ports(4, "tcp")
        self.config: dict[str, Any] = loopback_config(
            source,
            port=self.port,
            rtc_tcp_port=tcp_port,
            rtc_udp_port=free_port("udp"),
            redis_address=redis_address,
            prometheus_port=prom_port if _prometheus_enabled(source) else None,
            debug_port=debug_port if _debug_enabled(source) else None,
            webhook_urls=webhook_urls,
        )
        self.binary = Path(binary) if binary is not None else None
        self.startup_timeout = startup_timeout

    @property
    def config_path(self) -> Path:
        return self.workdir / "livekit.yaml"

    @property
    def prometheus_port(self) -> int | None:
        prom = self.config.get("prometheus")
        return int(prom["port"]) if prom else None

    def start(self) -> Self:
        binary = self.binary or ensure_livekit_binary()
        # The config holds the API secret. JSON is YAML: no PyYAML needed.
        write_private(self.config_path, json.dumps(self.config, indent=2) + "\n")

        # Not --dev: that would switch on debug logging and pprof and relax key checks.
        self._spawn([str(binary), "--config", str(self.config_path)])
        # Config errors make livekit-server print a line and exit, with status 0.
        self._await_start(self.healthy, f"not healthy at {self.http_url}/", 0.1, self.startup_timeout)
        # GET / answers 200 about 100 ms before the server marks itself running and
        # can act on SIGTERM (see term_twice); let that window pass.
        time.sleep(0.25)
        return self

    def healthy(self) -> bool:
        """True when GET / answers 200 ("OK"); it answers 406 until the node reports stats."""
        return answers_ok(self.http_url + "/")


def ensure_livekit_binary() -> Path:
    """Path of the pinned livekit-server build, building it first if needed (minutes).

    Runs scripts/ensure-servers.sh --print-path, which also installs redis-server. Its
    progress lines pass through to our stderr.
    """
    return installed_binary(SCRIPTS / "ensure-servers.sh")
