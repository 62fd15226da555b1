"""What the loader reports: one `Problem` per mistake, with file, line, column and field."""

from __future__ import annotations

import json
import re
import dataclasses
from dataclasses import dataclass
from typing import Sequence

Path = tuple[str | int, ...]
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_./-]+$")


def format_path(path: Sequence[str | int]) -> str:
    """`("telephony", "numbers", 0)` -> `telephony.numbers[0]`; the document itself is `""`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"  # odd keys (spaces, newlines) stay on one readable line
    return out


@dataclass(frozen=True, order=True)
class Problem:
    """One mistake in one manifest, located at the key or value that causes it.

    `field` is empty when the mistake is the file as a whole (empty, not YAML, missing). A problem
    between files has its other `ends`: the same problem stated at the other file's line, so that
    validating either file shows it there. `mutual`: a conflict between files none of which is
    known to be the one that changed (two agents claiming one number), stated at every end.
    `see` names files whose own problems explain this one (an agent that names an invalid region).
    None of these takes part in comparison or ordering.
    """

    file: str
    line: int
    column: int
    field: str
    message: str
    ends: tuple["Problem", ...] = dataclasses.field(default=(), compare=False, repr=False)
    see: tuple[str, ...] = dataclasses.field(default=(), compare=False, repr=False)
    mutual: bool = dataclasses.field(default=False, compare=False, repr=False)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "column": self.column, "field": self.field, "message": self.message}


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`plural(1, "problem")` -> "1 problem"; `plural(2, "problem")` -> "2 problems"."""
    return f"{count} {noun if count == 1 else (many or noun + 's')}"


class ManifestError(Exception):
    """Raised by stages that need a valid project when the manifests are not valid."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = tuple(problems)
        first = str(self.problems[0]) if self.problems else "invalid manifests"
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(first + more)
