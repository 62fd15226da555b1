"""`voxplane plan`: what a change does, offline — the desired state of the working tree against a
base revision, told per manifest field.

Both sides are rendered (`voxplane render`'s objects: Kubernetes and LiveKit). The base is a
`git archive` export of BASE in a temporary folder; when the change touches the tool itself
(schemas, builders, components: `affected.EVERYWHERE`), the base is rendered by BASE's own code in
a child process, so the plan shows what the new code changes too. The object differences are then
attributed to the manifest changes that cause them:

1. the field `drift.attribution` names for the object path (`spec.maxReplicaCount` of an
   agent's ScaledObject -> `scaling.max_workers` of its file), or a field of the region file that
   path is known to come from (an agent's node selector -> `agents.node_pool`);
2. else, when the tool itself changed, that change;
3. else every change of the object's own manifest file;
4. else the changes of the object's region: its region file and stack file, then the agents that
   run there (and their code folders), narrowed to the agents a changed value names.

A code folder's change is a change of `code.build` of each manifest building from it; a change of
the platform's agent base image (`agents/_platform/`, `voxplane.deploy.agent_base`) is one of every
manifest whose Dockerfile builds FROM it (its hash is part of each such image tag).

A config checksum annotation takes the causes of the ConfigMaps and Secrets of its namespace.

Lists are compared item by item (named ones, `env` or `containers`, by name as drift does), so a
NetworkPolicy rule or an env var added or removed is one change shown whole. A new or removed
agent takes its code folder's change, a new or removed region its stack file's: one change each.

An object change reached by none of them is listed as unattributed (the property test in
tests/test_plan_properties.py checks that random manifest edits never leave one). Alongside: what
the change does to capacity (`voxplane/plan/capacity.py`: replicas and GPUs at peak, agent sessions,
tenant quota headroom) and to routing (numbers added, moved to another agent, removed).

The parts, in the order `plan_between` runs them: sides.py (the base exported, both sides
rendered), objects.py and values.py (the object differences), manifests.py (the field
differences), attribution.py (which field changes which object), impact.py (capacity, routing);
result.py holds what a plan says, text.py and output.py how it is shown (text, JSON, markdown).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

from ..drift.kubernetes.compare import UNSET, Keyed, format_path
from ..drift.kubernetes.compare import Path as ObjPath
from ..manifest.loader import UnknownRegion, load
from ..manifest.problems import ManifestError, plural
from .affected import EVERYWHERE, affected_regions
from .attribution import Attributor, checksums_follow_configs
from .impact import capacity_changes, routing_changes
from .manifests import manifest_changes
from .objects import diff_objects
from .result import FieldChange, ObjectRef, Plan, PlanError, RegionPlan, Touch
from .sides import changed_between, render_here, render_with_own_code


def _path_touch(ref: ObjectRef, path: ObjPath, before: Any, after: Any) -> tuple[Touch, ObjPath]:
    """The touch of one changed path, and the path its cause is looked up by. An item added to
    or removed from a list is shown at the list's path (`spec.egress + {...}`); an unnamed list's
    item is attributed as the list (its index is no manifest field)."""
    last = path[-1] if path else None
    item = ("added" if before is UNSET else "removed" if after is UNSET else "") if isinstance(last, (int, Keyed)) else ""
    shown = path[:-1] if item else path
    looked_up = path[:-1] if isinstance(last, int) else path
    return Touch(ref, "change", format_path(shown), before, after, item=item), looked_up


def plan_between(base_root: Path, head_root: Path, regions: Optional[Sequence[str]] = None, *,
                 changed: Optional[Sequence[str]] = None, base: str = "", base_label: str = "") -> Plan:
    """The plan of `head_root` against `base_root` (two checkouts' render inputs).

    `regions` default: those the change can affect (`voxplane affected`'s rule, on both sides).
    `changed`: the paths that differ (default: compared file by file). Raises ManifestError when
    the head's manifests are invalid, UnknownRegion for a region named at neither side, PlanError
    when the base cannot be rendered.
    """
    head_result = load((), head_root)
    if head_result.problems:
        raise ManifestError(head_result.problems)
    head = head_result.require_project()
    base_result = load((), base_root)
    base_project = base_result.project
    notes: list[str] = []
    changed = list(changed) if changed is not None else changed_between(base_root, head_root)
    tool_changed = any(p.startswith(EVERYWHERE) for p in changed)
    if base_project is None and not tool_changed:
        raise PlanError(f"the manifests at the base do not validate ({plural(len(base_result.problems), 'problem')}; "
                        f"first: {base_result.problems[0] if base_result.problems else '?'}); plan needs a valid base")
    if base_project is None:
        notes.append("the base's manifests do not load with this version of voxplane; removed objects are "
                     "attributed by their source annotation only")
    if regions is None:
        wanted = set(affected_regions(changed, head))
        if base_project is not None:
            wanted |= set(affected_regions(changed, base_project))
        regions = sorted(wanted)
    else:
        known = set(head.regions) | set(base_project.regions if base_project else ())
        missing = [r for r in regions if r not in known]
        if missing:
            raise UnknownRegion(missing[0], known)
    regions = list(regions)

    after = render_here(head_root, regions, head)
    base_regions = [r for r in regions if base_project is None or r in base_project.regions]
    if tool_changed and base_regions:
        try:
            before = render_with_own_code(base_root, base_regions)
            notes.append("the tool itself changed: the base was rendered by the base's own code")
        except PlanError as exc:
            if base_project is None:
                raise PlanError(f"the base could not be rendered by its own code: {exc}") from None
            notes.append(f"the tool itself changed, but the base's own code could not render it ({exc}); both sides "
                         f"were rendered by the working tree's code, so changes of the tool are not shown")
            before = render_here(base_root, base_regions, base_project)
    else:
        before = render_here(base_root, base_regions, base_project)
    for name in regions:
        before.setdefault(name, None)

    changes = sorted(manifest_changes(base_root, head_root, changed, head, base_project),
                     key=lambda c: (c.kind == "tool", c.file, c.line, c.field))
    result = Plan(base=base, base_label=base_label, regions=[], changes=changes, notes=notes)
    for name in regions:
        status = "added" if before[name] is None else "removed" if after[name] is None else "changed"
        region_plan = RegionPlan(name, status)
        attributor = Attributor(changes, name, head, base_project)
        found: list[tuple[Touch, list[FieldChange]]] = []
        for ref, action, old, new, paths in diff_objects(name, before[name], after[name]):
            obj = new if new is not None else old
            assert obj is not None
            {"add": region_plan.added, "remove": region_plan.removed, "change": region_plan.changed}[action].append(ref)
            touches = ([(Touch(ref, action), ())] if action != "change" else [_path_touch(ref, p, a, b) for p, a, b in paths])
            for touch, path in touches:
                causes, via = attributor.causes(ref, action, obj, path, touch.before, touch.after)
                found.append((replace(touch, via=via), causes))
        found = checksums_follow_configs(found)
        for touch, causes in found:
            if not causes:
                result.unattributed.append(touch)
            for cause in causes:
                cause.touches.append(touch)
        region_plan.capacity = capacity_changes(base_project, head, name)
        region_plan.routing = routing_changes(base_project, head, name)
        result.regions.append(region_plan)
    return result
