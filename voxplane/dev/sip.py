"""A real livekit-sip bridge on loopback, next to the dev Redis and livekit-server.

The config is the one voxplane renders for the region (`desired.livekit_config.sip_config`), with
only addresses and ports changed (see `loopback_sip_config`): livekit-sip decodes its config
strictly too, so a rendered key it does not know fails here as it would in the cluster.

Library use::

    with RedisServer() as redis, LiveKitServer(cfg, redis=redis) as lk, \\
            SipServer(region, redis=redis, livekit=lk) as sip:
        ...  # INVITEs to sip.sip_address (UDP or TCP)

The binary comes from scripts/ensure-sip.sh (cached build), or from `$VOXPLANE_LIVEKIT_SIP_BIN`
when set (a livekit-sip you built yourself).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from ..manifest.model import Region
from .livekit import LiveKitServer
from .paths import SCRIPTS
from .ports import LOOPBACK, free_port, free_port_range
from .process import ServerProcess, ServerStartError, answers_ok, installed_binary
from .redis import REMOTE_ONLY_KEYS, RedisServer

__all__ = ["BINARY_ENV", "RTP_PORTS", "SipServer", "ensure_sip_binary", "loopback_sip_config"]

#: A prebuilt livekit-sip to use instead of the cached build.
BINARY_ENV = "VOXPLANE_LIVEKIT_SIP_BIN"
#: RTP ports per bridge: two calls' worth is plenty for tests.
RTP_PORTS = 8


def loopback_sip_config(
    config: Mapping[str, Any],
    *,
    redis_address: str,
    ws_url: str,
    sip_port: int,
    rtp_ports: tuple[int, int],
    health_port: int,
) -> dict[str, Any]:
    """A copy of a livekit-sip `config` with only addresses and ports changed for loopback."""
    cfg: dict[str, Any] = copy.deepcopy(dict(config))
    cfg["ws_url"] = ws_url
    # A plain local Redis: no password reference (`$(REDIS_PASSWORD)` is expanded by the kubelet).
    redis = {k: v for k, v in (cfg.get("redis") or {}).items() if k not in REMOTE_ONLY_KEYS}
    redis["address"] = redis_address
    cfg["redis"] = redis
    cfg["sip_port"] = sip_port  # UDP and TCP listen on the same port
    cfg["rtp_port"] = f"{rtp_ports[0]}-{rtp_ports[1]}"
    cfg["health_port"] = health_port
    cfg.pop("prometheus_port", None)  # off: one port fewer to race for
    # No STUN lookup; pkg/sip/config.go skips loopback interfaces when it picks the local IP, so
    # the address advertised in Contact and SDP is given explicitly.
    cfg["use_external_ip"] = False
    cfg["nat_1_to_1_ip"] = LOOPBACK
    cfg["listen_ip"] = LOOPBACK  # SIP UDP/TCP listeners (the health port binds all interfaces)
    return cfg


class SipServer(ServerProcess):
    """livekit-sip on loopback, run with `--config FILE`, talking to `livekit` through `redis`."""

    name = "livekit-sip"
    installer = "scripts/ensure-sip.sh"

    def __init__(
        self,
        region: Region,
        *,
        redis: RedisServer | str,
        livekit: LiveKitServer,
        binary: Path | str | None = None,
        startup_timeout: float = 30.0,
        workdir: Path | str | None = None,
    ) -> None:
        """`redis` must be livekit-server's own Redis (they talk psrpc over it). The API key is
        livekit-server's first key (`vx-admin` in a rendered config), passed in the environment."""
        from ..desired.livekit_config import sip_config

        super().__init__(workdir, detached=False)
        redis_address = redis.address if isinstance(redis, RedisServer) else redis
        rendered = sip_config(region, redis_address=redis_address, ws_url=livekit.url)
        try:
            self.sip_port = free_port("both")  # livekit-sip listens on UDP and TCP
            self.health_port = free_port("tcp")
            self.rtp_ports = free_port_range(RTP_PORTS)
        except OSError as e:
            raise ServerStartError(f"{self.name}: {e}") from e
        self.config = loopback_sip_config(
            rendered,
            redis_address=redis_address,
            ws_url=livekit.url,
            sip_port=self.sip_port,
            rtp_ports=self.rtp_ports,
            health_port=self.health_port,
        )
        self.api_key, self.api_secret = livekit.api_key, livekit.api_secret
        self.binary = Path(binary) if binary is not None else None
        self.startup_timeout = startup_timeout

    @property
    def sip_address(self) -> str:
        return f"{LOOPBACK}:{self.sip_port}"

    @property
    def health_url(self) -> str:
        return f"http://{LOOPBACK}:{self.health_port}/"

    @property
    def config_path(self) -> Path:
        return self.workdir / "sip.yaml"

    def start(self) -> Self:
        binary = self.binary or ensure_sip_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=2)  # JSON is YAML; no secret in it
            f.write("\n")
        # livekit-sip reads the key from these when the config has none (the rendered one never has).
        self._spawn([str(binary), "--config", str(self.config_path)],
                    env={"LIVEKIT_API_KEY": self.api_key, "LIVEKIT_API_SECRET": self.api_secret})
        self._await_start(self.healthy, f"not healthy at {self.health_url}", 0.1, self.startup_timeout)
        return self

    def healthy(self) -> bool:
        """True when the health port answers 200 (it answers 503 while the bridge is not ready)."""
        return answers_ok(self.health_url)


def ensure_sip_binary() -> Path:
    """Path of the livekit-sip to run: `$VOXPLANE_LIVEKIT_SIP_BIN`, else the cached pinned build
    made by scripts/ensure-sip.sh --print-path (which also installs sipp and the codec libraries;
    its progress lines pass through to our stderr)."""
    if given := os.environ.get(BINARY_ENV):
        path = Path(given)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ServerStartError(f"{BINARY_ENV}={given}: not an executable file")
        return path
    return installed_binary(SCRIPTS / "ensure-sip.sh")
