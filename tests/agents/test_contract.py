"""The platform's contract with a worker, made true by agents/<name>/voxplane_agent.py and checked
with real processes: the worker is full exactly at the sessions per worker the autoscaler plans,
its health endpoint tells registration, drain and a lost LiveKit apart, a rolling update never
leaves the pool without a worker that takes calls, and unreachable inference ends the call with
a reason instead of a silent agent.

Each override of the rendered environment is named where it is made (Worker.rewrites) and exists
only to make a minute-long timer or an eight-call capacity fit a test.
"""

from __future__ import annotations

import time
from typing import Callable

import pytest

from .conftest import Caller, Platform, Worker, rendered_agents, start_platform, unreachable_url
from .standin import StandIn
from .test_workers import route

pytestmark = pytest.mark.integration

UNAVAILABLE = "Sorry, our assistant cannot answer right now"


def call(platform: Platform, callers: Callable[..., Caller], agent: str, caller_number: str) -> tuple[str, Caller]:
    d = route(platform, agent, caller=caller_number)
    platform.create_room_as_routed(d)
    assert d.room is not None
    return d.room, callers(platform, d.room, f"caller-{caller_number[-4:]}")


def test_a_worker_is_full_exactly_at_its_sessions_per_worker(
        platform: Platform, workers: Callable[..., Worker], callers: Callable[..., Caller]) -> None:
    """Load = sessions / VOXPLANE_SESSIONS_PER_WORKER, full at VOXPLANE_LOAD_THRESHOLD: with one
    session per worker (overridden from the manifest's 8, to keep the test to two calls) the second
    call goes to the other worker, never a second one to the full worker."""
    with StandIn() as model:
        inference = {"STT": model.base_url, "TTS": model.base_url, "LLM": model.base_url}
        one = {"VOXPLANE_SESSIONS_PER_WORKER": "1"}
        a, b = workers("reservations", platform, inference, env=one), workers("reservations", platform, inference, env=one)
        a.wait_registered(), b.wait_registered()
        _, first = call(platform, callers, "reservations", "+15550101001")
        first.agent_joined(20)
        def jobs(w: Worker) -> int:
            return int((w.state() or {}).get("active_jobs", 0))

        a.wait("the first job", lambda: jobs(a) + jobs(b) == 1, 15)
        busy, idle = (a, b) if jobs(a) == 1 else (b, a)
        full = busy.wait("the busy worker to report full", lambda: (s := busy.state()) and not s["available"] and s, 5)
        assert (full["active_jobs"], full["load"], full["load_threshold"]) == (1, 1.0, 1.0)
        assert full["ready"], "a full worker stays ready: it is busy, not broken"
        _, second = call(platform, callers, "reservations", "+15550101002")
        second.agent_joined(20)
        idle.wait("the second job on the other worker", lambda: (idle.state() or {}).get("active_jobs") == 1, 15)
        assert jobs(busy) == 1
        assert busy.metric() == idle.metric() == 1.0


def test_readiness_and_liveness_follow_the_livekit_connection_not_the_process(
        workers: Callable[..., Worker]) -> None:
    """/ready is 503 until the worker registered and as soon as LiveKit is gone; /live stays 200
    through a short outage and turns 503 once LiveKit has been lost for
    VOXPLANE_LIVEKIT_LOST_TIMEOUT (overridden from 60 s to 6 s); the worker registers again when
    LiveKit is back. livekit-agents' own `/` said 200 throughout."""
    platform_iter = start_platform()
    platform = next(platform_iter)
    try:
        w = workers("reservations", platform, env={"VOXPLANE_LIVEKIT_LOST_TIMEOUT": "6"})
        w.wait_registered()
        assert w.status("/live") == 200
        lk = platform.livekit
        lk.stop()
        lost = time.monotonic()
        w.wait("/ready 503 after LiveKit went away", lambda: w.status("/ready") == 503, 10)
        assert "not registered" in (w.get("/ready") or (0, ""))[1]
        assert w.status("/live") == 200, "a short outage is no reason to restart"
        w.wait("/live 503 after the lost timeout", lambda: w.status("/live") == 503, 15)
        assert time.monotonic() - lost >= 6
        state = w.state()
        assert state is not None and not state["registered"] and state["livekit_lost_for"] >= 6
        assert "lost the connection to LiveKit" in w.log()
        lk.start()  # same ports, same keys: the worker's retries find it again
        w.wait("registration after LiveKit is back", lambda: w.status("/ready") == 200, 30)
        assert w.status("/live") == 200
    finally:
        platform_iter.close()


def test_a_worker_that_never_reached_livekit_is_not_ready_and_not_live_after_the_timeout(
        platform: Platform, workers: Callable[..., Worker]) -> None:
    w = workers("reservations", platform, env={"LIVEKIT_URL": "ws://127.0.0.1:9/", "VOXPLANE_LIVEKIT_LOST_TIMEOUT": "4"})
    w.wait("the health endpoint", lambda: w.status("/ready") is not None, 60)
    assert w.status("/ready") == 503
    w.wait("/live 503", lambda: w.status("/live") == 503, 15)
    assert "failed to connect to livekit" in w.log()


def test_a_rolling_update_never_leaves_the_pool_without_a_worker_taking_calls(
        platform: Platform, workers: Callable[..., Worker], callers: Callable[..., Caller]) -> None:
    """What the Deployment's rollout (maxUnavailable 0, readiness on /ready) does, with real
    processes: the new worker registers and turns ready before the old one gets SIGTERM; the old
    one drains (not ready, still live, its call goes on); a call dispatched during the hand-over is
    served by the new one; the old worker exits once its last call ends."""
    with StandIn() as model:
        inference = {"STT": model.base_url, "TTS": model.base_url, "LLM": model.base_url}
        old = workers("reservations", platform, inference)
        old.wait_registered()
        _, before = call(platform, callers, "reservations", "+15550102001")
        before.agent_joined(20)
        old.wait("the call on the old worker", lambda: (old.state() or {}).get("active_jobs") == 1, 10)

        new = workers("reservations", platform, inference)
        assert new.status("/ready") in (None, 503), "ready before it registered"
        new.wait_registered()
        ready_before_term = (old.status("/ready"), new.status("/ready"))
        assert ready_before_term == (200, 200)

        old.terminate()  # the kubelet's SIGTERM, only now that the new pod is ready
        old.wait("the old worker to drain", lambda: (s := old.state()) and s["draining"], 10)
        assert old.status("/ready") == 503 and old.status("/live") == 200
        assert "draining worker" in old.log()
        room, during = call(platform, callers, "reservations", "+15550102002")
        during.agent_joined(20)
        new.wait("the hand-over call on the new worker", lambda: (new.state() or {}).get("active_jobs") == 1, 10)
        assert old.state()["active_jobs"] == 1  # type: ignore[index]   # its own call goes on
        assert before.drain_events() and not any(e["event"] == "disconnected" for e in before.events)

        before.leave()
        code = old.wait_exit(30)
        assert code == 0, old.log_tail()
        assert new.status("/ready") == 200 and (new.state() or {}).get("active_jobs") == 1


def test_unreachable_inference_is_told_to_the_caller_and_ends_the_call(
        platform: Platform, workers: Callable[..., Worker], callers: Callable[..., Caller]) -> None:
    """The LLM's server is not there (a closed port); speech works. The agent does not sit silent
    in the room: it says why (through the TTS, and as text), the log names the endpoint, and the
    room is deleted, which hangs up a phone caller; the job and its gauge end with it."""
    with StandIn() as model:
        llm = unreachable_url()
        w = workers("reservations", platform, {"STT": model.base_url, "TTS": model.base_url, "LLM": llm})
        w.wait_registered()
        room, caller = call(platform, callers, "reservations", "+15550103001")
        joined = caller.agent_joined(20)
        text = caller.wait_for("the unavailable message as text",
                               lambda e: e["event"] == "text" and e["topic"] == "lk.chat", 45)
        assert text["text"].startswith(UNAVAILABLE)
        ended = caller.wait_for("the call to end", lambda e: e["event"] == "disconnected", 30)
        assert ended["reason"] == "ROOM_DELETED", ended
        print(f"\nagent joined -> call ended {ended['t'] - joined['t']:.1f} s (LLM retries included)")
        assert any(s.startswith(UNAVAILABLE) for s in model.spoken()), model.spoken()
        model_id = rendered_agents()["reservations"].value("VOXPLANE_LLM_MODEL")
        assert f"LLM inference failed for good at {llm} (model {model_id})" in w.log()
        w.wait("the job to end", lambda: (w.state() or {}).get("active_jobs") == 0, 15)
        assert w.metric() == 0.0
        assert room not in platform.rooms()
