"""The example agent programs as real livekit-agents workers (the versions their requirements.txt
pin), each with the environment its rendered Deployment gives it, against livekit-server v1.13.5
+ Redis running the `local` region's rendered config, after `voxplane livekit sync` of the region.

A call is what livekit-sip makes of an INVITE: the routing decision the server gives
(`voxplane.livekit.route`, asked over the Redis bus as livekit-sip asks), its room created with the
rule's room configuration (room_config.agents), and a caller in it (a real rtc participant). The
agents' LLM is a real vLLM started as the region renders it (conftest.llm); STT and TTS are the
stand-in (no speech weights can be had here).
"""

from __future__ import annotations

import json
import re
import time
from typing import Callable

import pytest

from ..support.vllm import VllmServer
from .conftest import Caller, Platform, Worker, inference, rendered_agents
from .standin import StandIn

pytestmark = pytest.mark.integration

#: A number of each agent's in the local region, and the source address its trunk admits.
NUMBERS = {
    "reservations": ("+13125550142", "127.0.0.1", {}),
    "scheduler": ("+442079460123", "127.0.0.1", {}),
    "support": ("+16175550188", "192.76.120.10", {"username": "northwind-trunk", "password": "nw-trunk-password-agents"}),
}


def route(platform: Platform, agent: str, caller: str = "+15550100199"):
    number, address, creds = NUMBERS[agent]
    d = platform.route(number, address, caller, **creds)
    assert d.accepted and d.agents == [rendered_agents()[agent].agent_name], (d.reason, d.agents)
    return d


@pytest.mark.parametrize("name", ["reservations", "scheduler", "support"])
def test_each_program_registers_under_its_rendered_name_with_the_platform_contract(
        platform: Platform, workers: Callable[..., Worker], name: str) -> None:
    w = workers(name, platform)
    # Only addresses and ports were moved; every other variable is the rendered one.
    assert set(w.rewrites) <= {"LIVEKIT_URL", "VOXPLANE_HEALTH_PORT", "VOXPLANE_METRICS_PORT",
                               "VOXPLANE_STT_BASE_URL", "VOXPLANE_TTS_BASE_URL", "VOXPLANE_LLM_BASE_URL"}
    state = w.wait_registered()
    agent = rendered_agents()[name]
    assert f'"agent_name": "{agent.agent_name}"' in w.log() or agent.agent_name in w.log()
    assert "registered worker" in w.log()
    assert state["sessions_per_worker"] == agent.sessions_per_worker == int(agent.value("VOXPLANE_SESSIONS_PER_WORKER"))
    assert state["load_threshold"] == float(agent.value("VOXPLANE_LOAD_THRESHOLD"))
    assert (state["active_jobs"], state["load"], state["available"], state["draining"]) == (0, 0.0, True, False)
    assert w.status("/live") == 200
    # The autoscaler's gauge exists at 0 before the first job (livekit-agents alone has no sample).
    assert w.metric() == 0.0


def test_the_routed_room_gets_a_job_for_its_agent_only_and_the_agent_joins(
        platform: Platform, workers: Callable[..., Worker], callers: Callable[..., Caller], llm: VllmServer) -> None:
    with StandIn() as speech:
        roles = inference(speech, llm)
        bella = workers("reservations", platform, roles)
        # Another tenant's workers, registered at the same server: never given bellavista's call.
        others = [workers("scheduler", platform, roles), workers("support", platform, roles)]
        for w in (bella, *others):
            w.wait_registered()

        d = route(platform, "reservations")
        # Read before the call: the agent may ask vLLM for its greeting before this test sees it join.
        served = llm.metric("vllm:request_success_total")
        created = time.time()
        platform.create_room_as_routed(d)
        caller = callers(platform, d.room, "caller-1")
        job = bella.wait("the job", lambda: (s := bella.state()) and s["active_jobs"] == 1 and time.time(), 20)
        joined = caller.agent_joined(20)
        assert bella.metric() == 1.0
        agents = [p for p in platform.participants(d.room) if p.kind == 4]  # ParticipantInfo.Kind.AGENT
        assert len(agents) == 1
        print(f"\nroom created -> job on the worker {1000 * (job - created):.0f} ms, -> agent joined "
              f"{1000 * (joined['t'] - created):.0f} ms")
        # The agent runs its real entrypoint: it publishes its audio, asks the LLM for the greeting
        # and the reply vLLM generates streams to the caller (as text, and as speech to the TTS).
        caller.wait_for("the agent's audio track", lambda e: e["event"] == "track_subscribed", 20)
        chunk = caller.wait_for("the greeting streaming in", lambda e: e["event"] == "text_chunk"
                                and e["topic"] == "lk.transcription" and e["identity"] != "caller-1", 60)
        greeting = caller.wait_for("the whole greeting", lambda e: e["event"] == "text" and e.get("stream") == chunk["stream"], 60)
        assert greeting["text"].strip() and greeting["text"].startswith(chunk["text"])
        bella.wait("the TTS asked to say the greeting", lambda: any(s.strip() for s in speech.spoken()), 30)
        # What the agent had said is what it streamed (the TTS input only loses markup and emoji).
        letters = lambda text: re.sub(r"[^A-Za-z0-9]", "", text)  # noqa: E731
        assert letters("".join(speech.spoken())) == letters(greeting["text"])
        assert llm.metric("vllm:request_success_total") >= served + 1
        for w in others:
            state = w.state()
            assert state is not None and state["active_jobs"] == 0, (w.agent.name, state)
            assert w.metric() == 0.0
            assert d.room not in w.log()


#: The dispatch timeline's stages, in order (agents/_platform/voxplane_agent.py STAGES).
STAGES = ("room_created", "job_received", "job_accepted", "job_assigned", "process_assigned", "entrypoint",
          "session_wired", "room_connected")


def dispatch_timeline(w: Worker, room: str) -> dict:
    line = w.wait("the dispatch timeline", lambda: next(
        (ln for ln in w.log().splitlines() if '"dispatch timeline"' in ln and room in ln), None), 20)
    return json.loads(line)


def test_each_call_logs_its_dispatch_timeline_and_the_clients_were_built_beforehand(
        platform: Platform, workers: Callable[..., Worker], callers: Callable[..., Caller], llm: VllmServer) -> None:
    """One `dispatch timeline` line per call, every stage in order on one clock (the room's creation
    by the server first, the agent connected last); the inference clients came from the job
    process's warm-up, so the entrypoint's own part is short; and the pool keeps one prewarmed
    process per session it takes (the rendered VOXPLANE_IDLE_PROCESSES)."""
    spw = rendered_agents()["reservations"].sessions_per_worker
    with StandIn() as speech:
        w = workers("reservations", platform, inference(speech, llm))
        w.wait_registered()
        w.wait(f"{spw} prewarmed processes", lambda: (s := w.state()) and s["prewarmed_processes"] == spw, 120)
        assert w.state()["prewarmed_target"] == spw
        d = route(platform, "reservations", caller="+15550100555")
        created = time.time()
        platform.create_room_as_routed(d)
        caller = callers(platform, d.room, "caller-timeline")
        caller.agent_joined(20)
        rec = dispatch_timeline(w, d.room)
        t = rec["t"]
        assert list(t) == list(STAGES), rec
        times = [t[k] for k in STAGES]
        assert times == sorted(times), rec
        assert created - 1 < t["room_created"] < t["room_connected"] < time.time(), rec
        assert set(rec["ms"]) == {"server", "accept", "assign", "launch", "to_entrypoint", "entrypoint", "connect",
                                  "total"}
        assert rec["setup_s"] > 0
        # Built in the warm-up: the program's own work up to the session is a few ms, not the
        # ~0.5 s three TLS contexts took when the clients were built here.
        assert rec["ms"]["entrypoint"] < 150, rec
        print(f"\ndispatch timeline ms: {rec['ms']}")


def test_a_worker_keeps_the_prewarmed_processes_the_platform_sets_never_more_than_its_sessions(
        platform: Platform, workers: Callable[..., Worker]) -> None:
    w = workers("reservations", platform, env={"VOXPLANE_IDLE_PROCESSES": "3"})
    capped = workers("reservations", platform, env={"VOXPLANE_IDLE_PROCESSES": "5", "VOXPLANE_SESSIONS_PER_WORKER": "2"})
    for worker, want in ((w, 3), (capped, 2)):
        worker.wait_registered()
        state = worker.wait(f"{want} prewarmed processes",
                            lambda worker=worker, want=want: (s := worker.state()) and s["prewarmed_processes"] == want and s, 90)
        assert state["prewarmed_target"] == want


def test_hanging_up_ends_the_job_within_seconds_and_the_gauge_drops(
        platform: Platform, workers: Callable[..., Worker], callers: Callable[..., Caller], llm: VllmServer) -> None:
    with StandIn() as speech:
        w = workers("reservations", platform, inference(speech, llm))
        w.wait_registered()
        d = route(platform, "reservations", caller="+15550100777")
        platform.create_room_as_routed(d)
        caller = callers(platform, d.room, "caller-hangup")
        caller.agent_joined(20)
        w.wait("the job counted", lambda: w.metric() == 1.0, 10)
        caller.wait_for("the agent's audio track", lambda e: e["event"] == "track_subscribed", 20)

        left = caller.leave()
        ended = w.wait("the job to end", lambda: (s := w.state()) and s["active_jobs"] == 0 and time.time(), 10)
        assert w.metric() == 0.0
        # The room's departure timeout (20 s in the rendered config) is not what ended it.
        assert ended - left < 6, f"job ended {ended - left:.1f}s after the hang-up"
        print(f"\nhang-up -> job ended {1000 * (ended - left):.0f} ms")
        assert "session closed (participant_disconnected): ending the job" in w.log()
        w.wait("the agent to leave the room", lambda: not [p for p in platform.participants(d.room) if p.kind == 4]
               if d.room in platform.rooms() else True, 10)
        state = w.state()
        assert state is not None and state["available"] and state["ready"]
