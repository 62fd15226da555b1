"""Whether the dev cluster's workloads are settled: every Deployment rolled out with all its
replicas available, every StatefulSet with all its replicas ready.

A dev cluster restarted with its data (`voxplane dev cluster up` after `down`, or from another
clone) brings its pods back, but an agent pod is Ready only once its worker has registered again.
A `pulumi up --refresh` that reads a Deployment before then records it as not initialised, and
the engine reports an update that only waits for it (`~ updated`, with identical inputs). `make
demo` waits here first, so that a second run reports what changed, not what was starting.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from .kubeclient import KubeClient, KubeError

__all__ = ["unsettled", "wait_settled", "SettleError"]

#: Seconds between two progress lines while waiting.
PROGRESS_EVERY = 10.0


class SettleError(RuntimeError):
    """The workloads did not settle in time (the message lists them), or the API server failed."""


def _deployment_lag(d: dict[str, Any]) -> str | None:
    """Why a Deployment is not settled (None when it is): the rollout's own bookkeeping, as
    `kubectl rollout status` reads it."""
    spec, status = d.get("spec") or {}, d.get("status") or {}
    want = int(spec.get("replicas", 1))
    if int(status.get("observedGeneration", 0)) < int(d["metadata"].get("generation", 0)):
        return "its controller has not seen the latest spec"
    updated, available, total = (int(status.get(k, 0)) for k in ("updatedReplicas", "availableReplicas", "replicas"))
    if updated < want:
        return f"{updated}/{want} updated"
    if total > updated:
        return f"{total - updated} old replicas still running"
    if available < want:
        return f"{available}/{want} available"
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if conditions.get("Available") != "True":
        return "its Available condition is not True"
    return None


def _statefulset_lag(s: dict[str, Any]) -> str | None:
    want = int((s.get("spec") or {}).get("replicas", 1))
    ready = int((s.get("status") or {}).get("readyReplicas", 0))
    return None if ready >= want else f"{ready}/{want} ready"


def unsettled(client: KubeClient) -> dict[str, str]:
    """`{"Kind namespace/name": why}` for every workload not settled yet."""
    out: dict[str, str] = {}
    for kind, path, lag in (("Deployment", "/apis/apps/v1/deployments", _deployment_lag),
                            ("StatefulSet", "/apis/apps/v1/statefulsets", _statefulset_lag)):
        for obj in client.items(path):
            why = lag(obj)
            if why is not None:
                out[f"{kind} {obj['metadata']['namespace']}/{obj['metadata']['name']}"] = why
    return out


def wait_settled(kubeconfig: Path, progress: Callable[[str], None], timeout: float,
                 interval: float = 1.0) -> int:
    """Until `unsettled` is empty: how many workloads were waited for. SettleError after
    `timeout` seconds, naming what still is not settled and why."""
    client = KubeClient(kubeconfig)
    try:
        deadline = time.monotonic() + timeout
        waited: set[str] = set()
        next_line = 0.0
        while True:
            try:
                pending = unsettled(client)
            except KubeError as exc:
                raise SettleError(f"the dev cluster's API server: {exc}") from None
            waited |= set(pending)
            if not pending:
                return len(waited)
            now = time.monotonic()
            if now >= deadline:
                listed = "; ".join(f"{name}: {why}" for name, why in sorted(pending.items()))
                raise SettleError(f"not settled after {timeout:.0f}s: {listed}")
            if now >= next_line:
                first = sorted(pending)[0]
                progress(f"waiting for {len(pending)} workload(s) to settle, e.g. {first}: {pending[first]}")
                next_line = now + PROGRESS_EVERY
            time.sleep(interval)
    finally:
        client.close()
