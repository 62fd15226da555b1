"""What the commands share: the repository root and its --root option, the output formats, manifest
problems and failures on stderr, tables, the LiveKit connection options.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import click

from ..manifest.loader import LoadedRegion, find_region, find_root, load
from ..manifest.problems import Problem, plural
from . import term

FORMATS = click.Choice(["text", "json"])


class NoRepository(click.ClickException):
    """Run outside a repository: one line saying how voxplane finds one (exit 1)."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def repository_root(value: Path | None = None) -> Path:
    """`value` (--root) if given, else the nearest folder at or above the current one holding
    Pulumi.yaml; NoRepository when there is none."""
    if value is not None:
        return value
    root = find_root(Path.cwd())
    if not (root / "Pulumi.yaml").is_file() and not any((root / d).is_dir() for d in ("regions", "agents")):
        raise NoRepository(f"no voxplane repository here: no Pulumi.yaml in {root} or a folder above it (nor "
                           f"regions/ or agents/ in it); run voxplane inside the repository, or pass --root DIR")
    return root


def _root(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path:
    return repository_root(value)


def root_option(fn: Any) -> Any:
    return click.option(
        "--root",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        callback=_root,
        help="Repository root holding regions/, agents/ and Pulumi.<region>.yaml "
             "[default: the nearest folder at or above the current one that holds Pulumi.yaml].",
    )(fn)


def print_problems(problems: Sequence[Problem]) -> None:
    """Manifest problems for commands other than validate: same lines, on stderr."""
    for problem in problems:
        click.echo(str(problem), err=True)


def fail(lines: Sequence[str]) -> None:
    for line in lines:
        click.echo(line, err=True)
    sys.exit(1)


def livekit_options(fn: Any) -> Any:
    """--url/--api-key/--api-secret with the livekit-api environment fallbacks."""
    fn = click.option("--api-secret", envvar="LIVEKIT_API_SECRET", metavar="SECRET",
                      help="API secret [env LIVEKIT_API_SECRET].")(fn)
    fn = click.option("--api-key", envvar="LIVEKIT_API_KEY", metavar="KEY",
                      help="API key with SIP admin rights [env LIVEKIT_API_KEY].")(fn)
    fn = click.option("--url", envvar="LIVEKIT_URL", metavar="URL",
                      help="LiveKit server (ws://, wss://, http:// or https://) [env LIVEKIT_URL; "
                           "default: the region's livekit.public_url].")(fn)
    return fn


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """Plain aligned text to pipes and files (stable for scripts and tests), rich on a terminal."""
    term.table(header, rows)


def problem_text(line: str) -> str:
    """FILE:LINE:COL: in bold on a terminal with colour; unchanged elsewhere."""
    location, sep, rest = line.partition(": ")
    return term.style(location + sep, bold=True) + rest if sep else line


def region_model(root: Path, region: str) -> LoadedRegion:
    """The region to answer about, from what loaded when other files have problems (printed
    first, with a note; the command then exits 1). Exits 1 when the region itself did not load."""
    result = load((), root)
    print_problems(result.problems)
    project = result.project or result.partial
    loaded = LoadedRegion(project, find_region(project, region, result.problems, result.invalid_regions),
                          tuple(result.problems))
    if loaded.problems:
        click.echo(f"note: the manifests have {plural(len(loaded.problems), 'problem')} (above); this answer uses "
                   f"the files that loaded, and the command exits 1", err=True)
    return loaded
