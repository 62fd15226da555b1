"""Benchmark: what the authorizing gateway (voxplane/gateway) adds to LiveKit calls, on loopback.

Starts Redis, livekit-server with the `local` region's config and the gateway with the config
`local` renders, run as its image runs it (the package alone, with the image's locked
requirements: tests/gateway/_image.py, as the integration tests do), then times, interleaved, direct to the server
(platform admin key) and through the gateway (tenant northwind's key):

- room join: open /rtc and read up to the server's JoinResponse (new room each time; the
  participant leaves right after);
- API call: RoomService.ListRooms over one kept-alive HTTP session;
- agent registration: open /agent, send RegisterWorkerRequest, read RegisterWorkerResponse.

Prints p50/p95 per path and the gateway's added time (p50 difference) and ratio. Not a timed test.
    .venv/bin/python bench/gateway.py [--joins 40] [--calls 300] [--registrations 40]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Awaitable, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
from livekit.protocol import room as room_pb  # noqa: E402

from tests.gateway._image import gateway_image_python, stage_image_context  # noqa: E402
from tests.gateway._lk import Worker, join, token, twirp  # noqa: E402
from tests.support.servers import livekit_with_redis  # noqa: E402
from tests.support.stats import percentile  # noqa: E402
from voxplane.desired.common import ADMIN_KEY, tenant_api_key  # noqa: E402
from voxplane.dev.stack import dev_root_secret  # noqa: E402
from voxplane.dev.gateway import GatewayServer  # noqa: E402
from voxplane.dev.livekit import LiveKitServer  # noqa: E402
from voxplane.dev.region import region_gateway  # noqa: E402
from voxplane.livekit.keys import derive_api_secret  # noqa: E402

REGION, TENANT, AGENT = "local", "northwind", "northwind-support"


async def timed(n: int, direct: Callable[[int], Awaitable[None]], gated: Callable[[int], Awaitable[None]]
                ) -> tuple[list[float], list[float]]:
    d: list[float] = []
    g: list[float] = []
    for i in range(n):  # interleaved, so drift in the machine's load hits both alike
        for fn, out in ((direct, d), (gated, g)):
            t = time.perf_counter()
            await fn(i)
            out.append((time.perf_counter() - t) * 1000)
    return d, g


def report(name: str, d: list[float], g: list[float]) -> None:
    dp50, gp50 = percentile(d, 50), percentile(g, 50)
    print(f"{name:<20} direct p50 {dp50:7.2f} ms p95 {percentile(d, 95):7.2f} ms | gateway p50 {gp50:7.2f} ms "
          f"p95 {percentile(g, 95):7.2f} ms | added p50 {gp50 - dp50:+6.2f} ms ({gp50 / dp50:.2f}x)")


async def bench(lk: LiveKitServer, gw: GatewayServer, joins: int, calls: int, registrations: int) -> None:
    root = dev_root_secret(REGION)
    admin = (ADMIN_KEY, derive_api_secret(root, REGION, ADMIN_KEY))
    tenant = (tenant_api_key(TENANT), derive_api_secret(root, REGION, tenant_api_key(TENANT)))
    async with aiohttp.ClientSession() as s:
        async def join_at(base: str, key: tuple[str, str], i: int) -> None:
            ws, _ = await join(s, base, token(*key, sub=f"u{i}", video={"roomJoin": True, "room": f"northwind_b{i}"}))
            await ws.close()

        d, g = await timed(joins, lambda i: join_at(lk.http_url, admin, 2 * i),
                           lambda i: join_at(gw.http_url, tenant, 2 * i + 1))
        report("room join", d, g)

        admin_list, tenant_list = token(*admin, video={"roomList": True}), token(*tenant, video={"roomList": True})
        session = aiohttp.ClientSession()
        try:
            async def call(base: str, tok: str) -> None:
                async with session.post(f"{base}/twirp/livekit.RoomService/ListRooms",
                                        data=room_pb.ListRoomsRequest().SerializeToString(),
                                        headers={"Authorization": f"Bearer {tok}",
                                                 "Content-Type": "application/protobuf"}) as r:
                    assert r.status == 200, await r.text()
                    await r.read()

            await call(lk.http_url, admin_list)
            await call(gw.http_url, tenant_list)  # warm both connections
            d, g = await timed(calls, lambda i: call(lk.http_url, admin_list), lambda i: call(gw.http_url, tenant_list))
            report("API call (ListRooms)", d, g)
        finally:
            await session.close()

        async def register(base: str, key: tuple[str, str]) -> None:
            worker = await Worker.connect(s, base, token(*key, video={"agent": True}))
            await worker.register(AGENT)
            await worker.close()

        d, g = await timed(registrations, lambda i: register(lk.http_url, admin), lambda i: register(gw.http_url, tenant))
        report("agent registration", d, g)
        # Sanity: the same tenant call the server itself refuses.
        status, _ = await twirp(lk.http_url, "RoomService", "ListRooms", room_pb.ListRoomsRequest(), tenant_list)
        assert status == 401, "the server must not know tenant keys"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--joins", type=int, default=40)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--registrations", type=int, default=40)
    args = parser.parse_args()
    python = gateway_image_python()
    with tempfile.TemporaryDirectory() as tmp, livekit_with_redis(region=REGION) as lk:
        context = stage_image_context(Path(tmp) / "opt-voxplane")
        config, keys = region_gateway(REGION, REPO, upstream=lk.url)
        with GatewayServer(config, keys, python=python, pythonpath=context) as gw:
            print(f"livekit-server {lk.url}, gateway {gw.http_url} (its own process), loopback")
            asyncio.run(bench(lk.livekit, gw, args.joins, args.calls, args.registrations))
    return 0


if __name__ == "__main__":
    sys.exit(main())
