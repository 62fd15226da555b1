"""What a change does besides objects: to capacity (replicas and GPUs at peak, agent sessions,
tenant quota headroom, from plan/capacity.py) and to routing (numbers added, moved, removed).
"""

from __future__ import annotations

from typing import Any, Optional

from ..livekit.desired import DesiredTrunk, desired_objects
from ..manifest.model import Project
from . import capacity
from .result import CapacityChange, RouteChange


def _capacity(project: Optional[Project], region: str) -> Optional[capacity.RegionCapacity]:
    if project is None or region not in project.regions:
        return None
    return capacity.plan(project, region)


def capacity_changes(base: Optional[Project], head: Optional[Project], region: str) -> list[CapacityChange]:
    """What the change does to the region's capacity plan (only what differs)."""
    old, new = _capacity(base, region), _capacity(head, region)
    if new is None and old is not None:
        return [CapacityChange("region", f"region removed (it was sized for {old.peak_calls} peak concurrent calls)",
                               old.peak_calls, None)]
    if new is None:
        return []
    if old is None:
        assert head is not None
        return new_region_capacity(new, head)
    out: list[CapacityChange] = []
    if old.peak_calls != new.peak_calls:
        out.append(CapacityChange("peak", f"peak concurrent calls {old.peak_calls} → {new.peak_calls}",
                                  old.peak_calls, new.peak_calls))
    old_models = {m.model: m for m in old.models}
    new_models = {m.model: m for m in new.models}
    assert head is not None and base is not None
    for name in sorted(set(old_models) | set(new_models)):
        a, b = old_models.get(name), new_models.get(name)
        if a is None and b is not None:
            out.append(CapacityChange(f"model {name}", f"model {name} ({b.kind}) added: {_replicas(b, head, region)}",
                                      None, _model_numbers(b)))
        elif b is None and a is not None:
            out.append(CapacityChange(f"model {name}", f"model {name} removed (was {_replicas(a, base, region)})",
                                      _model_numbers(a), None))
        elif a is not None and b is not None and _model_numbers(a) != _model_numbers(b):
            text = f"model {name} ({b.kind}): {_replicas(a, base, region)} → {_replicas(b, head, region)}"
            if a.status != b.status:
                text += f"; {b.status}"
            out.append(CapacityChange(f"model {name}", text, _model_numbers(a), _model_numbers(b)))
    old_groups, new_groups = _gpu_demand(base, region), _gpu_demand(head, region)
    for group in sorted(set(old_groups) | set(new_groups)):
        a2, b2 = old_groups.get(group), new_groups.get(group)
        if a2 != b2:
            show = lambda v: "-" if v is None else f"{v[0]} of {v[1]} GPUs"  # noqa: E731
            out.append(CapacityChange(f"gpu group {group}", f"GPU group {group} at peak: {show(a2)} → {show(b2)}",
                                      a2, b2))
    if old.agent_sessions != new.agent_sessions:
        out.append(CapacityChange("agent pools", f"agent pools at max_workers: {old.agent_sessions} → "
                                  f"{new.agent_sessions} sessions for {new.peak_calls} peak calls",
                                  old.agent_sessions, new.agent_sessions))
    old_t = {t.tenant: t for t in old.tenants}
    new_t = {t.tenant: t for t in new.tenants}
    for name in sorted(set(old_t) | set(new_t)):
        ta, tb = old_t.get(name), new_t.get(name)
        if ta is None or tb is None:
            continue  # a tenant added or removed shows as its objects
        parts = []
        for what, unit, at_a, q_a, at_b, q_b in (
            ("cpu", "", ta.cpu_at_max, ta.cpu_quota, tb.cpu_at_max, tb.cpu_quota),
            ("memory", " GiB", ta.memory_gib_at_max, ta.memory_gib_quota, tb.memory_gib_at_max, tb.memory_gib_quota),
            ("pods", "", ta.pods_at_max, ta.pods_quota, tb.pods_at_max, tb.pods_quota),
        ):
            if (at_a, q_a) != (at_b, q_b):
                parts.append(f"{what} {_num(q_a - at_a)} → {_num(q_b - at_b)}{unit} "
                             f"({_num(at_b)} of {_num(q_b)} at max_workers)")
        if parts:
            text = f"tenant {name} quota headroom: " + "; ".join(parts)
            if ta.status != tb.status:
                text += f" — {tb.status}"
            out.append(CapacityChange(f"tenant {name}", text, _tenant_numbers(ta), _tenant_numbers(tb)))
    short_a, short_b = set(capacity.shortfalls(old)), set(capacity.shortfalls(new))
    out += [CapacityChange("short", f"now short: {s}", None, s) for s in sorted(short_b - short_a)]
    out += [CapacityChange("short", f"no longer short: {s}", s, None) for s in sorted(short_a - short_b)]
    return out


def new_region_capacity(report: capacity.RegionCapacity, project: Project) -> list[CapacityChange]:
    """A new region's whole capacity plan, as `voxplane capacity` sizes it, ending with what is
    short (or that nothing is)."""
    region = report.region
    out = [CapacityChange("peak", f"new region: peak {report.peak_calls} concurrent calls", None, report.peak_calls)]
    for m in report.models:
        text = f"model {m.model} ({m.kind}): {_replicas(m, project, region)}"
        out.append(CapacityChange(f"model {m.model}", text + ("" if m.status == "ok" else f"; {m.status}"),
                                  None, _model_numbers(m)))
    for group, (used, have) in sorted(_gpu_demand(project, region).items()):
        out.append(CapacityChange(f"gpu group {group}", f"GPU group {group} at peak: {used} of {have} GPUs", None,
                                  (used, have)))
    out.append(CapacityChange("agent pools", f"agent pools at max_workers: {report.agent_sessions} sessions for "
                                             f"{report.peak_calls} peak calls", None, report.agent_sessions))
    for t in report.tenants:
        out.append(CapacityChange(
            f"tenant {t.tenant}",
            f"tenant {t.tenant} quota headroom: cpu {_num(round(t.cpu_quota - t.cpu_at_max, 2))} ({_num(t.cpu_at_max)} of "
            f"{_num(t.cpu_quota)} at max_workers); memory {_num(round(t.memory_gib_quota - t.memory_gib_at_max, 2))} GiB "
            f"({_num(t.memory_gib_at_max)} of {_num(t.memory_gib_quota)} at max_workers); pods "
            f"{t.pods_quota - t.pods_at_max} ({t.pods_at_max} of {t.pods_quota} at max_workers)"
            + ("" if t.status == "ok" else f" — {t.status}"),
            None, _tenant_numbers(t)))
    short = capacity.shortfalls(report)
    out += [CapacityChange("short", f"short: {s}", None, s) for s in short]
    if not short:
        out.append(CapacityChange("short", "not short: the plan holds at the peak", None, None))
    return out


def _num(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _model_numbers(m: capacity.ModelCapacity) -> dict[str, Any]:
    return {"replicas_needed": m.replicas_needed, "max_replicas": m.max_replicas, "gpus_per_replica": m.gpus_per_replica,
            "gpus_needed": m.gpus_needed, "calls_per_replica": m.calls_per_replica, "status": m.status}


def _tenant_numbers(t: capacity.TenantCapacity) -> dict[str, Any]:
    return {"cpu_headroom": round(t.cpu_quota - t.cpu_at_max, 2),
            "memory_gib_headroom": round(t.memory_gib_quota - t.memory_gib_at_max, 2),
            "pods_headroom": t.pods_quota - t.pods_at_max, "status": t.status}


def _replicas(m: capacity.ModelCapacity, project: Project, region: str) -> str:
    spec = project.regions[region].models[m.model]
    gpus = f"{m.gpus_per_replica} GPU{'s' if m.gpus_per_replica != 1 else ''}/replica"
    if m.replicas_needed is not None:
        return f"{m.replicas_needed} replicas at peak of max {m.max_replicas} ({gpus})"
    return f"{spec.min_replicas}..{m.max_replicas} replicas ({gpus})"


def _gpu_demand(project: Optional[Project], region: str) -> dict[str, tuple[int, int]]:
    """GPUs each node group needs at peak (LLMs as sized, other models at max_replicas) and has."""
    report = _capacity(project, region)
    if report is None or project is None:
        return {}
    reg = project.regions[region]
    demand: dict[str, tuple[int, int]] = {}
    for m in report.models:
        spec = reg.models[m.model]
        need = m.gpus_needed if m.gpus_needed is not None else spec.gpus_per_replica * spec.max_replicas
        used, have = demand.get(spec.node_group, (0, m.gpus_available))
        demand[spec.node_group] = (used + need, have)
    return demand


def numbers(project: Optional[Project], region: str) -> dict[str, str]:
    """Number -> the agent its trunk routes to (`tenant/agent`)."""
    if project is None or region not in project.regions:
        return {}
    reg = project.regions[region]
    out: dict[str, str] = {}
    for d in desired_objects(reg, project.agents_in(region)):
        if isinstance(d, DesiredTrunk):
            for number in d.numbers:
                out[number] = f"{d.owner.tenant}/{d.owner.agent}"
    return out


def routing_changes(base: Optional[Project], head: Optional[Project], region: str) -> list[RouteChange]:
    old, new = numbers(base, region), numbers(head, region)
    out = []
    for number in sorted(set(old) | set(new)):
        a, b = old.get(number), new.get(number)
        if a is None and b is not None:
            out.append(RouteChange(number, "added", after=b))
        elif b is None and a is not None:
            out.append(RouteChange(number, "removed", before=a))
        elif a != b and a is not None and b is not None:
            out.append(RouteChange(number, "moved", a, b))
    return out
