"""`voxplane validate`: every manifest and stack file checked; each problem one located line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

import click

from ..manifest.loader import LoadResult, load
from ..manifest.problems import plural
from ..manifest.stackfile import stack_name
from . import term
from .common import FORMATS, problem_text, root_option
from .completion import complete_manifests


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path), shell_complete=complete_manifests)
@root_option
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True, help="Output format.")
def validate(paths: Sequence[Path], root: Path, fmt: str) -> None:
    """Check manifests and stack files: YAML, schema, and references between files.

    PATHS are files or folders, relative to the current folder (default: the whole repository:
    regions/, agents/ and the Pulumi.<stack>.yaml stack files). The checks always run on the
    whole repository; with PATHS, the problems that touch them are printed (a problem between
    two files at both ends). Each is one line, FILE:LINE:COL: field.path: message. Exit 0 when
    valid, 1 otherwise.
    """
    result = load([p if p.is_absolute() else Path.cwd() / p for p in paths], root)
    if fmt == "json":
        click.echo(json.dumps(_validate_json(result), indent=2))
    else:
        for problem in result.problems:
            click.echo(problem_text(str(problem)))
        term.info(_summary(result))
    sys.exit(0 if result.ok else 1)


def _validate_json(result: LoadResult) -> dict[str, Any]:
    return {
        "valid": result.ok,
        "files": result.files,
        "errors": [p.as_dict() for p in result.problems],
    }


def _summary(result: LoadResult) -> str:
    files = len(result.files)
    elsewhere = (f"; {plural(result.elsewhere, 'problem')} in other files (`voxplane validate` lists them)"
                 if result.elsewhere else "")
    if result.ok:
        if not result.whole or result.project is None:
            return f"ok: {plural(files, 'file')}, checked against the whole repository{elsewhere}"
        project = result.project
        tenants = {t for r in project.regions.values() for t in r.tenants}
        stacks = sum(1 for f in result.files if stack_name(Path(f)) is not None)
        return (
            f"ok: {plural(files, 'file')}, {plural(len(project.regions), 'region')}, {plural(stacks, 'stack')}, "
            f"{plural(len(tenants), 'tenant')}, {plural(len(project.agents), 'agent')}"
        )
    bad = len({p.file for p in result.problems})
    return f"invalid: {plural(len(result.problems), 'problem')} in {bad} of {plural(max(files, bad), 'file')}{elsewhere}"
