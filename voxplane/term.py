"""Terminal manners of the CLI: tables and colour through `rich`, quiet and verbose, prompts.

To a terminal, tables are drawn by rich, with colour unless `--no-color` or NO_COLOR (any
non-empty value, https://no-color.org) says no. To anything else (a pipe, a file, CI logs, the
tests) they stay plain, aligned text without escape codes, exactly as before, so scripts and
expected-output tests keep reading the same bytes. `-q` drops progress and summary lines on
stderr (errors and the answer itself always print); `-v` adds detail. Prompts only ever appear
when stdin is a terminal.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import click

#: Cell texts that get a colour on a terminal, by their first word.
_STYLES = {"ok": "green", "set": "green", "short": "red", "missing": "red", "plain": "red", "quota": "red",
           "weights": "red", "add": "yellow", "no": "yellow"}


@dataclass
class Settings:
    no_color: bool = False
    verbosity: int = 0  # -1 quiet, 0 normal, 1+ verbose


SETTINGS = Settings()


def configure(no_color: bool = False, quiet: bool = False, verbose: int = 0) -> None:
    """Set for one invocation (the main group calls it every time, so nothing leaks between runs)."""
    SETTINGS.no_color = no_color
    SETTINGS.verbosity = -1 if quiet else verbose


def is_terminal(err: bool = False) -> bool:
    stream = sys.stderr if err else sys.stdout
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def interactive() -> bool:
    """Whether a prompt can be answered: stdin is a terminal."""
    try:
        return bool(sys.stdin.isatty())
    except (AttributeError, ValueError):
        return False


def color(err: bool = False) -> bool:
    """Colour on this stream: a terminal, and neither --no-color nor NO_COLOR."""
    return not SETTINGS.no_color and not os.environ.get("NO_COLOR") and is_terminal(err)


def quiet() -> bool:
    return SETTINGS.verbosity < 0


def verbose() -> bool:
    return SETTINGS.verbosity > 0


def info(message: str) -> None:
    """A progress or summary line on stderr; `-q` drops it."""
    if not quiet():
        click.echo(style(message, dim=True, err=True), err=True)


def detail(message: str) -> None:
    """A line only `-v` shows (stderr)."""
    if verbose():
        click.echo(style(message, dim=True, err=True), err=True)


def style(text: str, err: bool = False, **styles: object) -> str:
    """`click.style` when this stream shows colour, else the text unchanged."""
    return click.style(text, **styles) if color(err) else text  # type: ignore[arg-type]


def plain_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Aligned columns, a dashed rule under the header, trailing spaces trimmed."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def table(header: Sequence[str], rows: Sequence[Sequence[str]], title: Optional[str] = None) -> None:
    """A table on stdout: rich on a terminal, plain text (`plain_table`) anywhere else."""
    if not is_terminal():
        if title:
            click.echo(title)
        for text in plain_table(header, rows):
            click.echo(text)
        return
    console().print(rich_table(header, rows, title=title, color=color()))


def console() -> Any:
    """A rich Console on stdout, with colour as `color()` says."""
    from rich.console import Console

    use_color = color()
    return Console(file=sys.stdout, no_color=not use_color, highlight=False,
                   force_terminal=use_color or None, soft_wrap=False)


def rich_table(header: Sequence[str], rows: Sequence[Sequence[str]], title: Optional[str] = None,
               color: bool = False) -> Any:
    """The rich Table `table` draws on a terminal (cells coloured by their first word when `color`)."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    out = Table(*header, box=box.SIMPLE_HEAD, title=title, title_justify="left", header_style="bold",
                show_edge=False, pad_edge=False)
    for row in rows:
        out.add_row(*(_cell(c) if color else escape(c) for c in row))
    return out


def _cell(text: str) -> str:
    from rich.markup import escape

    first = text.split(" ", 1)[0].split(":", 1)[0].lower()
    colour = _STYLES.get(first)
    return f"[{colour}]{escape(text)}[/{colour}]" if colour else escape(text)


def confirm(question: str) -> bool:
    """Ask on a terminal (default no); without one, never ask: the caller decides."""
    return click.confirm(question, default=False, err=True)


_MARKS = {"+": "green", "-": "red", "~": "yellow"}


def plan_line(line: str) -> str:
    """A line of `voxplane plan`'s text, coloured by its +/-/~ mark on a terminal."""
    if not color():
        return line
    stripped = line.lstrip()
    parts = stripped.split("  ", 1)
    mark = parts[1].lstrip()[:1] if len(parts) == 2 and line.startswith("    ") else ""
    if mark in _MARKS:
        return click.style(line, fg=_MARKS[mark])
    if line and not line.startswith(" ") and ": " in line and not line.startswith(("plan:", "note:")):
        location, _, rest = line.partition(": ")
        return click.style(location + ":", bold=True) + " " + rest
    if line.startswith("plan:"):
        return click.style(line, bold=True)
    return line
