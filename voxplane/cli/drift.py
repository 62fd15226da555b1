"""`voxplane drift REGION`: the live Kubernetes objects and LiveKit objects against the manifests, one
report (voxplane/drift/ does the work).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import CommandError
from ..manifest.loader import load_region
from ..manifest.problems import ManifestError
from .common import fail, livekit_options, print_problems, root_option
from .completion import complete_regions


@click.command()
@click.argument("region", shell_complete=complete_regions)
@click.option("--only", type=click.Choice(["kubernetes", "livekit"]), default=None,
              help="Compare one target only: `kubernetes` (the cluster's objects) or `livekit` (SIP trunks and "
                   "dispatch rules) [default: both, in one report].")
@click.option("--context", "kube_context", default=None, metavar="NAME",
              help="kubeconfig context [default: the stack's voxplane:kubeContext, else the current one].")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True, help="Report format.")
@livekit_options
@root_option
def drift(region: str, only: str | None, kube_context: str | None, fmt: str, url: str | None, api_key: str | None,
          api_secret: str | None, root: Path) -> None:
    """Compare REGION's live objects with the manifests: the Kubernetes cluster and LiveKit.

    Kubernetes: the rendered objects against the cluster (KUBECONFIG; --context), on the fields
    voxplane declares; replicas KEDA owns are not compared. LiveKit: SIP trunks and dispatch rules.
    Each finding names the manifest file, line and field that owns it. Objects voxplane does not
    own are listed as info. Secrets are compared (by hash) when VOXPLANE_SECRET_<KEY> is set
    (derived ones: VOXPLANE_SECRET_livekitRootSecret), else listed as unchecked. Both targets give
    one report. Exit 0 no drift, 2 drift found, 1 error.
    """
    from ..drift import combined
    from ..drift.kubernetes import commands as kd
    from ..drift.kubernetes import report as kube_report
    from ..livekit import commands as lk
    from ..drift import livekit as lk_drift

    loaded = load_region(root, region)
    reg, agents = loaded.region, loaded.agents
    results: list[combined.TargetResult] = []
    if only in (None, "kubernetes"):
        kube = combined.TargetResult("kubernetes", renderers=dict(kube_report.RENDERERS), to_dict=kube_report.to_dict)
        context = kube_context or kd.stack_context(root, region)
        try:
            kube.report = kd.run_drift(root, reg, agents, context)
        except ManifestError as exc:
            print_problems(exc.problems)
            sys.exit(1)
        except CommandError as exc:
            kube.error = exc.lines
        results.append(kube)
    if only in (None, "livekit"):
        live = combined.TargetResult("livekit", renderers=dict(lk_drift.RENDERERS), to_dict=lk_drift.to_dict)
        try:
            with lk.connect(reg, url, api_key, api_secret) as client:
                live.report = lk.run_drift(reg, agents, client)
        except CommandError as exc:
            live.error = exc.lines
        results.append(live)
    if len(results) == 1:
        (one,) = results
        if one.error:
            fail(one.error)
        click.echo(one.renderers[fmt](one.report).rstrip("\n"))
    else:
        click.echo(combined.RENDERERS[fmt](region, results).rstrip("\n"))
        for r in results:
            for line in r.error:
                click.echo(f"{r.target}: {line}", err=True)
    sys.exit(combined.exit_code(results))
