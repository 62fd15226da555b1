"""`voxplane status REGION`: what the region runs now (voxplane/status/ reads it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..manifest.loader import load_region
from .common import FORMATS, livekit_options, root_option
from .completion import complete_regions


@click.command()
@click.argument("region", shell_complete=complete_regions)
@click.option("--context", "kube_context", default=None, metavar="NAME",
              help="kubeconfig context [default: the stack's voxplane:kubeContext, else the current one].")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True,
              help="Output format (JSON: the shape in the README; with --watch, one object a line).")
@click.option("--watch", is_flag=True, help="Read again every --interval seconds, redrawing in place, until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True, metavar="S",
              help="Seconds between readings with --watch.")
@livekit_options
@root_option
@click.pass_context
def status(ctx: click.Context, region: str, kube_context: str | None, fmt: str, watch: bool, interval: float,
           url: str | None, api_key: str | None, api_secret: str | None, root: Path) -> None:
    """What REGION runs now: agent pools and models, their autoscalers, calls per agent, drift.

    Per agent pool and model: ready/desired replicas, their nodes, the ScaledObject's bounds and
    the autoscaler's current target (the HPA KEDA keeps; "no autoscaler running" where no KEDA
    operator reconciles the ScaledObject). Per agent: active rooms, participants and SIP calls
    (rooms attributed by their agent dispatches, else by the dispatch rule's room name; rooms of
    no agent of the region are listed apart). Then the platform's workloads, voxplane's LiveKit
    objects and one line of drift (`voxplane drift REGION` has the details). Reads the Kubernetes
    API (KUBECONFIG; --context) and the LiveKit API; changes nothing. --watch redraws on a
    terminal; to a pipe each frame follows the last. Exit 0 when everything was read, 1 on
    invalid manifests or when a part could not be read (the rest is still shown), 2 on a usage
    error; --watch ends with 0 on Ctrl-C.
    """
    from ..manifest import crosscheck
    from ..status import reader as status_reader
    from . import status_view as view

    if not watch and ctx.get_parameter_source("interval") is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--interval needs --watch")
    loaded = load_region(root, region)
    reg, agents = loaded.region, loaded.agents
    context = kube_context or str(crosscheck.stack_config(root, region).get("kubeContext") or "") or None
    reader = status_reader.StatusReader(root, reg, agents, context=context, url=url, api_key=api_key,
                                        api_secret=api_secret)
    try:
        if watch:
            try:
                view.watch(reader.read, interval, fmt)
            except KeyboardInterrupt:  # from an in-process caller; a real Ctrl-C exits in view.watch
                sys.exit(0)
        result = reader.read()
        view.show(result, fmt)
        for line in result.errors:
            click.echo(f"error: {line}", err=True)
        sys.exit(1 if result.errors else 0)
    finally:
        reader.close()
