"""Benchmark: multi-turn calls against two real vLLM replicas, through the LLM router the render
puts in front of an LLM with several replicas (voxplane/desired/llm_router.py: vllm-router,
sticky least-loaded, keyed by the call) against the model's plain Service, which spreads each new
connection over the replicas (round robin here, one connection per request: vLLM's server closes
an idle keep-alive connection after 5 s, and a call's turns are further apart than that).

Two vLLM servers started as the local region's LLM is rendered (tests/support/vllm.py: the tiny
Llama, prefix caching on as rendered), and the router started as us-east's is rendered in front
of them (tests/support/llm_router.py). A call is an agent's conversation: the agent's system
prompt (the same for every call), then per turn the caller's words appended and the whole history
sent again, the reply streamed (--reply-tokens), appended too, a pause (--pause seconds: the caller
listening and talking) and the next turn. --calls calls run at once, --turns turns each; each mode
runs --rounds times, alternating, so drift in the machine's load hits both alike. Before each run
every replica has the system prompt cached (one request each), as a warm replica would.

Reported per mode, from vLLM's own counters (vllm:prefix_cache_queries/hits, tokens, summed over
the replicas) and from the client (time to the first streamed token, per turn): the prefix-cache
hit rate, TTFT p50/p95 per turn, and the ratios router/round robin. Not a timed test: numbers for
the README and the note. Run it under the shared lock (two vLLM servers, ~3.4 GB each):

    flock /tmp/vox-heavy.lock .venv/bin/python bench/llm_routing.py [--calls 24] [--turns 6] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402

from tests.support.llm_router import RouterProcess  # noqa: E402
from tests.support.stats import percentile  # noqa: E402
from tests.support.vllm import VllmServer, make_tiny_model  # noqa: E402
from voxplane.desired.llm_router import SESSION_HEADER  # noqa: E402

SERVED_NAME = "meta-llama/Llama-3.2-3B-Instruct"
WORDS = ("table booking tonight seven people garden terrace window vegetarian menu allergy birthday cake "
         "parking children highchair wine pairing dessert coffee tomorrow lunch dinner confirm cancel").split()
SYSTEM = ("You are the reservations assistant of the Bella Vista restaurant group. " * 40).strip()


@dataclass
class Run:
    mode: str
    ttft: dict[int, list[float]] = field(default_factory=dict)  # turn -> seconds
    queries: float = 0.0
    hits: float = 0.0
    errors: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else float("nan")


def _counters(servers: list[VllmServer]) -> tuple[float, float]:
    return (sum(s.metric("vllm:prefix_cache_queries_total") for s in servers),
            sum(s.metric("vllm:prefix_cache_hits_total") for s in servers))


async def _turn(http: aiohttp.ClientSession, url: str, call: str, messages: list[dict[str, str]],
                reply_tokens: int) -> tuple[float, str]:
    body = {"model": SERVED_NAME, "messages": messages, "max_tokens": reply_tokens, "stream": True,
            "ignore_eos": True}
    started = time.perf_counter()
    first = None
    reply = []
    async with http.post(f"{url}/v1/chat/completions", json=body, headers={SESSION_HEADER: call}) as resp:
        resp.raise_for_status()
        async for raw in resp.content:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or []
            text = choices[0]["delta"].get("content") if choices else None
            if text:
                first = first if first is not None else time.perf_counter() - started
                reply.append(text)
    assert first is not None, "no token streamed"
    return first, "".join(reply)


async def _call(http: aiohttp.ClientSession, url_of: object, run: Run, n: int, args: argparse.Namespace,
                rng: random.Random, end_url: str | None) -> None:
    call = f"{run.mode}-{n}-{rng.randrange(10**9)}"
    messages = [{"role": "system", "content": SYSTEM}]
    await asyncio.sleep(rng.uniform(0, args.pause))  # calls do not all start on the same tick
    for turn in range(args.turns):
        words = " ".join(rng.choice(WORDS) for _ in range(args.user_words))
        messages.append({"role": "user", "content": f"Caller {n}: {words}."})
        try:
            ttft, reply = await _turn(http, url_of(), call, messages, args.reply_tokens)  # type: ignore[operator]
        except (aiohttp.ClientError, AssertionError):
            run.errors += 1
            return
        run.ttft.setdefault(turn, []).append(ttft)
        messages.append({"role": "assistant", "content": reply})
        await asyncio.sleep(args.pause * rng.uniform(0.5, 1.5))
    if end_url:  # as the glue ends a call's session when the call ends
        async with http.post(end_url, params={"session_id": call}) as resp:
            resp.raise_for_status()


async def _warm(servers: list[VllmServer]) -> None:
    async with aiohttp.ClientSession() as http:
        for s in servers:
            await _turn(http, s.base_url, "warm", [{"role": "system", "content": SYSTEM},
                                                   {"role": "user", "content": "Hello."}], 1)


async def _run(mode: str, servers: list[VllmServer], router: RouterProcess, args: argparse.Namespace, seed: int) -> Run:
    run = Run(mode)
    await _warm(servers)
    if mode == "router":
        def url_of() -> str:
            return router.base_url
    else:
        replicas = itertools.cycle([s.base_url for s in servers])

        def url_of() -> str:
            return next(replicas)
    before = _counters(servers)
    rng = random.Random(seed)
    connector = aiohttp.TCPConnector(force_close=True)  # one connection per request, as a Service sees turns
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as http:
        end_url = f"{router.base_url}/finish_session" if mode == "router" else None
        await asyncio.gather(*(_call(http, url_of, run, n, args, random.Random(rng.random()), end_url)
                               for n in range(args.calls)))
    after = _counters(servers)
    run.queries, run.hits = after[0] - before[0], after[1] - before[1]
    return run


def _merge(runs: list[Run]) -> Run:
    out = Run(runs[0].mode)
    for r in runs:
        for turn, values in r.ttft.items():
            out.ttft.setdefault(turn, []).extend(values)
        out.queries += r.queries
        out.hits += r.hits
        out.errors += r.errors
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=24)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between a call's turns (mean)")
    parser.add_argument("--user-words", type=int, default=40)
    parser.add_argument("--reply-tokens", type=int, default=48)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llm-routing-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        model = make_tiny_model(work / "tiny")
        print("starting two vLLM replicas and the router (a minute or two) ...", flush=True)
        servers = [VllmServer(model, work / f"vllm-{i}").start() for i in range(2)]
        try:
            for s in servers:
                s.wait_ready()
            with RouterProcess("us-east", [s.base_url for s in servers], work / "router") as router:
                router.wait_ready()
                runs: dict[str, list[Run]] = {"round robin": [], "router": []}
                for i in range(args.rounds):
                    for mode in (("round robin", "router") if i % 2 == 0 else ("router", "round robin")):
                        t0 = time.monotonic()
                        run = asyncio.run(_run(mode, servers, router, args, seed=i))
                        runs[mode].append(run)
                        print(f"round {i + 1} {mode:12s}: {time.monotonic() - t0:5.1f} s, hit rate {run.hit_rate:.1%}, "
                              f"errors {run.errors}", flush=True)
        finally:
            for s in servers:
                s.stop()
    merged = {mode: _merge(rs) for mode, rs in runs.items()}
    base, routed = merged["round robin"], merged["router"]
    print(f"\n{args.calls} concurrent calls x {args.turns} turns x {args.rounds} rounds per mode, two replicas")
    print(f"prefix-cache hit rate (vLLM's counters, tokens): round robin {base.hit_rate:.1%}, router {routed.hit_rate:.1%}"
          f" ({routed.hit_rate / base.hit_rate:.2f}x)")
    print("TTFT per turn, ms (client side):   round robin p50 / p95   router p50 / p95   ratio p50 / p95")
    for turn in sorted(base.ttft):
        b, r = base.ttft[turn], routed.ttft.get(turn, [])
        bp50, bp95, rp50, rp95 = (1000 * percentile(v, q) for v, q in ((b, 50), (b, 95), (r, 50), (r, 95)))
        print(f"  turn {turn + 1}:                         {bp50:7.0f} / {bp95:5.0f}        {rp50:7.0f} / {rp95:5.0f}"
              f"      {rp50 / bp50:5.2f} / {rp95 / bp95:4.2f}")
    print(f"errors: round robin {base.errors}, router {routed.errors}")


if __name__ == "__main__":
    main()
