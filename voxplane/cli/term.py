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
    out = console()
    out.print(rich_table(header, rows, title=title, color=color(), width=out.width))


def console() -> Any:
    """A rich Console on stdout, with colour as `color()` says."""
    from rich.console import Console

    use_color = color()
    return Console(file=sys.stdout, no_color=not use_color, highlight=False,
                   force_terminal=use_color or None, soft_wrap=False)


#: The narrowest a column of words (a status sentence, a list of locations) is wrapped to.
TEXT_MIN_WIDTH = 24


def rich_table(header: Sequence[str], rows: Sequence[Sequence[str]], title: Optional[str] = None,
               color: bool = False, width: Optional[int] = None) -> Any:
    """What `table` draws on a terminal `width` columns wide (default: this one's), cells
    coloured by their first word when `color`. Nothing that matters is cut or wrapped word by word:

    1. the table as is, when it fits;
    2. else with each column of single words (names, numbers, `file:line` locations, status words)
       kept whole (only its header may wrap), and only columns of several words (status
       sentences, lists) wrapped, none narrower than TEXT_MIN_WIDTH;
    3. else one block per row: its first cell, then `header value` pairs, never split, as many
       to a line as fit.
    """
    from rich.console import Console
    from rich.measure import Measurement

    width = width or console().width
    unbounded = Console(width=100_000)  # rich clamps a measurement to the console's width

    def needs(table: Any) -> Measurement:
        return Measurement.get(unbounded, unbounded.options, table)

    table = _rich_table(header, rows, title, color, narrow=False)
    if needs(table).maximum <= width:
        return table
    table = _rich_table(header, rows, title, color, narrow=True)
    if needs(table).minimum <= width:
        return table
    return _records(header, rows, title, color, width)


def _rich_table(header: Sequence[str], rows: Sequence[Sequence[str]], title: Optional[str], color: bool,
                narrow: bool) -> Any:
    from rich import box
    from rich.markup import escape
    from rich.table import Column, Table

    columns = []
    for i, name in enumerate(header):
        cells = [r[i] for r in rows]
        if not narrow:
            columns.append(Column(name))
        elif any(" " in c for c in cells):  # words: wrapped between them, never below TEXT_MIN_WIDTH
            natural = max([len(name), *(len(c) for c in cells)])
            columns.append(Column(name, min_width=min(natural, TEXT_MIN_WIDTH), overflow="fold"))
        else:  # one word a cell: never narrower than its widest cell; only the header may wrap
            columns.append(Column(name, min_width=max((len(c) for c in cells), default=1)))
    out = Table(*columns, box=box.SIMPLE_HEAD, title=title, title_justify="left", header_style="bold",
                show_edge=False, pad_edge=False)
    for row in rows:
        out.add_row(*(_cell(c) if color else escape(c) for c in row))
    return out


def _records(header: Sequence[str], rows: Sequence[Sequence[str]], title: Optional[str], color: bool,
             width: int) -> Any:
    """A row a block: its first cell, then `header value` pairs packed into lines of `width`."""
    from rich.console import Group
    from rich.markup import escape
    from rich.text import Text

    lines: list[Any] = [Text(title)] if title else []
    sep = " · "
    for row in rows:
        lines.append(Text.from_markup(f"[bold]{escape(row[0])}[/bold]" if color else escape(row[0])))
        line, used = "", 0
        for name, cell in zip(header[1:], row[1:]):
            plain = f"{name} {cell}"
            shown = f"[dim]{escape(name)}[/dim] {_cell(cell)}" if color else escape(plain)
            if used and used + len(sep) + len(plain) > width - 2:
                lines.append(Text.from_markup("  " + line))
                line, used = "", 0
            line += (sep if used else "") + shown
            used += (len(sep) if used else 0) + len(plain)
        if line:
            lines.append(Text.from_markup("  " + line))
    return Group(*lines)


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
    if line.startswith("      ") and len(parts) == 1 and not stripped.startswith("("):
        return click.style(line, fg=_MARKS["~"])  # a changed path of the object above
    if line and not line.startswith(" ") and ": " in line and not line.startswith(("plan:", "note:")):
        location, _, rest = line.partition(": ")
        return click.style(location + ":", bold=True) + " " + rest
    if line.startswith("plan:"):
        return click.style(line, bold=True)
    return line
