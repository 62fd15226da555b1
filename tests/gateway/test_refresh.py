"""The refresh tokens livekit-server sends a participant reach it signed with the gateway's platform
key (voxplane/gateway/refresh.py): the server signs them with any of its keys (`vx-admin` here, which
the gateway does not hold), and a participant that resumes with one must be let back into its own
room, and nowhere else. The resume itself, through the other replica of a gateway that died, runs
in tests/recovery/test_faults_integration.py."""

from __future__ import annotations

import time

import jwt
import pytest
from google.protobuf import json_format
from livekit.protocol import rtc as rtc_pb

from voxplane.gateway.policy import Denied, KeyRing, authenticate, authorize_join
from voxplane.gateway.refresh import resign_refresh

from .conftest import A_ROOM, B_ROOM

PLATFORM = KeyRing("vx-gateway", "g" * 64)
ADMIN_SECRET = "x" * 64  # the server's admin key: never in the gateway's key ring
IDENTITY = "caller-1"


def server_refresh(room: str = A_ROOM, identity: str = IDENTITY, kind: str = "standard") -> str:
    """A refresh token as livekit-server builds it (roommanager.go refreshToken), signed with vx-admin."""
    now = int(time.time())
    return jwt.encode({"iss": "vx-admin", "nbf": now, "exp": now + 600, "sub": identity, "name": "Ann", "kind": kind,
                       "metadata": "m", "attributes": {"a": "1"},
                       "video": {"roomJoin": True, "room": room, "canPublish": True, "canSubscribe": True}},
                      ADMIN_SECRET, algorithm="HS256")


def binary(token: str) -> bytes:
    return rtc_pb.SignalResponse(refresh_token=token).SerializeToString()


def test_the_server_signed_token_is_refused_as_it_comes() -> None:
    """Why the gateway signs them again: as livekit-server sends it, the token does not verify."""
    with pytest.raises(Denied, match="unknown API key 'vx-admin'"):
        authenticate(server_refresh(), PLATFORM)


def test_a_refresh_token_is_signed_again_and_lets_its_participant_back_into_its_room() -> None:
    original = server_refresh()
    out = resign_refresh(binary(original), PLATFORM, room=A_ROOM, identity=IDENTITY)
    assert isinstance(out, bytes)
    response = rtc_pb.SignalResponse.FromString(out)
    assert response.WhichOneof("message") == "refresh_token"
    principal = authenticate(response.refresh_token, PLATFORM)
    assert principal.kind == "server" and principal.claims["iss"] == "vx-gateway"
    before = jwt.decode(original, options={"verify_signature": False})
    after = dict(principal.claims)
    assert after["exp"] == before["exp"]  # the server's expiry, not a longer one
    assert {k: v for k, v in after.items() if k not in ("iss", "nbf", "exp")} == \
        {k: v for k, v in before.items() if k not in ("iss", "nbf", "exp")}
    claims = authorize_join(principal)
    assert claims["video"]["room"] == A_ROOM and claims["sub"] == IDENTITY


def test_json_signalling_gets_the_same() -> None:
    text = json_format.MessageToJson(rtc_pb.SignalResponse(refresh_token=server_refresh()))
    out = resign_refresh(text, PLATFORM, room=A_ROOM, identity=IDENTITY)
    assert isinstance(out, str)
    response = json_format.Parse(out, rtc_pb.SignalResponse())
    assert authenticate(response.refresh_token, PLATFORM).claims["video"]["room"] == A_ROOM


@pytest.mark.parametrize("room, identity", [(B_ROOM, IDENTITY), (A_ROOM, "someone-else")])
def test_a_refresh_token_for_another_room_or_participant_is_dropped(room: str, identity: str) -> None:
    assert resign_refresh(binary(server_refresh(room, identity)), PLATFORM, room=A_ROOM, identity=IDENTITY) is None


def test_a_refresh_token_that_is_no_token_is_dropped() -> None:
    assert resign_refresh(binary("not.a.jwt"), PLATFORM, room=A_ROOM, identity=IDENTITY) is None


def test_every_other_message_passes_unchanged() -> None:
    messages: list[bytes | str] = [
        rtc_pb.SignalResponse(pong=5).SerializeToString(),
        rtc_pb.SignalResponse(leave=rtc_pb.LeaveRequest(can_reconnect=True)).SerializeToString(),
        # A message whose payload merely contains the tag's bytes.
        rtc_pb.SignalResponse(room_update=rtc_pb.RoomUpdate()).SerializeToString() + b"\x82\x01",
        json_format.MessageToJson(rtc_pb.SignalResponse(pong=5)),
        b"\x82\x01\xff",  # the tag, then garbage: the client judges it as it would have
    ]
    for m in messages:
        assert resign_refresh(m, PLATFORM, room=A_ROOM, identity=IDENTITY) is m
