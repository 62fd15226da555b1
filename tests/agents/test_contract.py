"""The platform's contract with a worker, made true by agents/<name>/voxplane_agent.py and checked
with real processes: the worker is full exactly at the sessions per worker the autoscaler plans,
its health endpoint tells registration, drain and a lost LiveKit apart, a rolling update never
leaves the pool without a worker that takes calls, and unreachable inference ends the call with
a reason instead of a silent agent.

Each override of the rendered environment is named where it is made (Worker.rewrites) and exists
only to make a minute-long timer or an eight-call capacity fit a test.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import pytest

from ..support.llm_router import RouterProcess
from ..support.vllm import VllmServer
from .conftest import Caller, Platform, Worker, inference, rendered_agents, start_platform, unreachable_url
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
        platform: Platform, workers: Callable[..., Worker], callers: Callable[..., Caller], llm: VllmServer) -> None:
    """Load = sessions / VOXPLANE_SESSIONS_PER_WORKER, full at VOXPLANE_LOAD_THRESHOLD: with one
    session per worker (overridden from the manifest's 8, to keep the test to two calls) the second
    call goes to the other worker, never a second one to the full worker."""
    with StandIn() as speech:
        roles = inference(speech, llm)
        one = {"VOXPLANE_SESSIONS_PER_WORKER": "1"}
        a, b = workers("reservations", platform, roles, env=one), workers("reservations", platform, roles, env=one)
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
        platform: Platform, workers: Callable[..., Worker], callers: Callable[..., Caller], llm: VllmServer) -> None:
    """What the Deployment's rollout (maxUnavailable 0, readiness on /ready) does, with real
    processes: the new worker registers and turns ready before the old one gets SIGTERM; the old
    one drains (not ready, still live, its call goes on); a call dispatched during the hand-over is
    served by the new one; the old worker exits once its last call ends."""
    with StandIn() as speech:
        roles = inference(speech, llm)
        old = workers("reservations", platform, roles)
        old.wait_registered()
        _, before = call(platform, callers, "reservations", "+15550102001")
        before.agent_joined(20)
        old.wait("the call on the old worker", lambda: (old.state() or {}).get("active_jobs") == 1, 10)

        new = workers("reservations", platform, roles)
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


def test_inference_failing_mid_call_is_told_to_the_caller_and_ends_the_call(
        platform: Platform, workers: Callable[..., Worker], callers: Callable[..., Caller], tiny_model: Path,
        tmp_path: Path) -> None:
    """The call's LLM, a real vLLM, answers the greeting and then goes away (stopped, as a node
    loss or a crash takes it): at the caller's next turn the agent does not sit silent. It says why
    (through the TTS, and as text), the log names the endpoint, and the room is deleted, which
    hangs up a phone caller; the job and its gauge end with it."""
    with StandIn() as speech, VllmServer(tiny_model, tmp_path / "vllm") as own_llm:
        own_llm.wait_ready()
        w = workers("reservations", platform, inference(speech, own_llm))
        w.wait_registered()
        room, caller = call(platform, callers, "reservations", "+15550103002")
        caller.agent_joined(20)
        caller.wait_for("the greeting", lambda e: e["event"] == "text" and e["topic"] == "lk.transcription"
                        and e["text"].strip(), 60)
        assert own_llm.metric("vllm:request_success_total") >= 1
        own_llm.stop()
        caller.say("I would like to book a table for two.")
        text = caller.wait_for("the unavailable message as text",
                               lambda e: e["event"] == "text" and e["topic"] == "lk.chat" and e["identity"] != "caller-3002", 60)
        assert text["text"].startswith(UNAVAILABLE)
        ended = caller.wait_for("the call to end", lambda e: e["event"] == "disconnected", 30)
        assert ended["reason"] == "ROOM_DELETED", ended
        assert any(s.startswith(UNAVAILABLE) for s in speech.spoken()), speech.spoken()
        model_id = rendered_agents()["reservations"].value("VOXPLANE_LLM_MODEL")
        assert f"LLM inference failed for good at {own_llm.base_url}/v1 (model {model_id})" in w.log()
        w.wait("the job to end", lambda: (w.state() or {}).get("active_jobs") == 0, 15)
        assert w.metric() == 0.0
        assert room not in platform.rooms()


def test_a_call_sends_its_key_to_the_llm_router_and_ends_its_session_there(
        platform: Platform, workers: Callable[..., Worker], callers: Callable[..., Caller], llm: VllmServer,
        tmp_path: Path) -> None:
    """Through the router a region with several LLM replicas renders (us-east's, in front of the
    real vLLM): the call's LLM requests carry the job's id as their session key, and hanging up
    ends that session on the router. The local region has one replica and no router, so the
    worker's LLM URL points at the router and the session end URL is the one us-east renders for
    its agents, moved to this router (both recorded in `rewrites`)."""
    with StandIn() as speech, RouterProcess("us-east", [llm.base_url], tmp_path / "router") as router:
        router.wait_ready()
        w = workers("reservations", platform, {**inference(speech, llm), "LLM": f"{router.base_url}/v1"},
                    env={"VOXPLANE_LLM_SESSION_END_URL": f"{router.base_url}/finish_session"})
        w.wait_registered()
        room, caller = call(platform, callers, "reservations", "+15550103003")
        caller.agent_joined(20)
        caller.wait_for("the greeting", lambda e: e["event"] == "text" and e["topic"] == "lk.transcription"
                        and e["text"].strip(), 60)
        job = w.wait("the dispatch timeline", lambda: next(
            (json.loads(ln)["job_id"] for ln in w.log().splitlines() if '"dispatch timeline"' in ln and room in ln), None), 20)
        assert f"SLL: new session '{job}'" in router.log()
        caller.leave()
        w.wait("the job to end", lambda: (w.state() or {}).get("active_jobs") == 0, 15)
        w.wait("the session ended on the router", lambda: f"SLL: finished session '{job}'" in router.log(), 10)
