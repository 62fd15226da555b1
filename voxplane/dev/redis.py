"""A throwaway redis-server on loopback, for the dev servers and the tests."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Self

from .ports import LOOPBACK, free_port
from .process import ServerProcess

__all__ = ["REMOTE_ONLY_KEYS", "RedisServer"]

#: `redis.*` settings of a livekit-server or livekit-sip config that only make sense for the
#: deployment's Redis (credentials, TLS, sentinel, cluster): dropped for a local one.
REMOTE_ONLY_KEYS = frozenset({
    "username", "password", "use_tls", "tls", "max_redirects", "cluster_addresses",
    "sentinel_master_name", "sentinel_username", "sentinel_password", "sentinel_addresses",
})


class RedisServer(ServerProcess):
    """redis-server on 127.0.0.1, with persistence off unless `persistent` (an append-only file in
    the working folder, as the region's in-cluster Redis keeps one: a restart keeps the data)."""

    name = "redis"

    def __init__(
        self,
        port: int | None = None,
        *,
        executable: str = "redis-server",
        startup_timeout: float = 10.0,
        workdir: Path | str | None = None,
        detached: bool = False,
        persistent: bool = False,
    ) -> None:
        super().__init__(workdir, detached)
        self.port = port or free_port("tcp")
        self.executable = executable
        self.startup_timeout = startup_timeout
        self.persistent = persistent

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> Self:
        # fmt: off
        self._spawn([
            self.executable,
            "--port", str(self.port),
            "--bind", LOOPBACK,
            "--save", "",            # no RDB snapshots
            "--appendonly", "yes" if self.persistent else "no",
            "--protected-mode", "yes",
            "--dir", str(self.workdir),
            "--daemonize", "no",     # we own the process; logs go to stdout -> log file
        ])
        # fmt: on
        self._await_start(self.ping, "did not answer PING", 0.05, self.startup_timeout)
        return self

    def ping(self) -> bool:
        """True when the server answers a RESP PING with +PONG."""
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=1.0) as s:
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False
