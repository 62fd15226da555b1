"""The LiveKit half of `voxplane status`: active rooms, participants and SIP calls, each room
attributed to the agent it belongs to; and the SIP objects voxplane owns in the region.

Reads (livekit-api, the server credentials `voxplane livekit sync` uses): ListRooms, then per room
ListParticipants and ListDispatch (concurrently, 16 at a time), plus ListSIPInboundTrunk and
ListSIPDispatchRule once.

A room is attributed to an agent of the region by, in order:
1. its agent dispatches (ListDispatch): the LiveKit agent name each names is tenant-scoped
   (`<tenant>-<agent>`, `Agent.scoped_name`), so the agent is known with its tenant. A dispatch
   with an empty name (LiveKit's automatic dispatch) names no agent. When a room has named
   dispatches, they alone decide: a room dispatching only agents that are not the region's is
   "other", whatever its name looks like.
2. only when it has no named dispatch (or ListDispatch failed for it): its name against the
   region's dispatch rules, as the server names the rooms it creates for calls (protocol
   sip.go): `<room_prefix>_<caller>[_<random>]` (individual), `<room_prefix>_<callee>[_<random>]`
   (callee), the rule's fixed room name (direct). The longest prefix wins; the same prefix on two
   agents attributes to neither.
Whatever matches no agent of the region is listed under "other rooms", never under an agent: one
tenant's rooms are never counted under another tenant's agent.

Counts: participants are those not yet disconnected, of any kind (callers, agents, others);
SIP calls are the participants of kind SIP (what livekit-sip joins for each call);
agent participants those of kind AGENT.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

from ..manifest.model import Agent

#: ParticipantInfo.Kind and ParticipantInfo.State values (livekit protocol models.proto).
KIND_SIP = 3
KIND_AGENT = 4
STATE_DISCONNECTED = 3
#: Per-room calls in flight at once.
CONCURRENCY = 16


@dataclass(frozen=True)
class AgentKey:
    tenant: str
    agent: str

    def __str__(self) -> str:
        return f"{self.tenant}/{self.agent}"


@dataclass(frozen=True)
class RoomRoute:
    """How a dispatch rule of the region names the rooms it creates for calls."""

    key: AgentKey
    dispatch: str  # individual | callee | direct
    prefix: str = ""  # individual, callee
    room: str = ""  # direct

    def matches(self, room: str) -> int:
        """The length of the match (0: none), so the longest can win."""
        if self.dispatch == "direct":
            return len(self.room) + 1 if self.room and room == self.room else 0
        if self.prefix and room.startswith(self.prefix + "_"):
            return len(self.prefix) + 1
        return 0


@dataclass
class LiveRoom:
    name: str
    participants: int = 0
    sip_calls: int = 0
    agent_participants: int = 0
    #: The agent names of its dispatches; None when ListDispatch failed for this room.
    dispatched: Optional[tuple[str, ...]] = ()
    #: The region's agents it is attributed to, and how ("dispatch" | "room name").
    agents: list[AgentKey] = field(default_factory=list)
    by: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"room": self.name, "participants": self.participants, "sip_calls": self.sip_calls,
                "agent_participants": self.agent_participants,
                # named dispatches only ("" is LiveKit's automatic dispatch, which names no agent)
                "dispatched_agents": [n for n in self.dispatched if n] if self.dispatched is not None else None}


@dataclass
class Activity:
    """One agent's share of the server: rooms attributed to it and who is in them."""

    rooms: int = 0
    participants: int = 0
    sip_calls: int = 0
    agent_participants: int = 0

    def add(self, room: LiveRoom) -> None:
        self.rooms += 1
        self.participants += room.participants
        self.sip_calls += room.sip_calls
        self.agent_participants += room.agent_participants

    def as_dict(self) -> dict[str, int]:
        return {"rooms": self.rooms, "participants": self.participants, "sip_calls": self.sip_calls,
                "agent_participants": self.agent_participants}


def routes(region: str, agents: Sequence[Agent], rules: Iterable[Any]) -> list[RoomRoute]:
    """Room naming of the region's voxplane-owned live dispatch rules, plus the manifests' for
    agents whose rule is not on the server (yet, or any more)."""
    from ..livekit.desired import parse_owner

    out: dict[AgentKey, list[RoomRoute]] = {}
    for rule in rules:
        owner, _ = parse_owner(rule.metadata)
        if owner is None or owner.region != region or owner.role != "rule":
            continue
        key = AgentKey(owner.tenant, owner.agent)
        which = rule.rule.WhichOneof("rule") if rule.HasField("rule") else None
        if which == "dispatch_rule_individual":
            route = RoomRoute(key, "individual", prefix=rule.rule.dispatch_rule_individual.room_prefix)
        elif which == "dispatch_rule_callee":
            route = RoomRoute(key, "callee", prefix=rule.rule.dispatch_rule_callee.room_prefix)
        elif which == "dispatch_rule_direct":
            route = RoomRoute(key, "direct", room=rule.rule.dispatch_rule_direct.room_name)
        else:
            continue
        out.setdefault(key, []).append(route)
    for agent in agents:
        key = AgentKey(agent.tenant, agent.name)
        if agent.telephony is None or key in out:
            continue
        d = agent.telephony.dispatch
        out[key] = [RoomRoute(key, "direct", room=d.room_name or "") if d.kind == "direct"
                    else RoomRoute(key, d.kind, prefix=d.room_prefix)]
    return [r for rs in out.values() for r in rs]


def attribute(room: LiveRoom, by_livekit_name: dict[str, list[AgentKey]], room_routes: Sequence[RoomRoute]) -> None:
    """Set `room.agents` and `room.by` (see the module docstring for the rules)."""
    named = [n for n in (room.dispatched or ()) if n]
    if named:
        keys: list[AgentKey] = []
        for name in dict.fromkeys(named):
            owners = by_livekit_name.get(name, [])
            if len(owners) == 1 and owners[0] not in keys:
                keys.append(owners[0])
        room.agents, room.by = keys, "dispatch" if keys else ""
        return
    best, winners = 0, set()
    for route in room_routes:
        n = route.matches(room.name)
        if n > best:
            best, winners = n, {route.key}
        elif n and n == best:
            winners.add(route.key)
    if len(winners) == 1:
        room.agents, room.by = [next(iter(winners))], "room name"


def agent_names(agents: Sequence[Agent]) -> dict[str, list[AgentKey]]:
    """LiveKit agent name -> the region's agents that register under it (more than one: ambiguous)."""
    out: dict[str, list[AgentKey]] = {}
    for a in agents:
        out.setdefault(a.scoped_name, []).append(AgentKey(a.tenant, a.name))
    return out


def read_rooms(client: Any) -> list[LiveRoom]:
    """Every active room with its participants and dispatches. `client` is a
    `voxplane.livekit.client.LiveKitAdmin`; its `LiveKitError`s reach the caller, except a failed
    ListDispatch for one room (a room that just ended answers 503 after 3 s): that room is then
    attributed by its name alone."""
    from livekit import api

    listed = client.call("ListRooms", lambda lk: lk.room.list_rooms(api.ListRoomsRequest()))
    names = sorted(r.name for r in listed.rooms)
    if not names:
        return []

    async def room(lk: api.LiveKitAPI, name: str, gate: asyncio.Semaphore) -> tuple[Any, Optional[list[Any]]]:
        async with gate:
            people = await lk.room.list_participants(api.ListParticipantsRequest(room=name))
            try:
                dispatches: Optional[list[Any]] = await lk.agent_dispatch.list_dispatch(name)
            except api.TwirpError:
                dispatches = None
            return people, dispatches

    async def every(lk: api.LiveKitAPI) -> list[tuple[Any, Optional[list[Any]]]]:
        gate = asyncio.Semaphore(CONCURRENCY)
        return list(await asyncio.gather(*(room(lk, n, gate) for n in names)))

    answers = client.call("ListParticipants", every)
    # One entry above stands for len(names) ListParticipants and as many ListDispatch calls.
    client.calls["ListParticipants"] += len(names) - 1
    client.calls["ListDispatch"] += len(names)
    out: list[LiveRoom] = []
    for name, (people, dispatches) in zip(names, answers):
        live = [p for p in people.participants if p.state != STATE_DISCONNECTED]
        out.append(LiveRoom(
            name=name, participants=len(live),
            sip_calls=sum(1 for p in live if p.kind == KIND_SIP),
            agent_participants=sum(1 for p in live if p.kind == KIND_AGENT),
            dispatched=tuple(d.agent_name for d in dispatches) if dispatches is not None else None,
        ))
    return out


@dataclass
class LiveKitObject:
    kind: str
    name: str
    owner: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "owner": self.owner, "detail": self.detail}


def livekit_objects(trunks: Iterable[Any], rules: Iterable[Any], region: str) -> list[LiveKitObject]:
    """Trunks and dispatch rules whose metadata marks them as the region's, voxplane-owned."""
    from ..livekit.desired import parse_owner

    out: list[LiveKitObject] = []
    for trunk in trunks:
        owner, _ = parse_owner(trunk.metadata)
        if owner is not None and owner.region == region:
            out.append(LiveKitObject("SIPInboundTrunk", trunk.name, str(owner), ", ".join(trunk.numbers)))
    for rule in rules:
        owner, _ = parse_owner(rule.metadata)
        if owner is not None and owner.region == region:
            names = ", ".join(a.agent_name for a in rule.room_config.agents) if rule.HasField("room_config") else ""
            out.append(LiveKitObject("SIPDispatchRule", rule.name, str(owner), f"agents: {names}" if names else ""))
    out.sort(key=lambda o: (o.kind, o.name))
    return out
