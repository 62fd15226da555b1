"""A plan as text (a terminal), JSON, and markdown (the pull-request comment, kept under GitHub's
size limit).
"""

from __future__ import annotations

import json
from typing import Sequence

from ..manifest.problems import plural
from .result import FieldChange, ObjectRef, Plan, Touch

#: GitHub refuses comments over 65,536 characters.
MARKDOWN_LIMIT = 60_000


MARKER = "<!-- voxplane-plan -->"


_MARK = {"add": "+", "remove": "-", "change": "~"}


def touch_text(t: Touch) -> str:
    if t.action != "change":
        return f"{_MARK[t.action]} {t.ref}"
    return f"~ {t.ref} {t.change_text()}"


def object_lines(touches: Sequence[Touch]) -> list[tuple[str, str, list[str]]]:
    """(region, the object's line, its changed paths' lines) per object, each object once: one
    changed path stays on the object's line, several go below it."""
    by_ref: dict[ObjectRef, list[Touch]] = {}
    for touch in touches:
        by_ref.setdefault(touch.ref, []).append(touch)
    out: list[tuple[str, str, list[str]]] = []
    for ref, mine in by_ref.items():
        if len(mine) == 1:
            out.append((ref.region, touch_text(mine[0]), []))
        else:
            out.append((ref.region, f"~ {ref}", [t.change_text() for t in mine]))
    return out


def blocks(plan: Plan) -> list[tuple[list[FieldChange], list[Touch], int]]:
    """The field changes in order, each object change shown once: (changes that cause the same
    objects, the object changes not shown above, how many of theirs were shown above)."""
    out: list[tuple[list[FieldChange], list[Touch], int]] = []
    shown: set[int] = set()
    for change in plan.changes:
        if out and change.touches and [id(t) for t in change.touches] == [id(t) for t in out[-1][0][-1].touches]:
            out[-1][0].append(change)  # several fields with the very same objects: one block
            continue
        fresh = [t for t in change.touches if id(t) not in shown]
        shown.update(id(t) for t in fresh)
        out.append(([change], fresh, len(change.touches) - len(fresh)))
    return out


def _summary_line(plan: Plan) -> str:
    c = plan.counts()
    if not plan.has_changes:
        tail = f"; {plural(c['fields'], 'manifest change')} that no object reflects" if c["fields"] else ""
        return f"plan: no changes to objects in {plural(len(plan.regions), 'region')}{tail}"
    return (f"plan: {c['changed']} to change, {c['added']} to add, {c['removed']} to remove in "
            f"{plural(sum(1 for r in plan.regions if r.has_changes), 'region')}, from "
            f"{plural(c['fields'], 'field change')}")


def _header(plan: Plan) -> str:
    regions = ", ".join(r.region for r in plan.regions) or "none"
    base = plan.base[:12] if plan.base else "?"
    how = f" ({plan.base_label})" if plan.base_label else ""
    return f"plan: the working tree against {base}{how}; regions: {regions}"


def to_text(plan: Plan) -> str:
    lines = [_header(plan), ""]
    for note in plan.notes:
        lines.append(f"note: {note}")
    if plan.notes:
        lines.append("")
    width = max((len(r.region) for r in plan.regions), default=0)
    for changes, touches, above in blocks(plan):
        lines += [change.headline() for change in changes]
        if not touches and not above:
            lines.append("    (no object changes)")
        for region, line, paths in object_lines(touches):
            lines.append(f"    {region.ljust(width)}  {line}")
            lines += [f"    {' ' * width}      {path}" for path in paths]
        if above:
            lines.append(f"    {' ' * width}  (and {plural(above, 'object change')} listed above)")
    if plan.unattributed:
        lines.append("unattributed (no manifest change explains these):")
        for region, line, paths in object_lines(plan.unattributed):
            lines.append(f"    {region.ljust(width)}  {line}")
            lines += [f"    {' ' * width}      {path}" for path in paths]
    if not plan.changes and not plan.unattributed:
        lines.append("no manifest, stack or code changes")
    lines.append("")
    lines.append("objects:")
    for r in plan.regions:
        status = {"added": " (new region)", "removed": " (region removed)"}.get(r.status, "")
        lines.append(f"    {r.region.ljust(width)}  {len(r.changed)} changed, {len(r.added)} added, "
                     f"{len(r.removed)} removed{status}")
    cap = [(r.region, c.text) for r in plan.regions for c in r.capacity]
    route = [(r.region, c.text()) for r in plan.regions for c in r.routing]
    lines.append("capacity:" + ("" if cap else " unchanged"))
    lines += [f"    {region.ljust(width)}  {text}" for region, text in cap]
    lines.append("routing:" + ("" if route else " unchanged"))
    lines += [f"    {region.ljust(width)}  {text}" for region, text in route]
    lines.append("")
    lines.append(_summary_line(plan))
    return "\n".join(lines) + "\n"


def to_json(plan: Plan) -> str:
    return json.dumps(plan.as_dict(), indent=2) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def to_markdown(plan: Plan, limit: int = MARKDOWN_LIMIT) -> str:
    """The PR comment: a summary, a table per field change, capacity and routing. One comment per
    pull request, found again by MARKER and updated in place (.github/workflows/preview.yml)."""
    out = [MARKER, "### voxplane plan", "",
           f"{_md(_summary_line(plan))} (against `{plan.base[:12] or '?'}`{', ' + _md(plan.base_label) if plan.base_label else ''}).",
           ""]
    out += [f"> note: {_md(n)}" for n in plan.notes]
    if plan.notes:
        out.append("")
    if plan.changes:
        out += ["| manifest | field | change | objects |", "|---|---|---|---|"]
        for changes, touches, above in blocks(plan):
            objects = [f"`{region}` {_md(line)}" + "".join(f"<br>&nbsp;&nbsp;&nbsp;&nbsp;{_md(p)}" for p in paths)
                       for region, line, paths in object_lines(touches)]
            if above:
                objects.append(f"(and {plural(above, 'object change')} listed above)")
            cell = "<br>".join(objects) or "(none)"
            for n, c in enumerate(changes):
                field_text = "(file)" if c.kind != "tool" and not c.path else c.field
                out.append(f"| `{c.location}` | `{_md(field_text)}` | {_md(c.change_text())} | "
                           f"{cell if n == 0 else '(the objects above)'} |")
        out.append("")
    if plan.unattributed:
        out.append("**Unattributed** (no manifest change explains these):")
        out += [f"- `{region}` {_md(line)}" + "".join(f"<br>{_md(p)}" for p in paths)
                for region, line, paths in object_lines(plan.unattributed)]
        out.append("")
    out += ["| region | changed | added | removed |", "|---|---|---|---|"]
    for r in plan.regions:
        out.append(f"| `{r.region}`{' (new)' if r.status == 'added' else ' (removed)' if r.status == 'removed' else ''} "
                   f"| {len(r.changed)} | {len(r.added)} | {len(r.removed)} |")
    out.append("")
    cap = [(r.region, c.text) for r in plan.regions for c in r.capacity]
    out.append("**Capacity:** " + ("unchanged" if not cap else ""))
    out += [f"- `{region}` {_md(text)}" for region, text in cap]
    route = [(r.region, c.text()) for r in plan.regions for c in r.routing]
    out.append("")
    out.append("**Routing:** " + ("unchanged" if not route else ""))
    out += [f"- `{region}` {_md(text)}" for region, text in route]
    text = "\n".join(out) + "\n"
    if len(text) > limit:
        cut = text[:limit].rsplit("\n", 1)[0]
        text = cut + "\n\n… (cut: the plan is longer than a comment holds; `voxplane plan` shows all of it)\n"
    return text


RENDERERS = {"text": to_text, "json": to_json, "markdown": to_markdown}
