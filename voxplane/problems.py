"""What the loader reports: one `Problem` per mistake, with file, line, column and field."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Sequence

Path = tuple[str | int, ...]
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_./-]+$")


def format_path(path: Sequence[str | int]) -> str:
    """`("telephony", "numbers", 0)` -> `telephony.numbers[0]`; the document root is `(root)`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"  # odd keys (spaces, newlines) stay on one readable line
    return out or "(root)"


@dataclass(frozen=True, order=True)
class Problem:
    """One mistake in one manifest, located at the key or value that causes it."""

    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.field}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class ManifestError(Exception):
    """Raised by stages that need a valid project when the manifests are not valid."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = tuple(problems)
        first = str(self.problems[0]) if self.problems else "invalid manifests"
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(first + more)
