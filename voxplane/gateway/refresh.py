"""Refresh tokens on their way to a participant, signed again with the gateway's platform key.

livekit-server sends every participant a new token (`SignalResponse.refresh_token`) right after it
joins, every 5 minutes and whenever its grants change; a LiveKit SDK keeps the latest one and
presents it when it resumes or rejoins after its signalling connection dropped. livekit-server
v1.13.5 signs it with whichever of its API keys a Go map iteration yields first
(`pkg/service/roommanager.go`, `refreshToken` and `getFirstKeyPair`): the region's server holds
three (`vx-admin`, `vx-gateway`, `vx-recovery`), so about two refresh tokens in three carry a key
the gateway does not hold. The gateway refused those (`unknown API key`), and a call whose
signalling connection dropped (a gateway replica gone, a network blip) could not resume: the SDK
gives up on a 401, and the caller was disconnected.

So the gateway replaces each refresh token with one it signs with its platform key, with the same
claims and expiry: the server issued it on a connection the gateway opened and authenticated, for
the participant the gateway let in. When the client presents it, it is a server-issued token like
a job token: honoured to join its own room only (`policy.authorize_join`). A refresh token naming
another room or identity than the connection's is dropped (the client keeps its previous one).
"""

from __future__ import annotations

import time
from typing import Any, Optional, Union

import jwt
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from livekit.protocol import rtc as rtc_pb

from .policy import KeyRing

__all__ = ["resign_refresh"]

_FIELD = rtc_pb.SignalResponse.DESCRIPTOR.fields_by_name["refresh_token"]
#: SignalResponse is one oneof, so a serialized message is exactly one field, and starts with that
#: field's tag: a message starting with another tag is passed on without parsing it.


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_TAG = _varint(_FIELD.number << 3 | 2)  # wire type 2: length-delimited
#: The claims livekit-server sets that the gateway signs anew.
_SIGNING_CLAIMS = frozenset({"iss", "nbf", "exp", "iat"})

Message = Union[bytes, str]


def resign_refresh(message: Message, keys: KeyRing, *, room: str, identity: str,
                   now: Optional[float] = None) -> Optional[Message]:
    """`message`, a signalling message from livekit-server to the participant `identity` in
    `room`, as the client should get it: unchanged unless it carries a refresh token, then with
    that token signed again with the platform key; None when the token is not for this
    connection (the message is dropped)."""
    response = _refresh_response(message)
    if response is None:
        return message
    token = _resign(response.refresh_token, keys, room, identity, now)
    if token is None:
        return None
    resigned = rtc_pb.SignalResponse(refresh_token=token)
    return resigned.SerializeToString() if isinstance(message, bytes) else json_format.MessageToJson(resigned, indent=None)


def _refresh_response(message: Message) -> Optional[rtc_pb.SignalResponse]:
    """The message parsed, when it is a refresh token (binary or JSON, as the client speaks);
    None for any other message, or one that does not parse (the client judges it as it would have)."""
    response = rtc_pb.SignalResponse()
    try:
        if isinstance(message, bytes):
            if not message.startswith(_TAG):
                return None
            response.ParseFromString(message)
        else:
            if '"refreshToken"' not in message and '"refresh_token"' not in message:
                return None
            json_format.Parse(message, response, ignore_unknown_fields=True)
    except (DecodeError, json_format.ParseError):
        return None
    return response if response.WhichOneof("message") == "refresh_token" else None


def _resign(token: str, keys: KeyRing, room: str, identity: str, now: Optional[float]) -> Optional[str]:
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    video = claims.get("video")
    if claims.get("sub") != identity or not isinstance(video, dict) or video.get("room") != room:
        return None
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)):
        return None
    t = now if now is not None else time.time()
    body = {k: v for k, v in claims.items() if k not in _SIGNING_CLAIMS}
    return keys.mint(body, ttl=max(0, int(exp) - int(t)), now=t, not_after=exp)
