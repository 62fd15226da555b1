"""Benchmark: LiveKit drift over 1,000 owned SIP objects on a real livekit-server.

Starts its own Redis + livekit-server (voxplane.dev) on loopback, generates N agent
manifests (default 500 -> 500 trunks + 500 dispatch rules), creates the objects with the
reconciler (`sync`), then times:

- voxplane drift: `drift.detect()` — list every trunk and rule (one call per kind), compare.
- naive baseline, same run, same client wrapper: fetch each object by ID (`list_*` filtered by
  `trunk_ids=[id]` / `dispatch_rule_ids=[id]`, as a Pulumi refresh of one dynamic resource per
  object does) and compare it the same way.

API calls are counted in the client wrapper (`LiveKitAdmin.calls`). Drift is also measured at a
tenth of the objects to show its call count does not grow. Best of several rounds.
Targets (issue): API calls independent of object count, >= 10x faster than naive.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.servers import livekit_with_redis  # noqa: E402
from tests.support.stats import best_of  # noqa: E402
from voxplane.livekit.client import LiveKitAdmin  # noqa: E402
from voxplane.livekit.desired import TRUNK_KIND, DesiredRule, desired_objects  # noqa: E402
from voxplane.drift.livekit import detect  # noqa: E402
from voxplane.livekit.objects import compare, live_spec  # noqa: E402
from voxplane.livekit.reconcile import read_live, sync  # noqa: E402
from voxplane.livekit.secrets import NoSecrets  # noqa: E402
from voxplane.manifest.loader import load  # noqa: E402

TEMPLATE = """\
name: bench{i:04d}
tenant: {tenant}
regions: [local]
code:
  image: bench/agent:1.0.{i}
telephony:
  numbers: ["+1555{i:07d}"]
  dispatch: {{ kind: individual, room_prefix: b{i} }}
inference:
  stt: {{ model: whisper }}
  tts: {{ model: kokoro }}
  llm: {{ model: chat }}
"""


def generate(root: Path, count: int) -> None:
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(REPO / "regions", root / "regions")
    (root / "agents").mkdir()
    for i in range(count):
        tenant = ("bellavista", "northwind")[i % 2]
        (root / "agents" / f"bench{i:04d}.yaml").write_text(TEMPLATE.format(i=i, tenant=tenant))


def project(root: Path) -> tuple[Any, Any]:
    result = load((), root)
    if result.problems:
        raise SystemExit("\n".join(map(str, result.problems[:5])))
    p = result.require_project()
    return p.regions["local"], p.agents_in("local")


def naive_drift(client: LiveKitAdmin, desired: list[Any], ids: dict[Any, str]) -> int:
    """Fetch every object by ID and compare it; returns the number of drifted objects."""
    drifted = 0
    for d in desired:
        if d.kind == TRUNK_KIND:
            info = client.get_trunk(ids[d.owner])
            spec = d.spec()
        else:
            assert isinstance(d, DesiredRule)
            info = client.get_rule(ids[d.owner])
            spec = d.spec(ids[d.trunk])
        if info is None:
            drifted += 1
            continue
        diffs, _ = compare(spec, live_spec(info))
        drifted += bool(diffs)
    return drifted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=500, help="agents to generate (2 objects each)")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds; best is reported")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="voxplane-bench-") as tmp, livekit_with_redis() as lk:
        root = Path(tmp) / "repo"
        rows = []
        small = max(1, args.agents // 10)
        for count in (small, args.agents):
            generate(root, count)
            region, agents = project(root)
            with lk.client() as client:
                start = time.perf_counter()
                result = sync(region, agents, client, NoSecrets())
                sync_s = time.perf_counter() - start
                print(f"sync: {len(result.applied)} writes in {sync_s:.2f}s "
                      f"({client.write_calls} write calls, {client.total_calls - client.write_calls} reads)", file=sys.stderr)

            desired = desired_objects(region, agents)
            with lk.client() as client:
                live = read_live(client)
            ids = {o.owner: o.id for o in live.objects if o.owner is not None}
            objects = len(live.objects)

            with lk.client() as client:
                fast_s, report = best_of(args.rounds, lambda: detect(region, agents, client, NoSecrets()))
                fast_calls = client.total_calls // args.rounds
            if report.drift:
                raise SystemExit(f"unexpected drift after sync: {report.summary()}")

            with lk.client() as client:
                naive_s, drifted = best_of(args.rounds, lambda: naive_drift(client, desired, ids))
                naive_calls = client.total_calls // args.rounds
            if drifted:
                raise SystemExit(f"naive check saw {drifted} drifted objects after sync")
            rows.append((objects, fast_s, fast_calls, naive_s, naive_calls))

    print(f"{'objects':>8} {'drift s':>9} {'calls':>6} {'naive s':>9} {'calls':>6} {'speedup':>8}")
    for objects, fast_s, fast_calls, naive_s, naive_calls in rows:
        print(f"{objects:>8} {fast_s:>9.3f} {fast_calls:>6} {naive_s:>9.3f} {naive_calls:>6} {naive_s / fast_s:>7.1f}x")
    objects, fast_s, fast_calls, naive_s, naive_calls = rows[-1]
    constant = len({r[2] for r in rows}) == 1
    ratio = naive_s / fast_s
    print(f"drift over {objects} objects: {fast_s:.3f}s, {fast_calls} API calls; naive by-ID check: {naive_s:.3f}s, "
          f"{naive_calls} API calls; {ratio:.1f}x faster (best of {args.rounds})")
    print(f"target: calls independent of object count: {'met' if constant else 'MISSED'} "
          f"({', '.join(str(r[2]) for r in rows)} calls for {', '.join(str(r[0]) for r in rows)} objects); "
          f">= 10x faster: {'met' if ratio >= 10 else 'MISSED'}")
    return 0 if constant and ratio >= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
