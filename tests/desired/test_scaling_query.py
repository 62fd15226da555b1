"""The agent pools' KEDA queries, evaluated by Prometheus' own PromQL engine (tools/promqleval:
the promql and tsdb packages of github.com/prometheus/prometheus v0.305.0, built from the Go module
proxy by scripts/ensure-tool.sh promqleval) over series shaped like the ones prometheus-operator
scrapes from the workers.

The query text comes from the render of every example region, so what is checked is exactly what
KEDA would send. A pool with no sample yet (livekit-agents exports `lk_agents_active_job_count`
only from a worker's first job on; before the first scrape there is nothing at all) must read 0,
not "no data": `sum()` of nothing is an empty vector, which KEDA reports as an error or, with
`ignoreNullValues`, silently as 0.

Never skipped: without Go or the module proxy the build fails the test with its reason.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from voxplane.desired.agent_pool import ACTIVE_JOBS_METRIC
from voxplane.deploy.render import render

from ..support.repo import REPO

ENSURE = REPO / "scripts" / "ensure-tool.sh"
REGIONS = ("local", "us-east", "eu-west")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def promqleval() -> Path:
    proc = subprocess.run(["bash", str(ENSURE), "promqleval", "--print-path"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        pytest.fail(f"cannot build tools/promqleval ({ENSURE.name} exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return Path(proc.stdout.strip())


def evaluate(binary: Path, series: list[dict[str, Any]], queries: list[tuple[str, float]]) -> list[dict[str, Any]]:
    payload = {"series": series, "queries": [{"expr": q, "time": t} for q, t in queries]}
    proc = subprocess.run([str(binary)], input=json.dumps(payload), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    answers: list[dict[str, Any]] = json.loads(proc.stdout)
    for a in answers:
        assert not a.get("error"), a
    return answers


def value(answer: dict[str, Any]) -> float | None:
    """The single value of an instant vector answer; None for an empty vector (no data)."""
    assert answer["type"] == "vector", answer
    result = answer["result"]
    if not result:
        return None
    assert len(result) == 1, result
    return float(result[0]["value"])


def pools(region: str) -> list[dict[str, Any]]:
    """(namespace, podmonitor, query) of each agent pool in the region's render."""
    objs = render(region, REPO).kubernetes
    out = []
    agent_pools = [o for o in objs if o["kind"] == "ScaledObject" and "voxplane.io/agent" in o["metadata"]["labels"]]
    for so in agent_pools:
        (trigger,) = [t for t in so["spec"]["triggers"] if t["type"] == "prometheus"]
        ns = so["metadata"]["namespace"]
        (monitor,) = [o for o in objs if o["kind"] == "PodMonitor" and o["metadata"]["namespace"] == ns
                      and o["metadata"]["name"] == so["spec"]["scaleTargetRef"]["name"]]
        out.append({"namespace": ns, "job": f"{ns}/{monitor['metadata']['name']}", "query": trigger["metadata"]["query"],
                    "name": so["metadata"]["name"]})
    assert out, f"no agent pool rendered in {region}"
    return out


def job_series(namespace: str, job: str, pod: str, samples: list[tuple[float, float]]) -> dict[str, Any]:
    """One worker's gauge as Prometheus stores it after a PodMonitor scrape: the worker's own
    `nodename` label plus the target labels prometheus-operator adds."""
    return {
        "labels": {"__name__": ACTIVE_JOBS_METRIC, "nodename": pod, "namespace": namespace, "job": job,
                   "pod": pod, "instance": f"10.0.0.{len(pod)}:9100", "container": "agent", "endpoint": "metrics"},
        "samples": [list(s) for s in samples],
    }


@pytest.mark.parametrize("region", REGIONS)
def test_a_pool_without_samples_counts_as_zero_not_as_no_data(promqleval: Path, region: str) -> None:
    for pool in pools(region):
        bare = pool["query"].split(" or ")[0]
        assert bare.startswith("sum(") and pool["query"] == f"{bare} or vector(0)", pool["query"]
        # Fresh pool: the workers' /metrics carry HELP/TYPE only, so Prometheus stores nothing.
        # Another pool's samples (same metric, other job) are there and must not count.
        other = job_series(pool["namespace"], f"{pool['namespace']}/someone-else", "other-0", [(0, 7), (15, 7)])
        rendered, without = evaluate(promqleval, [other], [(pool["query"], 30), (bare, 30)])
        assert value(without) is None, "sum() over no series is an empty vector: KEDA would see no data"
        assert value(rendered) == 0.0, pool
        assert rendered["result"][0]["labels"] == {}


@pytest.mark.parametrize("region", REGIONS)
def test_active_jobs_are_summed_over_the_pools_workers_only(promqleval: Path, region: str) -> None:
    for pool in pools(region):
        ns, job = pool["namespace"], pool["job"]
        series = [
            job_series(ns, job, f"{pool['name']}-a", [(0, 0), (15, 3), (30, 5)]),
            job_series(ns, job, f"{pool['name']}-b", [(0, 2), (15, 2), (30, 1)]),
            job_series(ns, f"{ns}/someone-else", "other-0", [(30, 40)]),
            job_series("vox-t-elsewhere", job, "same-job-other-ns", [(30, 50)]),
        ]
        at0, at15, at30 = evaluate(promqleval, series, [(pool["query"], 0), (pool["query"], 15), (pool["query"], 30)])
        # One element (the `or` side is dropped when the sum exists), the pool's own sum.
        assert (value(at0), value(at15), value(at30)) == (2.0, 5.0, 6.0), pool
        assert len(at30["result"]) == 1 and at30["result"][0]["labels"] == {}


def test_a_pool_whose_workers_went_away_reads_zero_after_the_lookback(promqleval: Path) -> None:
    """Scaled to zero or all pods gone: the last samples go stale after Prometheus' 5 min
    lookback (no staleness markers in this store), and the query reads 0 again, not no data."""
    pool = pools("local")[0]
    series = [job_series(pool["namespace"], pool["job"], "w-0", [(0, 4), (15, 4)])]
    soon, later = evaluate(promqleval, series, [(pool["query"], 60), (pool["query"], 15 + 301)])
    assert value(soon) == 4.0
    assert value(later) == 0.0
