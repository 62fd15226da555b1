"""The gateway's decisions without a server: tenant scopes from the manifests, token checks, what
is minted for the server, and (hypothesis) that nothing tenant A signs reaches tenant B."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit.protocol import agent as agent_pb
from livekit.protocol import agent_dispatch as dispatch_pb
from livekit.protocol import room as room_pb

from voxplane.desired.gateway import gateway_config
from voxplane.gateway.policy import LEEWAY_SECONDS, Denied, KeyRing, VerifiedTokens, authenticate, authorize_join, \
    authorize_twirp, authorize_worker, check_worker_message
from voxplane.gateway.scope import GatewayConfig, TenantScope, conflicts
from voxplane.manifest.loader import load

from ..support.repo import REPO
from .conftest import A, A_AGENT, A_ROOM, B, B_AGENT, B_ROOM

SECRETS = {"vx-gateway": "g" * 64, "vxt-northwind": "a" * 64, "vxt-bellavista": "b" * 64}


def _config() -> GatewayConfig:
    project = load((), REPO).require_project()
    return gateway_config(project.regions["local"], project.agents_in("local"))


CONFIG = _config()
KEYS = KeyRing("vx-gateway", SECRETS["vx-gateway"],
               {t.api_key: (t, SECRETS[t.api_key]) for t in CONFIG.tenants.values()})
SCOPE_A, SCOPE_B = CONFIG.tenants[A], CONFIG.tenants[B]


def _sign(key: str, claims: dict[str, Any]) -> str:
    now = int(time.time())
    return jwt.encode({"iss": key, "nbf": now - 1, "exp": now + 600, **claims}, SECRETS[key], algorithm="HS256")


def test_scopes_come_from_the_manifests() -> None:
    assert SCOPE_A.api_key == "vxt-northwind" and SCOPE_B.api_key == "vxt-bellavista"
    assert SCOPE_A.agents == {"northwind-support", "northwind-scheduler"}
    assert SCOPE_A.room_prefixes == {"northwind", "nw-support", "nw-sched"}
    assert SCOPE_B.room_prefixes == {"bellavista", "bv-call"}
    assert SCOPE_A.owns_room(A_ROOM) and not SCOPE_A.owns_room(B_ROOM)
    for room in ("", "nw-support", "nw-support_", "nw-supportx_1", "*", "northwind"):
        assert not SCOPE_A.owns_room(room), room
    assert conflicts(CONFIG.tenants.values()) == []


def test_config_round_trips_and_refuses_ambiguous_scopes() -> None:
    assert GatewayConfig.from_json(CONFIG.to_json()) == CONFIG
    a = TenantScope("a", "vxt-a", frozenset(), frozenset({"call"}))
    b = TenantScope("b", "vxt-b", frozenset(), frozenset({"call_b"}))
    assert conflicts([a, b]) and conflicts([a, TenantScope("c", "vxt-c", frozenset(), frozenset(), frozenset({"call_1"}))])
    limits = CONFIG.limits[A]
    broken = GatewayConfig("http://x", "vx-gateway", "/k", {"a": a, "b": b}, limits={"a": limits, "b": limits})
    with pytest.raises(ValueError, match="can name the same room"):
        GatewayConfig.from_json(broken.to_json())


def test_only_known_keys_and_valid_signatures() -> None:
    assert authenticate(_sign("vxt-northwind", {}), KEYS).tenant == SCOPE_A
    forged = jwt.encode({"iss": "vxt-bellavista", "exp": int(time.time()) + 60}, SECRETS["vxt-northwind"])
    for token in ("", "x.y.z", forged, jwt.encode({"iss": "vx-admin", "exp": int(time.time()) + 60}, "s" * 64),
                  jwt.encode({"iss": "vxt-northwind"}, SECRETS["vxt-northwind"]),
                  jwt.encode({"iss": "vxt-northwind", "exp": int(time.time()) - 3600}, SECRETS["vxt-northwind"]),
                  jwt.encode({"iss": "vxt-northwind", "exp": int(time.time()) + 60}, SECRETS["vxt-northwind"],
                             algorithm="HS512")):
        with pytest.raises(Denied) as denied:
            authenticate(token, KEYS)
        assert denied.value.code == "unauthenticated"


def test_a_token_verified_once_is_remembered_until_it_expires() -> None:
    verified = VerifiedTokens()
    token = _sign("vxt-northwind", {"video": {"roomList": True}})
    first = authenticate(token, KEYS, verified=verified)
    # The second use is the first's principal: nothing parsed or verified again.
    assert authenticate(token, KEYS, verified=verified) is first and len(verified) == 1
    # Past its expiry (and the leeway), the remembered token is refused as a fresh one is, and forgotten.
    later = first.expires + LEEWAY_SECONDS + 1
    with pytest.raises(Denied, match="expired") as denied:
        authenticate(token, KEYS, verified=verified, now=later)
    assert denied.value.code == "unauthenticated" and len(verified) == 0


def test_only_the_exact_token_verified_is_remembered() -> None:
    verified = VerifiedTokens()
    token = _sign("vxt-northwind", {"video": {"roomList": True}})
    authenticate(token, KEYS, verified=verified)
    # The same header and claims signed with another key (bellavista's secret, northwind's key):
    # other bytes, verified anew, refused; so is the remembered token with its signature cut.
    header_and_claims = token.rsplit(".", 1)[0]
    forged = jwt.encode(jwt.decode(token, options={"verify_signature": False}), SECRETS["vxt-bellavista"])
    assert forged.rsplit(".", 1)[0] == header_and_claims and forged != token
    for bad in (forged, header_and_claims + ".", token + "x"):
        with pytest.raises(Denied) as denied:
            authenticate(bad, KEYS, verified=verified)
        assert denied.value.code == "unauthenticated", bad
    assert len(verified) == 1


def test_the_verified_tokens_are_bounded_least_recently_used_first() -> None:
    verified = VerifiedTokens(size=2)
    a, b, c = (_sign("vxt-northwind", {"sub": name}) for name in "abc")
    pa = authenticate(a, KEYS, verified=verified)
    authenticate(b, KEYS, verified=verified)
    assert authenticate(a, KEYS, verified=verified) is pa  # a used last: b goes when c comes
    authenticate(c, KEYS, verified=verified)
    assert len(verified) == 2 and verified.get(b) is None and verified.get(a) is pa


def test_a_token_with_times_that_are_not_numbers_is_refused() -> None:
    for claims in ({"exp": "soon"}, {"exp": True}, {"nbf": "now", "exp": int(time.time()) + 60}):
        token = jwt.encode({"iss": "vxt-northwind", **claims}, SECRETS["vxt-northwind"], algorithm="HS256")
        for now in (None, time.time()):
            with pytest.raises(Denied) as denied:
                authenticate(token, KEYS, now=now)
            assert denied.value.code == "unauthenticated", (claims, now)


def test_minted_tokens_hold_only_what_the_call_needs() -> None:
    p = authenticate(_sign("vxt-northwind", {"video": {"roomAdmin": True, "room": A_ROOM, "roomCreate": True,
                                                        "roomList": True, "roomRecord": True, "ingressAdmin": True},
                                             "sip": {"admin": True}}), KEYS)
    d = authorize_twirp(p, "livekit.RoomService", "RemoveParticipant",
                        room_pb.RoomParticipantIdentity(room=A_ROOM, identity="x").SerializeToString(), False)
    assert d.claims == {"video": {"roomAdmin": True, "room": A_ROOM}, "sub": "gateway:northwind"}
    minted = jwt.decode(KEYS.mint(d.claims, ttl=60, not_after=p.expires), SECRETS["vx-gateway"], algorithms=["HS256"])
    assert minted["iss"] == "vx-gateway" and minted["exp"] <= p.expires


def test_the_platforms_dispatch_attributes_are_refused_to_tenants() -> None:
    """`voxplane.recovery` marks a dispatch the recovery controller made (issue #19): a tenant may not
    forge one, in its own rooms or (as everything) in another tenant's; its own attributes pass."""
    p = authenticate(_sign("vxt-northwind", {"video": {"roomAdmin": True, "room": A_ROOM, "roomCreate": True}}), KEYS)
    recovery = {"voxplane.recovery": '{"attempt": 1, "lost_at": 1, "lost_job": "AJ_x"}'}

    def dispatch(room: str, **attributes: str) -> bytes:
        return dispatch_pb.CreateAgentDispatchRequest(agent_name=A_AGENT, room=room,
                                                      attributes=attributes).SerializeToString()

    for room, attributes, why in ((A_ROOM, recovery, "dispatch attribute 'voxplane.recovery' is the platform's"),
                                  (B_ROOM, recovery, f"room {B_ROOM!r} is not one of tenant 'northwind'"),
                                  (A_ROOM, {"voxplane.anything": "x"}, "'voxplane.anything' is the platform's")):
        with pytest.raises(Denied) as denied:
            authorize_twirp(p, "livekit.AgentDispatchService", "CreateDispatch", dispatch(room, **attributes), False)
        assert denied.value.code == "permission_denied" and why in denied.value.message, denied.value.message
    agent = dispatch_pb.RoomAgentDispatch(agent_name=A_AGENT, attributes=recovery)
    created = room_pb.CreateRoomRequest(name=A_ROOM, agents=[agent])
    with pytest.raises(Denied, match="is the platform's"):
        authorize_twirp(p, "livekit.RoomService", "CreateRoom", created.SerializeToString(), False)
    assert authorize_twirp(p, "livekit.AgentDispatchService", "CreateDispatch", dispatch(A_ROOM, crm="42"), False)


def test_worker_messages() -> None:
    def reg(**kw: Any) -> bytes:
        return agent_pb.WorkerMessage(register=agent_pb.RegisterWorkerRequest(**kw)).SerializeToString()

    assert check_worker_message(SCOPE_A, reg(agent_name=A_AGENT)) == "register"
    for bad in (reg(agent_name=B_AGENT), reg(agent_name=""), reg(agent_name=A_AGENT, namespace="x"),
                agent_pb.WorkerMessage(simulate_job=agent_pb.SimulateJobRequest()).SerializeToString(),
                b"\xff\xff"):
        with pytest.raises(Denied):
            check_worker_message(SCOPE_A, bad)
    json_ok = '{"register": {"agentName": "%s"}}' % A_AGENT
    assert check_worker_message(SCOPE_A, json_ok) == "register"


# --- nothing A signs reaches B ------------------------------------------------------------------

ROOMS = st.sampled_from([A_ROOM, B_ROOM, "bv-call_x", "bellavista_1", "*", "", "nw-support", "northwind_web",
                         "unowned", "bv-call", "nw-sched_+1_x"])
AGENTS = st.sampled_from([A_AGENT, B_AGENT, "", "northwind-scheduler", "bellavista-x"])
VIDEO = st.fixed_dictionaries({}, optional={
    "roomJoin": st.booleans(), "roomAdmin": st.booleans(), "roomCreate": st.booleans(), "roomList": st.booleans(),
    "roomRecord": st.booleans(), "ingressAdmin": st.booleans(), "agent": st.booleans(), "hidden": st.booleans(),
    "recorder": st.booleans(), "room": ROOMS, "destinationRoom": ROOMS, "canPublish": st.booleans()})
CLAIMS = st.fixed_dictionaries({"video": VIDEO}, optional={
    "sip": st.fixed_dictionaries({}, optional={"admin": st.booleans(), "call": st.booleans()}),
    "kind": st.sampled_from(["", "standard", "agent", "sip", "egress"]),
    "roomConfig": st.fixed_dictionaries({}, optional={"agents": st.lists(AGENTS.map(lambda a: {"agentName": a}),
                                                                          max_size=2)}),
    "sub": st.text(max_size=8)})


def _requests() -> st.SearchStrategy[tuple[str, str, bytes]]:
    room_calls = [(s, m) for s in ("livekit.RoomService", "livekit.AgentDispatchService")
                  for m in ("ListParticipants", "RemoveParticipant", "DeleteRoom", "CreateRoom", "CreateDispatch",
                            "MutePublishedTrack", "MoveParticipant", "ListDispatch", "UpdateRoomMetadata", "SendData")]

    def build(call: tuple[str, str], room: str, dest: str, agent: str) -> tuple[str, str, bytes]:
        service, method = call
        msg: Any
        if method == "CreateRoom":
            msg = room_pb.CreateRoomRequest(name=room, agents=[dispatch_pb.RoomAgentDispatch(agent_name=agent)])
        elif method == "DeleteRoom":
            msg = room_pb.DeleteRoomRequest(room=room)
        elif method == "CreateDispatch":
            msg = dispatch_pb.CreateAgentDispatchRequest(room=room, agent_name=agent)
        elif method == "ListDispatch":
            msg = dispatch_pb.ListAgentDispatchRequest(room=room)
        elif method == "MoveParticipant":
            msg = room_pb.MoveParticipantRequest(room=room, identity="x", destination_room=dest)
        elif method == "MutePublishedTrack":
            msg = room_pb.MuteRoomTrackRequest(room=room, identity="x", track_sid="TR", muted=True)
        elif method == "UpdateRoomMetadata":
            msg = room_pb.UpdateRoomMetadataRequest(room=room, metadata="m")
        elif method == "SendData":
            msg = room_pb.SendDataRequest(room=room, data=b"d")
        else:
            msg = room_pb.ListParticipantsRequest(room=room) if method == "ListParticipants" \
                else room_pb.RoomParticipantIdentity(room=room, identity="x")
        return service, method, msg.SerializeToString()

    return st.builds(build, st.sampled_from(room_calls), ROOMS, ROOMS, AGENTS)


def _reaches_b(claims: Any) -> bool:
    """Whether minted claims name anything that is not A's (B's rooms or agents, or nobody's)."""
    video = claims.get("video", {})
    rooms = [v for k, v in video.items() if k in ("room", "destinationRoom")]
    agents = [a.get("agentName", "") for a in claims.get("roomConfig", {}).get("agents", [])]
    return any(not SCOPE_A.owns_room(r) for r in rooms) or any(not SCOPE_A.owns_agent(a) for a in agents) \
        or "sip" in claims or any(video.get(g) for g in ("roomRecord", "ingressAdmin", "recorder"))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(claims=CLAIMS, request=_requests())
def test_random_grants_signed_by_a_never_reach_b(claims: dict[str, Any], request: tuple[str, str, bytes]) -> None:
    """Whatever grants A writes and whichever call it makes, what the gateway lets through names
    only A's rooms and agents, carries no SIP/recording/ingress grant, and a B-targeted request
    (room, destination or agent of B) is refused."""
    principal = authenticate(_sign("vxt-northwind", claims), KEYS)
    service, method, body = request
    try:
        decision = authorize_twirp(principal, service, method, body, False)
    except Denied:
        pass
    else:
        assert not _reaches_b(decision.claims), (method, decision.claims)
        msg = {"CreateRoom": room_pb.CreateRoomRequest, "DeleteRoom": room_pb.DeleteRoomRequest,
               "CreateDispatch": dispatch_pb.CreateAgentDispatchRequest,
               "MoveParticipant": room_pb.MoveParticipantRequest}.get(method)
        if msg is not None:
            req = msg.FromString(body)
            for field in ("name", "room", "destination_room"):
                if getattr(req, field, ""):
                    assert SCOPE_A.owns_room(getattr(req, field)), (method, field)
            for agent in [getattr(req, "agent_name", "")] + [a.agent_name for a in getattr(req, "agents", [])]:
                assert not agent or SCOPE_A.owns_agent(agent)
    try:
        joined = authorize_join(principal)
    except Denied:
        pass
    else:
        assert SCOPE_A.owns_room(joined["video"]["room"]) and not _reaches_b(joined)
        assert set(joined["video"]) <= {"roomJoin", "room", "canPublish", "canSubscribe", "canPublishData",
                                        "canPublishSources", "canUpdateOwnMetadata", "hidden", "agent",
                                        "canSubscribeMetrics", "canManageAgentSession"}
    try:
        worker = authorize_worker(principal)
    except Denied:
        pass
    else:
        assert worker["video"] == {"agent": True}


@settings(max_examples=200, deadline=None)
@given(claims=CLAIMS)
def test_server_issued_tokens_join_only_their_own_room(claims: dict[str, Any]) -> None:
    """Platform-signed tokens (job and refresh tokens the server issued) join their one room and
    do nothing else: no API call, no worker registration, no agent dispatch."""
    principal = authenticate(_sign("vx-gateway", claims), KEYS)
    assert principal.kind == "server"
    for service, method in (("livekit.RoomService", "ListRooms"), ("livekit.RoomService", "DeleteRoom")):
        with pytest.raises(Denied):
            authorize_twirp(principal, service, method, b"", False)
    with pytest.raises(Denied):
        authorize_worker(principal)
    try:
        joined = authorize_join(principal)
    except Denied:
        return
    assert joined["video"]["room"] == claims["video"]["room"] and "roomConfig" not in joined or \
        not joined["roomConfig"].get("agents")
