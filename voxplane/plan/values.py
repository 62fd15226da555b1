"""Where two rendered values differ: mappings key by key, a config file held in a string by its own
keys, lists of named things by name (as drift matches them: `drift.kubernetes.compare.keyed_items`),
other lists item by item.
"""

from __future__ import annotations

import json
from typing import Any, Iterator, Optional

from ..drift.kubernetes.compare import UNSET, keyed_items
from ..drift.kubernetes.compare import Path as ObjPath


def _structured(text: str) -> Optional[dict[str, Any]]:
    """A JSON or YAML mapping held in a string (a config file in a ConfigMap), else None."""
    stripped = text.strip()
    if not (stripped.startswith("{") or "\n" in stripped):
        return None
    try:
        import yaml

        value = json.loads(stripped) if stripped.startswith("{") else yaml.safe_load(stripped)
    except ValueError:
        return None
    except Exception:  # noqa: BLE001  (yaml.YAMLError and its kin: not a config file, then)
        return None
    return value if isinstance(value, dict) else None


def diff_values(before: Any, after: Any, path: ObjPath = ()) -> Iterator[tuple[ObjPath, Any, Any]]:
    """Every path where `before` and `after` differ (both sides). Lists of named things are
    matched by name (`compare.keyed_items`, as drift matches them); other lists item by item
    (`list_changes`): an item added or removed is one difference at the list's path plus the
    item's index, with UNSET on the side that lacks it."""
    if type(before) is type(after) and before == after:
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=str):
            yield from diff_values(before.get(key, UNSET), after.get(key, UNSET), path + (key,))
        return
    if isinstance(before, str) and isinstance(after, str):
        a, b = _structured(before), _structured(after)
        if a is not None and b is not None:
            yield from diff_values(a, b, path)  # a config file in a ConfigMap: its keys, not the whole text
            return
    if isinstance(before, list) or isinstance(after, list):
        old = before if isinstance(before, list) else [] if before is UNSET else None
        new = after if isinstance(after, list) else [] if after is UNSET else None
        if old is not None and new is not None and (old or new):
            pairs = keyed_items(path, old, new)
            if pairs is not None:
                for seg, a_item, b_item in pairs:
                    yield from diff_values(a_item, b_item, path + (seg,))
                return
            changes = list_changes(old, new)
            if changes is not None:
                for index, a_item, b_item in changes:
                    if isinstance(a_item, dict) and isinstance(b_item, dict):
                        yield from diff_values(a_item, b_item, path + (index,))  # one rule, changed in part
                    else:
                        yield path + (index,), a_item, b_item
                return
    yield path, before, after


def list_changes(before: list[Any], after: list[Any], *, in_place: bool = True) -> Optional[list[tuple[int, Any, Any]]]:
    """(index, before item or UNSET, after item or UNSET) for each item removed (its index in
    `before`), added (its index in `after`) or changed in place (its index in `after`): a scalar
    replaced by one scalar (`args[13] "0.85" → "0.9"`), or a rule (a mapping) replaced by one
    that keeps part of it (a peer fewer, the same ports); other rules are added or removed whole.
    Without `in_place` (a manifest's list of regions or numbers, a set in all but syntax), every
    change is an item removed or added. None when the lists hold the same items in another order
    (shown as the two lists)."""
    import difflib

    keys = [json.dumps(v, sort_keys=True, default=str) for v in before]
    other = [json.dumps(v, sort_keys=True, default=str) for v in after]
    if sorted(keys) == sorted(other):
        return None
    out: list[tuple[int, Any, Any]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, keys, other, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        if in_place and op == "replace" and i2 - i1 == j2 - j1 and all(_alike(before[i1 + n], after[j1 + n]) for n in range(i2 - i1)):
            out += [(j1 + n, before[i1 + n], after[j1 + n]) for n in range(i2 - i1)]
            continue
        out += [(i, before[i], UNSET) for i in range(i1, i2)]
        out += [(j, UNSET, after[j]) for j in range(j1, j2)]
    return out


def _alike(a: Any, b: Any) -> bool:
    """Whether `b` is `a` changed (shown as its changed parts) rather than another item: two
    scalars, or two mappings with a key of the same value."""
    if isinstance(a, dict) and isinstance(b, dict):
        return any(k in b and b[k] == v for k, v in a.items())
    return not isinstance(a, (dict, list)) and not isinstance(b, (dict, list))
