"""The loop: read the active jobs from Prometheus, list the agent pods, write the costs that
differ within the write budget; serve `/metrics`, `/healthz` and `/readyz`."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import requests
import token_bucket
from kubernetes import client as kube
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .config import Config
from .decide import ANNOTATION, PodState, Write, writes

log = logging.getLogger("voxplane.deletion_cost")

#: Readiness and liveness allow this many intervals without a round.
STALE_ROUNDS = 3


class Metrics:
    """The controller's own metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.writes = Counter("voxplane_deletion_cost_writes", "Pod deletion costs written.", registry=r)
        self.skipped = Counter("voxplane_deletion_cost_skipped_writes",
                               "Cost changes left for a later round: the write budget was spent.", registry=r)
        self.errors = Counter("voxplane_deletion_cost_errors", "Failed calls, by stage.", ["stage"], registry=r)
        self.rounds = Counter("voxplane_deletion_cost_rounds", "Rounds that read the jobs and the pods.", registry=r)
        self.pods = Gauge("voxplane_deletion_cost_pods", "Agent pods seen in the last round.", registry=r)
        self.last_round = Gauge("voxplane_deletion_cost_last_round_timestamp_seconds",
                                "Unix time of the last round that read the jobs and the pods.", registry=r)
        for stage in ("prometheus", "list", "patch"):
            self.errors.labels(stage)


@dataclass
class Round:
    """What one round did."""

    pods: int = 0
    written: int = 0
    skipped: int = 0
    failed: int = 0
    ok: bool = False


class Controller:
    def __init__(self, config: Config, api: kube.CoreV1Api, *, http: Optional[requests.Session] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.api = api
        self.http = http or requests.Session()
        self.metrics = Metrics()
        # The write budget: `burst` writes, refilled at writes_per_second (starts full).
        self.budget = token_bucket.Limiter(config.writes_per_second, config.burst, token_bucket.MemoryStorage())
        self._clock = clock
        self.last_ok: Optional[float] = None
        self.last_round: Optional[float] = None

    # --- reading -----------------------------------------------------------------------------

    def active_jobs(self) -> dict[tuple[str, str], float]:
        """(namespace, pod) -> active jobs, from Prometheus' instant query."""
        response = self.http.get(f"{self.config.prometheus_url}/api/v1/query", params={"query": self.config.query},
                                 timeout=self.config.request_timeout_seconds)
        response.raise_for_status()
        body: Any = response.json()
        if body.get("status") != "success" or body.get("data", {}).get("resultType") != "vector":
            raise ValueError(f"Prometheus answered {str(body)[:200]}")
        out: dict[tuple[str, str], float] = {}
        for sample in body["data"]["result"]:
            labels, (_, text) = sample.get("metric", {}), sample["value"]
            value = float(text)
            if "namespace" in labels and "pod" in labels and value == value:  # NaN: no reading
                out[(labels["namespace"], labels["pod"])] = value
        return out

    def agent_pods(self) -> list[PodState]:
        """The pools' pods, one list per pool, served from the API server's watch cache."""
        out = []
        for pool in self.config.pools:
            listed = self.api.list_namespaced_pod(pool.namespace, label_selector=pool.label_selector,
                                                  resource_version="0",
                                                  _request_timeout=self.config.request_timeout_seconds)
            for pod in listed.items:
                meta = pod.metadata
                if meta is None or not meta.name:
                    continue
                out.append(PodState(
                    pool.namespace, meta.name, (meta.annotations or {}).get(ANNOTATION),
                    running=meta.deletion_timestamp is None and pod.status is not None and pod.status.phase == "Running"))
        return out

    # --- writing -----------------------------------------------------------------------------

    def write(self, w: Write) -> bool:
        """Patch one pod's annotation (a JSON merge patch of that key alone). False: it failed."""
        try:
            self.api.patch_namespaced_pod(w.name, w.namespace, {"metadata": {"annotations": {ANNOTATION: str(w.cost)}}},
                                          _content_type="application/merge-patch+json",
                                          _request_timeout=self.config.request_timeout_seconds)
        except ApiException as e:
            if e.status == 404:
                return True  # deleted since it was listed: nothing left to rank
            self.metrics.errors.labels("patch").inc()
            log.warning("deletion-cost: patch %s/%s failed: %s %s", w.namespace, w.name, e.status, e.reason)
            return False
        self.metrics.writes.inc()
        log.info("deletion-cost: %s/%s %s -> %d", w.namespace, w.name, w.was if w.was is not None else "(none)", w.cost)
        return True

    def run_once(self) -> Round:
        """One round. A failed read writes nothing (a cost is never lowered on missing data)."""
        result = Round()
        self.last_round = self._clock()
        try:
            jobs = self.active_jobs()
        except (requests.RequestException, ValueError, KeyError, TypeError) as e:
            self.metrics.errors.labels("prometheus").inc()
            log.warning("deletion-cost: cannot read active jobs from Prometheus: %s", e)
            return result
        try:
            pods = self.agent_pods()
        except (ApiException, OSError) as e:
            self.metrics.errors.labels("list").inc()
            log.warning("deletion-cost: cannot list agent pods: %s", e)
            return result
        result.pods = len(pods)
        for w in writes(pods, jobs):
            if not self.budget.consume(b"writes"):
                result.skipped += 1
                continue
            if self.write(w):
                result.written += 1
            else:
                result.failed += 1
        self.metrics.skipped.inc(result.skipped)
        self.metrics.rounds.inc()
        self.metrics.pods.set(result.pods)
        self.metrics.last_round.set(time.time())
        self.last_ok = self._clock()
        result.ok = True
        if result.skipped:
            log.info("deletion-cost: write budget spent, %d changes left for the next round", result.skipped)
        return result

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = self._clock()
            self.run_once()
            stop.wait(max(0.0, self.config.interval_seconds - (self._clock() - started)))

    # --- health ------------------------------------------------------------------------------

    def _fresh(self, at: Optional[float]) -> bool:
        limit = STALE_ROUNDS * self.config.interval_seconds + 2 * self.config.request_timeout_seconds
        return at is not None and self._clock() - at <= limit

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """WSGI: `/metrics`; `/healthz` (the loop turns); `/readyz` (a recent round read both sources)."""
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [generate_latest(self.metrics.registry)]
        if path in ("/healthz", "/readyz"):
            if path == "/healthz":
                # Before the first round the loop is starting: alive, not yet ready.
                ok = self.last_round is None or self._fresh(self.last_round)
            else:
                ok = self._fresh(self.last_ok)
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ok\n" if ok else b"stale\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass


def serve(controller: Controller, host: str = "0.0.0.0") -> WSGIServer:
    """The metrics and health server, in a daemon thread."""
    server = make_server(host, controller.config.metrics_port, controller.app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
