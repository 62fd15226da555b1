"""Free loopback ports for the local servers: everything here listens on 127.0.0.1 only.

A port found free may still be taken by another process before it is used; that race is rare and
shows up as the server's own "address already in use" start error.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Literal

__all__ = ["LOOPBACK", "Ports", "free_port", "free_port_range", "free_ports", "port_free"]

LOOPBACK = "127.0.0.1"

Kind = Literal["tcp", "udp", "both"]


def free_ports(count: int, kind: Literal["tcp", "udp"] = "tcp") -> list[int]:
    """`count` distinct ports that are free on 127.0.0.1 right now.

    All probe sockets stay open until every port is picked, so the kernel cannot hand out the
    same port twice.
    """
    sock_type = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    probes: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, sock_type)
            probes.append(s)
            s.bind((LOOPBACK, 0))
        return [s.getsockname()[1] for s in probes]
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
    def pick(cls, previous: dict[str, int] | None) -> "Ports":
        """The previous run's ports when all are still free (a restarted cluster keeps its URL)."""
        names = list(cls.__dataclass_fields__)
        if previous and all(port_free(previous.get(n, 0)) for n in names):
            return cls(**{n: int(previous[n]) for n in names})
        return cls(*free_ports(len(names)))
