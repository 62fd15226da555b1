"""The controller's decisions, as pure functions over what livekit-server says: is an agent's
departure a loss the platform repairs, and with what dispatch.

An agent participant that leaves a room is dispatched again when all of these hold:

- it did not end its call itself: the platform glue (agents/_platform/voxplane_agent.py) sets the
  participant attribute `voxplane.call_ended` before the agent leaves a call on purpose, and
  livekit-server's disconnect reason does not say someone else ended it on purpose (removed by an
  admin, the room deleted or closed, replaced by a session of the same identity, moved to
  another node) or that the server itself is stopping (its rooms end with it);
- the room still exists and a caller (any participant that is not an agent or an egress) is in it,
  and no agent of the same name already is;
- its job came from a dispatch of the room (found by the job's participant identity), whose agent
  belongs to the tenant owning the room (the scopes the region renders, as the gateway holds them).
  livekit-server v1.13.5 lists a dispatch's jobs only once its dispatch round has ended, which on a
  cold worker cache waits for its worker-discovery RPC (`pkg/agent/client.go`,
  `CheckEnabledTimeout`, 5 s) while the agent may already be in the room: an agent lost while a
  dispatch of its name lists no job yet is `JobNotListed`, and the event is asked for again;
- that job was not recovered already (the new dispatch records the job it replaces), and the
  call's agent has been dispatched again fewer than `max_attempts` times.

The new dispatch repeats the lost one's agent name, metadata and attributes, plus the attribute
`voxplane.recovery`: `{"attempt": n, "lost_at": <unix seconds>, "lost_job": <job id>}`. livekit-server
gives dispatch attributes to the job (`Job.attributes`), so the new agent knows it joins a call
already under way (the glue's `recovery()`), and the record makes a second delivery of the same
webhook a no-op.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from livekit.protocol import agent_dispatch as dispatch_pb
from livekit.protocol import models as models_pb
from livekit.protocol import webhook as webhook_pb

from .config import Config

#: Participant attribute the platform glue sets before its agent leaves a call on purpose.
ENDED_ATTRIBUTE = "voxplane.call_ended"
#: Dispatch (and so job) attribute the controller sets on a dispatch that replaces a lost agent.
RECOVERY_ATTRIBUTE = "voxplane.recovery"
#: Attribute livekit-server sets on an agent participant (pkg/agent/worker.go AgentNameAttributeKey).
AGENT_NAME_ATTRIBUTE = "lk.agent_name"
#: Webhook events that report a participant gone (livekit protocol webhook/consts.go); the second
#: is sent for one that never finished connecting.
DEPARTURES = frozenset({"participant_left", "participant_connection_aborted"})
JOINED = "participant_joined"
#: Every event the controller reads (livekit-server's `webhook.filter_params.include_events`).
WEBHOOK_EVENTS = DEPARTURES | {JOINED}

_R = models_pb.DisconnectReason
#: Disconnect reasons that say the agent's part ended on purpose, with the refusal they give.
DELIBERATE_REASONS: Mapping[int, str] = {
    _R.PARTICIPANT_REMOVED: "removed",
    _R.ROOM_DELETED: "room_gone",
    _R.ROOM_CLOSED: "room_gone",
    _R.DUPLICATE_IDENTITY: "replaced",
    _R.MIGRATION: "migrated",
    # The server is stopping: every participant of its rooms goes, the caller too.
    _R.SERVER_SHUTDOWN: "server_shutdown",
}
_KIND = models_pb.ParticipantInfo.Kind
#: Participants that are not a caller.
NOT_CALLERS = frozenset({_KIND.AGENT, _KIND.EGRESS})


class Refused(Exception):
    """A departure that is not repaired; `reason` is a short label for metrics and logs."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


class JobNotListed(Exception):
    """A loss whose job livekit-server has not listed on the room's dispatch yet (module docstring):
    neither a refusal nor a dispatch; the controller answers 503 and livekit-server sends the event
    again (its notifier retries a 5xx, 4 times over ~15 s)."""


@dataclass(frozen=True)
class Loss:
    """An agent participant gone from a room, as a webhook reports it."""

    room: str
    identity: str
    reason: int
    attributes: Mapping[str, str]
    #: The server's time of the event (unix seconds).
    at: int
    event_id: str

    @property
    def agent_name(self) -> str:
        """The name the server gave the agent (a hint; the room's dispatch is what counts)."""
        return self.attributes.get(AGENT_NAME_ATTRIBUTE, "")

    @classmethod
    def of(cls, event: webhook_pb.WebhookEvent) -> Optional["Loss"]:
        """The loss an event reports, or None when it reports no agent's departure."""
        if event.event not in DEPARTURES or not event.HasField("participant"):
            return None
        p = event.participant
        if p.kind != _KIND.AGENT:
            return None
        return cls(room=event.room.name, identity=p.identity, reason=p.disconnect_reason,
                   attributes=dict(p.attributes), at=int(event.created_at), event_id=event.id)


@dataclass(frozen=True)
class Redispatch:
    """The dispatch that gives the call its agent again."""

    tenant: str
    request: dispatch_pb.CreateAgentDispatchRequest
    attempt: int
    lost_job: str


def screen(loss: Loss) -> None:
    """What the webhook alone settles (no call to the server): raises `Refused` for an agent that
    ended its call or was taken out of it on purpose."""
    if loss.attributes.get(ENDED_ATTRIBUTE):
        raise Refused("ended", f"agent {loss.identity} ended the call itself "
                               f"({ENDED_ATTRIBUTE}={loss.attributes[ENDED_ATTRIBUTE]!r})")
    if not loss.room:
        raise Refused("room_gone", f"agent {loss.identity} left no named room")
    why = DELIBERATE_REASONS.get(loss.reason)
    if why is not None:
        raise Refused(why, f"agent {loss.identity} left room {loss.room!r}: "
                           f"{models_pb.DisconnectReason.Name(loss.reason)}")


def recovery_record(attributes: Mapping[str, str]) -> dict[str, Any]:
    """The `voxplane.recovery` record among `attributes` ({} when absent or unreadable)."""
    raw = attributes.get(RECOVERY_ATTRIBUTE)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def decide(loss: Loss, config: Config, participants: Sequence[models_pb.ParticipantInfo],
           dispatches: Sequence[dispatch_pb.AgentDispatch]) -> Redispatch:
    """The dispatch that repairs `loss` in a room with these `participants` and `dispatches` (what
    the server lists now), or `Refused`. Call `screen` first."""
    callers = [p for p in participants if p.kind not in NOT_CALLERS]
    if not callers:
        raise Refused("caller_gone", f"room {loss.room!r} has no caller left")

    found = [(d, job) for d in dispatches for job in d.state.jobs if job.state.participant_identity == loss.identity]
    if not found:
        unlisted = [d.id for d in dispatches if loss.agent_name and d.agent_name == loss.agent_name
                    and not d.state.jobs]
        if unlisted:
            raise JobNotListed(f"livekit-server lists no job yet on dispatch {unlisted[0]} of agent "
                               f"{loss.agent_name!r} in room {loss.room!r}, whose agent {loss.identity} left")
        raise Refused("no_dispatch", f"agent {loss.identity} came from no dispatch of room {loss.room!r}")
    lost, job = found[0]

    owner = config.owner(loss.room)
    if owner is None:
        raise Refused("foreign_room", f"room {loss.room!r} is no tenant's")
    if lost.agent_name not in owner.agents:
        raise Refused("foreign_agent", f"agent {lost.agent_name!r} is not one of tenant {owner.name!r}'s agents; "
                                       f"room {loss.room!r} is {owner.name!r}'s")

    if any(recovery_record(d.attributes).get("lost_job") == job.id for d in dispatches):
        raise Refused("duplicate", f"job {job.id} of room {loss.room!r} was dispatched again already")
    present = [p.identity for p in participants if p.kind == _KIND.AGENT
               and p.attributes.get(AGENT_NAME_ATTRIBUTE) == lost.agent_name]
    if present:
        raise Refused("agent_present", f"agent {lost.agent_name!r} is in room {loss.room!r} again ({present[0]})")

    previous = recovery_record(lost.attributes).get("attempt", 0)
    attempt = (previous if isinstance(previous, int) and previous >= 0 else 0) + 1
    if attempt > config.max_attempts:
        raise Refused("attempts", f"the agent of room {loss.room!r} was dispatched again {attempt - 1} times "
                                  f"(at most {config.max_attempts})")

    attributes = dict(lost.attributes)
    attributes[RECOVERY_ATTRIBUTE] = json.dumps({"attempt": attempt, "lost_at": loss.at, "lost_job": job.id},
                                                sort_keys=True, separators=(",", ":"))
    request = dispatch_pb.CreateAgentDispatchRequest(agent_name=lost.agent_name, room=loss.room,
                                                     metadata=lost.metadata, attributes=attributes)
    return Redispatch(tenant=owner.name, request=request, attempt=attempt, lost_job=job.id)
