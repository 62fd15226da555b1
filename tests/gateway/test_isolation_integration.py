"""Tenant isolation against the real livekit-server, through the gateway running as a process
with the config the `local` region renders (issue #9). Tenant A (northwind) holds only its own
credentials, as its pods do; every way of reaching tenant B (bellavista) fails, and A's own agent
still registers, is dispatched into A's rooms, joins and ends its call."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit.protocol import agent_dispatch as dispatch_pb
from livekit.protocol import models as models_pb
from livekit.protocol import room as room_pb
from livekit.protocol import sip as sip_pb

from ._lk import HandshakeRefused, Worker, join, metric, token, twirp
from .conftest import A, A_AGENT, A_ROOM, B, B_AGENT, B_ROOM, Stack

pytestmark = pytest.mark.integration


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def _admin_token(stack: Stack, **video: Any) -> str:
    return token(stack.admin.key, stack.admin.secret, video=video)


def _a(stack: Stack, **claims: Any) -> str:
    c = stack.tenant(A)
    return token(c.key, c.secret, **claims)


def _b(stack: Stack, **claims: Any) -> str:
    c = stack.tenant(B)
    return token(c.key, c.secret, **claims)


async def _create_room(stack: Stack, name: str) -> None:
    status, _ = await twirp(stack.server_url, "RoomService", "CreateRoom", room_pb.CreateRoomRequest(name=name),
                            _admin_token(stack, roomCreate=True))
    assert status == 200


async def _rooms(stack: Stack) -> list[str]:
    status, resp = await twirp(stack.server_url, "RoomService", "ListRooms", room_pb.ListRoomsRequest(),
                               _admin_token(stack, roomList=True), room_pb.ListRoomsResponse)
    assert status == 200, resp
    return sorted(r.name for r in resp.rooms)


async def _participants(stack: Stack, room: str) -> list[str]:
    status, resp = await twirp(stack.server_url, "RoomService", "ListParticipants",
                               room_pb.ListParticipantsRequest(room=room),
                               _admin_token(stack, roomAdmin=True, room=room), room_pb.ListParticipantsResponse)
    assert status == 200, resp
    return sorted(p.identity for p in resp.participants)


def _denied(result: tuple[int, Any]) -> None:
    status, body = result
    assert status in (401, 403), f"expected a refusal, got {status}: {body!r}"
    assert isinstance(body, dict) and body.get("code") in ("permission_denied", "unauthenticated"), body


def test_server_knows_no_tenant_key(stack: Stack) -> None:
    """A tenant's key is the gateway's alone: livekit-server itself refuses it."""

    async def go() -> None:
        status, body = await twirp(stack.server_url, "RoomService", "ListRooms", room_pb.ListRoomsRequest(),
                                   _a(stack, video={"roomList": True}))
        assert status == 401, body
        async with aiohttp.ClientSession() as s:
            with pytest.raises(HandshakeRefused) as refused:
                await join(s, stack.server_url, _a(stack, video={"roomJoin": True, "room": A_ROOM}))
            assert refused.value.status == 401

    run(go())


def test_listing_rooms_shows_only_own(stack: Stack) -> None:
    async def go() -> None:
        for name in (A_ROOM, B_ROOM, "unowned-room"):
            await _create_room(stack, name)
        status, resp = await twirp(stack.gateway_url, "RoomService", "ListRooms", room_pb.ListRoomsRequest(),
                                   _a(stack, video={"roomList": True}), room_pb.ListRoomsResponse)
        assert status == 200, resp
        mine = sorted(r.name for r in resp.rooms)
        assert A_ROOM in mine and B_ROOM not in mine and "unowned-room" not in mine
        # Asking for B's room by name gets nothing either.
        status, resp = await twirp(stack.gateway_url, "RoomService", "ListRooms",
                                   room_pb.ListRoomsRequest(names=[B_ROOM]),
                                   _a(stack, video={"roomList": True}), room_pb.ListRoomsResponse)
        assert status == 200 and list(resp.rooms) == []
        assert B_ROOM in await _rooms(stack)

    run(go())


def test_b_room_is_out_of_reach(stack: Stack) -> None:
    """Joining, muting, removing participants in or deleting B's room fails, whatever A signs."""

    async def go() -> None:
        await _create_room(stack, B_ROOM)
        async with aiohttp.ClientSession() as s:
            # B's caller is in B's room (B's own token through the gateway works).
            ws, joined = await join(s, stack.gateway_url, _b(stack, sub="caller", video={"roomJoin": True, "room": B_ROOM}))
            try:
                assert joined.room.name == B_ROOM
                assert "caller" in await _participants(stack, B_ROOM)
                with pytest.raises(HandshakeRefused) as refused:
                    await join(s, stack.gateway_url, _a(stack, sub="spy", video={"roomJoin": True, "room": B_ROOM}))
                assert refused.value.status == 403
                admin_b = _a(stack, video={"roomAdmin": True, "room": B_ROOM, "roomCreate": True, "roomList": True})
                track = joined.participant.tracks[0].sid if joined.participant.tracks else "TR_x"
                calls: list[tuple[str, Any]] = [
                    ("ListParticipants", room_pb.ListParticipantsRequest(room=B_ROOM)),
                    ("GetParticipant", room_pb.RoomParticipantIdentity(room=B_ROOM, identity="caller")),
                    ("RemoveParticipant", room_pb.RoomParticipantIdentity(room=B_ROOM, identity="caller")),
                    ("MutePublishedTrack", room_pb.MuteRoomTrackRequest(room=B_ROOM, identity="caller",
                                                                         track_sid=track, muted=True)),
                    ("UpdateParticipant", room_pb.UpdateParticipantRequest(room=B_ROOM, identity="caller",
                                                                           metadata="pwned")),
                    ("UpdateRoomMetadata", room_pb.UpdateRoomMetadataRequest(room=B_ROOM, metadata="pwned")),
                    ("SendData", room_pb.SendDataRequest(room=B_ROOM, data=b"x")),
                    ("DeleteRoom", room_pb.DeleteRoomRequest(room=B_ROOM)),
                    ("CreateRoom", room_pb.CreateRoomRequest(name="bv-call_new")),
                    ("MoveParticipant", room_pb.MoveParticipantRequest(room=B_ROOM, identity="caller",
                                                                       destination_room=A_ROOM)),
                ]
                for method, request in calls:
                    _denied(await twirp(stack.gateway_url, "RoomService", method, request, admin_b))
                assert "caller" in await _participants(stack, B_ROOM)
                assert B_ROOM in await _rooms(stack)
            finally:
                await ws.close()

    run(go())


def test_wildcard_and_cross_prefix_tokens_are_refused(stack: Stack) -> None:
    """A token for `room: "*"`, or with roomAdmin on B's prefix, gets A nothing."""

    async def go() -> None:
        async with aiohttp.ClientSession() as s:
            for room in ("*", "bv-call_*", "bv-call", "bv-call_", "", "nw-support"):
                with pytest.raises(HandshakeRefused) as refused:
                    await join(s, stack.gateway_url, _a(stack, sub="spy", video={"roomJoin": True, "room": room}))
                assert refused.value.status in (401, 403), room
        for room in ("*", "bv-call_*", "bv-call_+15550002_b"):
            tok = _a(stack, video={"roomAdmin": True, "room": room})
            _denied(await twirp(stack.gateway_url, "RoomService", "ListParticipants",
                                room_pb.ListParticipantsRequest(room=room), tok))

    run(go())


def test_registering_as_b_agent_fails(stack: Stack) -> None:
    async def go() -> None:
        async with aiohttp.ClientSession() as s:
            for name in (B_AGENT, "", "northwind-unknown"):
                worker = await Worker.connect(s, stack.gateway_url, _a(stack, video={"agent": True}))
                with pytest.raises(ConnectionError) as closed:
                    await worker.register(name)
                assert closed.value.args[0] == 1008, (name, closed.value.args)
            # Without the agent grant the socket is not even opened.
            with pytest.raises(HandshakeRefused):
                await Worker.connect(s, stack.gateway_url, _a(stack, video={"roomJoin": True, "room": A_ROOM}))

    run(go())


def test_dispatching_b_agent_fails(stack: Stack) -> None:
    async def go() -> None:
        await _create_room(stack, A_ROOM)
        for room, agent in ((A_ROOM, B_AGENT), (B_ROOM, B_AGENT), (B_ROOM, A_AGENT)):
            _denied(await twirp(stack.gateway_url, "AgentDispatchService", "CreateDispatch",
                                dispatch_pb.CreateAgentDispatchRequest(agent_name=agent, room=room),
                                _a(stack, video={"roomAdmin": True, "room": room})))
        # Nor through a room's agents, or a join token's roomConfig.
        _denied(await twirp(stack.gateway_url, "RoomService", "CreateRoom",
                            room_pb.CreateRoomRequest(name="nw-support_x", agents=[
                                dispatch_pb.RoomAgentDispatch(agent_name=B_AGENT)]),
                            _a(stack, video={"roomCreate": True})))
        async with aiohttp.ClientSession() as s:
            with pytest.raises(HandshakeRefused):
                await join(s, stack.gateway_url, _a(stack, sub="x", video={"roomJoin": True, "room": "nw-support_y"},
                                                    roomConfig={"agents": [{"agentName": B_AGENT}]}))

    run(go())


def test_sip_admin_is_refused(stack: Stack) -> None:
    async def go() -> None:
        tok = _a(stack, sip={"admin": True, "call": True}, video={"roomAdmin": True, "room": A_ROOM})
        calls: list[tuple[str, Any]] = [
            ("ListSIPInboundTrunk", sip_pb.ListSIPInboundTrunkRequest()),
            ("ListSIPOutboundTrunk", sip_pb.ListSIPOutboundTrunkRequest()),
            ("ListSIPDispatchRule", sip_pb.ListSIPDispatchRuleRequest()),
            ("CreateSIPInboundTrunk", sip_pb.CreateSIPInboundTrunkRequest(
                trunk=sip_pb.SIPInboundTrunkInfo(name="steal", numbers=["+13125550142"]))),
            ("CreateSIPDispatchRule", sip_pb.CreateSIPDispatchRuleRequest(
                dispatch_rule=sip_pb.SIPDispatchRuleInfo(name="steal"))),
            ("DeleteSIPTrunk", sip_pb.DeleteSIPTrunkRequest(sip_trunk_id="ST_x")),
            ("DeleteSIPDispatchRule", sip_pb.DeleteSIPDispatchRuleRequest(sip_dispatch_rule_id="SDR_x")),
            ("CreateSIPParticipant", sip_pb.CreateSIPParticipantRequest(room_name=A_ROOM, sip_call_to="+1555")),
        ]
        for method, request in calls:
            _denied(await twirp(stack.gateway_url, "SIP", method, request, tok))
        _denied(await twirp(stack.gateway_url, "Egress", "ListEgress", room_pb.ListRoomsRequest(),
                            _a(stack, video={"roomRecord": True})))

    run(go())


def test_own_agent_registers_is_dispatched_joins_and_ends_its_call(stack: Stack) -> None:
    room = "nw-support_+15550003_call"

    async def go() -> None:
        async with aiohttp.ClientSession() as s:
            worker = await Worker.connect(s, stack.gateway_url, _a(stack, video={"agent": True}))
            try:
                registered = await worker.register(A_AGENT)
                assert registered.worker_id
                status, body = await twirp(stack.gateway_url, "RoomService", "CreateRoom",
                                           room_pb.CreateRoomRequest(name=room), _a(stack, video={"roomCreate": True}),
                                           models_pb.Room)
                assert status == 200, body
                status, body = await twirp(
                    stack.gateway_url, "AgentDispatchService", "CreateDispatch",
                    dispatch_pb.CreateAgentDispatchRequest(agent_name=A_AGENT, room=room),
                    _a(stack, video={"roomAdmin": True, "room": room}), dispatch_pb.AgentDispatch)
                assert status == 200, body
                assignment = await worker.take_job("agent-support")
                assert assignment.job.room.name == room and assignment.token

                # The server's job token: it joins its own room through the gateway ...
                ws, joined = await join(s, stack.gateway_url, assignment.token)
                try:
                    assert joined.room.name == room and joined.participant.identity == "agent-support"
                    assert "agent-support" in await _participants(stack, room)
                    # ... and is good for nothing else: not another worker, not the API.
                    with pytest.raises(HandshakeRefused):
                        await Worker.connect(s, stack.gateway_url, assignment.token)
                    _denied(await twirp(stack.gateway_url, "RoomService", "ListRooms", room_pb.ListRoomsRequest(),
                                        assignment.token))
                    # The agent ends its call with its tenant's key.
                    status, body = await twirp(stack.gateway_url, "RoomService", "DeleteRoom",
                                               room_pb.DeleteRoomRequest(room=room),
                                               _a(stack, video={"roomCreate": True}))
                    assert status == 200, body
                finally:
                    await ws.close()
                for _ in range(50):
                    if room not in await _rooms(stack):
                        break
                    await asyncio.sleep(0.1)
                assert room not in await _rooms(stack)
            finally:
                await worker.close()

    run(go())


def test_gateway_metrics_count_refusals(stack: Stack) -> None:
    async def go() -> tuple[float, float]:
        url = f"http://127.0.0.1:{stack.gateway.metrics_port}"
        before = await metric(url, "voxplane_gateway_denied_total", route="twirp", tenant=A, reason="method")
        _denied(await twirp(stack.gateway_url, "SIP", "ListSIPInboundTrunk", sip_pb.ListSIPInboundTrunkRequest(),
                            _a(stack, sip={"admin": True})))
        return before, await metric(url, "voxplane_gateway_denied_total", route="twirp", tenant=A, reason="method")

    before, after = run(go())
    assert after == before + 1


def test_validate_endpoint_and_plain_http_follow_the_same_rules(stack: Stack) -> None:
    """`/rtc/validate` (what SDKs call after a failed join) answers as the join would; a plain GET
    of /rtc or an unknown path gets nothing from the server."""

    async def go() -> None:
        async with aiohttp.ClientSession() as s:
            for room, want in ((A_ROOM, 200), (B_ROOM, 403)):
                tok = _a(stack, sub="v", video={"roomJoin": True, "room": room})
                async with s.get(f"{stack.gateway_url}/rtc/validate", params={"access_token": tok}) as r:
                    assert r.status == want, (room, r.status, await r.text())
            tok = _a(stack, sub="v", video={"roomJoin": True, "room": A_ROOM})
            async with s.get(f"{stack.gateway_url}/rtc", params={"access_token": tok}) as r:
                assert r.status == 404
            for path in ("/whip/v1", "/debug/rooms", "/twirp/livekit.RoomService"):
                async with s.get(f"{stack.gateway_url}{path}", headers={"Authorization": f"Bearer {tok}"}) as r:
                    assert r.status in (404, 405), (path, r.status)

    run(go())


_ROOMS = st.sampled_from([B_ROOM, "bv-call_x", "bellavista_1", "*", "", "bv-call", "unowned"])
_VIDEO = st.fixed_dictionaries({"room": _ROOMS}, optional={
    "roomJoin": st.booleans(), "roomAdmin": st.booleans(), "roomCreate": st.booleans(), "roomList": st.booleans(),
    "roomRecord": st.booleans(), "agent": st.booleans(), "destinationRoom": _ROOMS})
_CLAIMS = st.fixed_dictionaries({"video": _VIDEO, "sub": st.just("spy")}, optional={
    "sip": st.fixed_dictionaries({"admin": st.booleans(), "call": st.booleans()}),
    "roomConfig": st.just({"agents": [{"agentName": B_AGENT}]})})
_CALLS = st.sampled_from(["join", "ListRooms", "ListParticipants", "RemoveParticipant", "DeleteRoom", "CreateRoom",
                          "CreateDispatch", "SendData", "ListSIPInboundTrunk"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(claims=_CLAIMS, call=_CALLS)
def test_random_grants_signed_with_a_key_never_reach_b_on_the_real_server(stack: Stack, claims: dict[str, Any],
                                                                          call: str) -> None:
    """Whatever A signs, aimed at B's rooms, agents or SIP through the real gateway and server:
    refused, and B's room and caller are untouched (list calls return none of B's rooms)."""
    room = claims["video"]["room"]

    async def go() -> None:
        if B_ROOM not in await _rooms(stack):
            await _create_room(stack, B_ROOM)
        tok = _a(stack, **claims)
        if call == "join":
            async with aiohttp.ClientSession() as s:
                with pytest.raises(HandshakeRefused):
                    await join(s, stack.gateway_url, tok)
            return
        if call == "ListRooms":
            status, resp = await twirp(stack.gateway_url, "RoomService", "ListRooms", room_pb.ListRoomsRequest(names=[room]),
                                       tok, room_pb.ListRoomsResponse)
            assert status != 200 or list(resp.rooms) == []
            return
        request: Any = {
            "ListParticipants": room_pb.ListParticipantsRequest(room=room),
            "RemoveParticipant": room_pb.RoomParticipantIdentity(room=room, identity="caller"),
            "DeleteRoom": room_pb.DeleteRoomRequest(room=room),
            "CreateRoom": room_pb.CreateRoomRequest(name=room),
            "CreateDispatch": dispatch_pb.CreateAgentDispatchRequest(room=room, agent_name=B_AGENT),
            "SendData": room_pb.SendDataRequest(room=room, data=b"x"),
            "ListSIPInboundTrunk": sip_pb.ListSIPInboundTrunkRequest(),
        }[call]
        service = "SIP" if call.startswith("ListSIP") else ("AgentDispatchService" if call == "CreateDispatch"
                                                           else "RoomService")
        _denied(await twirp(stack.gateway_url, service, call, request, tok))
        assert B_ROOM in await _rooms(stack)

    run(go())
