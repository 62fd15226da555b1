"""The dev servers: Redis, livekit-server and (with a region) its gateway, on loopback in the
background until `down`, for `make demo`, `voxplane livekit ...` and `voxplane status` by hand.

    eval "$(voxplane dev servers up [--config livekit.yaml | --region local])"
    voxplane dev servers down

What runs is recorded in `$VOXPLANE_CACHE/devservers.json` (0600: it holds the admin key's secret),
each process by pid and create time, so `env` and `down` (in another process) find exactly the
processes `up` started, and a record whose processes have gone is never used. With a region, the
server runs the config the region renders and the gateway beside it; `up` then also prints
`export VOXPLANE_LIVEKIT_TENANT_URL=...`, the URL tenant credentials work at
(`voxplane dev credentials REGION TENANT`). The servers themselves: `redis`, `livekit`, `gateway`.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import yaml

from ..manifest.loader import load_region
from . import standins
from .gateway import GatewayServer
from .livekit import DEFAULT_CONFIG, LiveKitServer, ensure_livekit_binary
from .paths import cache_dir, write_private
from .process import ProcessRecord, ServerStartError
from .redis import RedisServer
from .ports import LOOPBACK
from .region import region_config, region_gateway

__all__ = ["ServersError", "down", "exports", "load_config_file", "running_state", "state_path", "up"]

#: What each server's record must still be for the state to count as running, in `down`'s order:
#: the gateway first, then LiveKit (it unregisters its node from Redis while draining), then Redis.
_SERVERS = ("gateway", "livekit", "redis")


class ServersError(RuntimeError):
    """The dev servers could not start; the message says why (manifest problems, a start error)."""


def state_path() -> Path:
    return cache_dir() / "devservers.json"


def load_config_file(path: Path) -> dict[str, Any]:
    """A livekit-server config file (JSON, or YAML); ServersError naming the file when it cannot be
    read or holds no mapping."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ServersError(f"{path}: {e.strerror or e}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            raise ServersError(f"{path}{where}: neither JSON nor YAML ({getattr(e, 'problem', None) or e})") from e
    if not isinstance(data, dict):
        raise ServersError(f"{path}: expected a mapping at the top level")
    return data


def exports(state: Mapping[str, Any]) -> str:
    """`export LIVEKIT_URL=... LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=...` of a running state, for eval."""
    lk = state["livekit"]
    pairs = {
        "LIVEKIT_URL": lk["url"],
        "LIVEKIT_API_KEY": lk["api_key"],
        "LIVEKIT_API_SECRET": lk["api_secret"],
    }
    if "gateway" in state:
        # Where tenant credentials work (they are not valid at LIVEKIT_URL, the server itself).
        pairs["VOXPLANE_LIVEKIT_TENANT_URL"] = state["gateway"]["url"]
    return "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in pairs.items())


def _records(state: Mapping[str, Any]) -> dict[str, ProcessRecord | None]:
    return {name: ProcessRecord.from_json(state[name]) for name in _SERVERS if name in state}


def running_state() -> dict[str, Any] | None:
    """The recorded state while every server `up` started still runs (the same processes: pid and
    create time), else None."""
    try:
        state: dict[str, Any] = json.loads(state_path().read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or "livekit" not in state or "redis" not in state:
        return None
    records = _records(state)
    if all(record is not None and record.running for record in records.values()):
        return state
    return None


def up(config: Mapping[str, Any] | None, *, region: str | None, root: Path,
       progress: Callable[[str], None]) -> dict[str, Any]:
    """Start Redis + livekit-server detached (with `region`: its rendered config and its gateway;
    else `config`, default `DEFAULT_CONFIG`), record them and return the state. Servers already
    running are kept (and their state returned): `down` first to change the config."""
    # The region first: a name that names none (UnknownRegion) or invalid manifests (ManifestError)
    # stop or start nothing.
    lk_config = region_config(region, root) if region else dict(config or DEFAULT_CONFIG)
    if (running := running_state()) is not None:
        progress("already running; `down` first to change the config")
        return running
    down(progress)  # clear leftovers of a half-dead previous run
    workdir = cache_dir() / "devservers"
    binary = ensure_livekit_binary()
    redis = RedisServer(workdir=workdir, detached=True)
    lk = LiveKitServer(lk_config, redis=redis, binary=binary, workdir=workdir, detached=True)
    gateway: GatewayServer | None = None
    try:
        redis.start()
        lk.start()
        if region:
            gateway_config, gateway_keys = region_gateway(region, root, upstream=lk.http_url)
            gateway = GatewayServer(gateway_config, gateway_keys, workdir=workdir, detached=True).start()
    except (ServerStartError, ValueError) as e:
        lk.stop()
        redis.stop()
        raise ServersError(str(e)) from e

    assert redis.record is not None and lk.record is not None
    state: dict[str, Any] = {
        "redis": {**redis.record.as_json(), "address": redis.address, "log": str(redis.log_path)},
        "livekit": {
            **lk.record.as_json(),
            "binary": str(binary),
            "url": lk.url,
            "http_url": lk.http_url,
            "api_key": lk.api_key,
            "api_secret": lk.api_secret,
            "config": str(lk.config_path),
            "log": str(lk.log_path),
        },
    }
    if gateway is not None and gateway.record is not None:
        state["gateway"] = {**gateway.record.as_json(), "url": gateway.url, "config": str(gateway.config_path),
                            "log": str(gateway.log_path)}
    if region:
        # Agent pods the dev cluster runs reach LiveKit through these (its pod runner reads them).
        state["standins"] = standins.publish_region_servers(
            load_region(root, region).region, livekit=f"{LOOPBACK}:{lk.port}",
            gateway=f"{LOOPBACK}:{gateway.port}" if gateway is not None else None)
    write_private(state_path(), json.dumps(state, indent=2))  # holds the API secret, like the config file
    progress(
        f"livekit-server {lk.http_url} (log {lk.log_path}), redis {redis.address}"
        + (f", gateway {gateway.http_url} (log {gateway.log_path})" if gateway is not None else "")
    )
    return state


def down(progress: Callable[[str], None], quiet: bool = False) -> None:
    """Stop what `up` recorded (only those processes) and forget it."""
    path = state_path()
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return
    if isinstance(state, dict):
        for address in state.get("standins") or []:
            standins.withdraw(address)
        for name, record in _records(state).items():
            if record is not None:
                record.stop(timeout=5.0, term_twice=name != "redis")
    path.unlink(missing_ok=True)
    if not quiet:
        progress("stopped")
