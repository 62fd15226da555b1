"""How a plan shows a value: shortened to a line, a before → after pair, a list item, a field path
(`agents.node_pool`, `numbers[0]`), and as JSON.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

from ..drift.kubernetes.compare import UNSET

#: How many characters of a value the text and markdown forms show.
SHORT = 72


#: ... and of a list item (a NetworkPolicy rule is read whole).
ITEM_LIMIT = 400


def jsonable(value: Any) -> Any:
    if value is UNSET:
        return None
    if isinstance(value, (dict, list, str, int, float, bool)) or value is None:
        return value
    return str(value)


def short(value: Any, limit: int = SHORT, *, quote: bool = False) -> str:
    """A value in one short line: "(unset)", text as is (quoted with `quote`), data as compact
    JSON, cut with …"""
    if value is UNSET:
        text = "(unset)"
    elif isinstance(value, str) and not quote:
        text = value
    else:
        text = json.dumps(value, separators=(", ", ": "), ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pair(before: Any, after: Any, limit: int = 48) -> str:
    """`before → after` in one line; a long common beginning is elided, so the difference shows
    (an image digest, the end of a URL)."""
    a, b = short(before, 10_000), short(after, 10_000)
    if len(a) > limit or len(b) > limit:
        common = len(os.path.commonprefix([a, b]))
        if common > 16:
            keep = common - 8
            a, b = "…" + a[keep:], "…" + b[keep:]
    return f"{short(a, limit)} → {short(b, limit)}"


def item_text(value: Any) -> str:
    """A list item (a rule, an env var, a number) in one line, as compact JSON: in full up to
    ITEM_LIMIT characters (a rule is read whole, never cut to a common prefix)."""
    return short(value if value is not UNSET else None, ITEM_LIMIT, quote=True)


def item_change(index: int, before: Any, after: Any) -> str:
    if before is UNSET:
        return f"+ {item_text(after)}"
    if after is UNSET:
        return f"- {item_text(before)}"
    return f"[{index}] {item_text(before)} → {item_text(after)}"


def mapping_text(value: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}: {item_text(item)}" for key, item in value.items())


def dotted(path: Sequence[str | int]) -> str:
    out = ""
    for seg in path:
        out += f"[{seg}]" if isinstance(seg, int) else ("." if out else "") + str(seg)
    return out
