"""The gateway while livekit-server restarts (issue #19 item 2): a request the gateway cannot
forward gets a clean, retryable refusal in LiveKit's own shapes (Twirp `unavailable`, 503; a
WebSocket upgrade 502), the gateway logs the outage once and no traceback, and it serves again as
soon as the server is back, with nothing restarted by hand. Real livekit-server and Redis, the
gateway as its image runs it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from livekit.protocol import room as room_pb

from voxplane.dev.gateway import GatewayServer
from voxplane.dev.livekit import LiveKitServer
from voxplane.dev.redis import RedisServer
from voxplane.dev.region import region_config, region_gateway

from ..support.wait import wait_until
from ._image import gateway_image_python, stage_image_context
from ._lk import HandshakeRefused, join, token, twirp
from .conftest import A, A_ROOM, REGION, REPO, Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """Servers of this test's own (it stops livekit-server): Redis, livekit-server and the gateway."""
    context = stage_image_context(tmp_path / "opt-voxplane")
    with RedisServer() as redis, LiveKitServer(region_config(REGION, REPO), redis=redis,
                                               workdir=tmp_path / "livekit") as lk:
        config, keys = region_gateway(REGION, REPO, upstream=lk.http_url)
        with GatewayServer(config, keys, python=gateway_image_python(), pythonpath=context,
                           workdir=tmp_path / "gateway") as gw:
            yield Stack(redis, lk, gw)


def _list_rooms(stack: Stack) -> tuple[int, Any]:
    creds = stack.tenant(A)
    return asyncio.run(twirp(stack.gateway_url, "RoomService", "ListRooms", room_pb.ListRoomsRequest(),
                             token(creds.key, creds.secret, video={"roomList": True})))


def _validate(stack: Stack) -> int:
    creds = stack.tenant(A)
    tok = token(creds.key, creds.secret, sub="caller", video={"roomJoin": True, "room": A_ROOM})

    async def go() -> int:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{stack.gateway_url}/rtc/validate", params={"access_token": tok}) as r:
                return r.status

    return asyncio.run(go())


def _join_status(stack: Stack) -> int:
    creds = stack.tenant(A)
    tok = token(creds.key, creds.secret, sub="caller", video={"roomJoin": True, "room": A_ROOM})

    async def go() -> int:
        async with aiohttp.ClientSession() as s:
            try:
                ws, _ = await join(s, stack.gateway_url, tok)
            except HandshakeRefused as refused:
                return refused.status
            await ws.close()
            return 101

    return asyncio.run(go())


def test_a_restarted_livekit_server_gets_clean_refusals_meanwhile_and_service_after(stack: Stack) -> None:
    assert _list_rooms(stack)[0] == 200

    stack.livekit.stop()
    status, body = _list_rooms(stack)
    # Twirp's `unavailable`: livekit-api raises it as a ServerError and retries it (5xx).
    assert status == 503 and isinstance(body, dict) and body.get("code") == "unavailable", (status, body)
    assert _validate(stack) == 503
    assert _join_status(stack) == 502
    assert _list_rooms(stack)[0] == 503
    log = stack.gateway.log_path.read_text()
    assert "Traceback" not in log, log
    assert log.count("unreachable") == 1, log

    stack.livekit.start()  # the same ports: what a restarted pod behind its Service looks like
    status, body = wait_until("the gateway to serve again", lambda: (r := _list_rooms(stack))[0] == 200 and r,
                              timeout=30)
    assert isinstance(body, bytes)
    assert _validate(stack) == 200
    log = stack.gateway.log_path.read_text()
    assert "answers again" in log and "Traceback" not in log, log
