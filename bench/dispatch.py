"""Benchmark: how long a routed call waits for its agent, with the example program as a real
livekit-agents worker (the venv of scripts/ensure-agents-venv.sh, the environment its rendered
Deployment gives it; see tests/agents/conftest.py).

Starts Redis + livekit-server with the `local` region's config, syncs its trunks and rules, a
local stand-in for the model servers and N_WORKERS reservations workers, then for each of N calls:
asks the server for the routing decision (as livekit-sip does), creates the room it names with the
rule's room configuration (room_config.agents), and measures from just before CreateRoom

  - job received: the worker's /worker reports the job (polled every 10 ms),
  - agent joined: the agent is a participant of the room (ListParticipants, polled every 20 ms);

while a caller (tests/agents/caller.py, a real rtc participant) joins the room at once, as
livekit-sip joins the phone caller; then the caller hangs up and the job ends. p50/p95 of both.

Baseline, same run: the caller's own join (its room.connect()), the work the agent does last.
Ratio: agent joined / baseline.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.agents.conftest import join_caller, launch_worker, percentile, start_platform  # noqa: E402
from tests.agents.standin import StandIn  # noqa: E402


def poll(check, interval: float, timeout: float) -> float | None:  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return time.time()
        time.sleep(interval)
    return None


def stats(values: list[float]) -> str:
    return f"p50 {percentile(values, 50):6.0f} ms  p95 {percentile(values, 95):6.0f} ms  (n={len(values)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=12, help="calls (default 12)")
    parser.add_argument("--workers", type=int, default=1, help="reservations workers (default 1)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-agents-"))
    platform_iter = start_platform()
    platform = next(platform_iter)
    workers = []
    try:
        with StandIn() as model:
            inference = {"STT": model.base_url, "TTS": model.base_url, "LLM": model.base_url}
            for i in range(args.workers):
                workers.append(launch_worker("reservations", platform, work / f"w{i}", inference))
            for w in workers:
                w.wait_registered()
            time.sleep(2)  # idle job processes prewarmed

            def jobs() -> int:
                return sum(int((w.state() or {}).get("active_jobs", 0)) for w in workers)

            job_ms, joined_ms, base_ms = [], [], []
            for i in range(args.n + 1):  # the first call is a warm-up
                d = platform.route("+13125550142", "127.0.0.1", f"+1555020{i:04d}")
                assert d.accepted and d.room
                seen: dict[str, float | None] = {}

                def agent_in_room() -> bool:
                    return any(p.kind == 4 for p in platform.participants(d.room))  # type: ignore[arg-type]

                t0 = time.time()
                pollers = [
                    threading.Thread(target=lambda: seen.__setitem__("job", poll(lambda: jobs() >= 1, 0.01, 30))),
                    threading.Thread(target=lambda: seen.__setitem__("joined", poll(agent_in_room, 0.02, 30))),
                ]
                platform.create_room_as_routed(d)
                for t in pollers:
                    t.start()
                # The caller joins at once, as livekit-sip joins the phone caller to the new room.
                caller = join_caller(platform, d.room, f"caller-{i}", work)
                for t in pollers:
                    t.join()
                job, joined = seen.get("job"), seen.get("joined")
                if job is None or joined is None:
                    print(f"call {i}: job {job} joined {joined}: timed out", file=sys.stderr)
                    return 1
                connected = next(e for e in caller.events if e["event"] == "connected")
                caller.leave()  # hang up: the glue ends the job
                caller.close()
                if poll(lambda: jobs() == 0, 0.05, 60) is None:
                    print(f"call {i}: job did not end after the hang-up", file=sys.stderr)
                    return 1
                if i == 0:
                    continue
                job_ms.append(1000 * (job - t0))
                joined_ms.append(1000 * (joined - t0))
                base_ms.append(float(connected["connect_ms"]))
    finally:
        for w in workers:
            w.stop()
        platform_iter.close()

    print(f"{args.n} routed calls, {args.workers} reservations worker(s), loopback, stand-in models")
    print(f"  room created -> job received by the worker  {stats(job_ms)}")
    print(f"  room created -> agent joined the room       {stats(joined_ms)}")
    print(f"baseline: an rtc participant's room.connect()  {stats(base_ms)}")
    print(f"ratio agent joined/baseline: p50 {percentile(joined_ms, 50) / percentile(base_ms, 50):.1f}x, "
          f"p95 {percentile(joined_ms, 95) / percentile(base_ms, 95):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
