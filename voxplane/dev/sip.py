"""A real livekit-sip bridge on loopback, next to `voxplane.dev.servers`' Redis and livekit-server.

The config is the one voxplane renders for the region (`build.livekit_config.sip_config`), with
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
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from .servers import (
    LOOPBACK,
    LiveKitServer,
    RedisServer,
    ServerStartError,
    _child_env,
    _Process,
    free_ports,
)
from ..model import Region

_ENSURE_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ensure-sip.sh"
#: A prebuilt livekit-sip to use instead of the cached build.
BINARY_ENV = "VOXPLANE_LIVEKIT_SIP_BIN"
#: RTP ports per bridge: two calls' worth is plenty for tests.
RTP_PORTS = 8
_REDIS_REMOTE_KEYS = frozenset({
    "username", "password", "use_tls", "sentinel_master_name", "sentinel_username",
    "sentinel_password", "sentinel_addresses", "cluster_addresses", "tls",
})


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
    redis = {k: v for k, v in (cfg.get("redis") or {}).items() if k not in _REDIS_REMOTE_KEYS}
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


def _free_udp_range(count: int) -> tuple[int, int]:
    """`count` consecutive ports free for UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        start = free_ports(1, "udp")[0]
        if start + count > 65535:
            continue
        socks: list[socket.socket] = []
        try:
            for p in range(start, start + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((LOOPBACK, p))
            return start, start + count - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise ServerStartError(f"no {count} consecutive free UDP ports on {LOOPBACK}")


def _free_sip_port() -> int:
    """A port free for both UDP and TCP (livekit-sip listens on both)."""
    for _ in range(50):
        port = free_ports(1, "udp")[0]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                continue
        return port
    raise ServerStartError(f"no port free for UDP and TCP on {LOOPBACK}")


class SipServer(_Process):
    """livekit-sip on loopback, run with `--config FILE`, talking to `livekit` through `redis`."""

    name = "livekit-sip"

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
        self.sip_port = _free_sip_port()
        self.health_port = free_ports(1, "tcp")[0]
        self.rtp_ports = _free_udp_range(RTP_PORTS)
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

    def _spawn_env(self) -> dict[str, str]:
        env = _child_env()
        # livekit-sip reads these when the config has no api_key/api_secret (the rendered one never has).
        env["LIVEKIT_API_KEY"] = self.api_key
        env["LIVEKIT_API_SECRET"] = self.api_secret
        return env

    def start(self) -> Self:
        binary = self.binary or ensure_sip_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=2)  # JSON is YAML; no secret in it
            f.write("\n")
        self._log = self.log_path.open("wb")
        try:
            self._proc = subprocess.Popen(
                [str(binary), "--config", str(self.config_path)],
                cwd=self.workdir,
                env=self._spawn_env(),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
        except OSError as e:
            self._cleanup()
            raise ServerStartError(f"{self.name}: cannot run {binary}: {e}") from e
        self._await_start(self.healthy, f"not healthy at {self.health_url}", 0.1, self.startup_timeout)
        return self

    def healthy(self) -> bool:
        """True when the health port answers 200 (it answers 503 while the bridge is not ready)."""
        try:
            with urllib.request.urlopen(self.health_url, timeout=1.0) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False


def ensure_sip_binary() -> Path:
    """Path of the livekit-sip to run: `$VOXPLANE_LIVEKIT_SIP_BIN`, else the cached pinned build
    made by scripts/ensure-sip.sh --print-path (which also installs sipp and the codec libraries;
    its progress lines pass through to our stderr)."""
    if given := os.environ.get(BINARY_ENV):
        path = Path(given)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ServerStartError(f"{BINARY_ENV}={given}: not an executable file")
        return path
    if not _ENSURE_SCRIPT.is_file():
        raise ServerStartError(f"{_ENSURE_SCRIPT} not found (voxplane not run from its checkout?)")
    proc = subprocess.run(
        ["bash", str(_ENSURE_SCRIPT), "--print-path"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
    )
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise ServerStartError(
            f"{_ENSURE_SCRIPT.name} failed (exit {proc.returncode}): " + (lines[-1] if lines else "no output")
        )
    path = Path(proc.stdout.strip())
    if not path.is_file():
        raise ServerStartError(f"{_ENSURE_SCRIPT.name} printed {proc.stdout.strip()!r}: not a file")
    return path
