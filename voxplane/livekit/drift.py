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

from ..model import Agent, Region
from .client import LiveKitAdmin
from .desired import Origin, Owner
from .reconcile import Plan, plan_region
from .secrets import SecretSource


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


def to_text(rep: DriftReport) -> str:
    """One line per finding: `FILE:LINE:COL: field: what differs`, like `voxplane validate`."""
    lines: list[str] = []
    for c in rep.changed:
        s = c.source
        lines.append(f"{s.file}:{s.line}:{s.column}: {s.field}: {c.kind} {c.name} ({c.id}) {c.field} is "
                     f"{_v(c.live)} on the server, declared {_v(c.declared)}")
    for m in rep.missing:
        s = m.source
        lines.append(f"{s.file}:{s.line}:{s.column}: {s.field}: {m.kind} {m.name} is missing on the server")
    for u in rep.unexpected:
        lines.append(f"{u.source_file or '?'}: {u.kind} {u.name} ({u.id}) is on the server but not declared: {u.reason}")
    for conflict in rep.conflicts:
        lines.append(f"conflict: {conflict}")
    for x in rep.unchecked:
        lines.append(f"unchecked: {x.kind} {x.name} ({x.id}) {x.field}: {x.reason}")
    for o in rep.unowned:
        lines.append(f"info: {o.kind} {o.name or '(no name)'} ({o.id}) is not managed here: {o.reason}")
    n = rep.summary()
    verdict = "drift" if rep.drift else "no drift"
    lines.append(f"{verdict}: region {rep.region} on {rep.server}: {n['changed']} changed fields, {n['missing']} missing, "
                 f"{n['unexpected']} unexpected, {n['unowned']} unowned")
    return "\n".join(lines)


def to_markdown(rep: DriftReport) -> str:
    """A PR/issue comment: a verdict line, then one table per non-empty finding type."""
    def cell(value: Any) -> str:
        return _v(value).replace("|", "\\|").replace("\n", " ")

    def text(value: str) -> str:
        return value.replace("|", "\\|").replace("\n", " ")

    n = rep.summary()
    out = [f"### LiveKit drift — region `{rep.region}`", ""]
    out.append(("**Drift found**" if rep.drift else "**No drift**") +
               f": {n['changed']} changed fields, {n['missing']} missing, {n['unexpected']} unexpected, "
               f"{n['unowned']} unowned (info) — `{rep.server}`")
    if rep.changed:
        out += ["", "| manifest | object | field | declared | live |", "|---|---|---|---|---|"]
        for c in rep.changed:
            out.append(f"| `{c.source.file}:{c.source.line}` `{c.source.field}` | {c.kind} `{c.name}` (`{c.id}`) "
                       f"| `{c.field}` | {cell(c.declared)} | {cell(c.live)} |")
    if rep.missing:
        out += ["", "| manifest | missing object |", "|---|---|"]
        for m in rep.missing:
            out.append(f"| `{m.source.file}:{m.source.line}` | {m.kind} `{m.name}` |")
    if rep.unexpected:
        out += ["", "| owner manifest | unexpected object | why |", "|---|---|---|"]
        for u in rep.unexpected:
            out.append(f"| `{u.source_file or '?'}` | {u.kind} `{u.name}` (`{u.id}`) | {text(u.reason)} |")
    if rep.conflicts:
        out += ["", "Conflicts (a sync would stop before writing):", ""] + [f"- {text(c)}" for c in rep.conflicts]
    if rep.unchecked:
        out += ["", "Not checked:", ""] + [f"- {u.kind} `{u.name}` `{u.field}`: {text(u.reason)}" for u in rep.unchecked]
    if rep.unowned:
        out += ["", "<details><summary>Unowned objects (not managed by voxplane; info)</summary>", "",
                "| object | id | why |", "|---|---|---|"]
        for o in rep.unowned:
            out.append(f"| {o.kind} `{o.name or '(no name)'}` | `{o.id}` | {text(o.reason)} |")
        out += ["", "</details>"]
    return "\n".join(out) + "\n"


RENDERERS = {"text": to_text, "json": to_json, "markdown": to_markdown}
