"""The agent pools' KEDA queries, evaluated by Prometheus' own PromQL engine (tools/promqleval:
the promql and tsdb packages of github.com/prometheus/prometheus v0.305.0, built from the Go module
proxy by scripts/ensure-tool.sh promqleval) over series shaped like the ones prometheus-operator
scrapes from the workers.

The query text comes from the render of every example region, so what is checked is exactly what
KEDA would send. A pool with no sample yet (livekit-agents exports `lk_agents_active_job_count`
only from a worker's first job on; before the first scrape there is nothing at all) must read 0,
not "no data": `sum()` of nothing is an empty vector, which KEDA reports as an error or, with
`ignoreNullValues`, silently as 0.

The last test follows the query's value into the HPA's replica arithmetic (voxplane/hpa.py) at
every pool size: with the target voxplane used to render (sessions_per_worker) no pool could ever
scale up; with `target_utilization` every pool asks for a worker while a session is still free.

Never skipped: without Go or the module proxy the build fails the test with its reason.
"""

from __future__ import annotations

import json
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from voxplane import hpa
from voxplane.deploy.render import render
from voxplane.desired.common import ACTIVE_JOBS_METRIC

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


# --- the target: does the loop scale up? ---------------------------------------------------------

#: Scenarios are this far apart in the evaluated store: more than the 5 min lookback, so no
#: sample of one is seen by another.
APART = 600


def scaling_pools(region: str) -> list[dict[str, Any]]:
    """Each agent pool's query, target and bounds as rendered, and what one of its workers carries
    (its `VOXPLANE_SESSIONS_PER_WORKER`: the worker refuses calls at that many, load threshold 1.0)."""
    objs = render(region, REPO).kubernetes
    out = []
    for pool in pools(region):
        (so,) = [o for o in objs if o["kind"] == "ScaledObject" and o["metadata"]["namespace"] == pool["namespace"]
                 and o["metadata"]["name"] == pool["name"]]
        (dep,) = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["namespace"] == pool["namespace"]
                  and o["metadata"]["name"] == so["spec"]["scaleTargetRef"]["name"]]
        env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["VOXPLANE_LOAD_THRESHOLD"] == "1.0", "a worker is full at exactly its sessions per worker"
        (trigger,) = so["spec"]["triggers"]
        out.append({**pool, "threshold": trigger["metadata"]["threshold"], "min": so["spec"]["minReplicaCount"],
                    "max": so["spec"]["maxReplicaCount"], "spw": int(env["VOXPLANE_SESSIONS_PER_WORKER"]),
                    "metric_type": trigger["metricType"]})
    return out


def loads_of(pool: dict[str, Any]) -> tuple[list[dict[str, Any]], list[tuple[int, int, str, float]]]:
    """Series and (workers, active sessions, what, time) for each pool size from min to max-1:
    idle, one session short of full, and full (every worker at what it accepts)."""
    spw = pool["spw"]
    samples: dict[int, list[tuple[float, float]]] = {}
    cases = []
    for workers in range(pool["min"], pool["max"]):
        for what, free in (("idle", workers * spw), ("one session free", 1), ("full", 0)):
            at = float(len(cases) * APART)
            active = workers * spw - free
            cases.append((workers, active, what, at))
            left = active
            for w in range(workers):
                jobs = min(spw, left)
                left -= jobs
                samples.setdefault(w, []).append((at, float(jobs)))
    series = [job_series(pool["namespace"], pool["job"], f"{pool['name']}-w{w}", s) for w, s in samples.items()]
    return series, cases


@pytest.mark.parametrize("region", REGIONS)
def test_the_old_target_never_scales_up_and_the_rendered_one_scales_with_a_session_free(promqleval: Path,
                                                                                         region: str) -> None:
    """The query's value as Prometheus computes it, through KEDA's milli conversion, into the HPA's
    arithmetic (voxplane/hpa.py: replica_calculator.go, 10% tolerance), at every pool size.

    Before target_utilization the threshold was sessions_per_worker: the active jobs can never
    exceed the target (workers refuse beyond it), so the HPA never asked for a worker and every
    call beyond the pool's present capacity was refused. Rendered now, every pool asks for a
    worker while one session is still free, and an idle pool asks for no more than its minimum."""
    for pool in scaling_pools(region):
        assert pool["metric_type"] == "AverageValue"
        old_target, target = hpa.milli(Decimal(pool["spw"])), hpa.milli(Decimal(pool["threshold"]))
        series, cases = loads_of(pool)
        answers = evaluate(promqleval, series, [(pool["query"], at) for *_, at in cases])
        for (workers, active, what, _), answer in zip(cases, answers, strict=True):
            usage = hpa.milli(Decimal(str(value(answer))))
            assert usage == active * 1000, (pool["name"], workers, what, answer)
            before = hpa.desired_replicas(usage, old_target, workers)
            now = hpa.desired_replicas(usage, target, workers)
            assert before <= workers, (pool["name"], workers, what, before)
            if what == "idle":
                assert now <= pool["min"], (pool["name"], workers, now)
            else:
                assert now > workers, f"{pool['name']}: {workers} workers with {what} ask for {now}"


@pytest.mark.parametrize("region", REGIONS)
def test_the_deletion_cost_query_reads_each_workers_jobs_from_the_same_series(promqleval: Path, region: str) -> None:
    """The deletion-cost controller's query (its rendered ConfigMap) gives one value per worker pod,
    keyed by the namespace and pod prometheus-operator adds, from the pools' own series only."""
    objs = render(region, REPO).kubernetes
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "pod-deletion-cost"]
    query = json.loads(cm["data"]["config.json"])["query"]
    series, want = [], {}
    for n, pool in enumerate(pools(region)):
        for w in range(2):
            pod = f"{pool['name']}-w{w}"
            series.append(job_series(pool["namespace"], pool["job"], pod, [(0, 1), (15, float(n + w))]))
            want[(pool["namespace"], pod)] = float(n + w)
    series.append(job_series(pools(region)[0]["namespace"], "elsewhere/other", "stranger-0", [(15, 9)]))
    (answer,) = evaluate(promqleval, series, [(query, 30)])
    assert answer["type"] == "vector"
    got = {(r["labels"]["namespace"], r["labels"]["pod"]): float(r["value"]) for r in answer["result"]}
    assert got == want
    assert all(set(r["labels"]) == {"namespace", "pod"} for r in answer["result"])
