"""The Kubernetes half of `voxplane status`: each workload's desired/ready replicas and nodes, and
what its autoscaler is doing now.

Five list calls whatever the size of the region (raw JSON through `kubedrift.live.LiveReader`):
Deployments, StatefulSets and Pods with voxplane's labels, ScaledObjects with voxplane's labels,
and every HorizontalPodAutoscaler (KEDA's carry no label of ours that can be relied on).

The autoscaler's current target is only ever what the cluster says, never a number worked out
here. KEDA reconciles a ScaledObject into an HPA named `status.hpaName` (`keda-hpa-<name>`) and
the HPA controller writes `status.desiredReplicas` (the target) and `status.currentReplicas`.
Without a KEDA operator (the local control plane has the CRD, no operator) a ScaledObject has no
status and no HPA exists: that is reported as "no autoscaler running", with no target.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from . import selector

#: Annotations that pause a ScaledObject (KEDA 2.7+): at a count, or where it is.
PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas"
PAUSED = "autoscaling.keda.sh/paused"

#: `Autoscaler.state` values, in the words the text output uses for the target cell.
STATES = ("absent", "not-running", "paused", "not-ready", "no-hpa", "idle", "fallback", "not-scaling", "running")


@dataclass
class Autoscaler:
    """What scales one workload: a ScaledObject and the HPA KEDA made from it.

    `target` is the replica count the autoscaler wants now (the HPA's `desiredReplicas`; KEDA's
    paused count; 0 when KEDA holds an inactive min-0 workload at zero), `current` the HPA's
    `currentReplicas`; both None when the cluster does not say (no autoscaler running)."""

    state: str
    kind: str = "ScaledObject"
    name: str = ""
    min: Optional[int] = None
    max: Optional[int] = None
    target: Optional[int] = None
    current: Optional[int] = None
    hpa: Optional[str] = None
    reason: str = ""

    @property
    def bounds(self) -> str:
        return f"KEDA {self.min if self.min is not None else '?'}..{self.max if self.max is not None else '?'}"

    def cell(self) -> str:
        """The target column of the text output."""
        if self.state == "absent":
            return "-"
        if self.state == "not-running":
            return "no autoscaler running"
        if self.state == "paused":
            return f"paused at {self.target}" if self.target is not None else "paused"
        if self.state == "not-ready":
            return "autoscaler not ready"
        if self.state == "no-hpa":
            return "no HPA"
        if self.target is None:
            return "target unknown"
        now = f", now {self.current}" if self.current is not None and self.current != self.target else ""
        extra = {"idle": " (idle)", "fallback": " (fallback)", "not-scaling": " (not scaling)"}.get(self.state, "")
        return f"target {self.target}{now}{extra}"


ABSENT = Autoscaler("absent", kind="", reason="no ScaledObject targets this workload")


@dataclass
class Workload:
    namespace: str
    kind: str
    name: str
    component: str
    desired: int
    ready: int
    labels: dict[str, str] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)
    autoscaler: Autoscaler = field(default_factory=lambda: ABSENT)

    @property
    def ref(self) -> str:
        return f"{self.kind.lower()}/{self.name}"

    def as_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "kind": self.kind, "name": self.name, "component": self.component,
                "desired": self.desired, "ready": self.ready, "nodes": list(self.nodes)}


def _int(value: Any) -> Optional[int]:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("type")): c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type")}


def _said(cond: Mapping[str, Any]) -> str:
    parts = [str(cond.get(k)) for k in ("reason", "message") if cond.get(k)]
    return ": ".join(parts) if parts else f"{cond.get('type')}={cond.get('status')}"


def hpa_name(scaled_object: Mapping[str, Any]) -> str:
    """The HPA KEDA keeps for a ScaledObject: `status.hpaName`, else KEDA's default name."""
    status = scaled_object.get("status") or {}
    return str(status.get("hpaName") or f"keda-hpa-{scaled_object['metadata']['name']}")


def autoscaler_state(scaled_object: Mapping[str, Any], hpa: Optional[Mapping[str, Any]]) -> Autoscaler:
    """What the cluster says about one ScaledObject and its HPA (None: no such HPA). Pure."""
    meta = scaled_object.get("metadata") or {}
    spec = scaled_object.get("spec") or {}
    name = str(meta.get("name", ""))
    where = f"{meta.get('namespace', '')}/{name}"
    # KEDA's defaults when the fields are unset: 0 and 100.
    lo = _int(spec.get("minReplicaCount"))
    hi = _int(spec.get("maxReplicaCount"))
    lo = 0 if lo is None else lo
    hi = 100 if hi is None else hi
    hname = hpa_name(scaled_object)
    out = Autoscaler("running", name=name, min=lo, max=hi, hpa=hname if hpa is not None else None)
    conds = _conditions(scaled_object)
    hstatus = (hpa or {}).get("status") or {}
    if hpa is not None:
        out.current = _int(hstatus.get("currentReplicas"))
        out.target = _int(hstatus.get("desiredReplicas"))

    annotations = meta.get("annotations") or {}
    if PAUSED_REPLICAS in annotations or str(annotations.get(PAUSED, "")).lower() == "true":
        out.state = "paused"
        paused_at = _int(annotations.get(PAUSED_REPLICAS))
        out.target = paused_at
        how = (f"{PAUSED_REPLICAS}={annotations[PAUSED_REPLICAS]}" if PAUSED_REPLICAS in annotations
               else f"{PAUSED}=true")
        holds = f"holds the workload at {paused_at}" if paused_at is not None else "leaves replicas where they are"
        out.reason = f"ScaledObject {where} is paused ({how}): KEDA {holds}"
        return out
    if not conds and hpa is None:
        out.state = "not-running"
        out.reason = (f"ScaledObject {where} has no status and there is no HPA {hname}: no KEDA operator has "
                      f"reconciled it, so nothing scales the workload (its replicas stay as its spec says)")
        return out
    ready = conds.get("Ready")
    if ready is not None and str(ready.get("status")) == "False":
        out.state = "not-ready"
        out.reason = f"KEDA: ScaledObject {where} not ready: {_said(ready)}"
        return out
    if hpa is None:
        out.state = "no-hpa"
        out.reason = f"KEDA reports ScaledObject {where} but its HPA {hname} does not exist"
        return out
    active = conds.get("Active")
    if active is not None and str(active.get("status")) == "False" and lo == 0:
        # KEDA itself scales min-0 workloads to zero while no trigger is active; the HPA (min 1)
        # does not show that.
        out.state = "idle"
        out.target = 0
        out.reason = f"KEDA: ScaledObject {where} inactive ({_said(active)}): held at 0"
        return out
    fallback = conds.get("Fallback")
    if fallback is not None and str(fallback.get("status")) == "True":
        out.state = "fallback"
        out.reason = f"KEDA: ScaledObject {where} uses its fallback replicas: {_said(fallback)}"
        return out
    hconds = _conditions(hpa or {})
    scaling = hconds.get("ScalingActive")
    able = hconds.get("AbleToScale")
    if scaling is not None and str(scaling.get("status")) == "False":
        out.state = "not-scaling"
        out.reason = f"HPA {meta.get('namespace', '')}/{hname} not scaling: {_said(scaling)}"
    elif able is not None and str(able.get("status")) == "False":
        out.state = "not-scaling"
        out.reason = f"HPA {meta.get('namespace', '')}/{hname} cannot scale: {_said(able)}"
    if out.target is None and out.state == "running":
        out.reason = f"HPA {meta.get('namespace', '')}/{hname} has no desiredReplicas yet"
    return out


def read_workloads(reader: Any, region: str) -> list[Workload]:
    """The region's Deployments and StatefulSets with their pods' nodes and autoscalers.

    `reader` is a `voxplane.drift.kubernetes.live.LiveReader`; its errors (ApiException, urllib3 and OS
    errors) reach the caller. A cluster that serves no ScaledObject kind has no autoscalers; one
    that serves no HPA kind is read as having no HPA."""
    from ..drift.kubernetes.live import KindRef, NotServed

    sel = selector(region)
    apps = {kind: reader.list_objects(KindRef("apps/v1", kind, plural), sel)
            for kind, plural in (("Deployment", "deployments"), ("StatefulSet", "statefulsets"))}
    pods = reader.list_objects(KindRef("v1", "Pod", "pods"), sel)
    try:
        scaled = reader.list_objects(KindRef("keda.sh/v1alpha1", "ScaledObject", "scaledobjects"), sel)
    except NotServed:
        scaled = []
    hpas: dict[tuple[str, str], dict[str, Any]] = {}
    if scaled:
        try:
            hpa_kind = KindRef("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers")
            for h in reader.list_objects(hpa_kind, ""):
                hpas[(h["metadata"].get("namespace", ""), h["metadata"]["name"])] = h
        except NotServed:
            pass

    nodes: dict[tuple[str, str], list[str]] = defaultdict(list)
    for pod in pods:
        meta = pod.get("metadata") or {}
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        instance = (meta.get("labels") or {}).get("app.kubernetes.io/instance", "")
        nodes[(meta.get("namespace", ""), instance)].append((pod.get("spec") or {}).get("nodeName") or "(pending)")

    scalers: dict[tuple[str, str, str], Autoscaler] = {}
    for so in scaled:
        ns = so["metadata"].get("namespace", "")
        target = (so.get("spec") or {}).get("scaleTargetRef") or {}
        kind = str(target.get("kind") or "Deployment")
        scalers[(ns, kind, str(target.get("name", "")))] = autoscaler_state(so, hpas.get((ns, hpa_name(so))))

    out: list[Workload] = []
    for kind, items in apps.items():
        for obj in items:
            meta = obj.get("metadata") or {}
            labels = dict(meta.get("labels") or {})
            ns, name = str(meta.get("namespace", "")), str(meta["name"])
            instance = labels.get("app.kubernetes.io/instance", name)
            spec_replicas = (obj.get("spec") or {}).get("replicas")
            out.append(Workload(
                namespace=ns, kind=kind, name=name, component=labels.get("app.kubernetes.io/component", ""),
                desired=1 if spec_replicas is None else int(spec_replicas),
                ready=int((obj.get("status") or {}).get("readyReplicas") or 0),
                labels=labels, nodes=sorted(nodes.get((ns, instance), [])),
                autoscaler=scalers.get((ns, kind, name), ABSENT),
            ))
    out.sort(key=lambda w: (w.namespace, w.kind, w.name))
    return out
