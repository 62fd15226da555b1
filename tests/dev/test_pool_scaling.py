"""The loop the platform promises, with real parts only: calls beyond a pool's autoscaling target
raise KEDA's metric, the controller manager's HPA raises the Deployment's replicas, the scheduler
places the new pods, the pod runner starts them as real livekit-agents workers that register at the
region's gateway, and livekit-server gives them the next calls; when the calls end the pool shrinks
back to `min_workers`, and the deletion-cost controller (run by the pod runner from the rendered
Deployment, with its own ServiceAccount's token) makes the ReplicaSet remove the idle workers and
keep the one still carrying a call.

The pool is cut for two cores: 1 to 3 workers of two sessions, a target of 45 % (0.9 sessions a
worker: one call starts a scale-up), a scale-down window of 20 s (longer than the costs' lag: a
scrape plus the controller's reading, 10 s at most). The models are tests/agents' stand-in.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from voxplane.dev.calls import CallRun

from ..support.motion import Motion, call_run, motion_with_stand_in_models, only_agents, set_scaling
from ..support.wait import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

NS = "vox-t-bellavista"
POOL = "reservations"
SELECTOR = "app.kubernetes.io/name=reservations"
NUMBER = "+13125550142"
SESSIONS, MAX_WORKERS = 2, 3
COST = "controller.kubernetes.io/pod-deletion-cost"


def edit(root: Path) -> None:
    only_agents(root, {POOL})
    set_scaling(root, POOL, min_workers=1, max_workers=MAX_WORKERS, sessions_per_worker=SESSIONS,
                target_utilization=45, scale_down_window=20)


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Motion]:
    with motion_with_stand_in_models(tmp_path_factory.mktemp("scaling"), edit=edit) as m:
        yield m


@pytest.fixture
def calls(region: Motion, tmp_path: Path) -> Iterator[CallRun]:
    with call_run(region, NUMBER, tmp_path) as run:
        yield run


def hpa(m: Motion) -> dict[str, Any]:
    return m.get("hpa", NS, f"keda-hpa-{POOL}") or {}


def workers_by_id(m: Motion) -> dict[str, str]:
    """Each Ready pod's worker id (as livekit-server knows the worker) → the pod's name."""
    return {m.worker_state(p["metadata"]["name"])["worker_id"]: p["metadata"]["name"] for p in m.ready_pods(NS, SELECTOR)}


def place_and_answer(calls: CallRun, admin: Any, n: int) -> list[Any]:
    placed = []
    for _ in range(n):
        calls.count += 1
        placed.append(calls.place(len(calls.calls)))

    def settled() -> bool:
        calls.step(admin)
        return all(c.state != "waiting" for c in placed)

    wait_until(f"{n} calls answered or refused", settled, timeout=120, interval=0.2)
    return placed


def pod_of_each_call(calls: CallRun, admin: Any, workers: dict[str, str]) -> dict[int, str]:
    """Which pod's worker carries each live call (livekit-server's own record of the job)."""
    out = {}
    for call in calls.calls:
        if call.hung_up or call.room is None:
            continue
        room = call.room
        dispatches = admin.call("ListDispatch", lambda lk: lk.agent_dispatch.list_dispatch(room))
        ids = {j.state.worker_id for d in dispatches for j in d.state.jobs if j.state.worker_id}
        assert len(ids) == 1, (call, ids)
        out[call.index] = workers[ids.pop()]
    return out


def test_a_pool_grows_on_calls_and_shrinks_back_removing_its_idle_workers_first(region: Motion, calls: CallRun) -> None:
    (first,) = wait_until("one Ready worker", lambda: (lambda r: r if len(r) == 1 else None)(region.ready_pods(NS, SELECTOR)),
                          timeout=300, interval=1)
    threshold = float(region.get("scaledobject", NS, POOL)["spec"]["triggers"][0]["metadata"]["threshold"])  # type: ignore[index]
    assert threshold == pytest.approx(SESSIONS * 0.45)
    with calls._admin() as admin:
        # 1. As many calls as the one worker carries: it answers both, and the load (2 > 0.9) asks for more.
        place_and_answer(calls, admin, SESSIONS)
        assert calls.counts()["refused"] == 0, calls.calls
        want = min(MAX_WORKERS, math.ceil(SESSIONS / threshold))
        wait_until(f"the HPA asking for {want}", lambda: (hpa(region).get("status") or {}).get("desiredReplicas") == want,
                   timeout=180, interval=1)
        grown = wait_until(f"{want} Ready workers", lambda: (lambda r: r if len(r) == want else None)(
            region.ready_pods(NS, SELECTOR)), timeout=300, interval=1)
        new = {p["metadata"]["name"] for p in grown} - {first["metadata"]["name"]}
        assert all(region.worker_state(name)["registered"] for name in new)

        # 2. The next calls land on the new workers (the first is full); none is refused.
        place_and_answer(calls, admin, SESSIONS)
        c = calls.counts()
        assert (c["answered"], c["refused"], c["waiting"], c["dropped"]) == (2 * SESSIONS, 0, 0, 0), calls.calls
        carriers = pod_of_each_call(calls, admin, workers_by_id(region))
        assert {carriers[c.index] for c in calls.calls[SESSIONS:]} <= new, carriers

        # 3. The deletion-cost controller has written each pod's jobs (an idle pod may have none).
        def costs_follow_jobs() -> bool:
            for p in region.pods(NS, SELECTOR):
                cost = (p["metadata"].get("annotations") or {}).get(COST, "0")
                if cost != str(region.worker_state(p["metadata"]["name"])["active_jobs"]):
                    return False
            return True

        wait_until("the costs equal the workers' jobs", costs_follow_jobs, timeout=120, interval=1)
        # Its writes are counted where its PodMonitor says (the pod runner publishes its metrics port).
        written = wait_until("the controller's writes in Prometheus", lambda: region.query(
            'voxplane_deletion_cost_writes_total{namespace="vox-system"} > 0'), timeout=90, interval=1)
        assert written[0]["metric"]["pod"].startswith("pod-deletion-cost-"), written

        # 4. Every call ends but one, kept on the newest pod that carries one: without the costs the
        #    ReplicaSet would remove the newest pods first.
        created = {p["metadata"]["name"]: p["metadata"]["creationTimestamp"] for p in grown}
        busy = max(set(carriers.values()), key=lambda pod: (created[pod], pod))
        kept = min(i for i, pod in carriers.items() if pod == busy)
        for index in carriers:
            if index != kept:
                calls.end(index)
        calls.step(admin)
        wait_until("the pool down to 2", lambda: (calls.step(admin), len(region.pods(NS, SELECTOR)) == 2)[1],
                   timeout=300, interval=1)
        left = {p["metadata"]["name"] for p in region.pods(NS, SELECTOR)}
        assert busy in left, (busy, left)
        assert calls.calls[kept].state == "answered", calls.calls[kept]
        assert region.worker_state(busy)["active_jobs"] == 1

        # 5. The last call ends: back to min_workers, one idle worker.
        calls.end(kept)
        calls.step(admin)
        wait_until("the pool back to one worker", lambda: len(region.pods(NS, SELECTOR)) == 1, timeout=300, interval=1)
        calls.step(admin)
    assert calls.counts()["dropped"] == 0 and calls.counts()["refused"] == 0, calls.calls
    (last,) = region.pods(NS, SELECTOR)
    assert region.worker_state(last["metadata"]["name"])["active_jobs"] == 0
