"""The dev servers: Redis, livekit-server and (with a region) what the region runs beside it,
on loopback in the background until `down`, for `make demo`, `voxplane livekit ...` and
`voxplane status` by hand.

    eval "$(voxplane dev servers up [--config livekit.yaml | --region local])"
    voxplane dev servers down

What runs is recorded in `$VOXPLANE_CACHE/devservers.json` (0600: it holds the admin key's secret),
each process by pid and create time, so `env` and `down` (in another process) find exactly the
processes `up` started, and a record whose processes have gone is never used. With a region, the
server runs the config the region renders, with its webhooks sent to the lost-agent recovery
controller (`recovery`), and the gateway's replicas (`gateways`, as many as the region renders)
run behind one port (`balancer`, the Service's stand-in); `up` then also prints
`export VOXPLANE_LIVEKIT_TENANT_URL=...`, that port, where tenant credentials work
(`voxplane dev credentials REGION TENANT`). The servers themselves: `redis`, `livekit`, `gateway`,
`recovery`, `balancer`.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Callable

import yaml

from ..manifest.loader import load_region
from . import standins
from .balancer import BalancerServer
from .gateway import GatewayServer
from .livekit import DEFAULT_CONFIG, LiveKitServer, ensure_livekit_binary
from .paths import cache_dir, write_private
from .ports import LOOPBACK
from .process import ProcessRecord, ServerProcess, ServerStartError
from .recovery import RecoveryServer
from .redis import RedisServer
from .region import region_config, region_gateway, region_recovery

__all__ = ["ServersError", "down", "exports", "load_config_file", "running_state", "state_path", "up"]

#: The servers of a state, in `down`'s order: the Service stand-in and the gateways first, the
#: recovery controller, then LiveKit (it unregisters its node from Redis while draining), then Redis.
#: `gateways` holds a list of records, the others one each.
_SERVERS = ("balancer", "gateways", "recovery", "livekit", "redis")
#: Servers whose first SIGTERM starts a drain: `down` sends a second.
_TERM_TWICE = frozenset({"gateways", "livekit"})


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
    if "balancer" in state:
        # Where tenant credentials work (they are not valid at LIVEKIT_URL, the server itself).
        pairs["VOXPLANE_LIVEKIT_TENANT_URL"] = state["balancer"]["url"]
    return "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in pairs.items())


def _records(state: Mapping[str, Any]) -> Iterator[tuple[str, ProcessRecord | None]]:
    """(server, its record) of every process the state names, in `down`'s order."""
    for name in _SERVERS:
        entries = state.get(name)
        for entry in entries if isinstance(entries, list) else [entries] if entries is not None else []:
            yield name, ProcessRecord.from_json(entry)


def running_state() -> dict[str, Any] | None:
    """The recorded state while every server `up` started still runs (the same processes: pid and
    create time), else None."""
    try:
        state: dict[str, Any] = json.loads(state_path().read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or "livekit" not in state or "redis" not in state:
        return None
    if all(record is not None and record.running for _, record in _records(state)):
        return state
    return None


def up(config: Mapping[str, Any] | None, *, region: str | None, root: Path,
       progress: Callable[[str], None]) -> dict[str, Any]:
    """Start Redis + livekit-server detached (with `region`: its rendered config, its recovery
    controller and its gateway's replicas behind one port; else `config`, default `DEFAULT_CONFIG`),
    record them and return the state. Servers already running are kept (and their state returned):
    `down` first to change the config."""
    from ..desired.gateway import GATEWAY_REPLICAS

    # The region first: a name that names none (UnknownRegion) or invalid manifests (ManifestError)
    # stop or start nothing.
    lk_config = region_config(region, root) if region else dict(config or DEFAULT_CONFIG)
    recovery_config = region_recovery(region, root) if region else None
    if (running := running_state()) is not None:
        progress("already running; `down` first to change the config")
        return running
    down(progress)  # clear leftovers of a half-dead previous run
    workdir = cache_dir() / "devservers"
    binary = ensure_livekit_binary()
    redis = RedisServer(workdir=workdir, detached=True)
    recovery: RecoveryServer | None = None
    if recovery_config is not None:
        # Its ports first: livekit-server's config names its webhook URL.
        recovery = RecoveryServer(*recovery_config, workdir=workdir, detached=True)
    lk = LiveKitServer(lk_config, redis=redis, binary=binary, workdir=workdir, detached=True,
                       webhook_urls=[recovery.webhook_url] if recovery else ())
    gateways: list[GatewayServer] = []
    balancer: BalancerServer | None = None
    started: list[ServerProcess] = []
    try:
        started += [redis.start(), lk.start()]
        if region and recovery is not None:
            recovery.upstream = lk.http_url
            started.append(recovery.start())
            gateway_config, gateway_keys = region_gateway(region, root, upstream=lk.http_url)
            for i in range(GATEWAY_REPLICAS):  # as many as the region's Deployment runs
                gateway = GatewayServer(gateway_config, gateway_keys, workdir=workdir / f"gateway-{i}", detached=True)
                started.append(gateway.start())
                gateways.append(gateway)
            balancer = BalancerServer([(LOOPBACK, g.port) for g in gateways], workdir=workdir, detached=True)
            started.append(balancer.start())
    except (ServerStartError, ValueError) as e:
        for process in reversed(started):
            process.stop()
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
    if recovery is not None and recovery.record is not None:
        state["recovery"] = {**recovery.record.as_json(), "webhook_url": recovery.webhook_url,
                             "metrics_url": recovery.metrics_url, "log": str(recovery.log_path)}
    if gateways and balancer is not None and balancer.record is not None:
        state["gateways"] = [{**g.record.as_json(), "url": g.url, "config": str(g.config_path), "log": str(g.log_path)}
                             for g in gateways if g.record is not None]
        state["balancer"] = {**balancer.record.as_json(), "url": balancer.url, "log": str(balancer.log_path)}
    if region:
        # Agent pods the dev cluster runs reach LiveKit through these (its pod runner reads them);
        # the gateway's Service is its replicas' balancer, as in a cluster.
        state["standins"] = standins.publish_region_servers(
            load_region(root, region).region, livekit=f"{LOOPBACK}:{lk.port}",
            gateway=f"{LOOPBACK}:{balancer.port}" if balancer is not None else None)
    write_private(state_path(), json.dumps(state, indent=2))  # holds the API secret, like the config file
    progress(
        f"livekit-server {lk.http_url} (log {lk.log_path}), redis {redis.address}"
        + (f", recovery {recovery.webhook_url} (log {recovery.log_path})" if recovery is not None else "")
        + (f", gateway x{len(gateways)} behind {balancer.http_url} (logs {workdir}/gateway-*/)"
           if balancer is not None else "")
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
        for name, record in _records(state):
            if record is not None:
                record.stop(timeout=5.0, term_twice=name in _TERM_TWICE)
    path.unlink(missing_ok=True)
    if not quiet:
        progress("stopped")
