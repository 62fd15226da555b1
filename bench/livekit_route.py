"""Benchmark: routing-decision latency of a real livekit-server, asked as livekit-sip asks.

Starts its own Redis + livekit-server (voxplane.dev) with the `local` region's config,
syncs the region's trunks and rules, then sends N calls (default 200, cycling over every
declared number and a foreign address) through one `tools/routeprobe` process and reports
p50/p95/p99 of the trunk lookup (GetSIPTrunkAuthentication), the dispatch evaluation
(EvaluateSIPDispatchRules) and the pair, as the probe measures them (one RPC each over Redis).

Baseline, same run: the same number of ListSIPDispatchRule calls over the admin API (HTTP,
Twirp) from Python — the cheapest read of the same rules through the public API. Ratios are
pair / baseline.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.servers import livekit_with_redis  # noqa: E402
from tests.support.stats import percentile  # noqa: E402
from voxplane.livekit.reconcile import sync  # noqa: E402
from voxplane.livekit.route import Call, RouteProbe, decide  # noqa: E402
from voxplane.livekit.secrets import StaticSecrets  # noqa: E402
from voxplane.manifest.loader import load  # noqa: E402


def stats(values: list[float]) -> str:
    return " ".join(f"p{q} {percentile(values, q):6.2f}" for q in (50, 95, 99)) + " ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=200, help="calls to route (default 200)")
    args = parser.parse_args()

    project = load((), REPO).require_project()
    region, agents = project.regions["local"], project.agents_in("local")
    calls = []
    for agent in agents:
        tel = agent.telephony
        if tel is None:
            continue
        address = "192.76.120.10" if tel.allowed_addresses else "127.0.0.1"
        calls += [Call(to=n, address=address) for n in tel.numbers] + [Call(to=n, address="203.0.113.7") for n in tel.numbers]

    with livekit_with_redis(region="local") as lk:
        with lk.client() as client:
            sync(region, agents, client, StaticSecrets({"northwindTrunkPassword": "bench-password"}))
            start = time.perf_counter()
            with RouteProbe(lk.redis.address) as probe:
                ready_s = time.perf_counter() - start
                for call in calls:  # warm-up
                    decide(probe, call)
                auth, dispatch, pair, wall = [], [], [], []
                for i in range(args.n):
                    t0 = time.perf_counter()
                    d = decide(probe, calls[i % len(calls)])
                    wall.append((time.perf_counter() - t0) * 1000)
                    auth.append(d.server["ms"]["auth"])
                    dispatch.append(d.server["ms"]["dispatch"])
                    pair.append(d.server["ms"]["auth"] + d.server["ms"]["dispatch"])
            base = []
            for _ in range(args.n):
                t0 = time.perf_counter()
                client.list_rules()
                base.append((time.perf_counter() - t0) * 1000)

    print(f"routeprobe ready in {ready_s * 1000:.0f} ms (includes the 200 ms psrpc settle wait)")
    print(f"{args.n} calls over {len(calls)} distinct (number, address) pairs")
    print(f"  auth      {stats(auth)}")
    print(f"  dispatch  {stats(dispatch)}")
    print(f"  pair      {stats(pair)}")
    print(f"  pair, seen from Python (probe pipe + JSON)  {stats(wall)}")
    print(f"baseline: ListSIPDispatchRule over the admin API  {stats(base)}")
    print(f"ratio pair/baseline: p50 {percentile(pair, 50) / percentile(base, 50):.2f}x, "
          f"p95 {percentile(pair, 95) / percentile(base, 95):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
