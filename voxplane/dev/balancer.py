"""A Service on loopback: one TCP port in front of several replicas of a server (the gateway's two),
as kube-proxy puts a Service's address in front of its ready endpoints.

Each new connection goes to the next replica in turn; a replica that refuses the connection (its
process gone) is skipped for that connection, as a dead pod's endpoint leaves the Service once
its readiness fails. Bytes are copied both ways until either side closes; a replica that dies
drops the connections it carried, and their clients reconnect through the same port to another.

    python -m voxplane.dev.balancer --listen 7880 --backend 127.0.0.1:8001 --backend 127.0.0.1:8002

SIGUSR1 resets every connection it carries, both ways (TCP RST, no WebSocket close frame): a fault
of the network between clients and replicas, with every process alive (`reset_connections`).

`BalancerServer` runs that as a supervised process (the dev servers, the fault tests).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import Self, Sequence

from .ports import LOOPBACK, free_port
from .process import ServerProcess

__all__ = ["BalancerServer", "serve"]

#: Seconds to wait for a replica to accept a connection before trying the next.
CONNECT_TIMEOUT = 2.0
CHUNK = 64 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except (ConnectionError, OSError):
            pass


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (linger 0), as a network fault ends a connection."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def serve(listen_port: int, backends: Sequence[tuple[str, int]], stop: asyncio.Event,
                reset: asyncio.Event | None = None) -> None:
    """Balance connections to `listen_port` over `backends` until `stop` is set; each time `reset`
    is set, reset every connection carried then (and clear it)."""
    turn = itertools.cycle(range(len(backends)))
    carried: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        start = next(turn)
        for i in range(len(backends)):
            host, port = backends[(start + i) % len(backends)]
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError):
                continue
            pair = (client_writer, writer)
            carried.add(pair)
            try:
                await asyncio.gather(_pipe(client_reader, writer), _pipe(reader, client_writer))
            finally:
                carried.discard(pair)
            return
        client_writer.close()  # no replica up: the client sees the connection closed

    async def resets(reset: asyncio.Event) -> None:
        while True:
            await reset.wait()
            reset.clear()
            for pair in list(carried):
                for w in pair:
                    _reset(w)

    server = await asyncio.start_server(handle, LOOPBACK, listen_port, reuse_address=True)
    resetting = asyncio.ensure_future(resets(reset)) if reset is not None else None
    async with server:
        await stop.wait()
    if resetting is not None:
        resetting.cancel()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m voxplane.dev.balancer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=int, required=True, help="Port on 127.0.0.1.")
    parser.add_argument("--backend", action="append", required=True, help="host:port of a replica (repeat).")
    args = parser.parse_args(argv)
    backends = [(b.rsplit(":", 1)[0], int(b.rsplit(":", 1)[1])) for b in args.backend]

    async def run() -> None:
        stop, reset = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, reset.set)
        await serve(args.listen, backends, stop, reset)

    asyncio.run(run())


class BalancerServer(ServerProcess):
    """The balancer as a process of ours; `url`/`http_url` are what clients use instead of a replica's."""

    name = "balancer"

    def __init__(self, backends: Sequence[tuple[str, int]], *, port: int | None = None,
                 workdir: Path | str | None = None, detached: bool = False, startup_timeout: float = 10.0) -> None:
        super().__init__(workdir, detached)
        self.backends = list(backends)
        self.port = port or free_port("tcp")
        self.startup_timeout = startup_timeout

    @property
    def url(self) -> str:
        return f"ws://{LOOPBACK}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> Self:
        argv = [sys.executable, "-m", "voxplane.dev.balancer", "--listen", str(self.port)]
        for host, port in self.backends:
            argv += ["--backend", f"{host}:{port}"]
        self._spawn(argv)
        self._await_start(self.listening, f"not listening on {LOOPBACK}:{self.port}", 0.05, self.startup_timeout)
        return self

    def reset_connections(self) -> None:
        """Reset every connection the balancer carries now, both ways (see the module's doc)."""
        assert self.pid is not None and self.running, "the balancer is not running"
        os.kill(self.pid, signal.SIGUSR1)

    def listening(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=0.5):
                return True
        except OSError:
            return False


if __name__ == "__main__":
    main()
