"""Calls survive the faults a platform can absorb (issue #19 items 1, 2): real livekit-server and
Redis, the gateway's two replicas and the recovery controller as their images run them, the
example agents as real livekit-agents workers and real rtc callers (tests/recovery/conftest.py).

- A worker killed with `kill -9` (its job processes with it: the pod or node gone): livekit-server
  reports each of its agents gone once its ICE timeouts run out (~20 s), and every one of its
  calls gets the agent again, once, on another worker; the new agent opens with the recovery
  apology (what the stand-in model was asked shows it).
- Not replaced: the agent of a caller who hangs up as the worker dies; an agent that ended its
  call itself (its caller hung up while another participant stays; inference failing for good).
- A gateway replica killed: every call goes on (media goes straight to the SFU, signalling resumes
  through the other replica with the refresh token the gateway signed: voxplane/gateway/refresh.py)
  and the workers register again through it.
- Redis restarted: calls go on, workers stay registered, dispatch and recovery work again.
- livekit-server restarted: its calls end with it; workers register again by themselves, and new
  calls get agents and are recovered as before.

Waits are bounded (`wait_until`), never measured: bench/faults.py measures.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from voxplane.livekit.client import LiveKitError

from ..agents.conftest import Caller, Worker, unreachable_url
from ..agents.standin import StandIn
from .conftest import Faults, kill, wait_agent_back, wait_until

pytestmark = pytest.mark.integration

#: Longer than livekit-server takes to drop a participant it lost (ICE: 10 s disconnected + 5 s
#: failed, then 5 s cleanup: pkg/rtc/transport.go, participant.go): a call that stays whole this
#: long after a fault was not lost.
LOSS_WINDOW = 25.0
#: What the glue asks the model to open a recovered call with (agents/_platform RECOVERED_OPENING).
RECOVERED_PHRASE = "the line was cut off"


@pytest.fixture
def model() -> Iterator[StandIn]:
    with StandIn() as m:
        yield m


def everything(model: StandIn) -> dict[str, str]:
    return {"STT": model.base_url, "TTS": model.base_url, "LLM": model.base_url}


@pytest.fixture
def calls(faults: Faults) -> Iterator[Callable[..., tuple[Any, Caller]]]:
    """`calls(agent, number, identity)`: a call (Faults.call); its room is deleted and its caller
    closed afterwards, so nothing of it reaches the next test."""
    placed: list[tuple[str, Caller]] = []

    def place(agent: str, number: str, identity: str) -> tuple[Any, Caller]:
        d, caller = faults.call(agent, number, identity)
        assert d.room
        placed.append((d.room, caller))
        return d, caller

    yield place
    rooms = set(faults.rooms())
    for room, caller in placed:
        if room in rooms:
            faults.delete_room(room)
        caller.close()


def decisions(faults: Faults, room: str) -> list[str]:
    """The recovery controller's decisions about `room`: its log line for each agent departure it
    settled (`...; dispatched again as ...` or `...; not dispatched again: why`), not the events it
    asked for again (a job not listed yet) nor the joins it counted."""
    return [line for line in faults.recovery.log_path.read_text().splitlines()
            if f"room {room!r}" in line and "dispatched again" in line]


def named_dispatches(faults: Faults, room: str) -> list[Any]:
    """The room's dispatches of a named agent (the rule's, and the controller's)."""
    return [d for d in faults.dispatches(room) if d.agent_name]


def decided(faults: Faults, room: str, timeout: float = 60) -> str:
    """The controller's first decision about `room` (its log line), waiting for it."""
    return wait_until(f"the recovery controller's decision on {room}", lambda: next(iter(decisions(faults, room)), ""),
                      timeout=timeout, details=lambda: faults.recovery.log_tail())


def store_answers(faults: Faults) -> bool:
    """Whether livekit-server can list its rooms (it reads them from Redis)."""
    try:
        faults.rooms()
        return True
    except LiveKitError:
        return False


def opened_with_apology(model: StandIn) -> int:
    return sum(RECOVERED_PHRASE in json.dumps(r.body) for r in model.requests if r.path.endswith("/chat/completions"))


def intact(faults: Faults, live: list[tuple[str, Caller, str, str]], until: float) -> None:
    """Until `until` (monotonic), every call (room, caller, caller's identity, agent's identity)
    keeps its caller and its agent in the room, and no caller sees its agent leave or its own
    connection end."""
    while time.monotonic() < until:
        for room, caller, identity, agent in live:
            people = {p.identity for p in faults.participants(room)}
            assert {agent, identity} <= people, (room, people)
            gone = [e for e in caller.drain_events() if e["event"] in ("participant_disconnected", "disconnected")]
            assert not gone, (room, gone)
        time.sleep(1.0)


# --- a worker killed ---------------------------------------------------------------------------------


def test_killing_a_worker_gives_each_of_its_calls_an_agent_again_once(
        faults: Faults, workers: Callable[..., Worker], calls: Callable[..., tuple[Any, Caller]],
        model: StandIn) -> None:
    doomed = workers("reservations", everything(model))
    doomed.wait_registered()
    placed = []
    for i in range(2):
        d, caller = calls("reservations", f"+1555011000{i}", f"caller-killed-{i}")
        placed.append((d, caller, caller.agent_joined(30)["identity"]))
    doomed.wait("both calls", lambda: (s := doomed.state()) and s["active_jobs"] == 2, 30)
    spare = workers("reservations", everything(model))
    spare.wait_registered()
    assert opened_with_apology(model) == 0

    kill(doomed)
    for d, caller, lost in placed:
        back = wait_agent_back(faults, caller, lost)
        assert back["identity"] != lost and not [e for e in caller.events if e["event"] == "disconnected"]
        # Lost as the gateway reported it (its connection ended with no close frame and no resume),
        # not ~20 s later when livekit-server's ICE gives up (CONNECTION_TIMEOUT).
        decision = decided(faults, d.room)
        assert "(AGENT_ERROR); dispatched again" in decision, decisions(faults, d.room)
    assert sum(faults.gateway_metric(i, "voxplane_gateway_agents_gone_total", tenant="bellavista")
               for i in range(len(faults.gateways))) == 2
    spare.wait("both calls", lambda: (s := spare.state()) and s["active_jobs"] == 2, 30)
    # Each call: its first dispatch and one more, which says what it replaces.
    for d, caller, lost in placed:
        dispatches = named_dispatches(faults, d.room)
        assert len(dispatches) == 2, dispatches
        record = json.loads(next(x for x in dispatches if "voxplane.recovery" in x.attributes)
                            .attributes["voxplane.recovery"])
        first_job = next(x for x in dispatches if "voxplane.recovery" not in x.attributes).state.jobs[0]
        assert record["attempt"] == 1 and record["lost_job"] == first_job.id
        agents = faults.agents_in(d.room)
        assert len(agents) == 1 and lost not in agents, agents
    # The new agents opened with the apology, not a greeting.
    wait_until("the recovered agents' openings", lambda: opened_with_apology(model) == 2, timeout=30)
    wait_until("the recoveries to be counted", lambda: faults.recovery_metric(
        "voxplane_recovery_recovered_total", tenant="bellavista") >= 2, timeout=30)
    assert faults.recovery_metric("voxplane_recovery_seconds_count", tenant="bellavista") >= 2


def test_a_caller_who_hangs_up_as_the_worker_dies_gets_no_new_agent(
        faults: Faults, workers: Callable[..., Worker], calls: Callable[..., tuple[Any, Caller]],
        model: StandIn) -> None:
    """The agent is lost and its caller hangs up at once. livekit-server does not count agents as
    keeping a room open (`IsDependent`, pkg/rtc/room.go CloseIfEmpty): once the caller is gone the
    room closes after its departure timeout, usually before ICE gives up on the dead agent, which
    then leaves with ROOM_CLOSED; if it is reported first, the room has no caller left (or is gone
    by the time the controller looks). Whichever comes first, no agent is dispatched again."""
    doomed = workers("reservations", everything(model))
    doomed.wait_registered()
    d, caller = calls("reservations", "+15550120001", "caller-hangs-up")
    caller.agent_joined(30)
    spare = workers("reservations", everything(model))
    spare.wait_registered()

    kill(doomed)
    caller.leave()
    decision = decided(faults, d.room, timeout=90)
    assert "not dispatched again" in decision and any(
        why in decision for why in ("has no caller left", "is gone", ": ROOM_CLOSED", ": ROOM_DELETED")), decision
    assert len(decisions(faults, d.room)) == 1, decisions(faults, d.room)
    assert d.room not in spare.log() and (s := spare.state()) is not None and s["active_jobs"] == 0
    if d.room in faults.rooms():
        assert len(named_dispatches(faults, d.room)) == 1


def test_an_agent_that_ends_its_call_itself_is_not_replaced(
        faults: Faults, workers: Callable[..., Worker], calls: Callable[..., tuple[Any, Caller]],
        model: StandIn) -> None:
    """The agent's caller hangs up while another participant (a supervisor listening in) stays:
    the session ends, the glue marks the end deliberate before the agent leaves, and the room,
    which still has a non-agent participant, gets no new agent."""
    started = [workers("reservations", everything(model)) for _ in range(2)]
    for worker in started:
        worker.wait_registered()
    d, caller = calls("reservations", "+15550130001", "caller-done")
    agent = caller.agent_joined(30)["identity"]

    def linked_to(identity: str) -> bool:
        return any(json.loads(line).get("lk.pii.participant_identity") == identity
                   for w in started for line in w.log().splitlines()
                   if "RoomIO linked to participant" in line and d.room in line)

    # The supervisor joins once the agent's session has linked to the caller (a session that starts
    # later links to whoever is in the room first, and would then outlive the caller).
    wait_until("the agent's session linked to its caller", lambda: linked_to("caller-done"), timeout=30)
    supervisor = faults.join("bellavista", d.room, "supervisor")
    try:
        caller.leave()
        decision = decided(faults, d.room)
        assert "ended the call itself" in decision and "voxplane.call_ended" in decision, decision
        assert agent not in faults.agents_in(d.room) and faults.agents_in(d.room) == []
        assert "supervisor" in {p.identity for p in faults.participants(d.room)}
        assert len(named_dispatches(faults, d.room)) == 1
    finally:
        supervisor.close()


def test_an_agent_that_hangs_up_because_inference_failed_is_not_replaced(
        faults: Faults, workers: Callable[..., Worker], calls: Callable[..., tuple[Any, Caller]],
        model: StandIn) -> None:
    """The LLM is unreachable: the agent tells the caller, marks the end and deletes the room."""
    broken = {"STT": model.base_url, "TTS": model.base_url, "LLM": unreachable_url()}
    for _ in range(2):
        workers("reservations", broken).wait_registered()
    d, caller = calls("reservations", "+15550140001", "caller-no-llm")
    caller.agent_joined(30)
    caller.wait_for("the room to end", lambda e: e["event"] == "disconnected", 90)
    decision = decided(faults, d.room)
    assert "ended the call itself" in decision and "inference unavailable" in decision, decision
    assert d.room not in faults.rooms()


# --- a gateway replica killed ------------------------------------------------------------------------


def test_killing_a_gateway_replica_keeps_every_call_and_workers_register_again(
        faults: Faults, workers: Callable[..., Worker], calls: Callable[..., tuple[Any, Caller]],
        model: StandIn) -> None:
    pool = [workers("reservations", everything(model)), workers("support", everything(model))]
    for w in pool:
        w.wait_registered()
    live = []
    for agent, number in (("reservations", "+15550150001"), ("reservations", "+15550150002"),
                          ("support", "+15550150003")):
        d, caller = calls(agent, number, f"caller-gw-{number[-1]}")
        live.append((d.room, caller, f"caller-gw-{number[-1]}", caller.agent_joined(30)["identity"]))
    # The calls run: each caller receives its agent's audio from the SFU. An agent whose publisher
    # is still connecting (its first few hundred ms in the room) cannot resume its session when its
    # signalling drops: the SDK restarts its connection in full, which the caller sees as its agent
    # leaving (README, "When parts fail").
    for room, caller, _, agent in live:
        caller.wait_for(f"{agent}'s audio in {room}",
                        lambda e, agent=agent: e["event"] == "track_subscribed" and e["identity"] == agent, 30)

    def sockets(replica: int, route: str) -> float:
        return sum(faults.gateway_metric(replica, "voxplane_gateway_websockets", route=route, tenant=t)
                   for t in ("bellavista", "northwind"))

    carried = [(sockets(i, "agent"), sockets(i, "rtc")) for i in range(2)]
    victim = max(range(2), key=lambda i: (carried[i][0] > 0, carried[i][1]))
    survivor = 1 - victim
    # The replica killed carried workers' registrations and calls' signalling (agents' or callers').
    assert carried[victim][0] >= 1 and carried[victim][1] >= 1, carried
    faults.gateways[victim].kill()
    killed_at = time.monotonic()
    try:
        wait_until("both workers registered through the other replica",
                   lambda: sockets(survivor, "agent") == len(pool), timeout=60)
        for w in pool:
            w.wait("registration again (/ready 200)", lambda: w.status("/ready") == 200, 60)
        intact(faults, live, until=killed_at + LOSS_WINDOW)
        assert not [line for room, *_ in live for line in decisions(faults, room)], "no agent was lost"
        # New calls are dispatched to the workers registered through the survivor.
        d, caller = calls("reservations", "+15550150009", "caller-gw-after")
        caller.agent_joined(30)
    finally:
        faults.gateways[victim].start()


def test_a_network_fault_between_agents_and_the_gateway_replaces_no_agent(
        faults: Faults, workers: Callable[..., Worker], calls: Callable[..., tuple[Any, Caller]],
        model: StandIn) -> None:
    """The balancer resets every connection it carries (TCP RST both ways, every process alive).
    The gateway sees each agent's signalling end with no close frame, as when its process is
    killed; but the agents resume, which ends their old sessions at livekit-server within the
    gateway's grace, so the gateway says nobody left and no agent is replaced."""
    pool = workers("reservations", everything(model))
    pool.wait_registered()
    live = []
    for number in ("+15550160001", "+15550160002"):
        d, caller = calls("reservations", number, f"caller-net-{number[-1]}")
        live.append((d.room, caller, f"caller-net-{number[-1]}", caller.agent_joined(30)["identity"]))
    # Past their first few hundred ms, agents can resume (see the gateway test above).
    for room, caller, _, agent in live:
        caller.wait_for(f"{agent}'s audio in {room}",
                        lambda e, agent=agent: e["event"] == "track_subscribed" and e["identity"] == agent, 30)

    def gone() -> float:
        return sum(faults.gateway_metric(i, "voxplane_gateway_agents_gone_total", tenant="bellavista")
                   for i in range(len(faults.gateways)))

    before = gone()
    faults.balancer.reset_connections()
    reset_at = time.monotonic()
    pool.wait("registration again (/ready 200)", lambda: pool.status("/ready") == 200, 60)
    intact(faults, live, until=reset_at + LOSS_WINDOW)
    assert gone() == before, "the gateway reported an agent that resumed as gone"
    assert not [line for room, *_ in live for line in decisions(faults, room)], "no agent was lost"


# --- Redis and livekit-server restarted -------------------------------------------------------------


def test_restarting_redis_keeps_calls_and_workers_and_recovery_works_after(
        faults: Faults, workers: Callable[..., Worker], calls: Callable[..., tuple[Any, Caller]],
        model: StandIn) -> None:
    """Redis restarted with its data (the region's Redis keeps an append-only file): livekit-server
    loses its store and bus until Redis is back (it stays down until the server's room listing
    fails); the calls, in its own process, go on; the workers, whose
    sockets end at livekit-server, stay registered; once Redis is back, new calls are dispatched
    and a lost agent is recovered as before."""
    doomed = workers("reservations", everything(model))
    doomed.wait_registered()
    d, caller = calls("reservations", "+15550160001", "caller-redis")
    agent = caller.agent_joined(30)["identity"]

    faults.redis.stop()
    # Down until livekit-server has noticed: its room store (Redis) no longer answers.
    wait_until("livekit-server to lose Redis", lambda: not store_answers(faults), timeout=30)
    faults.redis.start()
    intact(faults, [(d.room, caller, "caller-redis", agent)], until=time.monotonic() + 5)
    assert doomed.status("/ready") == 200 and (s := doomed.state()) is not None and s["active_jobs"] == 1

    spare = workers("reservations", everything(model))
    spare.wait_registered()
    # Dispatch works again (the server's bus resubscribed): a new call gets its agent.
    d2, caller2 = calls("reservations", "+15550160002", "caller-redis-after")
    caller2.agent_joined(60)
    # And a lost agent of the call that ran through the restart is recovered.
    on_doomed = d2.room in doomed.log()
    kill(doomed)
    wait_agent_back(faults, caller, agent)
    assert "dispatched again" in decided(faults, d.room)
    if on_doomed:
        assert "dispatched again" in decided(faults, d2.room)


def test_restarting_livekit_server_ends_its_calls_and_the_platform_converges_by_itself(
        faults: Faults, workers: Callable[..., Worker], calls: Callable[..., tuple[Any, Caller]],
        model: StandIn) -> None:
    """livekit-server restarted (a new pod on the same address): the calls it carried end with it
    (rooms, participants and media live in its process); the workers lose their registration and
    register again by themselves (livekit-agents retries); the gateway answers 503 meanwhile and
    serves after (tests/gateway/test_upstream_restart_integration.py); the recovery controller gets
    the new server's webhooks. Nothing is restarted by hand."""
    w = workers("reservations", everything(model))
    w.wait_registered()
    d, caller = calls("reservations", "+15550170001", "caller-lk")
    agent = caller.agent_joined(30)["identity"]

    faults.livekit.stop()
    faults.livekit.start()  # the same address, as a Service in front of the new pod
    # The call ended: its caller lost its room, and its agent's job ended. The caller's SDK tries to
    # get its connection back, and gives up (disconnected), unless a try reaches the new server in
    # time: then it rejoins with its token into a new, empty room of the same name (reconnected),
    # and the caller, alone there, hangs up.
    ended = caller.wait_for("the call to end", lambda e: e["event"] in ("disconnected", "reconnected"), 60)
    if ended["event"] == "reconnected":
        caller.leave()
    w.wait("the old job to end", lambda: (s := w.state()) and s["active_jobs"] == 0, 60)
    w.wait("registration again (/ready 200)", lambda: w.status("/ready") == 200, 120)
    # The new server knows nothing of the call: no room (a rejoined one goes when its caller leaves),
    # so nothing to recover.
    w.wait("the call's room to be gone", lambda: d.room not in faults.rooms(), 60, interval=1)
    assert not decisions(faults, d.room)[1:], decisions(faults, d.room)
    # The platform converged: a new call gets an agent, and a lost agent is recovered.
    spare = workers("reservations", everything(model))
    spare.wait_registered()
    d2, caller2 = calls("reservations", "+15550170002", "caller-lk-after")
    first = caller2.agent_joined(60)["identity"]
    carrier = w if d2.room in w.log() else spare
    kill(carrier)
    wait_agent_back(faults, caller2, first)
    assert "dispatched again" in decided(faults, d2.room)
