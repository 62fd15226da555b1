"""Benchmark: how an agent pool scales on live calls, end to end on the dev cluster with real parts
(tests/support/motion.py): the `local` region applied, its reservations pool run by the pod runner
as real livekit-agents workers registering at the region's gateway, Prometheus scraping what the
PodMonitor says, KEDA's operator and adapter, the controller manager's HPA and ReplicaSet
controllers, calls routed by livekit-server's own dispatch rules and joined by real rtc callers
(voxplane/dev/calls.py). The models are tests/agents' stand-in. The pool is made small for two
cores (`--sessions` per worker, at most `--max-workers`); every other setting is the render's.

1. Ramps (`--ramps`, at least 10): from one idle worker, the calls that take the pool beyond its
   autoscaling target arrive at once (t0); then, each observed by polling every 0.2 s:
   - scrape: Prometheus' sample with the raised gauge (its own timestamp: the scrape time);
   - KEDA: the external metrics API (KEDA's adapter, through the aggregator) answers the raised
     value (KEDA asks Prometheus when asked: this is the adapter's delay, not a polling interval);
   - HPA sync: the HPA's desiredReplicas rises (the controller manager's 15 s sync);
   - placement: the ReplicaSet's new pod is created, bound by the scheduler, started by the pod
     runner (kwok's node stage between);
   - worker start: the process's start to its `/ready` (registered with LiveKit through the gateway);
   - readiness: `/ready` to the pod's Ready (the readiness probe's period);
   - answering: calls placed once the pod is Ready until one lands on the new worker; the time
     from its placement to the agent in the room.
   Each ramp starts at a random point (`--seed`) of the HPA's 15 s sync period, so the HPA stage
   is spread over it as in production rather than phase-locked to the sync that settled the pool.
   The total runs from t0 to the new worker answering. Baseline, same run: an idle worker's answer
   to a call (a call on a pool that needs no scaling).
2. Refused calls during a ramp (`--rate` calls a second up to the pool's full capacity, each
   `--hold` seconds): with the render's margin (the ScaledObject's threshold as rendered) and
   without it (threshold = sessions per worker, as before the margin existed), one run each.

3. Scale-down (`--scaledown-rounds` each way): the pool grown to its maximum by calls on every
   worker, then every call ended but one, kept on the newest worker that carries one (the pod the
   ReplicaSet controller removes first when nothing else tells them apart); when the pool has
   shrunk, was the worker carrying the live call among the removed? With the deletion-cost
   controller as the region runs it, and without it (its Deployment scaled to 0, the costs it
   wrote removed). The pool's scale-down window is set to 20 s for this part (longer than the
   costs' lag); the ramps run with 0 to settle fast.

Prints one line per ramp, then p50/max per stage, the refused counts and the scale-down counts. `make bench` runs it
(`--ramps 10`); heavy: run it alone (it takes the machine's two cores for ~30 min).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.agents.standin import StandIn  # noqa: E402
from tests.support.motion import Motion, motion, only_agents, set_scaling  # noqa: E402
from tests.support.stats import percentile  # noqa: E402

from voxplane.dev.calls import CallerProcess, CallRun, Endpoints, agents_python  # noqa: E402
from voxplane.dev.kubeclient import KubeClient  # noqa: E402
from voxplane.livekit.route import RouteProbe  # noqa: E402

NS, POOL, NUMBER = "vox-t-bellavista", "reservations", "+13125550142"
SELECTOR = "app.kubernetes.io/name=reservations"
#: The HPA controller's tolerance (kube-controller-manager --horizontal-pod-autoscaler-tolerance).
TOLERANCE = 0.1
#: The controller manager's HPA sync period (its default; the dev cluster keeps it).
HPA_SYNC_SECONDS = 15.0
STAGES = ("scrape", "keda", "hpa", "placement", "worker_start", "readiness", "answering")


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions") or [])


@dataclass
class Ramp:
    t0: float
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str, t: Optional[float] = None) -> None:
        self.marks.setdefault(name, time.time() if t is None else t)

    def stages(self) -> dict[str, float]:
        m = self.marks
        order = [("scrape", "t0", "scraped"), ("keda", "scraped", "served"), ("hpa", "served", "desired"),
                 ("placement", "desired", "started"), ("worker_start", "started", "registered"),
                 ("readiness", "registered", "ready"), ("answering", "call_placed", "answered")]
        m = {"t0": self.t0, **m}
        return {name: m[b] - m[a] for name, a, b in order if a in m and b in m}

    @property
    def total(self) -> Optional[float]:
        """t0 to the new worker registered, plus its first call's answer."""
        s = self.stages()
        if "answering" not in s or "registered" not in self.marks:
            return None
        return self.marks["registered"] - self.t0 + s["answering"]


class Bench:
    def __init__(self, m: Motion, work: Path):
        self.m = m
        self.kube = KubeClient(m.kubeconfig)
        lk = m.lk.livekit
        self.endpoints = Endpoints(lk.http_url, lk.url, lk.api_key, lk.api_secret, m.lk.redis.address)
        self.callers = CallerProcess(agents_python(m.root), work / "callers.log")
        self.probe = RouteProbe(self.endpoints.redis).start()
        self.run = self._new_run()

    def close(self) -> None:
        self.callers.close()
        self.probe.close()
        self.kube.close()

    def _new_run(self) -> CallRun:
        return CallRun(self.m.region, self.endpoints, self.probe, self.callers, NUMBER, count=0, duration=3600,
                       first_caller=100 + 1000 * int(time.time() % 1000))

    # -- reading the cluster --------------------------------------------------------------------

    def pods(self) -> list[dict[str, Any]]:
        return self.kube.items(f"/api/v1/namespaces/{NS}/pods", label_selector=SELECTOR)

    def hpa(self) -> dict[str, Any]:
        return self.kube.get(f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/keda-hpa-{POOL}") or {}

    def threshold(self) -> float:
        so = self.kube.get(f"/apis/keda.sh/v1alpha1/namespaces/{NS}/scaledobjects/{POOL}") or {}
        return float(so["spec"]["triggers"][0]["metadata"]["threshold"])

    def served(self) -> float:
        """KEDA's value for the pool, as the HPA controller reads it (through the aggregator)."""
        metric = self.hpa()["spec"]["metrics"][0]["external"]["metric"]
        selector = ",".join(f"{k}={v}" for k, v in metric["selector"]["matchLabels"].items())
        answer = self.kube.request("GET", f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{NS}/{metric['name']}",
                                   query=[("labelSelector", selector)]) or {}
        items = answer.get("items") or []
        return float(items[0]["value"].rstrip("m")) / (1000 if items[0]["value"].endswith("m") else 1) if items else 0.0

    def scraped(self) -> tuple[float, float]:
        """(jobs, sample time) of the pool's gauge in Prometheus."""
        expr = f'sum(lk_agents_active_job_count{{namespace="{NS}",job="{NS}/{POOL}"}})'
        result = self.m.query(f"{expr}")
        stamp = self.m.query(f'max(timestamp(lk_agents_active_job_count{{namespace="{NS}",job="{NS}/{POOL}"}}))')
        if not result or not stamp:
            return 0.0, 0.0
        return float(result[0]["value"][1]), float(stamp[0]["value"][1])

    def worker(self, pod: str) -> Optional[dict[str, Any]]:
        return next((w for w in self.m.workers().values() if w["pod"] == pod), None)

    def worker_get(self, pod: str, path: str) -> Optional[dict[str, Any] | int]:
        w = self.worker(pod)
        if not w or "8081" not in w["ports"]:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{w['ports']['8081']}{path}", timeout=2) as r:
                return json.load(r) if path == "/worker" else int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def jobs(self, pod: str) -> int:
        state = self.worker_get(pod, "/worker")
        return int(state["active_jobs"]) if isinstance(state, dict) else 0

    # -- steady state ---------------------------------------------------------------------------

    def settle(self, timeout: float = 600) -> str:
        """Until the pool is one Ready, idle pod and nothing else (the HPA back at 1): its name."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.run._admin() as admin:
                self.run.step(admin, check_jobs=False)
            pods = self.pods()
            if len(pods) == 1 and ready(pods[0]) and not pods[0]["metadata"].get("deletionTimestamp") \
                    and self.hpa().get("status", {}).get("desiredReplicas") == 1:
                name = str(pods[0]["metadata"]["name"])
                if self.jobs(name) == 0:
                    return name
            time.sleep(1)
        raise SystemExit("the pool did not settle at one idle worker")

    def hang_up_all(self) -> None:
        for call in self.run.calls:
            if not call.hung_up:
                self.run.end(call.index)
        with self.run._admin() as admin:
            self.run.step(admin, check_jobs=False)

    def place(self) -> Any:
        self.run.count += 1
        return self.run.place(len(self.run.calls))

    def wait_answered(self, call: Any, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        with self.run._admin() as admin:
            while time.monotonic() < deadline:
                self.run.step(admin, check_jobs=True)
                if call.state != "waiting":
                    return call.state == "answered"
                time.sleep(0.05)
        return False

    # -- 1. one ramp ----------------------------------------------------------------------------

    def ramp(self, phase: float) -> Ramp:
        """One ramp, `phase` seconds (drawn in [0, HPA_SYNC_SECONDS)) after the pool settled: the
        settling ends right after an HPA sync (the one that brought it back to 1), so without it
        every ramp would meet the next sync at the same point of its period."""
        first = self.settle()
        time.sleep(phase)
        threshold = self.threshold()
        # The fewest calls whose load the HPA acts on with one worker (beyond its tolerance).
        k = next(n for n in range(1, 100) if n / threshold > 1 + TOLERANCE)
        r = Ramp(time.time())
        for _ in range(k):
            self.place()
        new: Optional[str] = None
        deadline = time.monotonic() + 600
        admin = self.run._admin()
        try:
            while time.monotonic() < deadline:
                self.run.step(admin, check_jobs=False)
                now = time.time()
                if "scraped" not in r.marks:
                    jobs, stamp = self.scraped()
                    if jobs >= k:
                        r.mark("scraped", stamp)
                if "scraped" in r.marks and "served" not in r.marks and self.served() >= k:
                    r.mark("served", now)
                if "desired" not in r.marks and (self.hpa().get("status") or {}).get("desiredReplicas", 1) >= 2:
                    r.mark("desired", now)
                if new is None:
                    others = [p for p in self.pods() if p["metadata"]["name"] != first]
                    new = str(others[0]["metadata"]["name"]) if others else None
                if new is not None:
                    w = self.worker(new)
                    if w and w.get("started") and "started" not in r.marks:
                        r.mark("started", float(w["started"]))
                    if "started" in r.marks and "registered" not in r.marks and self.worker_get(new, "/ready") == 200:
                        r.mark("registered", now)
                    if "ready" not in r.marks and any(ready(p) for p in self.pods() if p["metadata"]["name"] == new):
                        r.mark("ready", now)
                if "ready" in r.marks and new is not None:
                    before = self.jobs(new)
                    call = self.place()
                    placed = time.time()
                    answered = self.wait_answered(call)
                    if answered and self.jobs(new) > before:
                        r.mark("call_placed", placed)
                        r.mark("answered", placed + (call.answered - call.placed))
                        break
                    continue
                time.sleep(0.2)
        finally:
            admin.close()
            self.hang_up_all()
        return r

    def answer_baseline(self) -> float:
        """An idle worker's answer to a call: the same path with no scaling in it."""
        self.settle()
        call = self.place()
        self.wait_answered(call)
        latency = (call.answered - call.placed) if call.answered else math.nan
        self.hang_up_all()
        return latency

    # -- 2. refused during a ramp ---------------------------------------------------------------

    def refused_at_rate(self, rate: float, hold: float, calls: int) -> dict[str, int]:
        self.settle()
        self.run = self._new_run()
        self.run.count, self.run.duration, self.run.rate = calls, hold, rate
        self.run.run(lambda _s, _c: None)
        counts = self.run.counts()
        self.run = self._new_run()
        return counts

    # -- 3. scale-down: which worker goes ------------------------------------------------------------

    def set_window(self, seconds: int) -> None:
        self.kube.request("PATCH", f"/apis/keda.sh/v1alpha1/namespaces/{NS}/scaledobjects/{POOL}", body=[
            {"op": "replace", "value": seconds,
             "path": "/spec/advanced/horizontalPodAutoscalerConfig/behavior/scaleDown/stabilizationWindowSeconds"}],
            content_type="application/json-patch+json")

    def set_controller(self, on: bool) -> None:
        """The deletion-cost controller running (1 replica, as rendered) or not (0, its costs removed)."""
        self.m.kubectl("scale", "deployment", "pod-deletion-cost", "-n", "vox-system", f"--replicas={1 if on else 0}")
        if not on:
            self.m.kubectl("annotate", "pods", "-n", NS, "-l", SELECTOR, "controller.kubernetes.io/pod-deletion-cost-")

    def carriers(self) -> dict[int, str]:
        """Each live call's worker pod (livekit-server's record of its job)."""
        by_id = {}
        for p in self.pods():
            state = self.worker_get(p["metadata"]["name"], "/worker")
            if isinstance(state, dict):
                by_id[state["worker_id"]] = p["metadata"]["name"]
        out = {}
        with self.run._admin() as admin:
            for call in self.run.calls:
                if call.hung_up or call.room is None or call.state != "answered":
                    continue
                room = call.room
                dispatches = admin.call("ListDispatch", lambda lk: lk.agent_dispatch.list_dispatch(room))
                ids = [j.state.worker_id for d in dispatches for j in d.state.jobs if j.state.worker_id in by_id]
                if ids:
                    out[call.index] = by_id[ids[0]]
        return out

    def scale_down_round(self, max_workers: int, sessions: int) -> Optional[bool]:
        """One round (see 3. above): True when the worker carrying the live call was removed, None
        when the round could not be set up (the pool did not grow)."""
        self.settle()
        self.run = self._new_run()
        try:
            for _ in range(sessions):
                self.place()
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and len([p for p in self.pods() if ready(p)]) < max_workers:
                with self.run._admin() as admin:
                    self.run.step(admin, check_jobs=False)
                time.sleep(1)
            for _ in range(sessions):
                call = self.place()
                self.wait_answered(call)
            carriers = self.carriers()
            pods = {p["metadata"]["name"]: p["metadata"]["creationTimestamp"] for p in self.pods()}
            if len(pods) < max_workers or not carriers:
                return None
            # Prometheus holds the calls (what the controller, when it runs, reads), then a reading more.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and self.scraped()[0] < len(carriers):
                time.sleep(1)
            time.sleep(16)
            busy = max(set(carriers.values()), key=lambda pod: (pods[pod], pod))
            kept = min(i for i, pod in carriers.items() if pod == busy)
            for index in carriers:
                if index != kept:
                    self.run.end(index)
            deadline = time.monotonic() + 400
            while time.monotonic() < deadline:
                with self.run._admin() as admin:
                    self.run.step(admin, check_jobs=False)
                live = [p for p in self.pods() if not p["metadata"].get("deletionTimestamp")]
                if len(live) < max_workers:
                    return busy not in {p["metadata"]["name"] for p in live}
                time.sleep(1)
            return None
        finally:
            self.hang_up_all()

    def set_threshold(self, value: float) -> None:
        self.kube.request("PATCH", f"/apis/keda.sh/v1alpha1/namespaces/{NS}/scaledobjects/{POOL}",
                          body=[{"op": "replace", "path": "/spec/triggers/0/metadata/threshold", "value": f"{value:g}"}],
                          content_type="application/json-patch+json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ramps", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=2, help="sessions_per_worker of the bench's pool")
    parser.add_argument("--max-workers", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0.2, help="calls a second in the refused-calls runs")
    parser.add_argument("--hold", type=float, default=90, help="seconds each call of the refused-calls runs lasts")
    parser.add_argument("--scaledown-rounds", type=int, default=3, help="scale-down rounds with and without the controller")
    parser.add_argument("--parts", default="ramps,refused,scaledown", help="comma-separated: ramps, refused, scaledown")
    parser.add_argument("--seed", type=int, default=1, help="seed of the ramps' start phases")
    parser.add_argument("--scaling", default="target_utilization=45",
                        help="extra scaling fields for the pool (default: the target `validate` asks of 2-session workers)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    extra = dict(kv.split("=", 1) for kv in args.scaling.split(",") if kv)

    def edit(root: Path) -> None:
        only_agents(root, {POOL})
        set_scaling(root, POOL, min_workers=1, max_workers=args.max_workers, sessions_per_worker=args.sessions,
                    scale_down_window=0, **extra)

    work = Path(tempfile.mkdtemp(prefix="voxplane-bench-autoscale-"))
    log(f"bench: state in {work}")
    with StandIn() as model:
        address = f"127.0.0.1:{model.port}"
        with motion(work, edit=edit, inference={"chat": address, "kokoro": address, "whisper": address}) as m:
            bench = Bench(m, work)
            try:
                rendered = bench.threshold()
                log(f"bench: pool of {args.sessions} sessions a worker, 1..{args.max_workers} workers, "
                    f"ScaledObject threshold {rendered:g} a worker (as rendered)")
                if "ramps" in parts:
                    baseline = bench.answer_baseline()
                    ramps = []
                    phases = random.Random(args.seed)
                    for i in range(args.ramps):
                        r = bench.ramp(phases.uniform(0, HPA_SYNC_SECONDS))
                        ramps.append(r)
                        s = r.stages()
                        log(f"ramp {i + 1}: total {r.total or math.nan:.1f}s  " +
                            "  ".join(f"{k} {v:.1f}" for k, v in s.items()))
                    print(f"\nramps: {len(ramps)}; baseline (an idle worker answers): {baseline:.2f}s")
                    print(f"{'stage':<14}{'p50 s':>8}{'max s':>8}")
                    for stage in STAGES:
                        values = [r.stages()[stage] for r in ramps if stage in r.stages()]
                        print(f"{stage:<14}{percentile(values, 50):>8.1f}{max(values, default=math.nan):>8.1f}")
                    totals = [r.total for r in ramps if r.total is not None]
                    print(f"{'total':<14}{percentile(totals, 50):>8.1f}{max(totals, default=math.nan):>8.1f}"
                          f"   ({len(totals)}/{len(ramps)} ramps complete; "
                          f"p50 {percentile(totals, 50) / baseline:.0f}x the baseline)")
                if "refused" in parts:
                    capacity = args.sessions * args.max_workers
                    results = {}
                    for label, threshold in (("with the margin", rendered), ("without", float(args.sessions))):
                        bench.set_threshold(threshold)
                        results[label] = bench.refused_at_rate(args.rate, args.hold, capacity)
                        log(f"refused {label}: {results[label]}")
                    bench.set_threshold(rendered)
                    print(f"\ncalls arriving at {args.rate:g}/s up to the pool's capacity ({capacity}), "
                          f"each {args.hold:g}s:")
                    for label, counts in results.items():
                        print(f"  {label:<16} threshold {rendered if label.startswith('with ') else args.sessions:g}: "
                              f"{counts['refused']} refused, {counts['answered']} answered of {counts['placed']}")
                if "scaledown" in parts:
                    bench.set_window(20)
                    removed: dict[str, list[Optional[bool]]] = {}
                    for label, on in (("with the deletion-cost controller", True), ("without it", False)):
                        bench.set_controller(on)
                        removed[label] = []
                        for i in range(args.scaledown_rounds):
                            removed[label].append(bench.scale_down_round(args.max_workers, args.sessions))
                            log(f"scale-down {label}, round {i + 1}: busy worker removed: {removed[label][-1]}")
                    bench.set_controller(True)
                    bench.set_window(0)
                    print(f"\nscale-down from {args.max_workers} workers with one live call on the newest busy worker:")
                    for label, rounds in removed.items():
                        done = [r for r in rounds if r is not None]
                        print(f"  {label:<36} the live call's worker removed in {sum(done)} of {len(done)} rounds"
                              f" ({len(rounds) - len(done)} rounds not set up)")
            finally:
                bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
