"""Indentation hints for a YAML manifest the parser gave up on: which line is out of place, and
which mapping a key belongs under, read from the lines around it and, where there is one, the
schema's fields per path. A hint that names a number of spaces must give back a valid document
when followed (tests/test_indentation_hints.py); where the text and the schema do not point at one
place, the hint names none.
"""

from __future__ import annotations

import re
from typing import Callable, Optional

from .problems import Path

#: The keys a mapping at a path may hold, from the schema of the document's kind (None: a mapping
#: of names, such as `models:`, whose entries the deeper paths describe); lets an indentation hint
#: say which mapping a key belongs under.
FieldNames = Callable[[Path], Optional[frozenset[str]]]


class AnyField(frozenset[str]):
    """The fields of a mapping that takes every key as a field of its own (a stack's `config:`)."""

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str)


def odd_line(lines: list[str], failed: int, fields: FieldNames | None) -> tuple[str, int, int] | None:
    """The line above `failed` is the one out of place: a `key: value` dedented out of the block it
    belongs to (the only line of a block, or one among lines indented deeper), so YAML stops at the
    line after it. Says which mapping the key belongs under, as (message, line, column), when the
    text and the schema (if there is one) point at one; None otherwise."""
    above = content_above(lines, failed)
    if above is None or not has_inline_value(lines[above - 1]):
        return None
    own, odd = indent_of(lines, failed), indent_of(lines, above)
    before = content_above(lines, above)
    if before is None:
        return None
    key = _key(lines[above - 1])
    if _opens(lines, before) and odd == indent_of(lines, before):
        # Beside the `key:` above it, which so holds nothing: one of the two is out of place. When the
        # failing line is deeper than that `key:`, it shows where its fields go, and the schema says
        # whether this key is one of them (and not one of the mapping it sits in now).
        chain = _enclosing(lines, above, own)
        here = _enclosing(lines, above, odd)
        if (own > odd and chain and chain[-1][1] == before and here is not None and _fits(fields, chain, key)
                and _fits(fields, chain, _key(lines[failed - 1])) and fields is not None
                and not _fits(fields, here, key, strict=True)):
            return (f"line {above} (`{key}:`) is indented {spaces(odd)}, like `{chain[-1][0]}:` on line {before}, "
                    f"which so holds nothing, and line {failed} has nowhere to go; `{key}` belongs under "
                    f"`{chain[-1][0]}:`: indent it {spaces(own)}, like line {failed}"), above, 1
        return (f"line {above} (`{key}:`) is indented like `{_key(lines[before - 1])}:` on line {before}, which so "
                f"holds nothing, and line {failed} has nowhere to go; indent line {above} under line {before}, or "
                f"line {before} back to its own mapping"), above, 1
    if _opens(lines, before) and odd < indent_of(lines, before):
        # The only line of a block, dedented out of it: the `key:` above it holds nothing.
        chain = _enclosing(lines, above, indent_of(lines, before) + 1)
        if chain and chain[-1][1] == before and _fits(fields, chain, key):
            inner = indent_of(lines, before) + _step(lines, before)
            return (f"line {above} (`{key}:`) is indented {spaces(odd)}, so `{chain[-1][0]}:` (line {before}) holds "
                    f"nothing and line {failed} has nowhere to go; `{key}` belongs under `{chain[-1][0]}:`: indent it "
                    f"{spaces(inner)}"), above, 1
    if odd >= own or not (indent_of(lines, before) >= own or _opens(lines, before)):
        return None  # nothing above it is at the failing line's depth: the failing line is the odd one
    home = _enclosing(lines, above, odd)
    if home and odd > indent_of(lines, home[-1][1]) and _fits(fields, home, key):
        # `above` sits inside a block as written: if that block goes on at its indentation after
        # the failing line, the failing line is the one out of place (and if the failing line opens
        # a block of its own, the lines after it say nothing).
        if _opens(lines, failed):
            nxt = _content_below(lines, failed)
            if nxt is None or indent_of(lines, nxt) <= own or not _continues(lines, failed, own):
                return None
        for at in range(failed + 1, len(lines) + 1):
            if is_content(lines[at - 1]) and indent_of(lines, at) <= own:
                if indent_of(lines, at) == odd:
                    return None
                break
    levels = sorted({n for n, _ in open_levels(lines, above) if n > odd} | {own})
    def fitting_levels(strict: bool) -> list[tuple[int, list[tuple[str, int]]]]:
        out = []
        for indent in levels:
            chain = _enclosing(lines, above, indent)
            # Beside the failing line, the failing line's key must fit there too.
            if chain and _fits(fields, chain, key, strict=strict) and (
                    indent != own or _fits(fields, chain, _key(lines[failed - 1]), strict=strict)):
                out.append((indent, chain))
        return out

    fitting = fitting_levels(strict=fields is not None)
    # Of several, the block of the line just before it (the one it was dedented out of).
    fitting = [f for f in fitting if f[0] == indent_of(lines, before)] if len(fitting) > 1 else fitting
    if len(fitting) != 1:
        return (f"line {above} (`{key}:`) is indented {spaces(odd)}, less than line {failed} after it, which has "
                f"nowhere to go; indent line {above} into the block it belongs to"), above, 1
    inner, chain = fitting[0]
    parent, at = chain[-1]
    where = (f"so it ends `{parent}:` (line {at}) and line {failed} has nowhere to go" if odd <= indent_of(lines, at)
             else f"and the fields of `{parent}:` (line {at}) must line up")
    return (f"line {above} (`{key}:`) is indented {spaces(odd)}, less than the block it belongs to, {where}; "
            f"`{key}` belongs under `{parent}:`: indent it {spaces(inner)}"), above, 1


def over_indented(lines: list[str], line: int, above: int, fields: FieldNames | None) -> str | None:
    """`line` is indented more than the `key: value` above it: where it belongs when the schema
    says that is not beside that key (`env:` after `code: build:` belongs at the top level), or
    that it cannot tell; None when beside the key is right (or there is no schema to ask)."""
    if fields is None:
        return None
    key = _key(lines[line - 1])
    levels = sorted({n for n, _ in open_levels(lines, line) if n <= indent_of(lines, above)} | {indent_of(lines, above)})
    fitting = [(n, chain) for n in levels if (chain := _enclosing(lines, line, n)) is not None
               and _fits(fields, chain, key, strict=True)]
    if any(n == indent_of(lines, above) for n, _ in fitting) or not fitting and _fits(
            fields, _enclosing(lines, line, indent_of(lines, above)) or [], key):
        return None
    if len(fitting) != 1:
        return (f"line {line} is indented more than `{_key(lines[above - 1])}:` on line {above}, which already has a "
                f"value, so it reads as part of that value; indent it like the other fields of the mapping "
                f"`{key}` belongs to")
    indent, chain = fitting[0]
    where = f"under `{chain[-1][0]}:` (line {chain[-1][1]})" if chain else "at the top level"
    return (f"line {line} is indented more than `{_key(lines[above - 1])}:` on line {above}, which already has a "
            f"value, so it reads as part of that value; `{key}` belongs {where}: indent it {spaces(indent)}")


def _continues(lines: list[str], line: int, indent: int) -> bool:
    """Whether the block goes on at `indent` after `line` (before anything less indented)."""
    for at in range(line + 1, len(lines) + 1):
        if is_content(lines[at - 1]) and indent_of(lines, at) <= indent:
            return indent_of(lines, at) == indent
    return False


def placed(lines: list[str], line: int, levels: list[tuple[int, int]], fields: FieldNames | None) -> str | None:
    """A key at an indentation no block has: the one mapping the schema says holds it, the `key:`
    right above it (which has nothing under it yet) first; None when that is not clear."""
    if fields is None or _continues(lines, line, indent_of(lines, line)) or _opens(lines, line):
        return None  # lines after it at its indentation (it is in place, something above is not), or a
        # block of its own (moving the one line would not do)
    key = _key(lines[line - 1])
    above = content_above(lines, line)
    if above is not None and _opens(lines, above):
        chain = _enclosing(lines, line, indent_of(lines, above) + 1)
        if chain and _fits(fields, chain, key, strict=True):
            return (f"line {line} is indented {spaces(indent_of(lines, line))}, so `{chain[-1][0]}:` (line {above}) "
                    f"holds nothing; `{key}` belongs under it: indent it "
                    f"{spaces(indent_of(lines, above) + _step(lines, above))}")
    fitting = []
    for indent, _ in levels:
        chain = _enclosing(lines, line, indent)
        if chain is not None and _fits(fields, chain, key, strict=True):
            fitting.append((indent, chain))
    if len(fitting) != 1:
        return None
    indent, chain = fitting[0]
    where = f"under `{chain[-1][0]}:` (line {chain[-1][1]})" if chain else "at the top level"
    return (f"line {line} is indented {spaces(indent_of(lines, line))}, which lines up with nothing above it; "
            f"`{key}` belongs {where}: indent it {spaces(indent)}")


def _content_below(lines: list[str], line: int) -> int | None:
    for at in range(line + 1, len(lines) + 1):
        if is_content(lines[at - 1]):
            return at
    return None


def _opens(lines: list[str], line: int) -> bool:
    """`key:` with nothing after it: a block opens (or the key is null)."""
    text = lines[line - 1].strip()
    return not text.startswith("-") and not has_inline_value(text) and text.split(" #", 1)[0].endswith(":")


def _step(lines: list[str], opener: int) -> int:
    """How much deeper the block `opener` starts would be indented: as much as `opener` is under
    its own parent, else as the file's first indented line (2 when none is)."""
    parent = _enclosing(lines, opener, indent_of(lines, opener))
    step = indent_of(lines, opener) - (indent_of(lines, parent[-1][1]) if parent else 0)
    return step or next((n for at in range(1, len(lines) + 1) if is_content(lines[at - 1])
                         and (n := indent_of(lines, at))), 2)


def _key(text: str) -> str:
    """The key of a `key: value` or `key:` line (a key may hold ':', as `voxplane:region` does)."""
    body = text.strip().removeprefix("- ").split(" #", 1)[0]
    key = re.split(r":(?:\s|$)", body, maxsplit=1)[0]
    return key.strip().strip("'\"")


def _enclosing(lines: list[str], line: int, indent: int) -> list[tuple[str, int]] | None:
    """(key, line) of the blocks a key written at `indent` on `line` would sit in, outermost first;
    None when a list item or a value is in the way (the path cannot be told from the text)."""
    chain: list[tuple[str, int]] = []
    limit = indent
    for at in range(line - 1, 0, -1):
        text = lines[at - 1]
        if is_content(text) and not chain and indent_of(lines, at) == indent and text.strip().startswith("-"):
            return None  # list items at that indentation: a sequence, where no `key:` goes
        if not is_content(text) or indent_of(lines, at) >= limit:
            continue
        stripped = text.strip()
        if stripped.startswith("-") or has_inline_value(text) or not stripped.split(" #", 1)[0].endswith(":"):
            return None
        chain.append((_key(text), at))
        limit = indent_of(lines, at)
        if limit == 0:
            break
    return chain[::-1]


def _fits(fields: FieldNames | None, chain: list[tuple[str, int]], key: str, strict: bool = False) -> bool:
    """Whether the mapping at `chain` may hold `key` (True when there is no schema to ask, unless
    strict, or when the mapping takes any key, unless strict). A chain that names a field where a
    mapping takes any key (`engine_args:` read as a model's name) is not trusted."""
    if fields is None:
        return not strict
    path = tuple(k for k, _ in chain)
    for depth in range(len(path)):
        inner = fields(path[:depth + 1])
        if fields(path[:depth]) is None and inner is not None and path[depth] in inner:
            return False
    names = fields(path)
    if names is None:  # a mapping of names (models, tenants): a key that is a field of its entries is not one
        entry = fields(path + (key,))
        return not strict and not (entry is not None and key in entry)
    return key in names


def indent_of(lines: list[str], line: int) -> int:
    if not 1 <= line <= len(lines):
        return 0
    text = lines[line - 1]
    return len(text) - len(text.lstrip(" "))


def is_content(text: str) -> bool:
    stripped = text.strip()
    return bool(stripped) and not stripped.startswith("#")


def content_above(lines: list[str], line: int) -> int | None:
    """The nearest line above `line` that holds YAML (not blank, not a comment)."""
    for at in range(min(line, len(lines) + 1) - 1, 0, -1):
        if is_content(lines[at - 1]):
            return at
    return None


def has_inline_value(text: str) -> bool:
    """`key: value` (a scalar right after the colon), as opposed to `key:` opening a block."""
    key, sep, rest = text.strip().partition(": ")
    rest = rest.split(" #", 1)[0].strip()
    return bool(sep) and bool(rest) and rest not in ("|", ">", "|-", ">-", "|+", ">+")


def open_levels(lines: list[str], line: int) -> list[tuple[int, int]]:
    """(indentation, line) of the blocks still open above `line`, outermost first."""
    levels: list[tuple[int, int]] = []
    for at in range(1, min(line, len(lines) + 1)):
        if not is_content(lines[at - 1]):
            continue
        own = indent_of(lines, at)
        while levels and levels[-1][0] > own:
            levels.pop()
        if not levels or levels[-1][0] < own:
            levels.append((own, at))
    return levels


def spaces(count: int) -> str:
    return "1 space" if count == 1 else f"{count} spaces"
