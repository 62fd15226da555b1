"""One reading of a region (`RegionStatus`): rows per agent pool, model and platform workload,
the rooms nobody of the region owns, the LiveKit objects, the drift summary; and its JSON shape
(documented in `voxplane/status/__init__.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ..manifest.model import Agent, Region
from .kube import Autoscaler, Workload
from .rooms import Activity, AgentKey, LiveKitObject, LiveRoom

#: Drift targets, in the order the summary names them.
DRIFT_TARGETS = ("kubernetes", "livekit")


@dataclass
class DriftSummary:
    """Findings per target (changed fields + missing + unexpected objects, as `voxplane drift`
    counts them); None where the target was not compared, with the reason in `errors`."""

    kubernetes: Optional[int] = None
    livekit: Optional[int] = None
    errors: dict[str, str] = field(default_factory=dict)

    def line(self, region: str) -> str:
        parts, look = [], False
        for target in DRIFT_TARGETS:
            n = getattr(self, target)
            parts.append(f"{n} {target}" if n is not None else f"{target} not compared")
            look = look or n is None or n > 0
        return "drift: " + ", ".join(parts) + (f" (voxplane drift {region} for details)" if look else "")

    def as_dict(self, region: str) -> dict[str, Any]:
        return {"kubernetes": self.kubernetes, "livekit": self.livekit, "errors": dict(self.errors),
                "summary": self.line(region)}


@dataclass
class AgentStatus:
    tenant: str
    agent: str
    livekit_agent: str
    namespace: str
    declared: bool
    workload: Optional[Workload] = None
    activity: Optional[Activity] = None
    rooms: list[str] = field(default_factory=list)

    @property
    def key(self) -> AgentKey:
        return AgentKey(self.tenant, self.agent)

    def as_dict(self) -> dict[str, Any]:
        activity = None
        if self.activity is not None:
            activity = {**self.activity.as_dict(), "room_names": sorted(self.rooms)}
        return {"tenant": self.tenant, "agent": self.agent, "livekit_agent": self.livekit_agent,
                "namespace": self.namespace, "declared": self.declared,
                "workload": self.workload.as_dict() if self.workload else None,
                "autoscaler": autoscaler_dict(self.workload.autoscaler) if self.workload else None,
                "activity": activity}


@dataclass
class ModelStatus:
    model: str
    kind: str
    namespace: str
    declared: bool
    workload: Optional[Workload] = None

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "kind": self.kind, "namespace": self.namespace, "declared": self.declared,
                "workload": self.workload.as_dict() if self.workload else None,
                "autoscaler": autoscaler_dict(self.workload.autoscaler) if self.workload else None}


def autoscaler_dict(a: Autoscaler) -> Optional[dict[str, Any]]:
    if a.state == "absent":
        return None
    return {"state": a.state, "kind": a.kind, "name": a.name, "min": a.min, "max": a.max, "target": a.target,
            "current": a.current, "hpa": a.hpa, "reason": a.reason}


@dataclass
class RegionStatus:
    region: str
    read_at: str
    kube_server: Optional[str] = None
    kube_context: Optional[str] = None
    kube_error: Optional[str] = None
    livekit_url: Optional[str] = None
    livekit_error: Optional[str] = None
    agents: list[AgentStatus] = field(default_factory=list)
    models: list[ModelStatus] = field(default_factory=list)
    platform: list[Workload] = field(default_factory=list)
    rooms: Optional[list[LiveRoom]] = None
    livekit_objects: list[LiveKitObject] = field(default_factory=list)
    drift: DriftSummary = field(default_factory=DriftSummary)

    @property
    def other_rooms(self) -> list[LiveRoom]:
        return [r for r in self.rooms or [] if not r.agents]

    @property
    def errors(self) -> list[str]:
        """One line per part that could not be read (each makes the exit code 1)."""
        out = []
        if self.kube_error:
            out.append(f"kubernetes: {self.kube_error}")
        if self.livekit_error:
            out.append(f"livekit: {self.livekit_error}")
        for target in DRIFT_TARGETS:
            if target in self.drift.errors and not (target == "kubernetes" and self.kube_error) \
                    and not (target == "livekit" and self.livekit_error):
                out.append(f"drift ({target}): {self.drift.errors[target]}")
        return out

    def totals(self) -> Optional[dict[str, int]]:
        if self.rooms is None:
            return None
        return {"rooms": len(self.rooms), "participants": sum(r.participants for r in self.rooms),
                "sip_calls": sum(r.sip_calls for r in self.rooms)}

    def as_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "read_at": self.read_at,
            "kubernetes": {"server": self.kube_server, "context": self.kube_context, "error": self.kube_error},
            "livekit": {"url": self.livekit_url, "error": self.livekit_error, **(self.totals() or
                        {"rooms": None, "participants": None, "sip_calls": None})},
            "agents": [a.as_dict() for a in self.agents],
            "models": [m.as_dict() for m in self.models],
            "platform": [{**w.as_dict(), "autoscaler": autoscaler_dict(w.autoscaler)} for w in self.platform],
            "other_rooms": [r.as_dict() for r in self.other_rooms],
            "livekit_objects": [o.as_dict() for o in self.livekit_objects],
            "drift": self.drift.as_dict(self.region),
            "errors": self.errors,
        }


def assemble(status: RegionStatus, region: Region, agents: Sequence[Agent], workloads: Optional[list[Workload]],
             rooms: Optional[list[LiveRoom]]) -> RegionStatus:
    """Fill the rows: declared agents and models joined with the cluster's workloads (by voxplane's
    labels) and the rooms attributed to each agent; whatever else runs is `platform`."""
    from ..desired.common import LABEL_AGENT, LABEL_TENANT, inference_namespace, tenant_namespace

    pool: dict[AgentKey, Workload] = {}
    served: dict[str, Workload] = {}
    rest: list[Workload] = []
    for w in workloads or []:
        if w.component == "agent" and w.labels.get(LABEL_AGENT) and w.labels.get(LABEL_TENANT):
            pool.setdefault(AgentKey(w.labels[LABEL_TENANT], w.labels[LABEL_AGENT]), w)
        elif w.component == "inference":
            served.setdefault(w.labels.get("app.kubernetes.io/instance", w.name), w)
        else:
            rest.append(w)
    activity: dict[AgentKey, tuple[Activity, list[str]]] = {}
    for room in rooms or []:
        for key in room.agents:
            act, names = activity.setdefault(key, (Activity(), []))
            act.add(room)
            names.append(room.name)

    rows: dict[AgentKey, AgentStatus] = {}
    for a in agents:
        key = AgentKey(a.tenant, a.name)
        rows[key] = AgentStatus(a.tenant, a.name, a.scoped_name, tenant_namespace(region, a.tenant), True)
    for key, w in pool.items():
        if key not in rows:
            rows[key] = AgentStatus(key.tenant, key.agent, f"{key.tenant}-{key.agent}", w.namespace, False)
    for key, row in rows.items():
        row.workload = pool.get(key)
        if rooms is not None:
            act, names = activity.get(key, (Activity(), []))
            row.activity, row.rooms = act, names
    status.agents = sorted(rows.values(), key=lambda r: (r.tenant, r.agent))

    models = {name: ModelStatus(name, m.kind, inference_namespace(region), True) for name, m in region.models.items()}
    for name, w in served.items():
        if name not in models:
            models[name] = ModelStatus(name, "", w.namespace, False)  # not in the manifests: kind unknown
    for name, model_row in models.items():
        model_row.workload = served.get(name)
    status.models = sorted(models.values(), key=lambda m: m.model)
    status.platform = rest
    status.rooms = rooms
    return status
