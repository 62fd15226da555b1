"""What a plan says: per region the objects added, removed and changed; per manifest field
(`FieldChange`) the object changes it causes (`Touch`); the capacity and routing changes. Each
with its JSON form (`as_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..drift.kubernetes.compare import UNSET
from .text import SHORT, dotted, item_change, item_text, jsonable, mapping_text, pair, short
from .values import list_changes


class PlanError(Exception):
    """A plan that cannot be made (git, an unreadable base); one line for the user."""


@dataclass(frozen=True, order=True)
class ObjectRef:
    region: str
    target: str  # "kubernetes" | "livekit"
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

    def as_dict(self) -> dict[str, str]:
        return {"region": self.region, "target": self.target, "kind": self.kind, "namespace": self.namespace,
                "name": self.name}


@dataclass(frozen=True)
class Touch:
    """One change of one object: added, removed, or one path changed."""

    ref: ObjectRef
    action: str  # "add" | "remove" | "change"
    path: str = ""
    before: Any = UNSET
    after: Any = UNSET
    #: how it was attributed: "field", "file", "region", "tool"
    via: str = "field"
    #: "added" or "removed" when the change is one item of a list at `path` (a NetworkPolicy
    #: rule, an env var `env[NAME]`), else ""
    item: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.ref.as_dict(), "action": self.action, "via": self.via}
        if self.action == "change":
            out.update(path=self.path, before=jsonable(self.before), after=jsonable(self.after))
            if self.item:
                out["item"] = self.item
        return out

    def change_text(self) -> str:
        """`PATH before → after`, or `PATH + ITEM` / `PATH - ITEM` for a list item, in full."""
        if self.item:
            return f"{self.path} {'+' if self.item == 'added' else '-'} {item_text(self.after if self.item == 'added' else self.before)}"
        return f"{self.path} {pair(self.before, self.after)}"


@dataclass
class FieldChange:
    """One changed field of one file: a manifest field, a stack config key, a code folder's
    contents, or the tool's own code."""

    file: str
    path: tuple[str | int, ...]
    kind: str  # "manifest" | "stack" | "code" | "tool"
    before: Any
    after: Any
    line: int = 1
    note: str = ""
    touches: list[Touch] = field(default_factory=list)

    @property
    def location(self) -> str:
        return "(tool)" if self.kind == "tool" else f"{self.file}:{self.line}"

    @property
    def field(self) -> str:
        if self.kind == "tool":
            return "(code)"
        if not self.path:
            return "(new file)" if self.before is UNSET else "(file removed)" if self.after is UNSET else "(file)"
        return dotted(self.path)

    def change_text(self) -> str:
        if self.kind in ("code", "tool"):
            return self.note
        if not self.path:
            return self.note or ("added" if self.before is UNSET else "removed")
        if self.before is UNSET:
            return f"{short(self.after)} (added)"
        if self.after is UNSET:
            return f"{short(self.before)} (removed)"
        if isinstance(self.before, list) and isinstance(self.after, list):
            items = list_changes(self.before, self.after, in_place=False)
            if items:
                return ", ".join(item_change(i, a, b) for i, a, b in items)
        if isinstance(self.before, dict) and isinstance(self.after, dict):
            # one alternative for another (`llm: {model: chat}` → `{provider: ...}`), in full
            return f"{mapping_text(self.before)} → {mapping_text(self.after)}"
        return pair(self.before, self.after, SHORT)

    def headline(self) -> str:
        """The change's line in text: `FILE:LINE: field change`, a whole file without `(new file)`."""
        if self.kind != "tool" and not self.path:
            return f"{self.location}: {self.change_text()}"
        return f"{self.location}: {self.field} {self.change_text()}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": None if self.kind == "tool" else self.file, "line": self.line, "field": self.field, "kind": self.kind,
                "before": jsonable(self.before), "after": jsonable(self.after), "note": self.note,
                "objects": [t.as_dict() for t in self.touches]}


@dataclass(frozen=True)
class RouteChange:
    number: str
    change: str  # "added" | "moved" | "removed"
    before: str = ""
    after: str = ""

    def text(self) -> str:
        if self.change == "added":
            return f"{self.number} added → {self.after}"
        if self.change == "removed":
            return f"{self.number} removed (was {self.before})"
        return f"{self.number} moved {self.before} → {self.after}"

    def as_dict(self) -> dict[str, str]:
        return {"number": self.number, "change": self.change, "before": self.before, "after": self.after}


@dataclass(frozen=True)
class CapacityChange:
    subject: str  # "peak", "model chat", "gpu group h100", "agent pools", "tenant northwind", "short"
    text: str
    before: Any = None
    after: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "text": self.text, "before": jsonable(self.before),
                "after": jsonable(self.after)}


@dataclass
class RegionPlan:
    region: str
    status: str = "changed"  # "changed" | "added" | "removed"
    added: list[ObjectRef] = field(default_factory=list)
    removed: list[ObjectRef] = field(default_factory=list)
    changed: list[ObjectRef] = field(default_factory=list)
    capacity: list[CapacityChange] = field(default_factory=list)
    routing: list[RouteChange] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def as_dict(self) -> dict[str, Any]:
        return {"region": self.region, "status": self.status,
                "added": [str(r) for r in self.added], "removed": [str(r) for r in self.removed],
                "changed": [str(r) for r in self.changed],
                "capacity": [c.as_dict() for c in self.capacity], "routing": [r.as_dict() for r in self.routing]}


@dataclass
class Plan:
    base: str
    base_label: str
    regions: list[RegionPlan]
    changes: list[FieldChange]
    unattributed: list[Touch] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return any(r.has_changes for r in self.regions)

    def counts(self) -> dict[str, int]:
        return {"changed": sum(len(r.changed) for r in self.regions), "added": sum(len(r.added) for r in self.regions),
                "removed": sum(len(r.removed) for r in self.regions), "fields": len(self.changes)}

    def as_dict(self) -> dict[str, Any]:
        return {"base": {"commit": self.base, "label": self.base_label},
                "regions": [r.region for r in self.regions], "changes": self.has_changes, "summary": self.counts(),
                "fields": [c.as_dict() for c in self.changes],
                "objects": {r.region: r.as_dict() for r in self.regions},
                "unattributed": [t.as_dict() for t in self.unattributed], "notes": self.notes}
