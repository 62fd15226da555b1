"""The recovery controller's decisions (voxplane/controllers/recovery/decide.py) over the messages
livekit-server sends and lists, and its config as the region renders it. The same decisions
against the real servers and workers are in test_faults_integration.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from livekit.protocol import agent as agent_pb
from livekit.protocol import agent_dispatch as dispatch_pb
from livekit.protocol import models as models_pb
from livekit.protocol import webhook as webhook_pb

from voxplane.controllers.recovery.config import Config, TenantRooms
from voxplane.controllers.recovery.decide import (
    ENDED_ATTRIBUTE,
    RECOVERY_ATTRIBUTE,
    JobNotListed,
    Loss,
    Refused,
    decide,
    recovery_record,
    screen,
)
from voxplane.desired.gateway import gateway_config
from voxplane.desired.recovery import recovery_config

from ..desired._helpers import project

R = models_pb.DisconnectReason
KIND = models_pb.ParticipantInfo.Kind
ROOM = "bv-call_+15550100199_abc"
AGENT = "bellavista-reservations"
JOB = "AJ_lost"
CONFIG = Config(
    livekit_url="http://127.0.0.1:7880", api_key="vx-recovery", key_file="/dev/null",
    tenants={
        "bellavista": TenantRooms("bellavista", frozenset({AGENT}), frozenset({"bv-call", "bellavista"})),
        "northwind": TenantRooms("northwind", frozenset({"northwind-support"}), frozenset({"nw-support", "northwind"})),
    },
)


def event(kind: int = KIND.AGENT, name: str = "participant_left", reason: int = R.CONNECTION_TIMEOUT,
          room: str = ROOM, **attributes: str) -> webhook_pb.WebhookEvent:
    return webhook_pb.WebhookEvent(
        event=name, id="EV_1", created_at=1_800_000_000, room=models_pb.Room(name=room),
        participant=models_pb.ParticipantInfo(identity=f"agent-{JOB}", kind=kind, disconnect_reason=reason,
                                              attributes={"lk.agent_name": AGENT, **attributes}))


def loss(**kw: Any) -> Loss:
    found = Loss.of(event(**kw))
    assert found is not None
    return found


def dispatch(agent: str = AGENT, job: str = JOB, identity: str = f"agent-{JOB}", metadata: str = '{"tenant":"bv"}',
             **attributes: str) -> dispatch_pb.AgentDispatch:
    return dispatch_pb.AgentDispatch(
        id=f"AD_{job}", agent_name=agent, room=ROOM, metadata=metadata, attributes=attributes,
        state=dispatch_pb.AgentDispatchState(jobs=[agent_pb.Job(
            id=job, agent_name=agent, state=agent_pb.JobState(status=agent_pb.JS_RUNNING,
                                                              participant_identity=identity))]))


def participant(identity: str, kind: int = KIND.STANDARD, **attributes: str) -> models_pb.ParticipantInfo:
    return models_pb.ParticipantInfo(identity=identity, kind=kind, attributes=attributes)


CALLER = participant("caller")


def refused(fn: Any, *args: Any) -> str:
    with pytest.raises(Refused) as r:
        fn(*args)
    return r.value.reason


# --- what the webhook alone settles ------------------------------------------------------------------


def test_only_an_agent_leaving_is_a_loss() -> None:
    assert Loss.of(event(kind=KIND.STANDARD)) is None
    assert Loss.of(event(kind=KIND.SIP)) is None
    assert Loss.of(event(name="participant_joined")) is None
    assert Loss.of(event(name="track_unpublished")) is None
    assert Loss.of(webhook_pb.WebhookEvent(event="participant_left", room=models_pb.Room(name=ROOM))) is None
    found = Loss.of(event(name="participant_connection_aborted"))
    assert found is not None and (found.room, found.identity, found.at) == (ROOM, f"agent-{JOB}", 1_800_000_000)
    assert found.agent_name == AGENT


@pytest.mark.parametrize("reason", [R.CONNECTION_TIMEOUT, R.SIGNAL_CLOSE, R.MEDIA_FAILURE, R.STATE_MISMATCH,
                                    R.JOIN_FAILURE, R.UNKNOWN_REASON, R.CLIENT_INITIATED, R.AGENT_ERROR])
def test_a_lost_connection_or_an_unmarked_exit_goes_on_to_the_room(reason: int) -> None:
    """A killed worker's agent times out; an agent program that exits on its own without the glue's
    marker (a crash its framework caught) leaves cleanly: both leave the caller alone."""
    screen(loss(reason=reason))


@pytest.mark.parametrize("reason, why", [(R.PARTICIPANT_REMOVED, "removed"), (R.ROOM_DELETED, "room_gone"),
                                         (R.ROOM_CLOSED, "room_gone"), (R.DUPLICATE_IDENTITY, "replaced"),
                                         (R.MIGRATION, "migrated"), (R.SERVER_SHUTDOWN, "server_shutdown")])
def test_an_agent_taken_out_on_purpose_is_not_replaced(reason: int, why: str) -> None:
    assert refused(screen, loss(reason=reason)) == why


def test_an_agent_that_ended_its_call_is_not_replaced_whatever_the_reason() -> None:
    for reason in (R.CLIENT_INITIATED, R.CONNECTION_TIMEOUT):
        assert refused(screen, loss(reason=reason, **{ENDED_ATTRIBUTE: "session closed"})) == "ended"


# --- with what the server lists --------------------------------------------------------------------


def test_a_lost_agent_with_its_caller_still_there_is_dispatched_again_with_the_record() -> None:
    lost = dispatch(**{"crm": "42"})
    plan = decide(loss(), CONFIG, [CALLER], [lost])
    req = plan.request
    assert (plan.tenant, plan.attempt, plan.lost_job) == ("bellavista", 1, JOB)
    assert (req.agent_name, req.room, req.metadata) == (AGENT, ROOM, lost.metadata)
    assert req.attributes["crm"] == "42"
    assert json.loads(req.attributes[RECOVERY_ATTRIBUTE]) == {"attempt": 1, "lost_at": 1_800_000_000, "lost_job": JOB}


def test_the_lost_agents_leftovers_do_not_count_as_a_caller() -> None:
    others = [participant("agent-AJ_other", KIND.AGENT, **{"lk.agent_name": "bellavista-other"}),
              participant("EG_1", KIND.EGRESS)]
    assert refused(decide, loss(), CONFIG, others, [dispatch()]) == "caller_gone"
    # A phone caller is a caller.
    assert decide(loss(), CONFIG, [participant("sip_+1555", KIND.SIP)], [dispatch()]).attempt == 1


def test_an_agent_no_dispatch_sent_is_not_dispatched() -> None:
    assert refused(decide, loss(), CONFIG, [CALLER], []) == "no_dispatch"
    assert refused(decide, loss(), CONFIG, [CALLER], [dispatch(identity="agent-AJ_else")]) == "no_dispatch"


def test_a_loss_before_the_server_lists_its_job_is_asked_again() -> None:
    """livekit-server lists a dispatch's jobs only when its dispatch round ends, possibly after the
    agent joined (decide.py): a dispatch of the lost agent's name with no job yet is no refusal."""
    unlisted = dispatch_pb.AgentDispatch(id="AD_new", agent_name=AGENT, room=ROOM)
    with pytest.raises(JobNotListed, match="lists no job yet on dispatch AD_new"):
        decide(loss(), CONFIG, [CALLER], [unlisted])
    # Another agent's dispatch without jobs, or the room's unnamed one, says nothing about this agent.
    for other in (dispatch_pb.AgentDispatch(id="AD_o", agent_name="bellavista-other", room=ROOM),
                  dispatch_pb.AgentDispatch(id="AD_room", room=ROOM)):
        assert refused(decide, loss(), CONFIG, [CALLER], [other]) == "no_dispatch"


def test_an_agent_goes_only_into_a_room_of_its_own_tenant() -> None:
    """The dispatch names northwind's agent in bellavista's room (only a platform key could have
    made it): recovery does not repeat it. A room no tenant owns gets nothing either."""
    assert refused(decide, loss(), CONFIG, [CALLER], [dispatch(agent="northwind-support")]) == "foreign_agent"
    assert refused(decide, loss(room="lobby"), CONFIG, [CALLER], [dispatch()]) == "foreign_room"


def test_one_loss_is_repaired_once() -> None:
    done = dispatch(job="AJ_new", identity="agent-AJ_new",
                    **{RECOVERY_ATTRIBUTE: json.dumps({"attempt": 1, "lost_at": 1, "lost_job": JOB})})
    assert refused(decide, loss(), CONFIG, [CALLER], [dispatch(), done]) == "duplicate"
    present = participant("agent-AJ_new", KIND.AGENT, **{"lk.agent_name": AGENT})
    assert refused(decide, loss(), CONFIG, [CALLER, present], [dispatch()]) == "agent_present"


def test_a_call_is_repaired_at_most_max_attempts_times() -> None:
    third = dispatch(**{RECOVERY_ATTRIBUTE: json.dumps({"attempt": 2, "lost_at": 1, "lost_job": "AJ_x"})})
    assert decide(loss(), CONFIG, [CALLER], [third]).attempt == 3
    fourth = dispatch(**{RECOVERY_ATTRIBUTE: json.dumps({"attempt": 3, "lost_at": 1, "lost_job": "AJ_y"})})
    assert refused(decide, loss(), CONFIG, [CALLER], [fourth]) == "attempts"


@pytest.mark.parametrize("raw", ["", "not json", "[1]", '{"attempt": "two"}', '{"attempt": -4}'])
def test_an_unreadable_record_counts_as_none(raw: str) -> None:
    assert recovery_record({RECOVERY_ATTRIBUTE: raw}).get("attempt") in (None, "two", -4)
    assert decide(loss(), CONFIG, [CALLER], [dispatch(**{RECOVERY_ATTRIBUTE: raw})]).attempt == 1


# --- the config ------------------------------------------------------------------------------------


def test_the_rendered_config_reads_back() -> None:
    for name in ("local", "us-east", "eu-west"):
        region = project().regions[name]
        config = recovery_config(region, project().agents_in(name))
        assert Config.from_json(config.to_json()) == config
        assert config.api_key == "vx-recovery" and config.key_file.endswith("/vx-recovery")


@pytest.mark.parametrize("text, message", [
    ("{", "config is not JSON"),
    ("[]", "config is not a JSON object"),
    ('{"version": 9}', "config version 9 is not 1"),
    ('{"version": 1, "tenants": {}}', "config: missing 'livekit_url'"),
    ('{"version": 1, "tenants": {}, "livekit_url": "ftp://x", "api_key": "k", "key_file": "/f"}',
     "livekit_url 'ftp://x' is not an http(s) URL"),
    ('{"version": 1, "tenants": {"a": 3}, "livekit_url": "http://x", "api_key": "k", "key_file": "/f"}',
     "tenants.a is not an object"),
    ('{"version": 1, "tenants": {}, "livekit_url": "http://x", "api_key": "", "key_file": "/f"}',
     "api_key must be a non-empty string"),
    ('{"version": 1, "tenants": {}, "livekit_url": "http://x", "api_key": "k", "key_file": "/f", "max_attempts": 0}',
     "max_attempts must be at least 1"),
])
def test_a_bad_config_is_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(ValueError) as e:
        Config.from_json(text)
    assert message in str(e.value)


ROOM_NAMES = st.one_of(
    st.sampled_from(["bv-call_+1555_x", "bv-call_", "bv-call", "bellavista_web", "nw-support_+1", "nw-sched_+44",
                     "northwind_x", "lobby", "", "bv-call-x_1", "nw_support_1"]),
    st.builds(lambda p, rest: p + rest, st.sampled_from(["bv-call", "nw-support", "nw-sched", "northwind", "bellavista",
                                                          "bv", "nw"]),
              st.text(alphabet="_-+abc19", max_size=6)),
)


@given(ROOM_NAMES)
def test_room_owners_are_the_gateways(room: str) -> None:
    """The controller decides a room's tenant by the same rule the gateway scopes tenants with
    (its own copy: the image holds no gateway), for every example region."""
    for name in ("local", "us-east"):
        region, agents = project().regions[name], project().agents_in(name)
        gateway = gateway_config(region, agents).room_owner(room)
        mine = recovery_config(region, agents).owner(room)
        assert (gateway.name if gateway else None) == (mine.name if mine else None)
        if mine is not None:
            assert mine.agents == gateway.agents  # type: ignore[union-attr]
