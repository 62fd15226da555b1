"""Parse one YAML manifest into plain data plus the line and column of every key and value.

PyYAML's libyaml composer builds the node tree (with positions) in C; we turn nodes into plain
dicts, lists and scalars ourselves so that nothing is lost on the way: each node's position goes
into a `SourceMap`, duplicate keys are rejected, and alias bombs and absurd nesting stop early.
This keeps line tracking within a small factor of a plain `yaml.safe_load` (see bench/validate.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
import yaml.reader
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .indentation import (FieldNames, content_above, has_inline_value, indent_of, is_content,
                          odd_line, open_levels, over_indented, placed, spaces)
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
        above = content_above(lines, line)
        own = indent_of(lines, line)
        odd = odd_line(lines, line, fields)
        if odd is not None:
            return odd
        if above is not None and own > indent_of(lines, above) and has_inline_value(lines[above - 1]):
            key = lines[above - 1].strip().split(":", 1)[0]
            under = over_indented(lines, line, above, fields)
            if under is not None:
                return under, line, own + 1
            return (f"line {line} is indented more than `{key}:` on line {above}, which already has a value, so it "
                    f"reads as part of that value; indent it like `{key}:` ({spaces(indent_of(lines, above))}), or remove "
                    f"the value after `{key}:` to nest it there"), line, own + 1
        return "a second ': ' on this line; quote a value that contains ': ' (e.g. \"a: b\")", line, col
    if problem.startswith("did not find expected key") or problem.startswith("did not find expected '-' indicator"):
        own = indent_of(lines, line)
        levels = open_levels(lines, line)
        if context is not None and "block collection" in str(exc.context) and own == context.column:
            return (f"line {line} is not a list item but sits at the indentation of the list items above it "
                    f"(line {context.line + 1}); start it with '- ', or indent it under an item"), line, col
        odd = odd_line(lines, line, fields)
        if odd is not None:
            return odd
        where = placed(lines, line, levels, fields)
        if where is not None:
            return where, line, own + 1
        shown = " and ".join(f"{spaces(n)} on line {at}" for n, at in levels) or "none"
        return (f"line {line} is indented {spaces(own)}, which lines up with nothing above it (blocks above "
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
        first = next((at for at in range(1, len(lines) + 1) if is_content(lines[at - 1])), line)
        if indent_of(lines, first) > indent_of(lines, line):
            return (f"line {line} is indented less than the first line of the document (line {first}, "
                    f"{spaces(indent_of(lines, first))}); start every top-level key at column 1"), first, 1
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


def _char_at(lines: list[str], line: int, col: int) -> str:
    if 1 <= line <= len(lines) and 1 <= col <= len(lines[line - 1]):
        return lines[line - 1][col - 1]
    return ""


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
