"""`voxplane new agent|region`: files to start from (voxplane/devtools/scaffold.py writes them).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import click

from ..manifest.problems import plural
from . import term
from .common import fail, problem_text, root_option
from .completion import complete_regions, complete_tenants


@click.group()
def new() -> None:
    """Start an agent or a region from files that validate (or say what to fill in).

    Never overwrites: when any file to write exists, nothing is written.
    """


def _scaffolded(out: Any) -> None:
    for path in out.written:
        click.echo(f"wrote {path}")
    for note in out.notes:
        term.info(f"note: {note}")
    if out.problems:
        click.echo("", err=True)
        for problem in out.problems:
            click.echo(problem_text(str(problem)), err=True)
    if out.next:
        term.info("next:")
        for line in out.next:
            term.info(f"  {line}")


@new.command("agent")
@click.argument("name")
@click.option("--tenant", required=True, shell_complete=complete_tenants, help="Tenant that owns the agent.")
@click.option("--region", "regions", required=True, multiple=True, shell_complete=complete_regions,
              help="Region the agent runs in (repeatable).")
@click.option("--code", type=click.Choice(["build", "image"]), default="build", show_default=True,
              help="`build`: pulumi up builds agents/NAME/; `image`: your pipeline builds and pushes it.")
@root_option
def new_agent(name: str, tenant: str, regions: Sequence[str], code: str, root: Path) -> None:
    """Write agents/NAME.yaml and a minimal livekit-agents program in agents/NAME/.

    The manifest validates as written: its pool (max_workers) fits the tenant's quota headroom in
    each region, inference uses the regions' own models, and telephony and secrets are commented
    examples. The program is agent.py, requirements.txt and a Dockerfile. In a repository with the
    platform's agent base image (agents/_platform, as voxplane's own): agent.py imports the
    platform glue (voxplane_agent), requirements.txt lists only the agent's own packages, and the
    Dockerfile builds FROM the platform's agent base image. Elsewhere: agent.py is a standalone
    worker that registers under LIVEKIT_AGENT_NAME and takes its metrics port and drain timeout
    from VOXPLANE_METRICS_PORT and VOXPLANE_DRAIN_TIMEOUT, requirements.txt pins livekit-agents,
    and the Dockerfile starts from python:3.11-slim. --code image names an image your pipeline
    builds instead of code.build. Never overwrites: when any of these files exists, nothing is
    written. Exit 0, or 1 with nothing written (or the problems of what was).
    """
    from ..devtools.scaffold import ScaffoldError, new_agent as scaffold_agent

    try:
        out = scaffold_agent(root, name, tenant, regions, code)
    except ScaffoldError as exc:
        fail(exc.lines)
    _scaffolded(out)
    sys.exit(1 if out.problems else 0)


@new.command("region")
@click.argument("name")
@click.option("--from", "source", default=None, metavar="REGION", shell_complete=complete_regions,
              help="Copy this region (its tenants, pools, GPU node groups and models) [default: a blank region].")
@root_option
def new_region(name: str, source: str | None, root: Path) -> None:
    """Write regions/NAME.yaml and Pulumi.NAME.yaml, and print the secrets to set.

    Every value that must differ between regions (public URL, SIP host, carrier addresses, TURN
    domain, kube context, LiveKit API URL ...) is written as "FILL-IN: <what goes there>", and
    `voxplane validate` reports each at its line until it is filled in; they are printed here too.
    Exit 0, or 1 with nothing written.
    """
    from ..manifest.placeholders import is_fill_in
    from ..devtools.scaffold import ScaffoldError, new_region as scaffold_region

    try:
        out = scaffold_region(root, name, source)
    except ScaffoldError as exc:
        fail(exc.lines)
    for path in out.written:
        click.echo(f"wrote {path}")
    for note in out.notes:
        term.info(f"note: {note}")
    marked = [p for p in out.problems if is_fill_in(p)]
    if marked:
        click.echo(f"\nto fill in ({plural(len(marked), 'value')}; `voxplane validate` lists them until done):")
        for problem in marked:
            click.echo(f"  {problem_text(str(problem))}")
    others = [p for p in out.problems if not is_fill_in(p)]
    if others:
        click.echo(f"\nalso ({plural(len(others), 'problem')}):")
        for problem in others:
            click.echo(f"  {problem_text(str(problem))}")
    click.echo("\nthen set the secrets:")
    for line in out.next:
        click.echo(f"  {line}")
