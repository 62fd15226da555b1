"""Values left for the user to fill in (`voxplane new region` writes them): `"FILL-IN: <hint>"`.

`validate` reports each one at its line as `field: to fill in: <hint>`, in place of the schema's
complaint about the same value (a placeholder is not a URL, a host name, a CIDR …), so the list of
problems of a new region is the list of what to fill in.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from .problems import Path, Problem, format_path
from .sourcemap import SourceMap

MARK = "FILL-IN"


def placeholder(hint: str) -> str:
    return f"{MARK}: {hint}"


def is_placeholder(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(MARK)


def is_fill_in(problem: Problem) -> bool:
    """Whether `problem` is a placeholder still to fill in (as `find` and `in_stack` report it)."""
    return problem.message.startswith("to fill in:")


def _walk(value: Any, path: Path = ()) -> Iterator[tuple[Path, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, path + (index,))
    elif is_placeholder(value):
        yield path, value


def find(data: Any, smap: SourceMap, file: str) -> list[Problem]:
    """One problem per placeholder value in a manifest's `data`."""
    out = []
    for path, value in _walk(data):
        line, col = smap.value(path)
        hint = value[len(MARK):].lstrip(" :") or "a value"
        out.append(Problem(file, line, col, format_path(path), f"to fill in: {hint}"))
    return out


def merge(marks: Sequence[Problem], problems: Sequence[Problem]) -> list[Problem]:
    """`marks` plus the `problems` not about a placeholder (at a marked field or inside it)."""
    fields = {(m.file, m.field) for m in marks}

    def covered(p: Problem) -> bool:
        return any(p.file == f and (p.field == field or p.field.startswith((field + ".", field + "[")))
                   for f, field in fields)

    return [*marks, *(p for p in problems if not covered(p))]


def in_stack(stack: Any) -> list[Problem]:
    """One problem per placeholder among a stack file's `voxplane:` settings (a `StackFile`), named
    by the key as written (`voxplane:kubeContext`), as the stack file checks name them."""
    out = []
    for key, written in stack.written.items():
        value = stack.config.get(key)
        if is_placeholder(value):
            line, col = stack.value_at(key)
            hint = value[len(MARK):].lstrip(" :") or "a value"
            out.append(Problem(stack.file, line, col, written, f"to fill in: {hint}"))
    return out
