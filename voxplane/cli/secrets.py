"""`voxplane secrets REGION`: the stack secrets a region needs and whether its stack file sets them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..manifest.problems import plural
from .common import FORMATS, print_problems, print_table, region_model, root_option
from .completion import complete_regions


@click.command()
@click.argument("region", shell_complete=complete_regions)
@click.option("--config-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Stack file to read instead of ROOT/Pulumi.REGION.yaml (as `pulumi --config-file`).")
@root_option
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True, help="Output format.")
def secrets(region: str, config_file: Path | None, root: Path, fmt: str) -> None:
    """List the stack secrets REGION needs and whether its stack file sets them.

    Needed: livekitRootSecret (the region's LiveKit keys and Redis password derive from it), and
    every `{config: KEY}` reference of the region (model hf_token, Redis password) and of its
    agents (secrets, provider keys, trunk passwords, PINs). A secret is set when the stack file
    holds it encrypted (`secure:`, as `pulumi config set --secret` writes it). Exit 0 when all
    are set, 1 when one is missing or in plain text.
    """
    from ..manifest import stackfile

    loaded = region_model(root, region)
    project = loaded.project
    path = config_file if config_file is not None else root / f"Pulumi.{region}.yaml"
    shown = str(config_file) if config_file is not None else f"Pulumi.{region}.yaml"
    stack = None
    if path.is_file():
        stack, problems = stackfile.read(path, shown)
        if stack is None:
            print_problems(problems)
            sys.exit(1)
    needed = stackfile.needed_secrets(project.regions[region], project.agents, stack)
    rows = [(key, stack.status(key) if stack else "missing", needs) for key, needs in needed.items()]
    unset = [key for key, status, _ in rows if status != "set"]
    if fmt == "json":
        click.echo(json.dumps({
            "region": region, "stack_file": shown, "exists": stack is not None,
            "secrets": [{"key": k, "status": st, "needed_by": [n.as_dict() for n in needs]} for k, st, needs in rows],
            "unset": unset,
        }, indent=2))
    else:
        click.echo(f"region {region}: {plural(len(rows), 'stack secret')} in {shown}"
                   + ("" if stack is not None else " (no such file)"))
        print_table(["key", "status", "needed by"],
                     [[k, st, "; ".join(f"{n.location} ({n.what})" if n.location else n.what for n in needs)]
                      for k, st, needs in rows])
    if unset:
        click.echo(f"{len(unset)} of {plural(len(rows), 'secret')} not set: "
                   f"pulumi config set --secret KEY -s {stack.stack if stack else region} for each of "
                   f"{', '.join(unset)}", err=True)
        sys.exit(1)
    sys.exit(1 if loaded.problems else 0)
