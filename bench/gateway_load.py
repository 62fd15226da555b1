"""Benchmark: the gateway (voxplane/gateway) under load on loopback, bounded in time and count
(issue #19 item 4). Starts Redis, livekit-server with the `local` region's config and the gateway
as its image runs it (tests/gateway/_image.py), from copies of the repository's manifests with the
tenant limits below written into regions/local.yaml, then:

1. Noisy neighbour. Tenant northwind has small limits (joins 5/s, API calls 20/s, worker
   registrations 2/s, each with a burst of one second's worth) and, in a child process, offers
   room joins, RoomService.ListRooms calls and worker registrations at once its limits, then at ten
   times each, open-loop at a fixed rate. In production that client runs on the tenant's own
   machines: here it is kept to one CPU (--client-cpu, the last by default) and runs only when that
   CPU has nothing else to run (SCHED_IDLE), so it takes next to no CPU time from the processes under
   test; the rest run on any CPU (--layout shared, the default). --layout split keeps livekit-server
   and the gateway both tenants share off that CPU, and puts bellavista's client and (SCHED_IDLE)
   the other gateway process on it, as if they ran on other machines: the platform then has one CPU
   fewer, and its load weighs more on the tail.
   Tenant bellavista keeps the defaults and, in this process, joins a room (reading up
   to the JoinResponse, then leaving) and calls ListRooms, paced at --probe-rate each. Rounds
   cycle a quiet phase (northwind idle), one at its limits, one at ten times, and one at ten
   times through a second gateway process (as if northwind's connections all landed on another
   replica; `--fourth unserved-path`: at a path the gateway does not serve, answered 404 by
   aiohttp's router before any token is read, the floor of what a flood costs whatever the
   limits do), so drift in the machine's load hits all alike. Bellavista's p50/p95 against the quiet
   phase are the ratios (target at ten times: p95 within 10 %; `--over 0` measures the bench's
   own noise), each p95 ratio with a 90 % interval from a bootstrap over the rounds (an interval
   that holds 1.10 cannot tell the target met from missed: more rounds). Against the phase at its
   limits they split the cost: what the admitted load costs (livekit-server's work, which limits
   exist to allow), what refusing the excess costs in the gateway bellavista shares, and what it
   costs elsewhere on the machine. It also prints what northwind offered, what the gateway
   admitted and refused, against its limits.
2. Refusals. What the gateway spends refusing one of northwind's requests past its limits: its
   CPU time per request over --refusals requests per case, 16 at a time (a few are admitted as
   the bucket refills, and counted): API calls with a new token each (the baseline: every token
   parsed and verified), the same API call with one token (verified once, then remembered), room
   joins and worker registrations (a new token and connection each). Ratios against the baseline.
3. Capacity. With limits out of the way (both tenants' raised in the manifest), opens connections
   in doubling steps, half workers (/agent, registered) and half participants (/rtc, two per
   room), and keeps them all open: per step the opening rate (joins/s), the open latency p95, the
   round trip of a ping through every held connection (signalling Ping/Pong, WorkerPing/Pong) p95,
   the CPU each process spent and the gateway's and livekit-server's memory per held connection.
   Stops at --max-connections, at --budget seconds, or at the first step where an open or a ping
   fails or times out (where it stops scaling here), and says which. Ratios against the first step.

Not a timed test: numbers for the README and the note. Run heavy runs under the shared lock:
    flock /tmp/vox-heavy.lock .venv/bin/python bench/gateway_load.py [--rounds 8] [--phase-seconds 5] [--over 10]
        [--probe-rate 20] [--refusals 4000] [--max-connections 4000] [--budget 240] [--skip noisy|refusals|capacity]
        [--layout shared|split] [--fourth other-gateway|unserved-path]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
from livekit.protocol import agent as agent_pb  # noqa: E402
from livekit.protocol import room as room_pb  # noqa: E402
from livekit.protocol import rtc as rtc_pb  # noqa: E402

from tests.support.repo import copy_manifests  # noqa: E402
from tests.gateway._image import gateway_image_python, stage_image_context  # noqa: E402
from tests.gateway._lk import HandshakeRefused, Worker, join, token  # noqa: E402
from voxplane.dev.servers import GatewayServer, LiveKitServer, RedisServer, region_config, region_gateway  # noqa: E402
from voxplane.dev.stack import dev_root_secret  # noqa: E402
from voxplane.desired.common import tenant_api_key  # noqa: E402
from voxplane.livekit.keys import derive_api_secret  # noqa: E402

REGION = "local"
NOISY, QUIET = "northwind", "bellavista"
NOISY_AGENT = "northwind-support"
#: Lines under each tenant's quotas line in regions/local.yaml.
QUOTAS = {NOISY: '    quotas: { cpu: "96", memory: 192Gi, pods: 60 }\n',
          QUIET: '    quotas: { cpu: "56", memory: 112Gi, pods: 30 }\n'}
#: Part 1: northwind's limits (per second; burst = one second's worth); it offers --over times each.
NOISY_LIMITS = {"joins": 5, "api_calls": 20, "worker_registrations": 2}
#: Part 2: limits no step reaches (the schema's maxima are higher still).
UNLIMITED = ("      joins: { per_second: 100000, burst: 100000 }\n"
             "      api_calls: { per_second: 100000, burst: 100000 }\n"
             "      worker_registrations: { per_second: 100000, burst: 100000 }\n"
             "      connections: 1000000\n")
#: Requests the noisy child keeps in flight at most (past that it offers less, and says so).
MAX_IN_FLIGHT = 400
#: Part 1's fourth phase: where northwind's flood goes (--fourth).
FOURTH = {"other-gateway": "through another gateway process", "unserved-path": "at a path the gateway does not serve"}
#: Under the gateway's URL, a prefix that none of its routes has: aiohttp's router answers 404.
UNSERVED_PATH = "/unserved"
#: Part 1's p95 ratios: resamples of the rounds, and the coverage of the interval printed.
RESAMPLES, COVERAGE = 2000, 0.90
TIMEOUT = aiohttp.ClientTimeout(total=20)


# --- set-up ----------------------------------------------------------------------------------


def creds(tenant: str) -> tuple[str, str]:
    key = tenant_api_key(tenant)
    return key, derive_api_secret(dev_root_secret(REGION), REGION, key)


def manifests_with(root: Path, limits: dict[str, str]) -> Path:
    """A copy of the repository's manifests with `limits` (tenant -> YAML lines) in regions/local.yaml."""
    copy_manifests(root)
    region = root / "regions" / f"{REGION}.yaml"
    text = region.read_text()
    for tenant, lines in limits.items():
        assert QUOTAS[tenant] in text, f"regions/{REGION}.yaml changed: update QUOTAS"
        text = text.replace(QUOTAS[tenant], QUOTAS[tenant] + "    limits:\n" + lines)
    region.write_text(text)
    return root


def noisy_limits_yaml() -> str:
    return "".join(f"      {name}: {{ per_second: {rate}, burst: {rate} }}\n" for name, rate in NOISY_LIMITS.items())


def flat(rounds: list[list[float]]) -> list[float]:
    return [x for r in rounds for x in r]


def p95_ratio_interval(base: list[list[float]], got: list[list[float]], rng: random.Random) -> tuple[float, float]:
    """A `COVERAGE` interval of p95(got) / p95(base), both given by round: a percentile bootstrap
    that resamples whole rounds, pairing each round's two phases (they ran back to back, so the
    machine's drift hit both). An interval that holds 1.10 says this run cannot tell a 10 % cost
    from none; run more rounds."""
    n = len(base)
    ratios = []
    for _ in range(RESAMPLES):
        picks = [rng.randrange(n) for _ in range(n)]
        ratios.append(pct([x for i in picks for x in got[i]], 0.95) / pct([x for i in picks for x in base[i]], 0.95))
    tail = (1 - COVERAGE) / 2
    return pct(ratios, tail), pct(ratios, 1 - tail)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def place(pid: int, cpus: set[int], *, idle: bool = False) -> None:
    """Keep every thread of `pid` on `cpus` (threads it starts later inherit that); `idle`: run them
    only when those CPUs have nothing else to run (SCHED_IDLE)."""
    for tid in (int(t) for t in os.listdir(f"/proc/{pid}/task")):
        os.sched_setaffinity(tid, cpus)
        if idle:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` (fields 14 and 15 of /proc/PID/stat, after the command)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def list_rooms(session: aiohttp.ClientSession, gateway_url: str, tok: str) -> int:
    """RoomService.ListRooms through the gateway with `tok`; the HTTP status."""
    async with session.post(f"{gateway_url}/twirp/livekit.RoomService/ListRooms",
                            data=room_pb.ListRoomsRequest().SerializeToString(),
                            headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/protobuf"}) as r:
        await r.read()
        return r.status


def ws_request(gateway_url: str, route: str, tok: str) -> tuple[str, dict[str, str]]:
    """The URL and headers of a room join (`route` "rtc") or a worker's connection ("agent") with `tok`."""
    ws_base = "ws" + gateway_url[len("http"):]
    if route == "rtc":
        return f"{ws_base}/rtc?access_token={tok}&protocol=16&sdk=python", {}
    return f"{ws_base}/agent?protocol=1", {"Authorization": f"Bearer {tok}"}


# --- part 1: the noisy tenant (a child process) ---------------------------------------------


def noisy_main(gateway_url: str, stop: Any, results: Any, over: float, cpus: set[int] | None) -> None:
    """Offer `over` x northwind's limits until `stop` is set; put the counts on `results`."""
    # In production the flood comes from the tenant's own machines, not the platform's: kept to
    # its own CPU and scheduled only when that CPU is otherwise idle (SCHED_IDLE), this client
    # takes next to no CPU time from the processes under test on a small machine (the offered rates are
    # printed, so a client that falls behind shows).
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    results.put(asyncio.run(_flood(gateway_url, stop, over)))


async def _flood(gateway_url: str, stop: Any, over: float) -> dict[str, Any]:
    key, secret = creds(NOISY)
    rates = {name: rate * over for name, rate in NOISY_LIMITS.items()}
    counts: dict[str, Counter[str]] = {name: Counter() for name in rates}
    list_token = token(key, secret, ttl=3600, video={"roomList": True})

    async def one(session: aiohttp.ClientSession, name: str, i: int) -> None:
        try:
            if name == "api_calls":
                counts[name][str(await list_rooms(session, gateway_url, list_token))] += 1
                return
            if name == "joins":
                tok = token(key, secret, sub=f"noise{i}", video={"roomJoin": True, "room": f"{NOISY}_noise{i % 4}"})
                url, headers = ws_request(gateway_url, "rtc", tok)
            else:
                url, headers = ws_request(gateway_url, "agent", token(key, secret, video={"agent": True}))
            async with session.ws_connect(url, headers=headers) as ws:
                if name == "worker_registrations":
                    await ws.send_bytes(agent_pb.WorkerMessage(register=agent_pb.RegisterWorkerRequest(
                        type=agent_pb.JT_ROOM, agent_name=NOISY_AGENT)).SerializeToString())
                await ws.receive()  # the JoinResponse / RegisterWorkerResponse: admitted all the way
                counts[name]["101"] += 1
        except aiohttp.WSServerHandshakeError as e:
            counts[name][str(e.status)] += 1
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            counts[name][type(e).__name__] += 1

    fired = {name: 0 for name in rates}
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=TIMEOUT) as session:
        start = time.monotonic()
        while not stop.is_set():
            elapsed = time.monotonic() - start
            for name, rate in rates.items():
                while fired[name] < int(elapsed * rate) and len(tasks) < MAX_IN_FLIGHT:
                    task = asyncio.ensure_future(one(session, name, fired[name]))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    fired[name] += 1
            await asyncio.sleep(0.002)
        elapsed = time.monotonic() - start
        await asyncio.gather(*tasks)
    return {"seconds": elapsed, "offered": fired, "counts": {k: dict(v) for k, v in counts.items()}}


# --- part 1: the quiet tenant's probe ----------------------------------------------------------


async def probe(gateway_url: str, seconds: float, rate: float, tag: str) -> tuple[list[float], list[float]]:
    """bellavista joins (up to its JoinResponse, then leaves) and calls ListRooms, each paced at
    `rate` per second for `seconds`; the latencies in ms."""
    key, secret = creds(QUIET)
    list_token = token(key, secret, ttl=3600, video={"roomList": True})
    joins: list[float] = []
    calls: list[float] = []
    async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < seconds:
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            tok = token(key, secret, sub=f"probe-{tag}-{i}", video={"roomJoin": True, "room": f"{QUIET}_probe{i % 4}"})
            t = time.perf_counter()
            ws, _ = await join(s, gateway_url, tok)
            joins.append((time.perf_counter() - t) * 1000)
            await ws.close()
            t = time.perf_counter()
            status = await list_rooms(s, gateway_url, list_token)
            assert status == 200, status
            calls.append((time.perf_counter() - t) * 1000)
            i += 1
    return joins, calls


@dataclass
class Condition:
    """One of the interleaved phases: northwind offering `over` x its limits (0: idle), through
    bellavista's gateway or (`own_gateway`) another process of it, at `path` under the gateway's URL
    ("": what the gateway serves)."""

    name: str
    over: float
    own_gateway: bool = False
    path: str = ""
    #: Latencies (ms) by round: a round's phases ran back to back, so the machine's drift hits them alike.
    joins: list[list[float]] = field(default_factory=list)
    calls: list[list[float]] = field(default_factory=list)
    cpu: Counter[str] = field(default_factory=Counter)
    floods: list[dict[str, Any]] = field(default_factory=list)


def noisy_neighbour(gw: GatewayServer, other_gw: GatewayServer, lk: LiveKitServer, rounds: int, phase_seconds: float,
                    probe_rate: float, over: float, client_cpus: set[int] | None, split: bool, fourth: str) -> None:
    """Part 1; with `split`, the platform's processes on every CPU but `client_cpus` (while it runs)."""
    print(f"\n== 1. noisy neighbour: {QUIET} (default limits) probes at {probe_rate:g}/s while {NOISY} is idle, "
          f"at its limits, at {over:g}x, then at {over:g}x {FOURTH[fourth]}; {rounds} rounds of "
          f"the four {phase_seconds:g} s phases")
    print(f"   {NOISY}'s limits: " + ", ".join(f"{k} {v}/s (burst {v})" for k, v in NOISY_LIMITS.items()))
    assert gw.pid is not None and other_gw.pid is not None and lk.pid is not None
    every = os.sched_getaffinity(0)
    if not (split and client_cpus):
        print(f"   {NOISY}'s client on CPU {sorted(client_cpus) if client_cpus else 'any'} (SCHED_IDLE), "
              f"the rest on any of {sorted(every)}")
        return _noisy_neighbour(gw, other_gw, lk, rounds, phase_seconds, probe_rate, over, client_cpus, fourth)
    platform = every - client_cpus
    print(f"   livekit-server and the gateway on CPU {sorted(platform)}; on CPU {sorted(client_cpus)} {QUIET}'s "
          f"client, and (SCHED_IDLE) {NOISY}'s and the other gateway process")
    for pid in (lk.pid, gw.pid):
        place(pid, platform)
    place(other_gw.pid, client_cpus, idle=True)
    place(os.getpid(), client_cpus)
    try:
        _noisy_neighbour(gw, other_gw, lk, rounds, phase_seconds, probe_rate, over, client_cpus, fourth)
    finally:
        place(lk.pid, every)
        place(os.getpid(), every)


def _noisy_neighbour(gw: GatewayServer, other_gw: GatewayServer, lk: LiveKitServer, rounds: int, phase_seconds: float,
                     probe_rate: float, over: float, client_cpus: set[int] | None, fourth: str) -> None:
    last = (Condition(f"{over:g}x, other gw", over, own_gateway=True) if fourth == "other-gateway"
            else Condition(f"{over:g}x, unserved", over, path=UNSERVED_PATH))
    conditions = [Condition("quiet", 0), Condition("at its limit", 1), Condition(f"{over:g}x its limit", over), last]
    assert gw.pid is not None and other_gw.pid is not None and lk.pid is not None
    ctx = multiprocessing.get_context("spawn")
    pids = {"gateway": gw.pid, "other gateway": other_gw.pid, "livekit-server": lk.pid, "probe": os.getpid()}
    for r in range(rounds):
        for cond in conditions:
            child = None
            stop, results = ctx.Event(), ctx.Queue()
            if cond.over:
                url = (other_gw if cond.own_gateway else gw).http_url + cond.path
                child = ctx.Process(target=noisy_main, args=(url, stop, results, cond.over, client_cpus), daemon=True)
                child.start()
                time.sleep(1.5)  # the child's interpreter up, its burst spent: the steady flood
            watched = {**pids, **({"noisy client": child.pid} if child is not None and child.pid else {})}
            c0 = {name: cpu_seconds(pid) for name, pid in watched.items()}
            try:
                j, c = asyncio.run(probe(gw.http_url, phase_seconds, probe_rate, f"{r}-{cond.over:g}"))
            finally:
                cond.cpu.update({name: cpu_seconds(pid) - c0[name] for name, pid in watched.items()})
                if child is not None:
                    stop.set()
                    cond.floods.append(results.get(timeout=60))
                    child.join(30)
            cond.joins.append(j)
            cond.calls.append(c)
    quiet = conditions[0]
    rng = random.Random(0)
    print(f"   p95 ratios with a {COVERAGE:.0%} interval (a bootstrap over the {rounds} rounds)")
    for label, attr in (("room join", "joins"), ("API call (ListRooms)", "calls")):
        base_rounds: list[list[float]] = getattr(quiet, attr)
        base = flat(base_rounds)
        print(f"   {QUIET} {label}: quiet p50 {statistics.median(base):5.2f} ms p95 {pct(base, 0.95):5.2f} ms "
              f"(n={len(base)})")
        at_limit: list[list[float]] = getattr(conditions[1], attr)
        for cond in conditions[1:]:
            got_rounds: list[list[float]] = getattr(cond, attr)
            got = flat(got_rounds)
            low, high = p95_ratio_interval(base_rounds, got_rounds, rng)
            # Over the limit against at the limit: what refusing the excess costs the quiet tenant.
            refusing = ""
            if cond.over > 1:
                r_low, r_high = p95_ratio_interval(at_limit, got_rounds, rng)
                refusing = (f"; {pct(got, 0.95) / pct(flat(at_limit), 0.95):.2f}x at its limit "
                            f"[{r_low:.2f}, {r_high:.2f}]")
            print(f"      {NOISY} {cond.name:<18} p50 {statistics.median(got):5.2f} ms "
                  f"({statistics.median(got) / statistics.median(base):.2f}x)  p95 {pct(got, 0.95):5.2f} ms "
                  f"({pct(got, 0.95) / pct(base, 0.95):.2f}x quiet [{low:.2f}, {high:.2f}]{refusing})")
    for cond in conditions:
        print(f"   CPU, {NOISY} {cond.name}: " + ", ".join(
            f"{name} {spent / (rounds * phase_seconds) * 100:.0f} %" for name, spent in cond.cpu.items()) + " of a core")
    for cond in conditions[1:]:
        seconds = sum(f["seconds"] for f in cond.floods)
        for name, limit in NOISY_LIMITS.items():
            offered = sum(f["offered"][name] for f in cond.floods)
            counts: Counter[str] = Counter()
            for f in cond.floods:
                counts.update(f["counts"][name])
            admitted = counts.pop("200", 0) + counts.pop("101", 0)
            limited = counts.pop("429", 0)
            other = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"
            print(f"   {NOISY} {cond.name:<18} {name:<20} offered {offered / seconds:6.1f}/s "
                  f"({offered / seconds / limit:4.1f}x) | admitted {admitted / seconds:5.1f}/s (limit {limit}/s) "
                  f"| refused 429 {limited / seconds:6.1f}/s | other {other}")


# --- part 2: what a refusal costs the gateway ---------------------------------------------------

#: Part 2's cases: what is printed, the route, and whether every request signs a new token.
REFUSALS = (("API call, a new token each", "api", True), ("API call, one token", "api", False),
            ("room join, a new token each", "rtc", True), ("registration, a new token each", "agent", True))


async def _refuse(gateway_url: str, route: str, n: int, new_tokens: bool) -> Counter[str]:
    """`n` of northwind's requests on `route`, 16 at a time, past its limits; their statuses."""
    key, secret = creds(NOISY)
    one_token = token(key, secret, ttl=3600, video={"roomList": True})
    statuses: Counter[str] = Counter()

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        try:
            if route == "api":
                tok = token(key, secret, ttl=3600, sub=f"refused{i}", video={"roomList": True}) if new_tokens else one_token
                statuses[str(await list_rooms(session, gateway_url, tok))] += 1
                return
            grant = {"roomJoin": True, "room": f"{NOISY}_refused"} if route == "rtc" else {"agent": True}
            url, headers = ws_request(gateway_url, route, token(key, secret, sub=f"refused{i}", video=grant))
            async with session.ws_connect(url, headers=headers):
                statuses["101"] += 1
        except aiohttp.WSServerHandshakeError as e:
            statuses[str(e.status)] += 1

    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        failed = [r for r in await _bounded(n, 16, lambda i: one(session, i)) if r is not None]
    statuses.update(type(e).__name__ for e in failed)
    return statuses


def refusal_cost(gw: GatewayServer, n: int) -> None:
    assert gw.pid is not None
    print(f"\n== 2. refusals: {n} of {NOISY}'s requests per case, 16 at a time, past its limits; the gateway's CPU "
          f"per request")
    baseline = None
    for label, route, new_tokens in REFUSALS:
        time.sleep(1)  # the previous case's connections closed
        before = cpu_seconds(gw.pid)
        statuses = asyncio.run(_refuse(gw.http_url, route, n, new_tokens))
        per_request = (cpu_seconds(gw.pid) - before) / n * 1e6
        baseline = baseline or per_request
        other = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()) if k != "429") or "none"
        print(f"   {label:<32} {per_request:5.0f} us ({per_request / baseline:.2f}x)  refused 429: "
              f"{statuses['429']} of {n}; other {other}")


# --- part 3: capacity --------------------------------------------------------------------------


@dataclass
class Held:
    kind: str  # "rtc" | "agent"
    ws: aiohttp.ClientWebSocketResponse


@dataclass
class Step:
    target: int
    held: int
    opened: int
    open_seconds: float
    open_ms: list[float]
    ping_ms: list[float]
    failures: Counter[str]
    gateway_mib: float
    server_mib: float
    cpu: dict[str, float] = field(default_factory=dict)


async def _open(session: aiohttp.ClientSession, gateway_url: str, i: int) -> Held:
    key, secret = creds(NOISY)
    if i % 2 == 0:
        worker = await Worker.connect(session, gateway_url, token(key, secret, ttl=3600, video={"agent": True}))
        await worker.register(NOISY_AGENT)
        return Held("agent", worker.ws)
    ws, _ = await join(session, gateway_url, token(key, secret, ttl=3600, sub=f"p{i}",
                                                   video={"roomJoin": True, "room": f"{NOISY}_load{i // 4}"}))
    return Held("rtc", ws)


async def _ping(h: Held, timeout: float) -> float:
    """Round trip of a ping through the gateway to livekit-server and back, in ms."""
    now = int(time.time() * 1000)
    t = time.perf_counter()
    if h.kind == "rtc":
        await h.ws.send_bytes(rtc_pb.SignalRequest(ping_req=rtc_pb.Ping(timestamp=now)).SerializeToString())
        want, parse = "pong_resp", rtc_pb.SignalResponse.FromString
    else:
        await h.ws.send_bytes(agent_pb.WorkerMessage(ping=agent_pb.WorkerPing(timestamp=now)).SerializeToString())
        want, parse = "pong", agent_pb.ServerMessage.FromString  # type: ignore[assignment]
    deadline = time.monotonic() + timeout
    while True:
        msg = await asyncio.wait_for(h.ws.receive(), max(0.01, deadline - time.monotonic()))
        if msg.type != aiohttp.WSMsgType.BINARY:
            raise ConnectionError(f"{h.kind} socket: {msg.type.name}")
        if parse(msg.data).WhichOneof("message") == want:
            return (time.perf_counter() - t) * 1000


async def _bounded(n: int, concurrency: int, fn: Callable[[int], Awaitable[Any]]) -> list[Any]:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Any:
        async with sem:
            try:
                return await fn(i)
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, HandshakeRefused, AssertionError) as e:
                return e

    return await asyncio.gather(*(one(i) for i in range(n)))


async def capacity(gw: GatewayServer, lk: LiveKitServer, max_connections: int, start: int, budget: float,
                   concurrency: int) -> None:
    print(f"\n== 3. capacity: doubling steps from {start} to at most {max_connections} held connections "
          f"(half workers, half participants), {concurrency} opening at once, budget {budget:g} s")
    assert gw.pid is not None and lk.pid is not None
    pids = {"gateway": gw.pid, "livekit-server": lk.pid, "bench": os.getpid()}
    held: list[Held] = []
    steps: list[Step] = []
    deadline = time.monotonic() + budget
    base_gw, base_lk = rss_mib(gw.pid), rss_mib(lk.pid)
    why = f"reached --max-connections {max_connections}"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        target = start
        try:
            while target <= max_connections:
                if time.monotonic() > deadline:
                    why = f"budget of {budget:g} s spent"
                    break
                first = len(held)
                cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
                t0 = time.perf_counter()
                open_ms: list[float] = []

                async def timed_open(i: int) -> Held:
                    t = time.perf_counter()
                    h = await _open(session, gw.http_url, first + i)
                    open_ms.append((time.perf_counter() - t) * 1000)
                    return h

                opened = await _bounded(target - first, concurrency, timed_open)
                open_seconds = time.perf_counter() - t0
                cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
                failures: Counter[str] = Counter()
                for o in opened:
                    if isinstance(o, Held):
                        held.append(o)
                    else:
                        status = f" {o.status}" if isinstance(o, HandshakeRefused) else ""
                        failures[f"open {type(o).__name__}{status}"] += 1
                opened_now = len(held) - first
                pings = await _bounded(len(held), concurrency * 4, lambda i: _ping(held[i], 10))
                ping_ms = [p for p in pings if isinstance(p, float)]
                for p in pings:
                    if not isinstance(p, float):
                        failures[f"ping {type(p).__name__}"] += 1
                # Held means answering: a connection whose ping failed is closed and not counted.
                dead = [h for h, p in zip(held, pings) if not isinstance(p, float)]
                held = [h for h, p in zip(held, pings) if isinstance(p, float)]
                await _bounded(len(dead), concurrency * 4, lambda i: dead[i].ws.close())
                step = Step(target, len(held), opened_now, open_seconds, open_ms, ping_ms, failures,
                            rss_mib(gw.pid), rss_mib(lk.pid), cpu)
                steps.append(step)
                _print_step(step, steps[0], base_gw, base_lk)
                if failures:
                    why = f"step {target}: {sum(failures.values())} failed ({dict(failures)})"
                    break
                target *= 2
            else:
                why = f"next step past --max-connections {max_connections}"
        finally:
            await _bounded(len(held), concurrency * 4, lambda i: held[i].ws.close())
    best = max(steps, key=lambda s: s.opened / s.open_seconds) if steps else None
    print(f"   stopped: {why}")
    if best is not None:
        last = steps[-1]
        print(f"   peak opening rate {best.opened / best.open_seconds:.0f} connections/s (step {best.target}); "
              f"held {last.held} at the end; gateway {(last.gateway_mib - base_gw) * 1024 / max(1, last.held):.1f} KiB "
              f"and livekit-server {(last.server_mib - base_lk) * 1024 / max(1, last.held):.1f} KiB per held connection")


def _print_step(s: Step, first: Step, base_gw: float, base_lk: float) -> None:
    rate = s.opened / s.open_seconds if s.open_seconds else float("nan")
    first_rate = first.opened / first.open_seconds
    cpu = " ".join(f"{k} {v / s.open_seconds * 100:.0f}%" for k, v in s.cpu.items())
    print(f"   {s.held:6d} held | opened {s.opened:5d} at {rate:6.0f}/s ({rate / first_rate:4.2f}x) "
          f"open p95 {pct(s.open_ms, 0.95):7.1f} ms ({pct(s.open_ms, 0.95) / pct(first.open_ms, 0.95):4.2f}x) | "
          f"ping p95 {pct(s.ping_ms, 0.95):7.1f} ms ({pct(s.ping_ms, 0.95) / pct(first.ping_ms, 0.95):4.2f}x) | "
          f"RSS gateway {s.gateway_mib:6.0f} MiB ({(s.gateway_mib - base_gw) * 1024 / s.held:5.1f} KiB/conn) "
          f"livekit {s.server_mib:6.0f} MiB ({(s.server_mib - base_lk) * 1024 / s.held:5.1f} KiB/conn) | "
          f"CPU while opening: {cpu}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8, help="cycles of the quiet, at-limit and over-limit phases")
    parser.add_argument("--phase-seconds", type=float, default=5)
    parser.add_argument("--probe-rate", type=float, default=20, help="bellavista's joins and API calls per second")
    parser.add_argument("--over", type=float, default=10, help="northwind offers this many times its limits")
    parser.add_argument("--refusals", type=int, default=4000, help="requests per case of part 2")
    parser.add_argument("--start", type=int, default=250, help="held connections at the first capacity step")
    parser.add_argument("--max-connections", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32, help="connections opening at once")
    parser.add_argument("--budget", type=float, default=240, help="seconds for the capacity steps")
    parser.add_argument("--skip", choices=["noisy", "refusals", "capacity"], action="append", default=[])
    parser.add_argument("--client-cpu", type=int, default=max(os.sched_getaffinity(0)),
                        help="the one CPU the clients may use (default: the last this process may); -1: any")
    parser.add_argument("--layout", choices=["shared", "split"], default="shared",
                        help="part 1: split: the platform on the other CPUs; shared: anything on any CPU "
                             "(northwind's client still on --client-cpu)")
    parser.add_argument("--fourth", choices=sorted(FOURTH), default="other-gateway",
                        help="part 1's fourth phase: northwind's flood " + "; ".join(f"{k}: {v}" for k, v in FOURTH.items()))
    args = parser.parse_args()
    every = os.sched_getaffinity(0)
    client_cpus = {args.client_cpu} if args.client_cpu >= 0 and len(every) > 1 else None
    if client_cpus is not None and not client_cpus < every:
        parser.error(f"--client-cpu {args.client_cpu}: this process may run on CPUs {sorted(every)}")
    # Every held connection is a descriptor here and two in the gateway (which inherits the limit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    python = gateway_image_python()
    with tempfile.TemporaryDirectory() as tmp, RedisServer() as redis, \
            LiveKitServer(region_config(REGION, REPO), redis=redis) as lk:
        context = stage_image_context(Path(tmp) / "opt-voxplane")
        print(f"livekit-server {lk.http_url} (pid {lk.pid}), gateway as its own process, loopback; "
              f"{os.cpu_count()} CPUs; open files {hard}")
        if not {"noisy", "refusals"} <= set(args.skip):
            root = manifests_with(Path(tmp) / "noisy", {NOISY: noisy_limits_yaml()})
            config, keys = region_gateway(REGION, root, upstream=lk.http_url)
            with GatewayServer(config, keys, python=python, pythonpath=context) as gw, \
                    GatewayServer(config, keys, python=python, pythonpath=context) as other_gw:
                if "noisy" not in args.skip:
                    noisy_neighbour(gw, other_gw, lk, args.rounds, args.phase_seconds, args.probe_rate, args.over,
                                    client_cpus, args.layout == "split", args.fourth)
                if "refusals" not in args.skip:
                    refusal_cost(gw, args.refusals)
        if "capacity" not in args.skip:
            root = manifests_with(Path(tmp) / "capacity", {NOISY: UNLIMITED, QUIET: UNLIMITED})
            config, keys = region_gateway(REGION, root, upstream=lk.http_url)
            with GatewayServer(config, keys, python=python, pythonpath=context) as gw:
                asyncio.run(capacity(gw, lk, args.max_connections, args.start, args.budget, args.concurrency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
