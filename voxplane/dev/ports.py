"""Free loopback ports for the local servers: everything here listens on 127.0.0.1 only.

Ports are picked at random below the kernel's ephemeral range, never by binding port 0: a port is
often written down (a region's Prometheus URL, a server's flags) well before its server starts, and
in that time the kernel may hand an ephemeral port to any outgoing connection or any `bind(0)` on the
machine (a second test lane, a demo). Below the range, only another explicit pick can take it; that
race is rare and shows up as the server's own "address already in use" start error.

Processes that pick ports at the same time (the test lanes) each pick from their own share of the
range (`VOXPLANE_PORT_SHARE=i/n`: the i-th of n equal parts, from 0), so no two of them can pick
the same port while neither has started its server yet.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["LOOPBACK", "SHARE_VARIABLE", "Ports", "free_port", "free_port_range", "free_ports", "picked_range", "port_free",
           "share_of"]

LOOPBACK = "127.0.0.1"

Kind = Literal["tcp", "udp", "both"]


# Above the ports servers are usually configured on (Redis, registries, 8000-9999, 19090 of the
# `local` region's Prometheus), below the default ephemeral range (32768-60999).
FIRST_PICKED = 20000
_random = random.SystemRandom()


#: The environment variable naming this process's share of the range ("i/n").
SHARE_VARIABLE = "VOXPLANE_PORT_SHARE"


def picked_range() -> range:
    """The ports `free_ports` picks from: below the kernel's ephemeral range where there is room;
    of those, this process's share (`VOXPLANE_PORT_SHARE`)."""
    try:
        ephemeral_start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_start = 32768
    if ephemeral_start - FIRST_PICKED >= 4096:
        whole = range(FIRST_PICKED, ephemeral_start)
    else:
        whole = range(1024, 65536)  # a kernel whose ephemeral range leaves no room below it
    return share_of(whole, os.environ.get(SHARE_VARIABLE, ""))


def share_of(ports: range, share: str) -> range:
    """The `share` ("i/n": the i-th of n equal parts, from 0) of `ports`; all of them for ""."""
    if not share:
        return ports
    try:
        index, count = (int(part) for part in share.split("/"))
    except ValueError:
        raise ValueError(f"{SHARE_VARIABLE}={share!r}: expected i/n, e.g. 0/2") from None
    if not 0 <= index < count:
        raise ValueError(f"{SHARE_VARIABLE}={share!r}: i must be at least 0 and less than n")
    size = len(ports) // count
    return ports[index * size:(index + 1) * size]


def free_ports(count: int, kind: Literal["tcp", "udp"] = "tcp", *, exclude: Collection[int] = ()) -> list[int]:
    """`count` distinct ports, none in `exclude`, that are free on 127.0.0.1 right now.

    All probe sockets stay open until every port is picked, so no port is picked twice.
    """
    sock_type = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    candidates = picked_range()
    probes: list[socket.socket] = []
    try:
        for _ in range(100 * count):
            port = _random.choice(candidates)
            if port in exclude:
                continue
            s = socket.socket(socket.AF_INET, sock_type)
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                s.close()
                continue
            probes.append(s)
            if len(probes) == count:
                return [p.getsockname()[1] for p in probes]
        raise OSError(f"no {count} free {kind.upper()} ports on {LOOPBACK} in {candidates.start}-{candidates.stop - 1}")
    finally:
        for s in probes:
            s.close()


def port_free(port: int, kind: Kind = "tcp") -> bool:
    """True when `port` can be bound on 127.0.0.1 now (for "both": over TCP and over UDP)."""
    if not 0 < port < 65536:
        return False
    types = {"tcp": [socket.SOCK_STREAM], "udp": [socket.SOCK_DGRAM], "both": [socket.SOCK_STREAM, socket.SOCK_DGRAM]}
    for sock_type in types[kind]:
        with socket.socket(socket.AF_INET, sock_type) as s:
            if sock_type == socket.SOCK_STREAM:
                # As the servers' listeners bind (Go's and asyncio's set it): connections of a
                # stopped server in TIME_WAIT do not keep its port from being listened on again.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


def free_port(kind: Kind = "tcp") -> int:
    """One port that is free on 127.0.0.1 right now; "both": free for TCP and UDP alike (a SIP
    port: livekit-sip listens on both)."""
    if kind != "both":
        return free_ports(1, kind)[0]
    for _ in range(50):
        port = free_ports(1, "udp")[0]
        if port_free(port, "tcp"):
            return port
    raise OSError(f"no port free for UDP and TCP on {LOOPBACK}")


def free_port_range(count: int) -> tuple[int, int]:
    """(first, last) of `count` consecutive ports free for UDP on 127.0.0.1 right now (an RTP range)."""
    for _ in range(50):
        start = free_ports(1, "udp")[0]
        if start + count <= 65536 and all(port_free(p, "udp") for p in range(start, start + count)):
            return start, start + count - 1
    raise OSError(f"no {count} consecutive free UDP ports on {LOOPBACK}")


@dataclass
class Ports:
    """The loopback ports of the dev cluster's processes (control plane, Prometheus, KEDA)."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    scheduler: int
    kwok: int
    prometheus: int
    keda_metrics: int
    keda_health: int
    keda_grpc: int
    keda_adapter: int
    keda_adapter_metrics: int

    @classmethod
    def pick(cls, previous: dict[str, int] | None, *, prometheus: int | None = None) -> "Ports":
        """The previous run's ports when all are still free (a restarted cluster keeps its URL), else
        new ones. `prometheus`: the port a region's Prometheus URL names; no other process gets it."""
        fixed = {"prometheus": prometheus} if prometheus is not None else {}
        names = [n for n in cls.__dataclass_fields__ if n not in fixed]
        if previous and all(port_free(previous.get(n, 0)) and previous[n] != prometheus for n in names):
            return cls(**{n: int(previous[n]) for n in names}, **fixed)
        return cls(**dict(zip(names, free_ports(len(names), exclude=set(fixed.values())))), **fixed)
