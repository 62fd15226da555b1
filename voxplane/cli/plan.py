"""`voxplane affected` and `voxplane plan`: which regions a change touches and what it does to them,
against a base revision (voxplane/plan/ does the work).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

import click

from ..manifest.loader import load
from ..manifest.problems import ManifestError
from . import term
from .common import FORMATS, print_problems, root_option
from .completion import complete_regions


_BASE_HELP = ("Git revision to compare with [default: the merge base of HEAD with the main branch (origin/HEAD, "
              "origin/main, main, origin/master, master); HEAD in a repository with none of them].")


def _base(root: Path, base: str | None) -> tuple[str, str]:
    """(commit, what it is) of --base, or of the default base that `affected` and `plan` share."""
    from ..plan.affected import default_base, resolve_base

    return default_base(root) if base is None else (resolve_base(root, base), base)


@click.command()
@click.option("--base", default=None, metavar="REF", help=_BASE_HELP)
@click.option("--explain", is_flag=True, help="Say why each region is affected (each changed file and what links it).")
@root_option
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True, help="Output format.")
def affected(base: str, explain: bool, root: Path, fmt: str) -> None:
    """List the regions a change touches (for the CI preview matrix).

    Compares the working tree with BASE (by default the merge base with the main branch, as
    `voxplane plan` does; said on stderr): a region is affected when its manifest or stack file
    changed, when an agent running there (before or after) changed, or that agent's code; a
    change to the tool itself affects every region. With --explain, each region comes with its
    reasons (JSON: an object of region -> reasons). Exit 1 on invalid manifests or git errors.
    """
    from ..plan.affected import GitError, affected_regions, changed_files, explain_regions, regions_at

    result = load((), root)
    if result.problems or result.project is None:
        print_problems(result.problems)
        sys.exit(1)
    try:
        commit, label = _base(root, base)
        changed = changed_files(commit, root)
        before = regions_at(commit, root, changed)
        regions = affected_regions(changed, result.project, before)
    except GitError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    for path in changed:
        term.detail(f"changed: {path}")
    reasons = explain_regions(changed, result.project, before) if explain else {}
    if fmt == "json":
        click.echo(json.dumps(reasons if explain else regions))
    else:
        for region in regions:
            click.echo(region)
            for reason in reasons.get(region, []):
                click.echo(f"  {reason}")
    term.info(f"{len(regions)} of {len(result.project.regions)} regions affected by {len(changed)} changed files, "
              f"against {commit[:12]} ({label})")


@click.command()
@click.argument("regions", nargs=-1, metavar="[REGION ...]", shell_complete=complete_regions)
@click.option("--base", default=None, metavar="REF", help=_BASE_HELP)
@root_option
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True,
              help="Output format (markdown: the pull request comment).")
def plan(regions: Sequence[str], base: str | None, root: Path, fmt: str) -> None:
    """What the working tree changes against BASE, offline: per manifest field, the objects it touches.

    Renders REGION (default: every region the change can affect, as `voxplane affected` decides)
    from the working tree and from BASE (exported with git into a temporary folder; rendered by
    BASE's own code when the tool itself changed), and lists each changed manifest field, stack
    config key or agent code folder with the Kubernetes and LiveKit objects it changes, adds or
    removes; then the objects added and removed, what the change does to capacity (replicas and
    GPUs at peak, agent sessions, tenant quota headroom) and to routing (numbers added, moved,
    removed). No cluster, no Pulumi CLI. Exit 0 no object changes, 2 changes, 1 error (as
    terraform's -detailed-exitcode).
    """
    from ..plan.output import RENDERERS
    from ..plan.plan import plan_between
    from ..plan.result import PlanError
    from ..plan.sides import changed_between, exported
    from ..plan.affected import GitError

    try:
        commit, label = _base(root, base)
        term.info(f"planning against {commit[:12]} ({label}): rendering both sides ...")
        with exported(root, commit) as base_root:
            changed = changed_between(base_root, root)
            for path in changed:
                term.detail(f"changed: {path}")
            result = plan_between(base_root, root, list(regions) or None, changed=changed, base=commit,
                                     base_label=label)
    except ManifestError as exc:
        print_problems(exc.problems)
        sys.exit(1)
    except (PlanError, GitError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    text = RENDERERS[fmt](result)
    if fmt == "text":
        for line in text.rstrip("\n").split("\n"):
            click.echo(term.plan_line(line))
    else:
        click.echo(text.rstrip("\n"))
    sys.exit(2 if result.has_changes else 0)
