"""Parse one YAML manifest into plain data plus the line and column of every key and value.

PyYAML's libyaml composer builds the node tree (with positions) in C; we turn nodes into plain
dicts, lists and scalars ourselves so that nothing is lost on the way: each node's position goes
into a `SourceMap`, duplicate keys are rejected, and alias bombs and absurd nesting stop early.
This keeps line tracking within a small factor of a plain `yaml.safe_load` (see bench/validate.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import yaml
import yaml.reader
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .problems import Path
from .secret_fields import looks_like_credential

#: Manifests are small; anything larger is a mistake (or an attack), not a manifest.
MAX_BYTES = 1_000_000
#: Nodes after alias expansion; stops "billion laughs" documents.
MAX_NODES = 100_000
MAX_DEPTH = 64

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_SCALAR_TAGS = {
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
}

Position = tuple[int, int]
#: The keys a mapping at a path may hold, from the schema of the document's kind (None: a mapping
#: of names, such as `models:`, whose entries the deeper paths describe); lets an indentation hint
#: say which mapping a key belongs under.
FieldNames = Callable[[Path], Optional[frozenset[str]]]


class AnyField(frozenset[str]):
    """The fields of a mapping that takes every key as a field of its own (a stack's `config:`)."""

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str)


@dataclass
class SourceMap:
    """Where each path of a document was written: 1-based (line, column) of key and value."""

    keys: dict[Path, Position] = field(default_factory=dict)
    values: dict[Path, Position] = field(default_factory=dict)

    def value(self, path: Path) -> Position:
        """Position of the value at `path`; for a value not written (a default), the key of its
        nearest written ancestor."""
        path = tuple(path)
        if path in self.values:
            return self.values[path]
        return self.key(path[:-1]) if path else (1, 1)

    def key(self, path: Path) -> Position:
        """Position of the key naming `path` (the list item itself for list entries)."""
        path = tuple(path)
        while path:
            if path in self.keys:
                return self.keys[path]
            path = path[:-1]
        return self.values.get((), (1, 1))


class YamlProblem(Exception):
    """A document that cannot become a manifest: bad YAML, a duplicate key, too big, binary."""

    def __init__(self, message: str, line: int = 1, column: int = 1, path: Path = ()):
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.path = path


def parse(raw: bytes, fields: FieldNames | None = None) -> tuple[Any, SourceMap]:
    """Parse manifest bytes into (data, source map); raise `YamlProblem` with a position. `fields`
    (the schema's keys per path) sharpens the hint for a key indented wrongly."""
    if len(raw) > MAX_BYTES:
        raise YamlProblem(f"file is {len(raw):,} bytes; manifests are limited to {MAX_BYTES:,}")
    if b"\x00" in raw:
        raise YamlProblem("file contains binary data (NUL bytes); expected a YAML manifest")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise YamlProblem("file is not UTF-8 text; expected a YAML manifest", line) from None
    if not text.strip() or all(
        not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()
    ):
        raise YamlProblem("file is empty; expected a YAML mapping")

    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise YamlProblem("file is empty; expected a YAML mapping")
        smap = SourceMap()
        builder = _Builder(loader, smap)
        data = builder.build(node, (), 0)
        return data, smap
    except yaml.MarkedYAMLError as exc:
        detail, line, col = explain_yaml_error(exc, text, fields)
        raise YamlProblem(f"invalid YAML: {detail}", line, col) from None
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        line, col = before.count("\n") + 1, len(before) - before.rfind("\n")
        raise YamlProblem(f"invalid YAML: control character #x{exc.character:04x} is not allowed", line, col) from None
    except yaml.YAMLError as exc:
        raise YamlProblem("invalid YAML: " + " ".join(str(exc).split())) from None
    except RecursionError:
        raise YamlProblem(f"document is nested too deeply (more than {MAX_DEPTH} levels)") from None
    finally:
        loader.dispose()


def explain_yaml_error(exc: yaml.MarkedYAMLError, text: str, fields: FieldNames | None = None) -> tuple[str, int, int]:
    """The parser's complaint in words a manifest author acts on, and the (line, column) to fix.

    libyaml reports where it gave up ("did not find expected key"); the mistake is usually the
    indentation of that line or of the one above, so the text around the mark is read to say which,
    and `fields` (the schema) confirms which mapping a key belongs under.
    """
    problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
    mark, context = exc.problem_mark, exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    lines = text.splitlines()
    if "expected a single document" in str(exc):
        return "file holds more than one YAML document; put one manifest per file", line, col
    if "tab character" in problem or (problem.startswith("found character") and _char_at(lines, line, col) == "\t"):
        return "tab character; YAML indents with spaces only", line, col
    if problem.startswith("mapping values are not allowed"):
        above = _content_above(lines, line)
        own = _indent(lines, line)
        odd = _odd_line(lines, line, fields)
        if odd is not None:
            return odd
        if above is not None and own > _indent(lines, above) and _has_inline_value(lines[above - 1]):
            key = lines[above - 1].strip().split(":", 1)[0]
            under = _over_indented(lines, line, above, fields)
            if under is not None:
                return under, line, own + 1
            return (f"line {line} is indented more than `{key}:` on line {above}, which already has a value, so it "
                    f"reads as part of that value; indent it like `{key}:` ({_spaces(_indent(lines, above))}), or remove "
                    f"the value after `{key}:` to nest it there"), line, own + 1
        return "a second ': ' on this line; quote a value that contains ': ' (e.g. \"a: b\")", line, col
    if problem.startswith("did not find expected key") or problem.startswith("did not find expected '-' indicator"):
        own = _indent(lines, line)
        levels = _open_levels(lines, line)
        if context is not None and "block collection" in str(exc.context) and own == context.column:
            return (f"line {line} is not a list item but sits at the indentation of the list items above it "
                    f"(line {context.line + 1}); start it with '- ', or indent it under an item"), line, col
        odd = _odd_line(lines, line, fields)
        if odd is not None:
            return odd
        placed = _placed(lines, line, levels, fields)
        if placed is not None:
            return placed, line, own + 1
        shown = " and ".join(f"{_spaces(n)} on line {at}" for n, at in levels) or "none"
        return (f"line {line} is indented {_spaces(own)}, which lines up with nothing above it (blocks above "
                f"start at {shown}); indent it like the lines it belongs with"), line, own + 1
    if problem.startswith("could not find expected ':'"):
        at = (context.line + 1, context.column + 1) if context else (line, col)
        return (f"line {at[0]} is neither `key: value` nor a list item; add ': ' after the key, "
                f"or indent it as part of the value above"), at[0], at[1]
    if problem.startswith("block sequence entries are not allowed"):
        return ("a list cannot start on the same line as its key; put `- item` on the next line, indented, "
                "or write the list as [a, b]"), line, col
    if "flow sequence" in str(exc.context) or "flow mapping" in str(exc.context):
        close = "]" if "sequence" in str(exc.context) else "}"
        opened = (context.line + 1, context.column + 1) if context else (line, col)
        return (f"the '{'[' if close == ']' else '{'}' on line {opened[0]} is not closed: expected ',' or '{close}' "
                f"by line {line}; add the missing '{close}'"), opened[0], opened[1]
    if "quoted scalar" in str(exc.context) and "end of stream" in problem:
        opened = (context.line + 1, context.column + 1) if context else (line, col)
        return f"the quote on line {opened[0]} is never closed; add the closing quote", opened[0], opened[1]
    if problem.startswith("did not find expected <document start>"):
        first = next((at for at in range(1, len(lines) + 1) if _is_content(lines[at - 1])), line)
        if _indent(lines, first) > _indent(lines, line):
            return (f"line {line} is indented less than the first line of the document (line {first}, "
                    f"{_spaces(_indent(lines, first))}); start every top-level key at column 1"), first, 1
        return (f"line {line} follows a document that already ended; the manifest must be one mapping "
                f"of `key: value` lines from the top"), line, col
    if problem.startswith("found undefined alias"):
        name = re.match(r"\*([^\s,\]}]+)", lines[line - 1][col - 1:] if 1 <= line <= len(lines) else "")
        alias = name.group(1) if name else "name"
        return f"alias *{alias} refers to no anchor; define &{alias} above it or write the value out", line, col
    if problem.startswith("found character that cannot start any token"):
        char = _char_at(lines, line, col)
        return f"{char!r} cannot start a plain value; quote the value", line, col
    return problem, line, col


def _odd_line(lines: list[str], failed: int, fields: FieldNames | None) -> tuple[str, int, int] | None:
    """The line above `failed` is the one out of place: a `key: value` dedented out of the block it
    belongs to (the only line of a block, or one among lines indented deeper), so YAML stops at the
    line after it. Says which mapping the key belongs under, as (message, line, column), when the
    text and the schema (if there is one) point at one; None otherwise."""
    above = _content_above(lines, failed)
    if above is None or not _has_inline_value(lines[above - 1]):
        return None
    own, odd = _indent(lines, failed), _indent(lines, above)
    before = _content_above(lines, above)
    if before is None:
        return None
    key = _key(lines[above - 1])
    if _opens(lines, before) and odd == _indent(lines, before):
        # Beside the `key:` above it, which so holds nothing: one of the two is out of place. When the
        # failing line is deeper than that `key:`, it shows where its fields go, and the schema says
        # whether this key is one of them (and not one of the mapping it sits in now).
        chain = _enclosing(lines, above, own)
        here = _enclosing(lines, above, odd)
        if (own > odd and chain and chain[-1][1] == before and here is not None and _fits(fields, chain, key)
                and _fits(fields, chain, _key(lines[failed - 1])) and fields is not None
                and not _fits(fields, here, key, strict=True)):
            return (f"line {above} (`{key}:`) is indented {_spaces(odd)}, like `{chain[-1][0]}:` on line {before}, "
                    f"which so holds nothing, and line {failed} has nowhere to go; `{key}` belongs under "
                    f"`{chain[-1][0]}:`: indent it {_spaces(own)}, like line {failed}"), above, 1
        return (f"line {above} (`{key}:`) is indented like `{_key(lines[before - 1])}:` on line {before}, which so "
                f"holds nothing, and line {failed} has nowhere to go; indent line {above} under line {before}, or "
                f"line {before} back to its own mapping"), above, 1
    if _opens(lines, before) and odd < _indent(lines, before):
        # The only line of a block, dedented out of it: the `key:` above it holds nothing.
        chain = _enclosing(lines, above, _indent(lines, before) + 1)
        if chain and chain[-1][1] == before and _fits(fields, chain, key):
            inner = _indent(lines, before) + _step(lines, before)
            return (f"line {above} (`{key}:`) is indented {_spaces(odd)}, so `{chain[-1][0]}:` (line {before}) holds "
                    f"nothing and line {failed} has nowhere to go; `{key}` belongs under `{chain[-1][0]}:`: indent it "
                    f"{_spaces(inner)}"), above, 1
    if odd >= own or not (_indent(lines, before) >= own or _opens(lines, before)):
        return None  # nothing above it is at the failing line's depth: the failing line is the odd one
    home = _enclosing(lines, above, odd)
    if home and odd > _indent(lines, home[-1][1]) and _fits(fields, home, key):
        # `above` sits inside a block as written: if that block goes on at its indentation after
        # the failing line, the failing line is the one out of place (and if the failing line opens
        # a block of its own, the lines after it say nothing).
        if _opens(lines, failed):
            nxt = _content_below(lines, failed)
            if nxt is None or _indent(lines, nxt) <= own or not _continues(lines, failed, own):
                return None
        for at in range(failed + 1, len(lines) + 1):
            if _is_content(lines[at - 1]) and _indent(lines, at) <= own:
                if _indent(lines, at) == odd:
                    return None
                break
    levels = sorted({n for n, _ in _open_levels(lines, above) if n > odd} | {own})
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
    fitting = [f for f in fitting if f[0] == _indent(lines, before)] if len(fitting) > 1 else fitting
    if len(fitting) != 1:
        return (f"line {above} (`{key}:`) is indented {_spaces(odd)}, less than line {failed} after it, which has "
                f"nowhere to go; indent line {above} into the block it belongs to"), above, 1
    inner, chain = fitting[0]
    parent, at = chain[-1]
    where = (f"so it ends `{parent}:` (line {at}) and line {failed} has nowhere to go" if odd <= _indent(lines, at)
             else f"and the fields of `{parent}:` (line {at}) must line up")
    return (f"line {above} (`{key}:`) is indented {_spaces(odd)}, less than the block it belongs to, {where}; "
            f"`{key}` belongs under `{parent}:`: indent it {_spaces(inner)}"), above, 1


def _over_indented(lines: list[str], line: int, above: int, fields: FieldNames | None) -> str | None:
    """`line` is indented more than the `key: value` above it: where it belongs when the schema
    says that is not beside that key (`env:` after `code: build:` belongs at the top level), or
    that it cannot tell; None when beside the key is right (or there is no schema to ask)."""
    if fields is None:
        return None
    key = _key(lines[line - 1])
    levels = sorted({n for n, _ in _open_levels(lines, line) if n <= _indent(lines, above)} | {_indent(lines, above)})
    fitting = [(n, chain) for n in levels if (chain := _enclosing(lines, line, n)) is not None
               and _fits(fields, chain, key, strict=True)]
    if any(n == _indent(lines, above) for n, _ in fitting) or not fitting and _fits(
            fields, _enclosing(lines, line, _indent(lines, above)) or [], key):
        return None
    if len(fitting) != 1:
        return (f"line {line} is indented more than `{_key(lines[above - 1])}:` on line {above}, which already has a "
                f"value, so it reads as part of that value; indent it like the other fields of the mapping "
                f"`{key}` belongs to")
    indent, chain = fitting[0]
    where = f"under `{chain[-1][0]}:` (line {chain[-1][1]})" if chain else "at the top level"
    return (f"line {line} is indented more than `{_key(lines[above - 1])}:` on line {above}, which already has a "
            f"value, so it reads as part of that value; `{key}` belongs {where}: indent it {_spaces(indent)}")


def _continues(lines: list[str], line: int, indent: int) -> bool:
    """Whether the block goes on at `indent` after `line` (before anything less indented)."""
    for at in range(line + 1, len(lines) + 1):
        if _is_content(lines[at - 1]) and _indent(lines, at) <= indent:
            return _indent(lines, at) == indent
    return False


def _placed(lines: list[str], line: int, levels: list[tuple[int, int]], fields: FieldNames | None) -> str | None:
    """A key at an indentation no block has: the one mapping the schema says holds it, the `key:`
    right above it (which has nothing under it yet) first; None when that is not clear."""
    if fields is None or _continues(lines, line, _indent(lines, line)) or _opens(lines, line):
        return None  # lines after it at its indentation (it is in place, something above is not), or a
        # block of its own (moving the one line would not do)
    key = _key(lines[line - 1])
    above = _content_above(lines, line)
    if above is not None and _opens(lines, above):
        chain = _enclosing(lines, line, _indent(lines, above) + 1)
        if chain and _fits(fields, chain, key, strict=True):
            return (f"line {line} is indented {_spaces(_indent(lines, line))}, so `{chain[-1][0]}:` (line {above}) "
                    f"holds nothing; `{key}` belongs under it: indent it "
                    f"{_spaces(_indent(lines, above) + _step(lines, above))}")
    fitting = []
    for indent, _ in levels:
        chain = _enclosing(lines, line, indent)
        if chain is not None and _fits(fields, chain, key, strict=True):
            fitting.append((indent, chain))
    if len(fitting) != 1:
        return None
    indent, chain = fitting[0]
    where = f"under `{chain[-1][0]}:` (line {chain[-1][1]})" if chain else "at the top level"
    return (f"line {line} is indented {_spaces(_indent(lines, line))}, which lines up with nothing above it; "
            f"`{key}` belongs {where}: indent it {_spaces(indent)}")


def _content_below(lines: list[str], line: int) -> int | None:
    for at in range(line + 1, len(lines) + 1):
        if _is_content(lines[at - 1]):
            return at
    return None


def _opens(lines: list[str], line: int) -> bool:
    """`key:` with nothing after it: a block opens (or the key is null)."""
    text = lines[line - 1].strip()
    return not text.startswith("-") and not _has_inline_value(text) and text.split(" #", 1)[0].endswith(":")


def _step(lines: list[str], opener: int) -> int:
    """How much deeper the block `opener` starts would be indented: as much as `opener` is under
    its own parent, else as the file's first indented line (2 when none is)."""
    parent = _enclosing(lines, opener, _indent(lines, opener))
    step = _indent(lines, opener) - (_indent(lines, parent[-1][1]) if parent else 0)
    return step or next((n for at in range(1, len(lines) + 1) if _is_content(lines[at - 1])
                         and (n := _indent(lines, at))), 2)


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
        if _is_content(text) and not chain and _indent(lines, at) == indent and text.strip().startswith("-"):
            return None  # list items at that indentation: a sequence, where no `key:` goes
        if not _is_content(text) or _indent(lines, at) >= limit:
            continue
        stripped = text.strip()
        if stripped.startswith("-") or _has_inline_value(text) or not stripped.split(" #", 1)[0].endswith(":"):
            return None
        chain.append((_key(text), at))
        limit = _indent(lines, at)
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


def _indent(lines: list[str], line: int) -> int:
    if not 1 <= line <= len(lines):
        return 0
    text = lines[line - 1]
    return len(text) - len(text.lstrip(" "))


def _char_at(lines: list[str], line: int, col: int) -> str:
    if 1 <= line <= len(lines) and 1 <= col <= len(lines[line - 1]):
        return lines[line - 1][col - 1]
    return ""


def _is_content(text: str) -> bool:
    stripped = text.strip()
    return bool(stripped) and not stripped.startswith("#")


def _content_above(lines: list[str], line: int) -> int | None:
    """The nearest line above `line` that holds YAML (not blank, not a comment)."""
    for at in range(min(line, len(lines) + 1) - 1, 0, -1):
        if _is_content(lines[at - 1]):
            return at
    return None


def _has_inline_value(text: str) -> bool:
    """`key: value` (a scalar right after the colon), as opposed to `key:` opening a block."""
    key, sep, rest = text.strip().partition(": ")
    rest = rest.split(" #", 1)[0].strip()
    return bool(sep) and bool(rest) and rest not in ("|", ">", "|-", ">-", "|+", ">+")


def _open_levels(lines: list[str], line: int) -> list[tuple[int, int]]:
    """(indentation, line) of the blocks still open above `line`, outermost first."""
    levels: list[tuple[int, int]] = []
    for at in range(1, min(line, len(lines) + 1)):
        if not _is_content(lines[at - 1]):
            continue
        own = _indent(lines, at)
        while levels and levels[-1][0] > own:
            levels.pop()
        if not levels or levels[-1][0] < own:
            levels.append((own, at))
    return levels


def _spaces(count: int) -> str:
    return "1 space" if count == 1 else f"{count} spaces"


def _pos(node: Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    """Node tree -> plain data, recording positions; one instance per document."""

    def __init__(self, loader: Any, smap: SourceMap):
        self.loader = loader
        self.smap = smap
        self.count = 0

    def build(self, node: Node, path: Path, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            # Aliased nodes carry their anchor's position; blame the top-level key being expanded.
            top = path[:1]
            line, col = self.smap.keys.get(top, (1, 1))
            raise YamlProblem(
                f"document expands to more than {MAX_NODES:,} nodes (anchors and aliases?)", line, col, top
            )
        if depth > MAX_DEPTH:
            line, col = _pos(node)
            raise YamlProblem(f"document is nested more than {MAX_DEPTH} levels deep", line, col, path)
        self.smap.values[path] = _pos(node)
        if isinstance(node, MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ:
                raise self._tag_problem(node, path)
            out = []
            for index, item in enumerate(node.value):
                self.smap.keys[path + (index,)] = _pos(item)
                out.append(self.build(item, path + (index,), depth + 1))
            return out
        return self._scalar(node, path)

    def _mapping(self, node: MappingNode, path: Path, depth: int) -> dict[str, Any]:
        if node.tag != _MAP:
            raise self._tag_problem(node, path)
        if any(key.tag == _MERGE for key, _ in node.value):
            self.loader.flatten_mapping(node)  # YAML merge keys (<<: *defaults)
        out: dict[str, Any] = {}
        first_seen: dict[str, Position] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                line, col = _pos(key_node)
                raise YamlProblem("mapping keys must be plain strings", line, col, path)
            # The key's text as written: `on:` stays "on", `8080:` stays "8080".
            key = key_node.value
            where = _pos(key_node)
            if key in first_seen:
                raise YamlProblem(
                    f"duplicate key {'(not shown: it may be a secret)' if looks_like_credential(key) else repr(key)} "
                    f"(first defined on line {first_seen[key][0]})",
                    where[0],
                    where[1],
                    path + (key,),
                )
            first_seen[key] = where
            self.smap.keys[path + (key,)] = where
            out[key] = self.build(value_node, path + (key,), depth + 1)
        return out

    def _scalar(self, node: Node, path: Path) -> Any:
        tag = node.tag
        if tag == _STR or tag == _TIMESTAMP:
            return node.value  # timestamps stay text, as JSON Schema expects
        if tag in _SCALAR_TAGS:
            return self.loader.yaml_constructors[tag](self.loader, node)
        raise self._tag_problem(node, path)

    def _tag_problem(self, node: Node, path: Path) -> YamlProblem:
        line, col = _pos(node)
        return YamlProblem(f"unsupported YAML tag {node.tag!r}", line, col, path)
