"""The `voxplane` command line. Options are parsed here; the work happens in the stage modules.

Exit codes: 0 success, 1 invalid input or error, 2 drift found (drift) or capacity short
(capacity --fail-on short). Every failure ends in one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import click

from . import __version__, term
from .completion import complete_manifests, complete_numbers, complete_regions, complete_tenants
from .loader import LoadedRegion, LoadResult, UnknownRegion, find_region, load, load_region
from .problems import ManifestError, Problem, plural
from .stackfile import stack_name

FORMATS = click.Choice(["text", "json"])


def find_root(start: Path) -> Path:
    """The nearest folder at or above `start` holding Pulumi.yaml (the repository root); `start`
    itself when there is none."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / "Pulumi.yaml").is_file():
            return folder
    return start


class NoRepository(click.ClickException):
    """Run outside a repository: one line saying how voxplane finds one (exit 1)."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _root(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path:
    if value is not None:
        return value
    root = find_root(Path.cwd())
    if not (root / "Pulumi.yaml").is_file() and not any((root / d).is_dir() for d in ("regions", "agents")):
        raise NoRepository(f"no voxplane repository here: no Pulumi.yaml in {root} or a folder above it (nor "
                           f"regions/ or agents/ in it); run voxplane inside the repository, or pass --root DIR")
    return root


def _root_option(fn: Any) -> Any:
    return click.option(
        "--root",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        callback=_root,
        help="Repository root holding regions/, agents/ and Pulumi.<region>.yaml "
             "[default: the nearest folder at or above the current one that holds Pulumi.yaml].",
    )(fn)


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


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path), shell_complete=complete_manifests)
@_root_option
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
            click.echo(_problem_text(str(problem)))
        term.info(_summary(result))
    sys.exit(0 if result.ok else 1)


def _problem_text(line: str) -> str:
    """FILE:LINE:COL: in bold on a terminal with colour; unchanged elsewhere."""
    location, sep, rest = line.partition(": ")
    return term.style(location + sep, bold=True) + rest if sep else line


@main.command()
@click.argument("region", shell_complete=complete_regions)
@click.option("--out", "out_dir", type=click.Path(path_type=Path, allow_dash=True), default=None,
              help="Folder to write kubernetes/ and livekit/ into: new, empty, or made by an earlier render "
                   "(only the files that render wrote are replaced). `-`: the Kubernetes objects as one YAML "
                   "stream on stdout (for `kubectl diff -f -`). Default: out/REGION under the root.")
@_root_option
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
    from .output_dir import OutputDirError
    from .render import render as run_render, to_json, to_yaml_stream, write

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
        _print_table(["component", "kind", "count"], [list(map(str, row)) for row in result.summary()])
        click.echo(f"\n{len(result.kubernetes)} Kubernetes objects, {len(result.livekit)} LiveKit objects "
                   f"-> {out_dir} ({len(files)} files)")


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    """Plain aligned text to pipes and files (stable for scripts and tests), rich on a terminal."""
    term.table(header, rows)


_BASE_HELP = ("Git revision to compare with [default: the merge base of HEAD with the main branch (origin/HEAD, "
              "origin/main, main, origin/master, master); HEAD in a repository with none of them].")


def _base(root: Path, base: str | None) -> tuple[str, str]:
    """(commit, what it is) of --base, or of the default base that `affected` and `plan` share."""
    from .affected import default_base, resolve_base

    return default_base(root) if base is None else (resolve_base(root, base), base)


@main.command()
@click.option("--base", default=None, metavar="REF", help=_BASE_HELP)
@click.option("--explain", is_flag=True, help="Say why each region is affected (each changed file and what links it).")
@_root_option
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True, help="Output format.")
def affected(base: str, explain: bool, root: Path, fmt: str) -> None:
    """List the regions a change touches (for the CI preview matrix).

    Compares the working tree with BASE (by default the merge base with the main branch, as
    `voxplane plan` does; said on stderr): a region is affected when its manifest or stack file
    changed, when an agent running there (before or after) changed, or that agent's code; a
    change to the tool itself affects every region. With --explain, each region comes with its
    reasons (JSON: an object of region -> reasons). Exit 1 on invalid manifests or git errors.
    """
    from .affected import GitError, affected_regions, changed_files, explain_regions, regions_at

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


@main.command()
@click.argument("regions", nargs=-1, metavar="[REGION ...]", shell_complete=complete_regions)
@click.option("--base", default=None, metavar="REF", help=_BASE_HELP)
@_root_option
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
    from . import plan as pl
    from .affected import GitError

    try:
        commit, label = _base(root, base)
        term.info(f"planning against {commit[:12]} ({label}): rendering both sides ...")
        with pl.exported(root, commit) as base_root:
            changed = pl.changed_between(base_root, root)
            for path in changed:
                term.detail(f"changed: {path}")
            result = pl.plan_between(base_root, root, list(regions) or None, changed=changed, base=commit,
                                     base_label=label)
    except ManifestError as exc:
        print_problems(exc.problems)
        sys.exit(1)
    except (pl.PlanError, GitError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    text = pl.RENDERERS[fmt](result)
    if fmt == "text":
        for line in text.rstrip("\n").split("\n"):
            click.echo(term.plan_line(line))
    else:
        click.echo(text.rstrip("\n"))
    sys.exit(2 if result.has_changes else 0)


@main.command()
@click.argument("region", shell_complete=complete_regions)
@_root_option
@click.option("--duty-cycle", type=click.FloatRange(0, 1, min_open=True), default=0.25, show_default=True,
              help="Share of a call's time its LLM stream is active.")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True, help="Output format.")
@click.option("--fail-on", type=click.Choice(["never", "short"]), default="never", show_default=True,
              help="`short`: exit 2 when the plan falls short of the peak (for CI gates).")
def capacity(region: str, root: Path, duty_cycle: float, fmt: str, fail_on: str) -> None:
    """Size REGION's GPU pools and agent workers for its peak_concurrent_calls.

    Per llm with a `profile`: KV-cache budget per replica, concurrent streams and calls per
    replica, replicas and GPUs needed at peak, against max_replicas and the node group; agent
    pools at max_workers against the peak and each tenant's quota. An analytic plan: compare
    with vLLM's logged "GPU KV cache size" and a load test. With --fail-on short, a plan that
    falls short (a model, the agent pools or a tenant quota) exits 2 and says what is short.
    """
    from .capacity import plan, shortfalls

    loaded = _region_model(root, region)
    report = plan(loaded.project, region, duty_cycle)
    short = shortfalls(report)
    if fmt == "json":
        click.echo(json.dumps({**report.as_dict(), "short": short}, indent=2))
    else:
        _print_capacity(report, duty_cycle)
    if fail_on == "short" and short:
        click.echo(f"short: {'; '.join(short)}", err=True)
        sys.exit(2)
    sys.exit(1 if loaded.problems else 0)


def _region_model(root: Path, region: str) -> LoadedRegion:
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


def _print_capacity(report: Any, duty_cycle: float) -> None:
    region = report.region
    click.echo(f"region {region}: peak {report.peak_calls} concurrent calls, LLM duty cycle {duty_cycle:g}")
    rows = []
    for m in report.models:
        def show(value: object) -> str:
            return "-" if value is None else str(value)
        rows.append([m.model, m.kind, f"{m.gpus_per_replica}x {m.gpu}", show(m.kv_budget_gib), show(m.kv_tokens),
                     show(m.streams_per_replica), show(m.calls_per_replica), show(m.replicas_needed),
                     str(m.max_replicas), m.status])
    _print_table(["model", "kind", "gpus/replica", "kv GiB", "kv tokens", "streams", "calls", "replicas", "max", "status"], rows)
    agents_ok = "ok" if report.agent_sessions >= report.peak_calls else "short"
    click.echo(f"\nagent pools at max_workers: {report.agent_sessions} sessions for {report.peak_calls} peak calls ({agents_ok})")
    click.echo(f"at the autoscaling target: {report.agent_sessions_at_target:g} sessions (the rest kept spare for scale-ups)")
    _print_table(
        ["agent pool", "workers", "sessions/worker", "target/worker", "first scale-up at", "spare then", "at max_workers"],
        [[a.agent, f"{a.min_workers}..{a.max_workers}", str(a.sessions_per_worker), f"{a.target_sessions_per_worker:g}",
          "-" if a.first_scale_up_at is None else f"{a.first_scale_up_at} sessions",
          "-" if a.spare_at_first_scale_up is None else str(a.spare_at_first_scale_up), str(a.max_sessions)]
         for a in report.agents],
    )
    _print_table(
        ["tenant", "cpu at max", "quota", "memory GiB at max", "quota", "pods at max", "quota", "status"],
        [[t.tenant, f"{t.cpu_at_max:g}", f"{t.cpu_quota:g}", f"{t.memory_gib_at_max:g}", f"{t.memory_gib_quota:g}",
          str(t.pods_at_max), str(t.pods_quota), t.status] for t in report.tenants],
    )


@main.command()
@click.argument("region", shell_complete=complete_regions)
@click.option("--config-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Stack file to read instead of ROOT/Pulumi.REGION.yaml (as `pulumi --config-file`).")
@_root_option
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True, help="Output format.")
def secrets(region: str, config_file: Path | None, root: Path, fmt: str) -> None:
    """List the stack secrets REGION needs and whether its stack file sets them.

    Needed: livekitRootSecret (the region's LiveKit keys and Redis password derive from it), and
    every `{config: KEY}` reference of the region (model hf_token, Redis password) and of its
    agents (secrets, provider keys, trunk passwords, PINs). A secret is set when the stack file
    holds it encrypted (`secure:`, as `pulumi config set --secret` writes it). Exit 0 when all
    are set, 1 when one is missing or in plain text.
    """
    from . import stackfile

    loaded = _region_model(root, region)
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
        _print_table(["key", "status", "needed by"],
                     [[k, st, "; ".join(f"{n.location} ({n.what})" if n.location else n.what for n in needs)]
                      for k, st, needs in rows])
    if unset:
        click.echo(f"{len(unset)} of {plural(len(rows), 'secret')} not set: "
                   f"pulumi config set --secret KEY -s {stack.stack if stack else region} for each of "
                   f"{', '.join(unset)}", err=True)
        sys.exit(1)
    sys.exit(1 if loaded.problems else 0)


@main.group()
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
            click.echo(_problem_text(str(problem)), err=True)
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
@_root_option
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
    from .scaffold import ScaffoldError, new_agent as scaffold_agent

    try:
        out = scaffold_agent(root, name, tenant, regions, code)
    except ScaffoldError as exc:
        _fail(exc.lines)
    _scaffolded(out)
    sys.exit(1 if out.problems else 0)


@new.command("region")
@click.argument("name")
@click.option("--from", "source", default=None, metavar="REGION", shell_complete=complete_regions,
              help="Copy this region (its tenants, pools, GPU node groups and models) [default: a blank region].")
@_root_option
def new_region(name: str, source: str | None, root: Path) -> None:
    """Write regions/NAME.yaml and Pulumi.NAME.yaml, and print the secrets to set.

    Every value that must differ between regions (public URL, SIP host, carrier addresses, TURN
    domain, kube context, LiveKit API URL ...) is written as "FILL-IN: <what goes there>", and
    `voxplane validate` reports each at its line until it is filled in; they are printed here too.
    Exit 0, or 1 with nothing written.
    """
    from .placeholders import is_fill_in
    from .scaffold import ScaffoldError, new_region as scaffold_region

    try:
        out = scaffold_region(root, name, source)
    except ScaffoldError as exc:
        _fail(exc.lines)
    for path in out.written:
        click.echo(f"wrote {path}")
    for note in out.notes:
        term.info(f"note: {note}")
    marked = [p for p in out.problems if is_fill_in(p)]
    if marked:
        click.echo(f"\nto fill in ({plural(len(marked), 'value')}; `voxplane validate` lists them until done):")
        for problem in marked:
            click.echo(f"  {_problem_text(str(problem))}")
    others = [p for p in out.problems if not is_fill_in(p)]
    if others:
        click.echo(f"\nalso ({plural(len(others), 'problem')}):")
        for problem in others:
            click.echo(f"  {_problem_text(str(problem))}")
    click.echo("\nthen set the secrets:")
    for line in out.next:
        click.echo(f"  {line}")


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


def print_problems(problems: Sequence[Problem]) -> None:
    """Manifest problems for commands other than validate: same lines, on stderr."""
    for problem in problems:
        click.echo(str(problem), err=True)


# --- LiveKit control plane (voxplane/livekit/) ------------------------------------------------------


def _livekit_options(fn: Any) -> Any:
    """--url/--api-key/--api-secret with the livekit-api environment fallbacks."""
    fn = click.option("--api-secret", envvar="LIVEKIT_API_SECRET", metavar="SECRET",
                      help="API secret [env LIVEKIT_API_SECRET].")(fn)
    fn = click.option("--api-key", envvar="LIVEKIT_API_KEY", metavar="KEY",
                      help="API key with SIP admin rights [env LIVEKIT_API_KEY].")(fn)
    fn = click.option("--url", envvar="LIVEKIT_URL", metavar="URL",
                      help="LiveKit server (ws://, wss://, http:// or https://) [env LIVEKIT_URL; "
                           "default: the region's livekit.public_url].")(fn)
    return fn


def _fail(lines: Sequence[str]) -> None:
    for line in lines:
        click.echo(line, err=True)
    sys.exit(1)


@main.group()
def livekit() -> None:
    """LiveKit control plane: SIP inbound trunks and dispatch rules of a region.

    One trunk and one dispatch rule per agent with `telephony:`, owned through metadata; objects
    voxplane does not own are never changed. Secrets (digest password, PIN) declared as
    `{config: KEY}` are read from the environment variable VOXPLANE_SECRET_<KEY>.
    """


@livekit.command("sync")
@click.argument("region", shell_complete=complete_regions)
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("-y", "--yes", is_flag=True, help="Apply without asking (a terminal on stdin is asked first).")
@_livekit_options
@_root_option
def livekit_sync(region: str, dry_run: bool, yes: bool, url: str | None, api_key: str | None, api_secret: str | None,
                 root: Path) -> None:
    """Make REGION's LiveKit trunks and dispatch rules match the manifests.

    Prints the plan, then each change as it is made. When stdin is a terminal it asks before
    applying (--yes skips the question); from a pipe or CI it never asks. Secrets declared as
    `{config: KEY}` (digest password, PIN) are read from VOXPLANE_SECRET_<KEY>. Exit 0 on
    success, 1 on any error (manifest problems, missing secrets, unreachable server, rejected
    credentials, conflicts with objects voxplane does not own) or when the answer is no;
    nothing is written unless the whole plan can be.
    """
    from .livekit import commands as lk

    try:
        loaded = load_region(root, region)
        reg, agents = loaded.region, loaded.agents
        with lk.connect(reg, url, api_key, api_secret) as client:
            plan = lk.plan_sync(reg, agents, client, strict=not dry_run)
            for line in lk.plan_lines(plan):
                click.echo(line)
            if not dry_run and plan.steps:
                if not yes and term.interactive() and not term.confirm(
                        f"apply {plural(len(plan.steps), 'change')} to region {region}'s LiveKit?"):
                    click.echo("cancelled: nothing was changed", err=True)
                    sys.exit(1)
                term.info(f"applying {len(plan.steps)} changes ...")
                applied = lk.apply_plan(plan, client, lambda step, oid: click.echo(lk.done_line(step, oid)))
                term.info(f"done: {len(applied)} changes applied")
    except ManifestError as exc:
        print_problems(exc.problems)
        sys.exit(1)
    except lk.CommandError as exc:
        _fail(exc.lines)


@livekit.command("route")
@click.argument("region", shell_complete=complete_regions)
@click.option("--to", "to", required=True, metavar="NUMBER", shell_complete=complete_numbers, help="Called number (the trunk number), e.g. +13125550142.")
@click.option("--from", "from_", default=None, metavar="NUMBER", help="Caller number [default: +15550100199].")
@click.option("--address", default=None, metavar="IP",
              help="Source IP of the INVITE, without port [default: the first address of the region's carrier allow-list].")
@click.option("--username", default=None, metavar="U", help="Digest user name the caller presents.")
@click.option("--password", default=None, metavar="P", help="Digest password the caller presents.")
@click.option("--pin", default=None, metavar="PIN", help="PIN the caller enters when the rule asks for one.")
@click.option("--redis", "redis", envvar="VOXPLANE_LIVEKIT_REDIS", metavar="HOST:PORT",
              help="Redis of the livekit-server deployment [env VOXPLANE_LIVEKIT_REDIS; default: the dev servers "
                   "of `make livekit-up`].")
@click.option("--redis-password", envvar="VOXPLANE_LIVEKIT_REDIS_PASSWORD", metavar="PASSWORD",
              help="Its password [env VOXPLANE_LIVEKIT_REDIS_PASSWORD].")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True, help="Output format.")
@_root_option
def livekit_route(region: str, to: str, from_: str | None, address: str | None, username: str | None,
                  password: str | None, pin: str | None, redis: str | None, redis_password: str | None,
                  fmt: str, root: Path) -> None:
    """Ask REGION's running livekit-server how it routes a call to NUMBER, as livekit-sip asks.

    Sends IOInfo.GetSIPTrunkAuthentication and EvaluateSIPDispatchRules over the server's Redis
    bus (the questions livekit-sip asks for every INVITE) and prints the trunk, dispatch rule,
    room and agents. The server never sees digest credentials or decides what the bridge does
    with its answers: those parts (credentials check, PIN prompt, 404/503/drop) follow
    livekit-sip's documented handling and are marked as the bridge's. Nothing is written.
    Exit 0 accepted, 2 refused, 1 error.
    """
    from .livekit import commands as lk
    from .livekit import route as rt

    try:
        loaded = load_region(root, region)
        reg, agents = loaded.region, loaded.agents
        where = rt.check_address(address) if address is not None else rt.default_address(reg)
        call = rt.Call(to=to, from_=from_ or rt.DEFAULT_CALLER, address=where,
                       to_host=reg.sip.public_host if reg.sip else "localhost")
        addr, _ = rt.redis_address(redis)
        with rt.RouteProbe(addr, password=redis_password) as probe:
            decision = rt.decide(probe, call, username=username, password=password, pin=pin)
        rt.check_against_manifests(decision, rt.expected_route(reg, agents, to, where))
    except ManifestError as exc:
        print_problems(exc.problems)
        sys.exit(1)
    except lk.CommandError as exc:
        _fail(exc.lines)
    except rt.RouteError as exc:
        _fail([f"error: {exc}"])
    if fmt == "json":
        click.echo(json.dumps(decision.as_dict(region), indent=2))
    else:
        for line in rt.text_lines(decision, region):
            click.echo(line)
    sys.exit(0 if decision.accepted else 2)


@main.command()
@click.argument("region", shell_complete=complete_regions)
@click.option("--only", type=click.Choice(["kubernetes", "livekit"]), default=None,
              help="Compare one target only: `kubernetes` (the cluster's objects) or `livekit` (SIP trunks and "
                   "dispatch rules) [default: both, in one report].")
@click.option("--context", "kube_context", default=None, metavar="NAME",
              help="kubeconfig context [default: the stack's voxplane:kubeContext, else the current one].")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True, help="Report format.")
@_livekit_options
@_root_option
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
    from . import drift as combined
    from .kubedrift import commands as kd
    from .kubedrift import report as kube_report
    from .livekit import commands as lk
    from .livekit import drift as lk_drift

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
        except lk.CommandError as exc:
            kube.error = exc.lines
        results.append(kube)
    if only in (None, "livekit"):
        live = combined.TargetResult("livekit", renderers=dict(lk_drift.RENDERERS), to_dict=lk_drift.to_dict)
        try:
            with lk.connect(reg, url, api_key, api_secret) as client:
                live.report = lk.run_drift(reg, agents, client)
        except lk.CommandError as exc:
            live.error = exc.lines
        results.append(live)
    if len(results) == 1:
        (one,) = results
        if one.error:
            _fail(one.error)
        click.echo(one.renderers[fmt](one.report).rstrip("\n"))
    else:
        click.echo(combined.RENDERERS[fmt](region, results).rstrip("\n"))
        for r in results:
            for line in r.error:
                click.echo(f"{r.target}: {line}", err=True)
    sys.exit(combined.exit_code(results))


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the completion script for SHELL: commands, options, and region, tenant and agent names.

    bash: eval "$(voxplane completion bash)" in ~/.bashrc; zsh: the same in ~/.zshrc;
    fish: voxplane completion fish > ~/.config/fish/completions/voxplane.fish
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(main, {}, "voxplane", "_VOXPLANE_COMPLETE").source())


from .dev.commands import dev as _dev_group  # noqa: E402  (a group of its own module)

main.add_command(_dev_group)


@main.command()
@click.argument("region", shell_complete=complete_regions)
@click.option("--context", "kube_context", default=None, metavar="NAME",
              help="kubeconfig context [default: the stack's voxplane:kubeContext, else the current one].")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True,
              help="Output format (JSON: the shape in the README; with --watch, one object a line).")
@click.option("--watch", is_flag=True, help="Read again every --interval seconds, redrawing in place, until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True, metavar="S",
              help="Seconds between readings with --watch.")
@_livekit_options
@_root_option
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
    from . import crosscheck
    from .livekit import commands as lk
    from .status import reader as status_reader
    from .status import view

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


if __name__ == "__main__":  # pragma: no cover
    main()
