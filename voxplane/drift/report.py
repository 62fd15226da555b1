"""Text and markdown for a drift report, one shape for every target.

Kubernetes drift (voxplane/drift/kubernetes/report.py) and LiveKit drift (voxplane/drift/livekit.py) find
the same five things — a changed field, a missing object, an unexpected owned object, an unowned
object (info), an unchecked field — and differ only in how an object is named (`kind namespace/name`
against `kind name (id)`), where it lives ("in the cluster", "on the server") and the extra lines
each has (notes, conflicts). A `Wording` says those; the layout is written once here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence


class _Source(Protocol):
    file: str
    line: int
    column: int
    field: str


class Report(Protocol):
    """What both targets' reports carry (their findings hold the attributes the renderers read)."""

    @property
    def region(self) -> str: ...
    @property
    def changed(self) -> Sequence[Any]: ...
    @property
    def missing(self) -> Sequence[Any]: ...
    @property
    def unexpected(self) -> Sequence[Any]: ...
    @property
    def unowned(self) -> Sequence[Any]: ...
    @property
    def unchecked(self) -> Sequence[Any]: ...
    @property
    def drift(self) -> bool: ...

    def summary(self) -> dict[str, int]: ...


@dataclass(frozen=True)
class Extra:
    """Lines a target adds between the findings and the unchecked fields (notes, conflicts)."""

    prefix: str  # text: `prefix: line`
    heading: str  # markdown: a list under this heading
    lines: Sequence[str]


@dataclass(frozen=True)
class Wording:
    title: str  # markdown heading: "Kubernetes drift"
    place: str  # "in the cluster", "on the server"
    name: Callable[[Any], str]  # an object in text: "ScaledObject vox-t-x/support"
    name_md: Callable[[Any], str]  # the same in markdown, names in code spans
    value: Callable[[Any], str]  # a declared or live value, shown
    owned: str = ""  # why an unexpected object counts as ours: " with voxplane's labels"
    where: str = ""  # the server named in the verdict
    tail: str = ""  # after the counts in the verdict: "; 17 API calls"
    extras: Sequence[Extra] = field(default_factory=tuple)


def counts(rep: Report) -> str:
    n = rep.summary()
    return f"{n['changed']} changed fields, {n['missing']} missing, {n['unexpected']} unexpected, {n['unowned']} unowned"


def verdict(rep: Report, w: Wording) -> str:
    return f"{'drift' if rep.drift else 'no drift'}: region {rep.region} on {w.where}: {counts(rep)}{w.tail}"


def _at(source: _Source) -> str:
    return f"{source.file}:{source.line}:{source.column}: {source.field}"


def to_text(rep: Report, w: Wording) -> str:
    """One line per finding: `FILE:LINE:COL: field: what differs`, like `voxplane validate`."""
    lines: list[str] = []
    for c in rep.changed:
        lines.append(f"{_at(c.source)}: {w.name(c)} {c.field} is {w.value(c.live)} {w.place}, declared {w.value(c.declared)}")
    for m in rep.missing:
        lines.append(f"{_at(m.source)}: {w.name(m)} is missing {w.place}")
    for u in rep.unexpected:
        lines.append(f"{u.source_file or '?'}: {w.name(u)} is {w.place}{w.owned} but not declared: {u.reason}")
    for extra in w.extras:
        lines += [f"{extra.prefix}: {line}" for line in extra.lines]
    for x in rep.unchecked:
        lines.append(f"unchecked: {w.name(x)} {x.field}: {x.reason}")
    for o in rep.unowned:
        lines.append(f"info: {w.name(o)} is not managed here: {o.reason}")
    lines.append(verdict(rep, w))
    return "\n".join(lines)


def _md(text: str) -> str:
    """Safe inside a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(rep: Report, w: Wording) -> str:
    """A PR/issue comment: a verdict line, then one table per non-empty finding type."""
    out = [f"### {w.title} — region `{rep.region}`", ""]
    out.append(("**Drift found**" if rep.drift else "**No drift**") + f": {counts(rep)} (info) — `{w.where}`{w.tail}")
    if rep.changed:
        out += ["", "| manifest | object | field | declared | live |", "|---|---|---|---|---|"]
        for c in rep.changed:
            out.append(f"| `{c.source.file}:{c.source.line}` `{c.source.field}` | {w.name_md(c)} | `{c.field}` "
                       f"| {_md(w.value(c.declared))} | {_md(w.value(c.live))} |")
    if rep.missing:
        out += ["", "| manifest | missing object |", "|---|---|"]
        for m in rep.missing:
            out.append(f"| `{m.source.file}:{m.source.line}` `{m.source.field}` | {w.name_md(m)} |")
    if rep.unexpected:
        out += ["", "| owner manifest | unexpected object | why |", "|---|---|---|"]
        for u in rep.unexpected:
            out.append(f"| `{u.source_file or '?'}` | {w.name_md(u)} | {_md(u.reason)} |")
    for extra in w.extras:
        if extra.lines:
            out += ["", f"{extra.heading}:", ""] + [f"- {_md(line)}" for line in extra.lines]
    if rep.unchecked:
        out += ["", "Not checked:", ""] + [f"- {w.name_md(u)} `{u.field}`: {_md(u.reason)}" for u in rep.unchecked]
    if rep.unowned:
        out += ["", "<details><summary>Unowned objects (not managed by voxplane; info)</summary>", "",
                "| object | why |", "|---|---|"]
        out += [f"| {w.name_md(o)} | {_md(o.reason)} |" for o in rep.unowned]
        out += ["", "</details>"]
    return "\n".join(out) + "\n"
