"""`voxplane render REGION`: the region's whole stack synthesized offline and written as YAML
(voxplane/deploy/render.py does the work).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..manifest.problems import ManifestError
from . import term
from .common import FORMATS, print_problems, print_table, root_option
from .completion import complete_regions


@click.command()
@click.argument("region", shell_complete=complete_regions)
@click.option("--out", "out_dir", type=click.Path(path_type=Path, allow_dash=True), default=None,
              help="Folder to write kubernetes/ and livekit/ into: new, empty, or made by an earlier render "
                   "(only the files that render wrote are replaced). `-`: the Kubernetes objects as one YAML "
                   "stream on stdout (for `kubectl diff -f -`). Default: out/REGION under the root.")
@root_option
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True, help="Summary format.")
def render(region: str, out_dir: Path, root: Path, fmt: str) -> None:
    """Synthesize REGION's whole stack offline and write it as YAML.

    Runs the region's Pulumi program in-process under the SDK's mock engine (no cluster, no Pulumi
    CLI), writes every Kubernetes object to OUT/kubernetes/ and every LiveKit object to
    OUT/livekit/, one object per document, secret values redacted. With `--out -`, the
    Kubernetes objects go to stdout as one YAML stream instead (the summary to stderr), so
    `voxplane render REGION --out - | kubectl diff -f -` works. Exit 0, or 1 with the validation
    errors.
    """
    from ..deploy.output_dir import OutputDirError
    from ..deploy.render import render as run_render, to_json, to_yaml_stream, write

    stream = out_dir is not None and str(out_dir) == "-"
    if stream and fmt == "json":
        raise click.UsageError("--out - writes the objects to stdout; --format json has no place there")
    out_dir = out_dir if out_dir is not None else root / "out" / region
    term.info(f"rendering region {region!r} (validating manifests, running the program under mocks)...")
    try:
        result = run_render(region, root)
    except ManifestError as exc:
        print_problems(exc.problems)
        sys.exit(1)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if stream:
        click.echo(to_yaml_stream(result.kubernetes), nl=False)
        term.info(f"{len(result.kubernetes)} Kubernetes objects -> stdout; the {len(result.livekit)} LiveKit objects "
                  f"(trunks, dispatch rules: not Kubernetes objects) are written by --out DIR")
        return
    try:
        files = write(result, out_dir)
    except OutputDirError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"error: writing {out_dir}: {exc.strerror or exc} ({exc.filename or out_dir})", err=True)
        sys.exit(1)
    for path in files:
        term.detail(f"wrote {path}")
    if fmt == "json":
        click.echo(to_json(result))
    elif not term.quiet():  # -q: the files are the answer; the summary is not
        print_table(["component", "kind", "count"], [list(map(str, row)) for row in result.summary()])
        click.echo(f"\n{len(result.kubernetes)} Kubernetes objects, {len(result.livekit)} LiveKit objects "
                   f"-> {out_dir} ({len(files)} files)")
