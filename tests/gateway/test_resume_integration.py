"""A participant comes back through the gateway with the refresh token the server sent it
(voxplane/gateway/refresh.py), against the real livekit-server and the gateway as its image runs it.

livekit-server sends each participant a refresh token right after it joins, signed with any one of
its three keys; a LiveKit SDK presents the latest one when it resumes or rejoins after its
signalling connection dropped (a gateway replica gone: tests/recovery/test_faults_integration.py).
Before the gateway signed the tokens again, two in three carried `vx-admin` or `vx-recovery`, which
the gateway refuses: with six participants, this passed by chance once in 3^6 = 729 runs.
"""

from __future__ import annotations

import asyncio

import aiohttp
import jwt
import pytest
from livekit.protocol import rtc as rtc_pb

from ._lk import join, token
from .conftest import B, B_ROOM, Stack

pytestmark = pytest.mark.integration

PARTICIPANTS = 6


async def refresh_token(ws: aiohttp.ClientWebSocketResponse) -> str:
    """The first refresh token on a signalling socket."""
    while True:
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type == aiohttp.WSMsgType.BINARY, (msg.type, msg.data)
        resp = rtc_pb.SignalResponse.FromString(msg.data)
        if resp.WhichOneof("message") == "refresh_token":
            return resp.refresh_token


def test_a_participant_rejoins_through_the_gateway_with_its_refresh_token(stack: Stack) -> None:
    b = stack.tenant(B)

    async def one(session: aiohttp.ClientSession, identity: str) -> None:
        ws, joined = await join(session, stack.gateway_url,
                                token(b.key, b.secret, sub=identity, video={"roomJoin": True, "room": B_ROOM}))
        assert joined.room.name == B_ROOM and joined.participant.identity == identity
        refreshed = await refresh_token(ws)
        await ws.close()  # the signalling connection drops
        again, rejoined = await join(session, stack.gateway_url, refreshed)  # HandshakeRefused(401) before
        assert rejoined.room.name == B_ROOM and rejoined.participant.identity == identity
        await again.close()
        claims = jwt.decode(refreshed, options={"verify_signature": False})
        assert claims["iss"] == "vx-gateway" and claims["sub"] == identity and claims["video"]["room"] == B_ROOM

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            for i in range(PARTICIPANTS):
                await one(session, f"rejoining-{i}")

    asyncio.run(go())
