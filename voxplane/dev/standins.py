"""Which loopback address plays a cluster address on this machine: the dev servers stand in for a
region's Services (livekit-server for `livekit`, the gateway for `livekit-gateway`), and a process
a test runs may stand in for a pod's container port (a model server's /metrics).

The pod runner reads this when it starts a worker (an env value naming `<svc>.<ns>.svc…:<port>`
gets the stand-in's address) and when it turns PodMonitors into scrape targets (a pod's port gets
its stand-in's address). What has no stand-in is not on this machine: the runner points it at a
closed loopback port and says so.

One JSON file, `dev_dir()/standins.json`, rewritten by rename:

    {"services": {"vox-system/livekit-gateway:7880": "127.0.0.1:41234", ...},
     "pods":     {"vox-inference/chat-0:8000": "127.0.0.1:41301", ...}}
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from .paths import dev_dir

if TYPE_CHECKING:
    from ..manifest.model import Region

__all__ = ["StandIns", "path", "publish_pod_port", "publish_region_servers", "publish_service", "read", "withdraw"]


def path() -> Path:
    return dev_dir() / "standins.json"


@dataclass(frozen=True)
class StandIns:
    """`services`: `ns/svc:port` -> `host:port`; `pods`: `ns/pod:port` -> `host:port`."""

    services: Mapping[str, str] = field(default_factory=dict)
    pods: Mapping[str, str] = field(default_factory=dict)

    def service(self, namespace: str, service: str, port: int) -> str | None:
        return self.services.get(f"{namespace}/{service}:{port}")

    def pod_port(self, namespace: str, pod: str, port: int) -> str | None:
        return self.pods.get(f"{namespace}/{pod}:{port}")


def read() -> StandIns:
    try:
        data: Any = json.loads(path().read_text())
    except (OSError, ValueError):
        return StandIns()
    if not isinstance(data, dict):
        return StandIns()
    return StandIns({str(k): str(v) for k, v in (data.get("services") or {}).items()},
                    {str(k): str(v) for k, v in (data.get("pods") or {}).items()})


def _write(standins: StandIns) -> None:
    target = path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"services": dict(sorted(standins.services.items())),
                               "pods": dict(sorted(standins.pods.items()))}, indent=2) + "\n")
    os.replace(tmp, target)


@contextlib.contextmanager
def _locked() -> Iterator[StandIns]:
    """The current entries, with the file's lock held (two writers never lose each other's)."""
    lock = path().with_name(path().name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield read()


def publish_service(namespace: str, service: str, port: int, address: str) -> None:
    """`address` (`host:port`) plays Service `namespace/service`'s `port` until `withdraw`."""
    with _locked() as current:
        _write(StandIns({**current.services, f"{namespace}/{service}:{port}": address}, current.pods))


def publish_pod_port(namespace: str, pod: str, port: int, address: str) -> None:
    """`address` plays container port `port` of pod `namespace/pod` until `withdraw`."""
    with _locked() as current:
        _write(StandIns(current.services, {**current.pods, f"{namespace}/{pod}:{port}": address}))


def withdraw(address: str) -> None:
    """Forget every entry `address` plays (its process is stopping)."""
    with _locked() as current:
        _write(StandIns({k: v for k, v in current.services.items() if v != address},
                        {k: v for k, v in current.pods.items() if v != address}))


def entries(standins: StandIns) -> Iterator[tuple[str, str, str]]:
    """(kind, key, address) of every entry, services first: for listings."""
    for key, address in sorted(standins.services.items()):
        yield "service", key, address
    for key, address in sorted(standins.pods.items()):
        yield "pod", key, address


def publish_region_servers(region: "Region", *, livekit: str, gateway: str | None) -> list[str]:
    """The dev servers of `region` stand in for its Services: livekit-server (`livekit`, its HTTP
    port) and the gateway (`livekit-gateway`, the port agents dial). Returns the addresses (to
    `withdraw` on stop)."""
    from ..desired.common import GATEWAY_PORT, GATEWAY_SERVICE, LIVEKIT_SERVICE, system_namespace

    ns = system_namespace(region)
    publish_service(ns, LIVEKIT_SERVICE, region.livekit.ports.http, livekit)
    if gateway is not None:
        publish_service(ns, GATEWAY_SERVICE, GATEWAY_PORT, gateway)
    return [livekit, *([gateway] if gateway else [])]
