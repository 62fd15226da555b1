"""Benchmark: how long a routed call waits for its agent, and where that time goes, with the
reservations program as a real livekit-agents worker (the venv of scripts/ensure-agents-venv.sh,
the environment its rendered Deployment gives it; see tests/agents/conftest.py).

Starts Redis + livekit-server with the `local` region's rendered config, syncs its trunks and
rules, a local stand-in for the model servers, and one reservations worker per configuration
below, then places N calls per configuration, interleaved (call i goes to configuration i mod k,
so a machine whose load drifts during the run slows every configuration alike). Each call:

1. the routing decision, asked as livekit-sip asks it (tools/routeprobe over the Redis bus:
   trunk lookup + dispatch rule evaluation, as bench/livekit_route.py measures it);
2. t0, then CreateRoom with the rule's room configuration (room_config.agents);
3. a caller (tests/agents/caller.py, a real rtc participant, started beforehand so that no
   interpreter start-up is timed) joins at once, as livekit-sip joins the phone caller;
4. the agent joins and its audio reaches the caller; then the room is deleted and the job ends
   before the next call.

Timestamps (one clock: everything runs on this host):
- the server's log (livekit-server, JSON console format, ms): `assigned job to worker`, and the
  agent's `participant active` (the agent is in the room);
- the worker's `dispatch timeline` log line (the platform glue, one per call): job request
  received, accepted, assigned by the server, given to a job process, the entrypoint reaching the
  glue, the session wired, the room connected; and the room's creation time as the server stamps it.

Configurations, each its own worker (each registers under `bellavista-reservations-<config>` and
the call's room dispatches that name in place of `bellavista-reservations`; everything else is
the rendered environment):
- before  the glue as it was: inference clients built in the entrypoint (VOXPLANE_PREWARM_INFERENCE=0),
          livekit-agents' default number of prewarmed processes (one per CPU it sees);
- cold    as after, with no prewarmed process (VOXPLANE_IDLE_PROCESSES=0): each job pays process
          start + setup;
- after   the platform's settings: clients built while the process idles, VOXPLANE_IDLE_PROCESSES
          unset (= sessions per worker).

Then (--bursts) bursts of --burst rooms created at once at one idle worker with 1, 2 and
sessions-per-worker prewarmed processes: what the number of prewarmed processes is for (served,
dropped, join latency).

Baseline, same run: the caller's own room.connect() (the last thing the agent does, too). Ratios:
agent joined / baseline, and each configuration against `before`. LiveKit documents "a max
dispatch time under 150 ms" (docs.livekit.io/agents/server/agent-dispatch); the report compares
each stage with it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.agents.conftest import (  # noqa: E402
    Caller,
    Platform,
    Worker,
    launch_worker,
    ready_caller,
    rendered_agents,
    start_platform,
)
from tests.agents.standin import StandIn  # noqa: E402
from tests.support.stats import percentile  # noqa: E402

NUMBER = "+13125550142"  # agents/reservations.yaml, admitted from 127.0.0.1
TARGET_MS = 150.0  # LiveKit's documented max dispatch time
AGENT = "reservations"


def cpus_livekit_sees() -> int:
    """livekit-agents' default num_idle_processes in production: ceil(the CPU count it reads,
    the cgroup quota or else every CPU of the host)."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return os.cpu_count() or 1


@dataclass
class Config:
    name: str
    env: dict[str, str]
    about: str
    worker: Worker | None = None

    @property
    def agent_name(self) -> str:
        return f"{rendered_agents()[AGENT].agent_name}-{self.name}"


@dataclass
class Call:
    config: str
    room: str
    route_ms: float  # the probe's two RPCs (server side)
    route_wall_ms: float  # seen from Python, pipe + JSON included
    create_ms: float
    t0: float
    timeline: dict[str, Any] = field(default_factory=dict)
    caller_connect_ms: float = 0.0
    caller_saw_agent: float = 0.0
    server: dict[str, float] = field(default_factory=dict)


class LogTail:
    """New complete lines of a growing log file."""

    def __init__(self, path: Path):
        self.path, self.offset, self.partial = path, 0, b""

    def lines(self) -> list[str]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self.partial + data
        *complete, self.partial = data.split(b"\n")
        return [ln.decode(errors="replace") for ln in complete]


def wait_timeline(tail: LogTail, seen: dict[str, dict[str, Any]], room: str, worker: Worker,
                  timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in tail.lines():
            if '"dispatch timeline"' not in line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            seen[rec.get("room", "")] = rec
        if room in seen:
            return seen[room]
        if not worker.alive():
            break
        time.sleep(0.01)
    raise SystemExit(f"no dispatch timeline for {room} within {timeout:.0f}s; worker log:\n{worker.log_tail()}")


def wait_idle(worker: Worker, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = worker.state()
        if state is not None and state["active_jobs"] == 0:
            return
        time.sleep(0.05)
    raise SystemExit(f"{worker.agent.name}: the job did not end within {timeout:.0f}s:\n{worker.log_tail()}")


_SERVER_LINE = re.compile(r"^(\S+)\t\S+\t\S+\t\S+\t(.+?)\t(\{.*\})$")


def server_events(log: Path) -> dict[str, dict[str, float]]:
    """Per room: when the server assigned the job, and when the agent turned active in it."""
    out: dict[str, dict[str, float]] = {}
    for line in log.read_text(errors="replace").splitlines():
        m = _SERVER_LINE.match(line)
        if not m or m.group(2) not in ("assigned job to worker", "participant active", "starting signal connection"):
            continue
        try:
            fields = json.loads(m.group(3))
        except json.JSONDecodeError:
            continue
        room = fields.get("room")
        if not room:
            continue
        t = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
        if m.group(2) == "assigned job to worker":
            out.setdefault(room, {}).setdefault("assigned", t)
        elif str(fields.get("participant", "")).startswith("agent-"):
            key = "agent_active" if m.group(2) == "participant active" else "agent_signal"
            out.setdefault(room, {}).setdefault(key, t)
    return out


def ratio(a: float, b: float) -> str:
    x = a / b if b else float("nan")
    return f"{x:.2f}x" if x >= 0.1 else f"{x:.3f}x"


def stats(values: list[float]) -> str:
    return (f"p50 {percentile(values, 50):7.1f}  p95 {percentile(values, 95):7.1f}  max {max(values):7.1f} ms"
            if values else "(no samples)")


class Bench:
    def __init__(self, platform: Platform, work: Path, inference: dict[str, str]):
        self.platform, self.work, self.inference = platform, work, inference
        self.callers: list[Caller] = []
        self.spare: Caller | None = None
        self.timelines: dict[str, dict[str, Any]] = {}
        self.tails: dict[str, LogTail] = {}

    def start(self, cfg: Config) -> None:
        env = {"LIVEKIT_AGENT_NAME": cfg.agent_name, **cfg.env}
        cfg.worker = launch_worker(AGENT, self.platform, self.work / cfg.name, self.inference, env)
        self.tails[cfg.name] = LogTail(cfg.worker.log_path)

    def caller(self, i: int) -> Caller:
        c = self.spare or ready_caller(self.platform, f"caller-{i}", self.work)
        self.spare = None
        self.callers.append(c)
        return c

    def prepare_next(self, i: int) -> None:
        self.spare = ready_caller(self.platform, f"caller-{i}", self.work)

    def call(self, cfg: Config, i: int, caller: Caller) -> Call:
        assert cfg.worker is not None
        started = time.perf_counter()
        d = self.platform.route(NUMBER, "127.0.0.1", f"+1555{i:07d}")
        route_wall = 1000 * (time.perf_counter() - started)
        assert d.accepted and d.room and d.agents == [rendered_agents()[AGENT].agent_name], (d.reason, d.agents)
        t0 = time.time()
        self.platform.create_room_as_routed(d, rename={d.agents[0]: cfg.agent_name})
        created = time.time()
        caller.join(self.platform.token(d.room, f"caller-{i}"))
        rec = Call(cfg.name, d.room, d.latency_ms, route_wall, 1000 * (created - t0), t0)
        rec.timeline = wait_timeline(self.tails[cfg.name], self.timelines, d.room, cfg.worker)
        connected = caller.wait_for("connection", lambda e: e["event"] == "connected", 30)
        rec.caller_connect_ms = float(connected["connect_ms"])
        agent = caller.wait_for("the agent", lambda e: e["event"] == "participant_connected" and e["kind"] == "AGENT", 30)
        rec.caller_saw_agent = float(agent["t"])
        # The session is up once its audio reaches the caller; a hang-up before that (inside
        # session.start()) leaves livekit-agents waiting ~15 s for the entrypoint to give up.
        caller.wait_for("the agent's audio", lambda e: e["event"] == "track_subscribed", 30)
        return rec

    def hang_up(self, cfg: Config, room: str, caller: Caller) -> None:
        assert cfg.worker is not None
        self.platform.delete_room(room)
        wait_idle(cfg.worker)
        caller.close()

    def close(self) -> None:
        for c in self.callers + ([self.spare] if self.spare else []):
            c.close()


def ms_since(t: float, t0: float) -> float:
    return 1000 * (t - t0)


def report(calls: list[Call], configs: list[Config], server: dict[str, dict[str, float]], load: tuple[float, ...]) -> None:
    by = {c.name: [x for x in calls if x.config == c.name] for c in configs}
    print(f"\n{len(calls)} routed calls on loopback ({', '.join(f'{len(v)} {k}' for k, v in by.items())}), "
          f"reservations workers, stand-in models; {os.cpu_count()} CPUs, load average {load[0]:.1f} at the end")
    route = [c.route_ms for c in calls]
    print(f"\nrouting decision (auth + dispatch RPCs, server side)   {stats(route)}")
    print(f"  seen from Python (probe pipe + JSON)                 {stats([c.route_wall_ms for c in calls])}")
    print(f"CreateRoom (admin API, from Python)                    {stats([c.create_ms for c in calls])}")
    base = [c.caller_connect_ms for c in calls]
    print(f"baseline: the caller's own room.connect()              {stats(base)}")

    def stage(c: Call, name: str) -> float | None:
        t = c.timeline.get("t", {}).get(name)
        return ms_since(t, c.t0) if t else None

    rows: dict[str, dict[str, list[float]]] = {}
    for cfg in configs:
        r: dict[str, list[float]] = {k: [] for k in ("job", "entry", "connected", "joined", "seen", "lk_dispatch",
                                                       "server", "accept_assign", "launch", "to_entry", "entrypoint",
                                                       "connect", "server_assigned", "to_signal", "signal_active")}
        for c in by[cfg.name]:
            ms = c.timeline.get("ms", {})
            for key, value in (("job", stage(c, "job_received")), ("entry", stage(c, "entrypoint")),
                               ("connected", stage(c, "room_connected"))):
                if value is not None:
                    r[key].append(value)
            ev = server.get(c.room, {})
            if "agent_active" in ev:
                r["joined"].append(ms_since(ev["agent_active"], c.t0))
            if "assigned" in ev:
                r["server_assigned"].append(ms_since(ev["assigned"], c.t0))
            wired = c.timeline.get("t", {}).get("session_wired")
            if "agent_signal" in ev and wired:
                r["to_signal"].append(1000 * (ev["agent_signal"] - wired))
                if "agent_active" in ev:
                    r["signal_active"].append(1000 * (ev["agent_active"] - ev["agent_signal"]))
            r["seen"].append(ms_since(c.caller_saw_agent, c.t0))
            t = c.timeline.get("t", {})
            if "job_received" in t and "entrypoint" in t:
                r["lk_dispatch"].append(1000 * (t["entrypoint"] - t["job_received"]))
            for key, gap in (("server", "server"), ("launch", "launch"), ("to_entry", "to_entrypoint"),
                             ("entrypoint", "entrypoint"), ("connect", "connect")):
                if gap in ms:
                    r[key].append(float(ms[gap]))
            if "accept" in ms and "assign" in ms:
                r["accept_assign"].append(float(ms["accept"]) + float(ms["assign"]))
        rows[cfg.name] = r

    for cfg in configs:
        r = rows[cfg.name]
        print(f"\n[{cfg.name}] {cfg.about}")
        print(f"  room created -> job request at the worker      {stats(r['job'])}")
        print(f"  room created -> entrypoint running             {stats(r['entry'])}")
        print(f"  room created -> agent joined (server: active)  {stats(r['joined'])}")
        print(f"  room created -> the caller sees the agent      {stats(r['seen'])}")
        print("  where it goes (per stage, from the worker's dispatch timeline and the server log):")
        print(f"    server: room created -> job request          {stats(r['server'])}   (server clock -> worker clock)")
        print(f"    worker: accept + server's assignment         {stats(r['accept_assign'])}")
        print(f"    worker: assignment -> a job process has it   {stats(r['launch'])}")
        print(f"    job process: -> entrypoint                   {stats(r['to_entry'])}")
        print(f"    entrypoint: the program's work to session    {stats(r['entrypoint'])}")
        print(f"    session wired -> room connected (worker)     {stats(r['connect'])}")
        print(f"      of which: -> the agent's signal connection {stats(r['to_signal'])}   (session.start() before it connects)")
        print(f"      and: signal -> agent active (server)       {stats(r['signal_active'])}   (the join: WebSocket, ICE, DTLS)")
        lk = r["lk_dispatch"]
        print(f"  livekit-agents' dispatch latency (job request -> entrypoint) {stats(lk)}")
        joined, b50 = r["joined"], percentile(base, 50)
        if joined:
            print(f"  ratio agent joined / baseline: p50 {percentile(joined, 50) / b50:.1f}x, p95 {percentile(joined, 95) / percentile(base, 95):.1f}x")
        if r["job"]:
            print(f"  against LiveKit's < {TARGET_MS:.0f} ms: room -> job request max {max(r['job']):.0f} ms "
                  f"({max(r['job']) / TARGET_MS:.1f}x), job request -> entrypoint max {max(lk):.0f} ms "
                  f"({max(lk) / TARGET_MS:.1f}x), room -> agent joined p50 {percentile(joined, 50):.0f} ms "
                  f"({percentile(joined, 50) / TARGET_MS:.1f}x)")
    pairs = [(c.name, "before") for c in configs if c.name != "before" and "before" in rows]
    for name, other in pairs:
        base_rows, r = rows[other], rows[name]
        parts = []
        for key, label in (("joined", "agent joined"), ("entry", "entrypoint running"),
                           ("entrypoint", "the program's work to session"), ("connect", "session -> connected"),
                           ("lk_dispatch", "job -> entrypoint")):
            if r[key] and base_rows[key]:
                parts.append(f"{label} p50 {ratio(percentile(r[key], 50), percentile(base_rows[key], 50))} "
                             f"p95 {ratio(percentile(r[key], 95), percentile(base_rows[key], 95))}")
        print(f"\nratio {name}/{other}: " + ", ".join(parts))
    s = rows[configs[0].name]["server"]
    if s:
        print(f"\nserver dispatch floor: min {min(s):.0f} ms over {len(s)} calls; livekit-server v1.13.5 sends the "
              f"job request through psrpc with affinity selection and waits DefaultAffinityShortCircuit (200 ms) "
              f"after the first claim (psrpc v0.7.2 pkg/client/options.go), not configurable in its config")


def wait_prewarmed(worker: Worker, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = worker.state()
        if state is not None and state.get("prewarmed_processes") == count:
            return
        time.sleep(0.1)
    raise SystemExit(f"{worker.agent.name}: {count} prewarmed processes not reached in {timeout:.0f}s: {worker.state()}")


def bursts(bench: Bench, n_bursts: int, size: int) -> None:
    """`n_bursts` bursts of `size` rooms created at once (one thread each, released together:
    simultaneous INVITEs) at one idle worker, with 1, 2 and sessions-per-worker prewarmed
    processes. A room whose job reaches no worker within 15 s is counted as dropped (the server's
    log says why)."""
    spw = rendered_agents()[AGENT].sessions_per_worker
    results: dict[int, tuple[list[float], int]] = {}
    names: dict[int, str] = {}
    for idle in sorted({1, 2, spw}):
        cfg = Config(f"burst-idle{idle}", {"VOXPLANE_IDLE_PROCESSES": str(idle)}, f"{idle} prewarmed")
        bench.start(cfg)
        assert cfg.worker is not None
        cfg.worker.wait_registered()
        names[idle] = cfg.agent_name
        joined: list[float] = []
        dropped = 0
        for b in range(n_bursts):
            wait_prewarmed(cfg.worker, idle)
            decisions = [bench.platform.route(NUMBER, "127.0.0.1", f"+1556{idle:02d}{b:03d}{k:03d}") for k in range(size)]
            rooms: list[tuple[str, float]] = []
            go = threading.Barrier(size)

            def create(d: Any) -> None:
                go.wait()  # simultaneous INVITEs: every CreateRoom leaves at once
                t0 = time.time()
                bench.platform.create_room_as_routed(d, rename={d.agents[0]: cfg.agent_name})
                rooms.append((d.room, t0))

            threads = [threading.Thread(target=create, args=(d,)) for d in decisions]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            deadline = time.monotonic() + 15
            pending = dict(rooms)
            while pending and time.monotonic() < deadline:
                for line in bench.tails[cfg.name].lines():
                    if '"dispatch timeline"' in line:
                        rec = json.loads(line)
                        bench.timelines[rec.get("room", "")] = rec
                for room in [r for r in pending if r in bench.timelines]:
                    joined.append(1000 * (bench.timelines[room]["t"]["room_connected"] - pending.pop(room)))
                time.sleep(0.02)
            dropped += len(pending)
            for room, _ in rooms:
                bench.platform.delete_room(room)
            wait_idle(cfg.worker)
        results[idle] = (joined, dropped)
        cfg.worker.stop()
    refused = Counter()
    for line in bench.platform.livekit.log_path.read_text(errors="replace").splitlines():
        if "no worker available to handle job" in line:
            for idle, name in names.items():
                if f'"agentName": "{name}"' in line:
                    refused[idle] += 1
    total = n_bursts * size
    print(f"\nbursts: {n_bursts} x {size} rooms created at once at one idle worker "
          f"({spw} sessions per worker); room created -> agent connected (worker's view)")
    for idle, (values, dropped) in results.items():
        print(f"  {idle} prewarmed: served {len(values)}/{total}, dropped {dropped} (server: 'no worker available' "
              f"x{refused[idle]})  {stats(values)}")
    print("  (livekit-agents 1.8 reserves a slot per accepted job request and, while the worker has no job yet, "
          "prices each at load_threshold / num_idle_processes: with fewer prewarmed processes than the burst, "
          "the worker refuses the rest and, with no other worker, the server drops them)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=100, help="calls per configuration (default 100; 0: bursts only)")
    parser.add_argument("--configs", default="before,cold,after", help="configurations to run (default: all)")
    parser.add_argument("--bursts", type=int, default=10, help="bursts per prewarm setting (default 10; 0: none)")
    parser.add_argument("--burst", type=int, default=4, help="simultaneous calls per burst (default 4)")
    args = parser.parse_args()

    every = {
        "before": Config("before", {"VOXPLANE_PREWARM_INFERENCE": "0", "VOXPLANE_IDLE_PROCESSES": str(cpus_livekit_sees())},
                         f"the glue as it was: clients built per call, {cpus_livekit_sees()} prewarmed processes "
                         f"(livekit-agents' default: one per CPU it sees)"),
        "cold": Config("cold", {"VOXPLANE_IDLE_PROCESSES": "0"},
                       "as after, but no prewarmed process: each job starts one (process start + setup on the call's path)"),
        "after": Config("after", {}, "the platform's settings: clients built while the process idles, "
                                     "VOXPLANE_IDLE_PROCESSES unset (= sessions per worker)"),
    }
    configs = [every[name] for name in args.configs.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    platform_iter = start_platform()
    platform = next(platform_iter)
    bench: Bench | None = None
    calls: list[Call] = []
    try:
        with StandIn() as model:
            inference = {"STT": model.base_url, "TTS": model.base_url, "LLM": model.base_url}
            bench = Bench(platform, work, inference)
            if args.n == 0:
                configs = []
            for cfg in configs:
                bench.start(cfg)
            for cfg in configs:
                assert cfg.worker is not None
                cfg.worker.wait_registered()
            for cfg in configs:  # each pool's prewarmed processes are up
                assert cfg.worker is not None
                wait_prewarmed(cfg.worker, int((cfg.worker.state() or {}).get("prewarmed_target") or 0), 120)
            total = args.n * len(configs)
            for i in range(total + len(configs)):  # the first round is a warm-up
                cfg = configs[i % len(configs)]
                caller = bench.caller(i)
                rec = bench.call(cfg, i, caller)
                # Outside any measurement: the next caller starts while this call is torn down.
                spawn = threading.Thread(target=bench.prepare_next, args=(i + 1,))
                spawn.start()
                bench.hang_up(cfg, rec.room, caller)
                spawn.join()
                if i >= len(configs):
                    calls.append(rec)
                if (i + 1) % 30 == 0:
                    print(f"  {i + 1}/{total + len(configs)} calls", file=sys.stderr, flush=True)
            for cfg in configs:
                if cfg.worker is not None:
                    cfg.worker.stop()
            if configs:
                server = server_events(platform.livekit.log_path)
                report(calls, configs, server, os.getloadavg())
            if args.bursts:
                bursts(bench, args.bursts, args.burst)
    finally:
        if bench is not None:
            bench.close()
        for cfg in configs:
            if cfg.worker is not None:
                cfg.worker.stop()
        platform_iter.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
