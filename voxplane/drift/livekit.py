"""Drift of a region's LiveKit SIP objects: desired (manifests) vs live (server), in terms of the
manifest that owns each finding. Built from the reconciler's plan, so drift and sync always agree.

JSON shape (`to_json`; stable keys, lists sorted by kind then name)::

    {
      "region": "local",
      "target": "livekit",
      "server": "http://127.0.0.1:7880",
      "drift": true,                       # changed, missing or unexpected is non-empty
      "summary": {"changed": 1, "missing": 1, "unexpected": 0, "unowned": 1, "unchecked": 0},
      "changed": [                         # one entry per drifted field
        {"kind": "SIPDispatchRule", "name": "vx-northwind-support", "id": "SDR_…",
         "owner": {"region": "local", "tenant": "northwind", "agent": "support", "role": "rule"},
         "field": "room_prefix",           # spec field, or a LiveKit field path voxplane never
                                           # sets, e.g. "hide_phone_number", "rule.dispatch_rule_individual.no_randomness"
         "declared": "nw-support-",        # "(unset)" for fields voxplane leaves empty
         "live": "hacked-",                # secrets: "<secret …>" placeholders, never values
         "source": {"file": "agents/support.yaml", "line": 32, "column": 18,
                    "field": "telephony.dispatch.room_prefix"}}
      ],
      "missing": [                         # declared, not on the server
        {"kind": "SIPInboundTrunk", "name": "…", "owner": {…},
         "source": {"file": …, "line": …, "column": …, "field": "telephony"}}
      ],
      "unexpected": [                      # carries voxplane's ownership, no longer declared
        {"kind": "…", "name": "…", "id": "…", "owner": {…}, "source": {"file": "agents/old.yaml"},
         "reason": "agents/old.yaml no longer declares it"}
      ],
      "unowned": [                         # info only; voxplane never touches these
        {"kind": "SIPInboundTrunk", "name": "…", "id": "ST_…", "reason": "no voxplane ownership in metadata"}
      ],
      "unchecked": [                       # secret fields whose declared value is not available here
        {"kind": "…", "name": "…", "id": "…", "field": "auth_password", "reason": "…"}
      ],
      "conflicts": ["…"]                   # what would stop `voxplane livekit sync` (objects voxplane may not touch)
    }

Exit codes of `voxplane drift`: 0 no drift, 2 drift (changed, missing or unexpected), 1 error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from . import report as render
from ..manifest.model import Agent, Region
from ..livekit.client import LiveKitAdmin
from ..livekit.desired import Origin, Owner
from ..livekit.reconcile import Plan, plan_region
from ..livekit.secrets import SecretSource


@dataclass(frozen=True)
class ChangedField:
    kind: str
    name: str
    id: str
    owner: Owner
    field: str
    declared: Any
    live: Any
    source: Origin


@dataclass(frozen=True)
class MissingObject:
    kind: str
    name: str
    owner: Owner
    source: Origin


@dataclass(frozen=True)
class UnexpectedObject:
    kind: str
    name: str
    id: str
    owner: Owner
    source_file: Optional[str]
    reason: str


@dataclass(frozen=True)
class UnownedObject:
    kind: str
    name: str
    id: str
    reason: str


@dataclass(frozen=True)
class UncheckedField:
    kind: str
    name: str
    id: str
    field: str
    reason: str


@dataclass
class DriftReport:
    region: str
    server: str
    changed: list[ChangedField] = field(default_factory=list)
    missing: list[MissingObject] = field(default_factory=list)
    unexpected: list[UnexpectedObject] = field(default_factory=list)
    unowned: list[UnownedObject] = field(default_factory=list)
    unchecked: list[UncheckedField] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        return bool(self.changed or self.missing or self.unexpected)

    def summary(self) -> dict[str, int]:
        return {
            "changed": len(self.changed),
            "missing": len(self.missing),
            "unexpected": len(self.unexpected),
            "unowned": len(self.unowned),
            "unchecked": len(self.unchecked),
        }


def report_from_plan(plan: Plan, server: str) -> DriftReport:
    """The drift findings of a plan (made with whatever secrets are available)."""
    rep = DriftReport(plan.region, server)
    for c in plan.changed:
        for d in c.diffs:
            rep.changed.append(ChangedField(c.desired.kind, c.desired.name, c.live.id, c.desired.owner,
                                            d.field, d.declared, d.live, c.desired.origin(d.field)))
    for m in plan.missing:
        rep.missing.append(MissingObject(m.kind, m.name, m.owner, m.origin("*")))
    for u in plan.unexpected:
        assert u.live.owner is not None
        rep.unexpected.append(UnexpectedObject(u.live.kind, u.live.name, u.live.id, u.live.owner, u.live.source, u.reason))
    for o in plan.unowned:
        rep.unowned.append(UnownedObject(o.kind, o.name, o.id, o.reason))
    for x in plan.unchecked:
        rep.unchecked.append(UncheckedField(x.desired.kind, x.desired.name, x.id, x.field, x.reason))
    rep.conflicts = list(plan.blockers)
    rep.changed.sort(key=lambda c: (c.kind, c.name, c.field))
    rep.missing.sort(key=lambda m: (m.kind, m.name))
    rep.unexpected.sort(key=lambda u: (u.kind, u.name, u.id))
    rep.unowned.sort(key=lambda u: (u.kind, u.name, u.id))
    rep.unchecked.sort(key=lambda u: (u.kind, u.name, u.field))
    return rep


def detect(region: Region, agents: Sequence[Agent], client: LiveKitAdmin, secrets: SecretSource) -> DriftReport:
    """Read the server once (two list calls) and compare with the manifests. Secrets that are
    not available are reported as unchecked rather than failing."""
    plan, _ = plan_region(region, agents, client, secrets, strict=False)
    return report_from_plan(plan, client.url)


# --- renderers ----------------------------------------------------------------------------------


def to_dict(rep: DriftReport) -> dict[str, Any]:
    return {
        "region": rep.region,
        "target": "livekit",
        "server": rep.server,
        "drift": rep.drift,
        "summary": rep.summary(),
        "changed": [
            {"kind": c.kind, "name": c.name, "id": c.id, "owner": c.owner.as_dict(), "field": c.field,
             "declared": c.declared, "live": c.live, "source": c.source.as_dict()}
            for c in rep.changed
        ],
        "missing": [
            {"kind": m.kind, "name": m.name, "owner": m.owner.as_dict(), "source": m.source.as_dict()}
            for m in rep.missing
        ],
        "unexpected": [
            {"kind": u.kind, "name": u.name, "id": u.id, "owner": u.owner.as_dict(),
             "source": {"file": u.source_file}, "reason": u.reason}
            for u in rep.unexpected
        ],
        "unowned": [{"kind": u.kind, "name": u.name, "id": u.id, "reason": u.reason} for u in rep.unowned],
        "unchecked": [
            {"kind": u.kind, "name": u.name, "id": u.id, "field": u.field, "reason": u.reason} for u in rep.unchecked
        ],
        "conflicts": rep.conflicts,
    }


def to_json(rep: DriftReport) -> str:
    return json.dumps(to_dict(rep), indent=2)


def _v(value: Any) -> str:
    return value if isinstance(value, str) and value.startswith(("<", "(")) else json.dumps(value)


def _name(o: Any) -> str:
    ident = getattr(o, "id", None)  # a missing object has no id yet
    return f"{o.kind} {o.name or '(no name)'}" + (f" ({ident})" if ident else "")


def _name_md(o: Any) -> str:
    ident = getattr(o, "id", None)
    return f"{o.kind} `{o.name or '(no name)'}`" + (f" (`{ident}`)" if ident else "")


def _wording(rep: DriftReport) -> render.Wording:
    return render.Wording(title="LiveKit drift", place="on the server", value=_v, name=_name, name_md=_name_md,
                          where=rep.server,
                          extras=(render.Extra("conflict", "Conflicts (a sync would stop before writing)", rep.conflicts),))


def to_text(rep: DriftReport) -> str:
    return render.to_text(rep, _wording(rep))


def to_markdown(rep: DriftReport) -> str:
    return render.to_markdown(rep, _wording(rep))


RENDERERS = {"text": to_text, "json": to_json, "markdown": to_markdown}
