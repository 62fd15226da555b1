"""What the GPU preflight found on each model pod (voxplane/gpu_preflight), as the cluster reports
it: the init container's state, and the verdict it wrote as its termination message (JSON: `ok`,
`line`, `driver`, `cuda`, `gpus`). A pod whose preflight has not finished says so; one that exited
without a readable verdict (the local control plane's kwok marks init containers done without
running them) is `no-report`, never `ok`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from ..desired.inference import PREFLIGHT_CONTAINER

#: Order of the states in a model's cell: what needs attention first.
STATES = ("failed", "waiting", "running", "not-run", "no-report", "ok")


@dataclass
class PreflightResult:
    pod: str
    node: str
    #: ok | failed | running | waiting | not-run | no-report
    state: str
    #: The preflight's own line, or what the cluster says about the container.
    line: str = ""
    driver: Optional[str] = None
    cuda: Optional[str] = None
    gpus: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"pod": self.pod, "node": self.node, "state": self.state, "line": self.line,
                "driver": self.driver, "cuda": self.cuda, "gpus": list(self.gpus)}


def preflight_of(pod: Mapping[str, Any]) -> Optional[PreflightResult]:
    """The preflight of `pod`, or None when the pod runs none."""
    spec = pod.get("spec") or {}
    if not any(c.get("name") == PREFLIGHT_CONTAINER for c in spec.get("initContainers") or []):
        return None
    name = str((pod.get("metadata") or {}).get("name", ""))
    node = str(spec.get("nodeName") or "(pending)")
    statuses = [s for s in (pod.get("status") or {}).get("initContainerStatuses") or [] if s.get("name") == PREFLIGHT_CONTAINER]
    if not statuses:
        return PreflightResult(name, node, "not-run", "not started")
    status = statuses[0]
    state = status.get("state") or {}
    if "terminated" in state:
        return _terminated(name, node, state["terminated"])
    if "running" in state:
        return PreflightResult(name, node, "running", "checking")
    waiting = state.get("waiting") or {}
    last = (status.get("lastState") or {}).get("terminated")
    if last:  # e.g. CrashLoopBackOff: the last run's verdict is the news
        return _terminated(name, node, last)
    return PreflightResult(name, node, "waiting", str(waiting.get("reason") or "waiting"))


def _terminated(pod: str, node: str, terminated: Mapping[str, Any]) -> PreflightResult:
    code = terminated.get("exitCode")
    message = str(terminated.get("message") or "").strip()
    try:
        body = json.loads(message) if message else None
    except ValueError:
        body = None
    if isinstance(body, dict) and "line" in body:
        ok = bool(body.get("ok")) and code == 0
        return PreflightResult(pod, node, "ok" if ok else "failed", str(body["line"]), body.get("driver"), body.get("cuda"),
                               list(body.get("gpus") or []))
    if code == 0:
        return PreflightResult(pod, node, "no-report", "exited 0 without a report")
    # No verdict: the log's tail (FallbackToLogsOnError), or the container's reason.
    tail = message.splitlines()[-1] if message else str(terminated.get("reason") or "")
    return PreflightResult(pod, node, "failed", f"exit {code}: {tail}".rstrip(": "))


def cell(results: Sequence[PreflightResult]) -> str:
    """`2 ok`, `1 failed, 1 ok`, `-` for none."""
    if not results:
        return "-"
    counts = {s: sum(1 for r in results if r.state == s) for s in STATES}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n)


def notes(model: str, results: Sequence[PreflightResult]) -> list[str]:
    """One line per distinct verdict of the model's pods: what NVML found, or what failed."""
    out = []
    lines: dict[str, list[str]] = {}
    for r in results:
        if r.state in ("ok", "failed"):
            lines.setdefault(r.line, []).append(r.pod)
    for line, pods in lines.items():
        where = pods[0] if len(pods) == 1 else f"{len(pods)} pods"
        out.append(f"gpu check {model} ({where}): {line}")
    return out
