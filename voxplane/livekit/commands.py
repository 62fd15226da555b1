"""What `voxplane livekit sync` and `voxplane drift --only livekit` do, minus option parsing.

The CLI (voxplane/cli/livekit.py, drift.py) parses options, calls these, prints and exits. Every failure the user
can fix is raised as `CommandError` with one line (or several, for manifest/secret problems).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from ..errors import CommandError
from ..manifest.model import Agent, Region
from ..manifest.problems import ManifestError
from ..drift.livekit import DriftReport, detect
from .client import LiveKitAdmin, LiveKitError
from .objects import FieldDiff
from .reconcile import Applied, ApplyFailed, Plan, SecretsMissing, Step, apply, plan_region
from .secrets import EnvSecrets, SecretSource


def connect(region: Region, url: Optional[str], api_key: Optional[str], api_secret: Optional[str]) -> LiveKitAdmin:
    """A client for `url`, else the region's `livekit.public_url` (ws:// becomes http://)."""
    try:
        return LiveKitAdmin(url or region.livekit.public_url, api_key or "", api_secret or "")
    except LiveKitError as e:
        raise CommandError([f"error: {e}"]) from None


def plan_sync(
    region: Region, agents: Sequence[Agent], client: LiveKitAdmin, secrets: Optional[SecretSource] = None,
    *, strict: bool = True,
) -> Plan:
    """Resolve every secret (environment by default), read the server, plan. Raises
    `CommandError` for missing secrets (unless not `strict`: a dry run compares them as
    unchecked), unreachable server or conflicts; nothing is written."""
    try:
        plan, _ = plan_region(region, agents, client, secrets or EnvSecrets(), strict=strict)
    except SecretsMissing as e:
        raise CommandError(e.lines + ["error: secrets missing; nothing was changed"]) from None
    except LiveKitError as e:
        raise CommandError([f"error: {e}; nothing was changed"]) from None
    if plan.blockers:
        raise CommandError([f"conflict: {b}" for b in plan.blockers]
                           + ["error: conflicts with objects voxplane does not manage here; nothing was changed"])
    return plan


def apply_plan(plan: Plan, client: LiveKitAdmin, progress: Optional[Callable[[Step, Optional[str]], None]] = None) -> list[Applied]:
    try:
        return apply(plan, client, progress)
    except ApplyFailed as e:
        raise CommandError([f"error: {e}"]) from None


def run_drift(region: Region, agents: Sequence[Agent], client: LiveKitAdmin, secrets: Optional[SecretSource] = None) -> DriftReport:
    try:
        return detect(region, agents, client, secrets or EnvSecrets())
    except LiveKitError as e:
        raise CommandError([f"error: {e}"]) from None


def plan_lines(plan: Plan) -> list[str]:
    """The plan, one line per write and one indented line per changed field (secrets as
    placeholders), then the unowned objects left alone."""
    lines: list[str] = []
    for step in plan.steps:
        lines.append(step.describe())
        for c in step.changes:
            lines.append(f"    {c.field}: {_show(c.live)} -> {_show(c.declared)}")
    for u in plan.unowned:
        lines.append(f"  (left alone: {u.kind} {u.name or '(no name)'} {u.id}: {u.reason})")
    for x in plan.unchecked:
        lines.append(f"  (not compared: {x.desired.kind} {x.desired.name} {x.field}: {x.reason})")
    n = plan.counts()
    if plan.steps:
        lines.append(f"plan: {n['create']} to create, {n['update']} to update, {n['delete']} to delete")
    else:
        lines.append(f"plan: nothing to do ({len(plan.in_sync)} objects in sync)")
    return lines


def done_line(step: Step, object_id: Optional[str]) -> str:
    past = {"create": "created", "update": "updated", "delete": "deleted", "release": "released numbers of"}[step.action]
    return f"{past} {step.kind} {step.name} {object_id or ''}".rstrip()


def _show(value: object) -> str:
    if isinstance(value, str) and value.startswith(("<", "(")):
        return value
    return repr(value)


__all__ = [
    "CommandError", "FieldDiff", "ManifestError", "apply_plan", "connect", "done_line",
    "plan_lines", "plan_sync", "run_drift",
]
