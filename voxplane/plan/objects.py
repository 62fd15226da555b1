"""The objects of two renders of a region, matched by target, kind, namespace and name: each one
added, removed, or changed at which paths.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from ..drift.kubernetes.compare import Path as ObjPath
from .result import ObjectRef
from .values import diff_values


def object_key(target: str, region: str, obj: Mapping[str, Any]) -> ObjectRef:
    if target == "kubernetes":
        meta = obj.get("metadata") or {}
        return ObjectRef(region, target, str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name")))
    return ObjectRef(region, target, str(obj.get("kind")), "", str(obj.get("name")))


ObjectDiff = tuple[ObjectRef, str, Optional[dict[str, Any]], Optional[dict[str, Any]], list[tuple[ObjPath, Any, Any]]]


def diff_objects(region: str, before: Optional[dict[str, list[dict[str, Any]]]],
                 after: Optional[dict[str, list[dict[str, Any]]]]) -> list[ObjectDiff]:
    """(ref, action, before object, after object, changed paths) for every object that differs."""
    out: list[ObjectDiff] = []
    for target in ("kubernetes", "livekit"):
        old = {object_key(target, region, o): o for o in (before or {}).get(target, [])}
        new = {object_key(target, region, o): o for o in (after or {}).get(target, [])}
        for ref in sorted(set(old) | set(new)):
            a, b = old.get(ref), new.get(ref)
            if a is None:
                out.append((ref, "add", None, b, []))
            elif b is None:
                out.append((ref, "remove", a, None, []))
            else:
                paths = list(diff_values(a, b))
                if paths:
                    out.append((ref, "change", a, b, paths))
    return out
