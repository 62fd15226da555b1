"""The `voxplane` command line: the root group here, one module per command group beside it.

Options are parsed in these modules; the work happens in the stage packages. `common` holds what
the commands share (the --root option, formats, problems on stderr), `completion` the shell
completion, `term` the terminal manners (tables, colour, quiet and verbose); `dev` is `voxplane dev`.

Exit codes: 0 success, 1 invalid input or error, 2 drift found (drift) or capacity short
(capacity --fail-on short). Every failure ends in one line on stderr, never a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from .. import __version__
from ..manifest.loader import UnknownRegion
from ..manifest.problems import ManifestError
from . import capacity, completion, dev, drift, livekit, new, plan, render, secrets, status, term, validate
from .common import print_problems


class _Main(click.Group):
    """A command that fails unexpectedly says so in one line (VOXPLANE_TRACEBACK=1 shows where)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except ManifestError as exc:
            print_problems(exc.problems)
            sys.exit(1)
        except UnknownRegion as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except Exception as exc:
            if os.environ.get("VOXPLANE_TRACEBACK"):
                raise
            text = " ".join(str(exc).split()) or type(exc).__name__
            if type(exc).__name__ == "RunError":  # pulumi.RunError: a message meant for the user
                click.echo(f"error: {text}", err=True)
            else:
                click.echo(f"error: {type(exc).__name__}: {text} (a bug in voxplane; VOXPLANE_TRACEBACK=1 shows where)",
                           err=True)
            sys.exit(1)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="voxplane")
@click.option("--no-color", is_flag=True, help="No colour, even on a terminal (as NO_COLOR=1 does).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the answer: no progress or summary lines.")
@click.option("-v", "--verbose", count=True, help="More detail on stderr (repeatable).")
def main(no_color: bool, quiet: bool, verbose: int) -> None:
    """Declare a self-hosted voice-AI platform per region from YAML in git.

    Regions live in regions/<name>.yaml, agents in agents/<name>.yaml; `pulumi up -s <region>`
    deploys a region, and the commands below check, render and compare it. Tables are drawn for
    a terminal and stay plain text in pipes and files; NO_COLOR or --no-color turns colour off.
    Shell completion (region, tenant and agent names): `voxplane completion bash|zsh|fish`.
    """
    term.configure(no_color=no_color, quiet=quiet, verbose=verbose)


for command in (validate.validate, render.render, plan.affected, plan.plan, capacity.capacity, secrets.secrets, new.new,
                livekit.livekit, drift.drift, completion.completion, dev.dev, status.status):
    main.add_command(command)


if __name__ == "__main__":  # pragma: no cover
    main()
