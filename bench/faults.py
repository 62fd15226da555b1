"""Benchmark: how long a call is without its agent when the agent's worker is killed, over repeated
kills, and how many calls keep going.

The platform of the fault tests (tests/recovery/conftest.py): livekit-server + Redis with the
`local` region's config, the recovery controller and the gateway's two replicas as their images run
them, the reservations program as real livekit-agents workers registered through the gateway, real
rtc callers joining through it, a local stand-in for the model servers (tests/agents/standin.py).

Each round: one worker registered, `--calls` calls placed on it (each caller sees its agent join),
a second worker registered, then the first killed (`kill -9` of its process group: its job
processes die with it, as in a pod or node lost). Per call, from the caller's own events (one
clock, this host):

- detection: kill -> the caller told its agent left. The gateway sees the agent's signalling end
  with no close frame and, unless it resumes within LOST_AGENT_GRACE_SECONDS, sends livekit-server
  the agent's leave (voxplane/gateway/server.py); without that, livekit-server's own timeouts: a
  participant that stops answering is dropped once ICE gives up (10 s disconnected + 5 s failed)
  and its 5 s cleanup has run (pkg/rtc/transport.go, participant.go);
- repair: agent left -> a new agent joined: the webhook, the controller's decision (its API calls),
  the dispatch, the job's start on the other worker, the agent's join;
- total: kill -> a new agent joined: what the caller waits, in silence.

A call is kept when its caller was never disconnected and an agent came back. Baseline, same run:
a fresh call's dispatch (room created -> its agent joined) on the same workers; repair is compared
with it. The next round's calls go to the round's spare (their rooms deleted first), a new spare
is started, and so on.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from livekit import api  # noqa: E402

from tests.agents.conftest import Caller, Worker  # noqa: E402
from tests.agents.standin import StandIn  # noqa: E402
from tests.recovery.conftest import Faults, kill, start_faults  # noqa: E402
from tests.support.stats import percentile  # noqa: E402

AGENT = "reservations"


def wait(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"bench/faults.py: no {what} within {timeout:.0f}s")


def event_time(caller: Caller, what: str, match: Any, timeout: float) -> float:
    return float(caller.wait_for(what, match, timeout)["t"])


def registered(worker: Worker) -> Worker:
    wait(f"registration of {worker.agent.name}", lambda: worker.status("/ready") == 200, 120)
    return worker


def dispatch_seconds(faults: Faults, room: str, agent: str) -> float:
    """From the room's creation to `agent` in it, by livekit-server's own clock (the caller's
    start-up is no part of it)."""
    with faults.client() as c:
        (created,) = c.call("ListRooms", lambda lk: lk.room.list_rooms(api.ListRoomsRequest(names=[room]))).rooms
    (joined,) = [p for p in faults.participants(room) if p.identity == agent]
    return (joined.joined_at_ms - created.creation_time_ms) / 1000


def place(faults: Faults, n: int, round_: int) -> list[tuple[str, Caller, str, float]]:
    """`n` calls: (room, caller, its agent's identity, seconds from the room's creation to the agent)."""
    out = []
    for i in range(n):
        d, caller = faults.call(AGENT, f"+15550180{round_:03d}{i}", f"caller-{round_}-{i}")
        assert d.room
        agent = str(caller.agent_joined(60)["identity"])
        out.append((d.room, caller, agent, dispatch_seconds(faults, d.room, agent)))
    return out


def fmt(values: list[float]) -> str:
    return f"p50 {percentile(values, 50):6.2f} s  max {max(values):6.2f} s  (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="Workers killed (default 5).")
    parser.add_argument("--calls", type=int, default=2, help="Calls the killed worker carries each round (default 2).")
    args = parser.parse_args()

    detection, repair, total, baseline = [], [], [], []
    kept = placed_calls = 0
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp, start_faults(Path(tmp)) as faults, \
            StandIn() as model:
        inference = {"STT": model.base_url, "TTS": model.base_url, "LLM": model.base_url}
        workers: list[Worker] = []
        callers: list[Caller] = []
        try:
            victim = registered(faults.worker(AGENT, inference))
            workers.append(victim)
            for round_ in range(args.rounds):
                calls = place(faults, args.calls, round_)
                callers += [c for _, c, _, _ in calls]
                baseline += [s for *_, s in calls]
                wait("the calls on the worker", lambda: (s := victim.state()) and s["active_jobs"] == args.calls, 30)
                spare = registered(faults.worker(AGENT, inference))
                workers.append(spare)
                killed = time.time()
                kill(victim)
                for room, caller, lost, _ in calls:
                    placed_calls += 1
                    left = event_time(caller, "the agent leaving", lambda e, lost=lost: e["event"] ==
                                      "participant_disconnected" and e["identity"] == lost, 90)
                    back = event_time(caller, "a new agent", lambda e, lost=lost: e["event"] == "participant_connected"
                                      and e["kind"] == "AGENT" and e["identity"] != lost, 60)
                    detection.append(left - killed)
                    repair.append(back - left)
                    total.append(back - killed)
                    if not any(e["event"] == "disconnected" for e in caller.drain_events()):
                        kept += 1
                print(f"round {round_ + 1}/{args.rounds}: " + ", ".join(
                    f"{t:.1f} s" for t in total[-args.calls:]), flush=True)
                # The recovered calls end; the spare carries the next round's calls.
                for room, caller, _, _ in calls:
                    faults.delete_room(room)
                    caller.close()
                wait("the recovered calls to end", lambda: (s := spare.state()) and s["active_jobs"] == 0, 60)
                victim = spare
        finally:
            for c in callers:
                c.close()
            for w in workers:
                w.stop()
        recovered = faults.recovery_metric("voxplane_recovery_recovered_total", tenant="bellavista")

    print()
    print(f"calls kept: {kept}/{placed_calls} (their caller never disconnected and an agent came back); "
          f"the controller counted {recovered:.0f} recoveries")
    print(f"detection (kill -> agent reported gone): {fmt(detection)}")
    print(f"repair    (agent gone -> new agent in):  {fmt(repair)}")
    print(f"total     (kill -> new agent in):        {fmt(total)}")
    print(f"baseline  (a fresh call's dispatch):     {fmt(baseline)}")
    print(f"repair / baseline: p50 {percentile(repair, 50) / percentile(baseline, 50):.2f}x")


if __name__ == "__main__":
    main()
