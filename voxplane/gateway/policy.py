"""The gateway's decisions, as pure functions: who a token is, whether a request stays inside its
tenant, and what the gateway signs for the server in its place.

Rules (README, "Tenant isolation"):

- A token signed with a tenant's key is that tenant's. It needs the grant livekit-server itself
  would require for the call (pkg/service/auth.go: `roomCreate`, `roomList`, `roomAdmin` on
  the request's room, `destinationRoom`), *and* every room, agent and object the call names
  must be the tenant's (`TenantScope`). SIP, egress, ingress and every method not listed in
  `TWIRP_METHODS` are refused, whatever the grants.
- A token signed with the platform key the gateway forwards with was issued by the server
  through the gateway: a job token for a worker (protocol agent/token.go, `BuildAgentToken`:
  `roomJoin` + `agent` on the job's room) or a signalling refresh token. It is honoured to join
  exactly its own room over /rtc, and for nothing else (not /agent: job tokens carry `agent`).
- What goes to the server is a token the gateway mints with the platform key holding only what
  that one request needs (the room named, the grant the method checks), never the grants the
  caller wrote. Unknown claims and unknown protobuf fields are refused or dropped, never passed on.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Optional

import jwt
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet
from livekit.protocol import agent as agent_pb
from livekit.protocol import agent_dispatch as dispatch_pb
from livekit.protocol import room as room_pb

from .scope import TenantScope

#: Seconds of clock skew accepted on `exp` and `nbf` (livekit-api's verifier allows 60).
LEEWAY_SECONDS = 10
#: Tokens a gateway remembers as verified (`VerifiedTokens`): a few MiB at most.
VERIFIED_TOKENS = 2048
#: Participant kinds a tenant may join as (ParticipantInfo.Kind names, lower case as in tokens).
JOIN_KINDS = frozenset({"", "standard", "agent"})
#: Video grants a join forwards (everything else a caller writes is dropped).
JOIN_VIDEO_GRANTS = ("canPublish", "canSubscribe", "canPublishData", "canPublishSources", "canUpdateOwnMetadata",
                     "hidden", "agent", "canSubscribeMetrics", "canManageAgentSession")
#: RegisterWorkerRequest fields a worker may set; the rest must stay at their defaults.
REGISTER_FIELDS = frozenset({"type", "agent_name", "version", "ping_interval", "allowed_permissions", "deployment",
                             "instance_id"})
#: Attributes of this prefix on a dispatch are the platform's (`voxplane.recovery`): tenants may not set them.
PLATFORM_ATTRIBUTE_PREFIX = "voxplane."
#: Worker messages the gateway passes on (after checking `register`). `simulate_job` asks the
#: server to create a job in any room it names: refused.
WORKER_MESSAGES = frozenset({"register", "availability", "update_worker", "update_job", "ping", "migrate_job"})

Code = Literal["unauthenticated", "permission_denied", "invalid_argument", "malformed", "bad_route"]
#: Twirp error code -> HTTP status (twitchtv/twirp errors.go).
HTTP_STATUS: dict[str, int] = {"unauthenticated": 401, "permission_denied": 403, "invalid_argument": 400,
                               "malformed": 400, "bad_route": 404}


class Denied(Exception):
    """A request the gateway refuses; `code` is the Twirp error code, `reason` a short label for
    metrics (`unauthenticated`, `scope`, `grant`, `method`, `request`)."""

    def __init__(self, code: Code, message: str, reason: str = "scope"):
        super().__init__(message)
        self.code: Code = code
        self.message = message
        self.reason = reason

    @property
    def status(self) -> int:
        return HTTP_STATUS[self.code]


# --- keys and tokens -------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRing:
    """The platform key (known to the server) and each tenant's key (known only here)."""

    platform_key: str
    platform_secret: str = field(repr=False)
    #: tenant API key -> (scope, secret)
    tenants: Mapping[str, tuple[TenantScope, str]] = field(repr=False, default_factory=dict)

    def mint(self, claims: Mapping[str, Any], *, ttl: int, now: Optional[float] = None,
             not_after: Optional[float] = None) -> str:
        """A platform-signed token with `claims` (no iss/exp/nbf in them), valid `ttl` seconds
        (never past `not_after`, the caller's own expiry)."""
        t = int(now if now is not None else time.time())
        exp = t + ttl
        if not_after is not None:
            exp = min(exp, int(not_after))
        body = {**claims, "iss": self.platform_key, "nbf": t - LEEWAY_SECONDS, "exp": exp}
        return jwt.encode(body, self.platform_secret, algorithm="HS256")


@dataclass(frozen=True)
class Principal:
    """Who presented a token: a tenant (its own key) or the server (a token it issued)."""

    kind: Literal["tenant", "server"]
    claims: Mapping[str, Any]
    tenant: Optional[TenantScope] = None

    @property
    def label(self) -> str:
        return self.tenant.name if self.tenant is not None else "(server-issued)"

    @property
    def video(self) -> Mapping[str, Any]:
        v = self.claims.get("video")
        return v if isinstance(v, dict) else {}

    @property
    def expires(self) -> float:
        return float(self.claims["exp"])


class VerifiedTokens:
    """Tokens whose signature and claims verified, and who presented them, least recently used
    first; at most `size`.

    LiveKit's SDKs sign a token per call, but its times are whole seconds, so a busy client, and a
    tenant flooding past its limits, presents the same token many times: parsing and verifying it
    again is most of what refusing that tenant costs the gateway (and the tenants who share it).
    A token is its own key: other bytes (another signature) are verified anew. Only its lifetime
    can change, so `authenticate` checks `exp` on every use. One per gateway, used from its event
    loop only.
    """

    def __init__(self, size: int = VERIFIED_TOKENS):
        self.size = size
        self._principals: OrderedDict[str, Principal] = OrderedDict()

    def __len__(self) -> int:
        return len(self._principals)

    def get(self, token: str) -> Optional[Principal]:
        principal = self._principals.get(token)
        if principal is not None:
            self._principals.move_to_end(token)
        return principal

    def put(self, token: str, principal: Principal) -> None:
        self._principals[token] = principal
        if len(self._principals) > self.size:
            self._principals.popitem(last=False)

    def forget(self, token: str) -> None:
        self._principals.pop(token, None)


def authenticate(token: str, keys: KeyRing, *, now: Optional[float] = None,
                 verified: Optional[VerifiedTokens] = None) -> Principal:
    """Verify `token` (HS256, `exp` required, `nbf` honoured) against the key its `iss` names;
    with `verified`, a token verified before is taken from it (and checked for expiry only)."""
    if not token:
        raise Denied("unauthenticated", "no access token", "unauthenticated")
    if verified is None:
        return _verify(token, keys, now)
    principal = verified.get(token)
    if principal is None:
        principal = _verify(token, keys, now)
        verified.put(token, principal)
    elif _expired(principal.expires, time.time() if now is None else now):
        verified.forget(token)
        raise Denied("unauthenticated", "access token expired", "unauthenticated")
    return principal


def _expired(exp: float, now: float) -> bool:
    """Past `exp` by more than the accepted clock skew."""
    return exp + LEEWAY_SECONDS < now


def _verify(token: str, keys: KeyRing, now: Optional[float]) -> Principal:
    """Parse and verify `token`: the work `VerifiedTokens` saves."""
    try:
        # Header and claims from one parse: PyJWT's parse is most of what a request costs the
        # gateway (it checks every character), and a tenant over its limit sends many.
        parsed = jwt.decode_complete(token, options={"verify_signature": False})
    except jwt.PyJWTError as e:
        raise Denied("unauthenticated", f"malformed access token: {e}", "unauthenticated") from e
    header, unverified = parsed["header"], parsed["payload"]
    if header.get("alg") != "HS256":
        raise Denied("unauthenticated", "access token must be HS256", "unauthenticated")
    issuer = unverified.get("iss")
    if not isinstance(issuer, str):
        raise Denied("unauthenticated", "access token has no issuer (API key)", "unauthenticated")
    if issuer == keys.platform_key:
        secret, kind, tenant = keys.platform_secret, "server", None
    elif issuer in keys.tenants:
        tenant, secret = keys.tenants[issuer]
        kind = "tenant"
    else:
        raise Denied("unauthenticated", f"unknown API key {issuer!r}", "unauthenticated")
    try:
        # PyJWT checks exp/nbf against the wall clock; a caller passing `now` gets them checked below.
        wall = now is None
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], leeway=LEEWAY_SECONDS,
            options={"require": ["exp"], "verify_exp": wall, "verify_nbf": wall},
        )
    except jwt.PyJWTError as e:
        raise Denied("unauthenticated", f"invalid access token: {e}", "unauthenticated") from e
    if now is not None:
        if not all(isinstance(claims.get(t, 0), (int, float)) and not isinstance(claims.get(t), bool)
                   for t in ("exp", "nbf")):
            raise Denied("unauthenticated", "invalid access token: exp and nbf must be numbers", "unauthenticated")
        if _expired(float(claims["exp"]), now):
            raise Denied("unauthenticated", "access token expired", "unauthenticated")
        if "nbf" in claims and float(claims["nbf"]) - LEEWAY_SECONDS > now:
            raise Denied("unauthenticated", "access token not yet valid", "unauthenticated")
    return Principal(kind, claims, tenant)  # type: ignore[arg-type]


# --- protobuf helpers ------------------------------------------------------------------------


def _has_unknown(msg: Message) -> bool:
    """True when `msg` or any message inside it carries fields this protocol version does not know:
    the gateway cannot vouch for what it cannot read."""
    if len(UnknownFieldSet(msg)):
        return True
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        if fd.message_type.GetOptions().map_entry:
            items = value.values() if fd.message_type.fields_by_name["value"].message_type else ()
            if any(_has_unknown(v) for v in items):
                return True
        elif fd.is_repeated:
            if any(_has_unknown(v) for v in value):
                return True
        elif _has_unknown(value):
            return True
    return False


def decode(cls: type[Message], body: bytes, json_body: bool) -> Message:
    """Parse a request body (Twirp protobuf or JSON); unknown fields are refused."""
    msg = cls()
    try:
        if json_body:
            json_format.Parse(body.decode() or "{}", msg, ignore_unknown_fields=False)
        else:
            msg.ParseFromString(body)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError, ValueError) as e:
        raise Denied("malformed", f"cannot parse {cls.__name__}: {e}", "request") from e
    if _has_unknown(msg):
        raise Denied("invalid_argument", f"{cls.__name__} has fields this gateway does not know", "request")
    return msg


def encode(msg: Message, json_body: bool) -> bytes:
    if json_body:
        return json_format.MessageToJson(msg, preserving_proto_field_name=False).encode()
    return msg.SerializeToString()


# --- Twirp -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TwirpDecision:
    """Go ahead: send the request with a token holding `claims`; pass the response through
    `filter_response` (a list call) when set."""

    claims: Mapping[str, Any]
    filter_response: Optional[Callable[[bytes, bool], bytes]] = None


Check = Callable[[TenantScope, Mapping[str, Any], Any], TwirpDecision]


@dataclass(frozen=True)
class Method:
    request: type[Message]
    check: Check


def _need(video: Mapping[str, Any], grant: str, what: str) -> None:
    if video.get(grant) is not True:
        raise Denied("permission_denied", f"{what} needs the `{grant}` grant", "grant")


def _own_room(scope: TenantScope, room: str, what: str = "room") -> None:
    if not scope.owns_room(room):
        raise Denied("permission_denied", f"{what} {room!r} is not one of tenant {scope.name!r}'s rooms", "scope")


def _own_agent(scope: TenantScope, agent_name: str) -> None:
    if not scope.owns_agent(agent_name):
        raise Denied("permission_denied", f"agent {agent_name!r} is not one of tenant {scope.name!r}'s agents", "scope")


def _admin_on(scope: TenantScope, video: Mapping[str, Any], room: str) -> TwirpDecision:
    """livekit-server's EnsureAdminPermission: `roomAdmin` with `room` equal to the request's."""
    _own_room(scope, room)
    if video.get("roomAdmin") is not True or video.get("room") != room:
        raise Denied("permission_denied", f"needs `roomAdmin` on room {room!r}", "grant")
    return TwirpDecision({"video": {"roomAdmin": True, "room": room}})


def _room_admin(scope: TenantScope, video: Mapping[str, Any], req: Any) -> TwirpDecision:
    return _admin_on(scope, video, req.room)


def _dest_room(scope: TenantScope, video: Mapping[str, Any], req: Any) -> TwirpDecision:
    """EnsureDestRoomPermission: admin on the source, `destinationRoom` equal to the target."""
    _admin_on(scope, video, req.room)
    _own_room(scope, req.destination_room, "destination room")
    if video.get("destinationRoom") != req.destination_room:
        raise Denied("permission_denied", f"needs `destinationRoom` {req.destination_room!r}", "grant")
    return TwirpDecision({"video": {"roomAdmin": True, "room": req.room, "destinationRoom": req.destination_room}})


def _tenant_attributes(attributes: Mapping[str, str]) -> None:
    """Dispatch attributes are the tenant's own, except the platform's namespace: `voxplane.recovery`
    marks a dispatch the platform made to replace a lost agent (voxplane/controllers/recovery)."""
    for key in attributes:
        if key.startswith(PLATFORM_ATTRIBUTE_PREFIX):
            raise Denied("permission_denied", f"dispatch attribute {key!r} is the platform's", "scope")


def _room_dispatches(scope: TenantScope, agents: Any) -> None:
    for d in agents:
        _own_agent(scope, d.agent_name)
        _tenant_attributes(d.attributes)


def _create_room(scope: TenantScope, video: Mapping[str, Any], req: Any) -> TwirpDecision:
    _need(video, "roomCreate", "CreateRoom")
    _own_room(scope, req.name)
    if req.HasField("egress"):
        raise Denied("permission_denied", "egress is not available to tenants", "scope")
    if req.node_id or req.room_preset:
        raise Denied("permission_denied", "node_id and room_preset are platform settings", "scope")
    _room_dispatches(scope, req.agents)
    return TwirpDecision({"video": {"roomCreate": True}})


def _delete_room(scope: TenantScope, video: Mapping[str, Any], req: Any) -> TwirpDecision:
    _need(video, "roomCreate", "DeleteRoom")
    _own_room(scope, req.room)
    return TwirpDecision({"video": {"roomCreate": True}})


def _list_rooms(scope: TenantScope, video: Mapping[str, Any], req: Any) -> TwirpDecision:
    _need(video, "roomList", "ListRooms")

    def only_mine(body: bytes, json_body: bool) -> bytes:
        resp = room_pb.ListRoomsResponse()
        if json_body:
            json_format.Parse(body.decode() or "{}", resp, ignore_unknown_fields=True)
        else:
            resp.ParseFromString(body)
        keep = [r for r in resp.rooms if scope.owns_room(r.name)]
        del resp.rooms[:]
        resp.rooms.extend(keep)
        return encode(resp, json_body)

    return TwirpDecision({"video": {"roomList": True}}, only_mine)


def _create_dispatch(scope: TenantScope, video: Mapping[str, Any], req: Any) -> TwirpDecision:
    _own_agent(scope, req.agent_name)
    decision = _admin_on(scope, video, req.room)
    _tenant_attributes(req.attributes)
    return decision


#: service -> method -> (request type, check). Anything else is refused.
TWIRP_METHODS: dict[str, dict[str, Method]] = {
    "livekit.RoomService": {
        "CreateRoom": Method(room_pb.CreateRoomRequest, _create_room),
        "ListRooms": Method(room_pb.ListRoomsRequest, _list_rooms),
        "DeleteRoom": Method(room_pb.DeleteRoomRequest, _delete_room),
        "ListParticipants": Method(room_pb.ListParticipantsRequest, _room_admin),
        "GetParticipant": Method(room_pb.RoomParticipantIdentity, _room_admin),
        "RemoveParticipant": Method(room_pb.RoomParticipantIdentity, _room_admin),
        "MutePublishedTrack": Method(room_pb.MuteRoomTrackRequest, _room_admin),
        "UpdateParticipant": Method(room_pb.UpdateParticipantRequest, _room_admin),
        "UpdateSubscriptions": Method(room_pb.UpdateSubscriptionsRequest, _room_admin),
        "SendData": Method(room_pb.SendDataRequest, _room_admin),
        "UpdateRoomMetadata": Method(room_pb.UpdateRoomMetadataRequest, _room_admin),
        "PerformRpc": Method(room_pb.PerformRpcRequest, _room_admin),
        "ForwardParticipant": Method(room_pb.ForwardParticipantRequest, _dest_room),
        "MoveParticipant": Method(room_pb.MoveParticipantRequest, _dest_room),
    },
    "livekit.AgentDispatchService": {
        "CreateDispatch": Method(dispatch_pb.CreateAgentDispatchRequest, _create_dispatch),
        "DeleteDispatch": Method(dispatch_pb.DeleteAgentDispatchRequest, _room_admin),
        "ListDispatch": Method(dispatch_pb.ListAgentDispatchRequest, _room_admin),
    },
}
#: Refused as a whole, with a sentence saying why (the rest get "not available").
REFUSED_SERVICES = {
    "livekit.SIP": "SIP trunks, dispatch rules and calls are the platform's (voxplane livekit sync)",
    "livekit.Egress": "egress is not available to tenants",
    "livekit.Ingress": "ingress is not available to tenants",
}


def authorize_twirp(principal: Principal, service: str, method: str, body: bytes, json_body: bool) -> TwirpDecision:
    """Decide one Twirp call; raises `Denied`."""
    if principal.kind != "tenant" or principal.tenant is None:
        raise Denied("permission_denied", "server-issued tokens only join their own room", "method")
    if service in REFUSED_SERVICES:
        raise Denied("permission_denied", f"{service}: {REFUSED_SERVICES[service]}", "method")
    spec = TWIRP_METHODS.get(service, {}).get(method)
    if spec is None:
        raise Denied("permission_denied", f"{service}/{method} is not available to tenants", "method")
    request = decode(spec.request, body, json_body)
    decision = spec.check(principal.tenant, principal.video, request)
    return TwirpDecision({**decision.claims, "sub": f"gateway:{principal.tenant.name}"}, decision.filter_response)


# --- /rtc joins --------------------------------------------------------------------------------


def authorize_join(principal: Principal) -> dict[str, Any]:
    """The claims to join with (to be minted with the platform key); raises `Denied`."""
    video = principal.video
    room = video.get("room")
    if video.get("roomJoin") is not True or not isinstance(room, str) or not room:
        raise Denied("permission_denied", "joining needs `roomJoin` and a `room`", "grant")
    claims = principal.claims
    if principal.kind == "tenant":
        assert principal.tenant is not None
        _own_room(principal.tenant, room)
    kind = claims.get("kind", "")
    if kind not in JOIN_KINDS:
        raise Denied("permission_denied", f"participant kind {kind!r} is the platform's", "grant")
    out_video: dict[str, Any] = {"roomJoin": True, "room": room}
    for grant in JOIN_VIDEO_GRANTS:
        if grant in video:
            out_video[grant] = video[grant]
    out: dict[str, Any] = {"video": out_video}
    for key in ("sub", "name", "kind", "metadata"):
        if isinstance(claims.get(key), str) and claims[key]:
            out[key] = claims[key]
    attrs = claims.get("attributes")
    if isinstance(attrs, dict):
        out["attributes"] = {str(k): str(v) for k, v in attrs.items()}
    if claims.get("roomPreset"):
        raise Denied("permission_denied", "room presets are a platform setting", "scope")
    if "roomConfig" in claims:
        out["roomConfig"] = _room_config(principal, claims["roomConfig"])
    return out


def _room_config(principal: Principal, raw: Any) -> dict[str, Any]:
    """A token's `roomConfig` (applied when the join creates the room): its agents must be the
    tenant's, no egress."""
    if not isinstance(raw, dict):
        raise Denied("invalid_argument", "roomConfig must be an object", "request")
    config = room_pb.RoomConfiguration()
    try:
        json_format.ParseDict(raw, config, ignore_unknown_fields=False)
    except json_format.ParseError as e:
        raise Denied("invalid_argument", f"roomConfig: {e}", "request") from e
    if config.HasField("egress"):
        raise Denied("permission_denied", "egress is not available to tenants", "scope")
    if principal.tenant is not None:
        _room_dispatches(principal.tenant, config.agents)
    elif config.agents:
        raise Denied("permission_denied", "server-issued tokens dispatch no agents", "scope")
    return json_format.MessageToDict(config)


# --- /agent workers ----------------------------------------------------------------------------


def authorize_worker(principal: Principal) -> dict[str, Any]:
    """Claims to open the server's /agent socket with; raises `Denied`."""
    if principal.kind != "tenant" or principal.tenant is None:
        raise Denied("permission_denied", "server-issued tokens cannot register workers", "grant")
    if principal.video.get("agent") is not True:
        raise Denied("permission_denied", "registering a worker needs the `agent` grant", "grant")
    return {"video": {"agent": True}, "sub": f"gateway:{principal.tenant.name}"}


def check_worker_message(scope: TenantScope, payload: bytes | str) -> str:
    """Check one worker -> server message (protobuf bytes or JSON text, as the server accepts);
    returns its type. Raises `Denied` for a message the tenant may not send."""
    msg = agent_pb.WorkerMessage()
    try:
        if isinstance(payload, str):
            json_format.Parse(payload, msg, ignore_unknown_fields=False)
        else:
            msg.ParseFromString(payload)
    except (DecodeError, json_format.ParseError, ValueError) as e:
        raise Denied("malformed", f"cannot parse WorkerMessage: {e}", "request") from e
    which = msg.WhichOneof("message")
    if which is None or which not in WORKER_MESSAGES:
        raise Denied("permission_denied", f"worker message {which or '(empty)'!r} is not available to tenants", "method")
    if _has_unknown(msg):
        raise Denied("invalid_argument", "WorkerMessage has fields this gateway does not know", "request")
    if which == "register":
        reg = msg.register
        for fd, _ in reg.ListFields():
            if fd.name not in REGISTER_FIELDS:
                raise Denied("permission_denied", f"register.{fd.name} is a platform setting", "scope")
        if not reg.agent_name:
            # An unnamed worker takes automatic dispatch: every room without explicit agents,
            # whoever's it is.
            raise Denied("permission_denied", "a worker must register with one of its tenant's agent names", "scope")
        _own_agent(scope, reg.agent_name)
    return which
