"""`voxplane dev ...`: the local stand-ins for a region's cluster, for demos and tests."""

from __future__ import annotations

import sys
import time
from typing import Any
from pathlib import Path

import click

from ..manifest.loader import UnknownRegion, load_region
from .common import repository_root, root_option
from .dev_images import images as images_group


@click.group()
def dev() -> None:
    """Local stand-ins for a region's infrastructure (loopback only)."""


@dev.group()
def cluster() -> None:
    """A local Kubernetes control plane with simulated nodes (etcd, kube-apiserver,
    controller-manager, scheduler, kwok) and its autoscaling stack (Prometheus, KEDA's operator and
    metrics adapter). The real API server admits and the real scheduler places every object, KEDA
    and the HPA controller scale workloads; agent pods run as real workers (the pod runner), other
    pods become Ready with nothing inside them."""


def _running_cluster() -> dict[str, Any]:
    """The running dev cluster's state; exit 1 with one line when there is none."""
    from ..dev.cluster import running

    state = running()
    if state is None:
        click.echo("error: the dev cluster is not running (`voxplane dev cluster up`)", err=True)
        sys.exit(1)
    return state


@cluster.command("up")
@click.option("--region", default="local", show_default=True, help="Region whose node pools and GPU groups become simulated nodes.")
@root_option
@click.option("--agent-workers/--no-agent-workers", default=True, show_default=True,
              help="Run every agent pod as a real livekit-agents worker (the pod runner); without, kwok marks "
                   "agent pods Ready and nothing runs.")
@click.option("--max-idle-processes", type=click.IntRange(min=0), default=2, show_default=True,
              help="Prewarmed job processes per worker at most (~140 MB each; a lowered "
                   "VOXPLANE_IDLE_PROCESSES is a listed rewrite). 0: as rendered.")
def cluster_up(region: str, root: Path, agent_workers: bool, max_idle_processes: int) -> None:
    """Start (or reuse) the control plane; make its simulated nodes exactly REGION's.

    Prints `export KUBECONFIG=...` on stdout for `eval "$(voxplane dev cluster up)"`; progress goes
    to stderr. The first run builds the control plane and KEDA from the Go module proxy
    (~25-30 min on 2 cores) and installs Prometheus from Debian's packages.

    Agent pods run as workers with their pod's environment, addresses moved to the processes
    standing in for the region's Services (`voxplane dev servers up --region REGION` publishes
    LiveKit's and the gateway's); `voxplane dev cluster workers` lists them and every rewrite.
    """
    from ..dev.cluster import ClusterError, exports, main_progress, up

    loaded = load_region(root, region)
    try:
        up(loaded.region, loaded.agents, main_progress, agent_workers=agent_workers, root=root,
           max_idle_processes=max_idle_processes or None)
    except ClusterError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(exports())
    click.echo("dev cluster: stop it with `voxplane dev cluster down` (`--purge` also removes its data)", err=True)


@cluster.command("down")
@click.option("--purge", is_flag=True, help="Also remove the cluster's data (etcd, keys, kubeconfig).")
def cluster_down(purge: bool) -> None:
    """Stop every process `up` started. The data stays for the next `up` unless --purge."""
    from ..dev.cluster import down, main_progress

    down(main_progress, purge=purge)


@cluster.command("env")
def cluster_env() -> None:
    """Print `export KUBECONFIG=...` for the running cluster; exit 1 when it is not running."""
    from ..dev.cluster import exports

    _running_cluster()
    click.echo(exports())


@cluster.command("wait")
@click.option("--timeout", type=click.FloatRange(min=0), default=300, show_default=True, help="Seconds to wait at most.")
def cluster_wait(timeout: float) -> None:
    """Wait until the cluster's workloads are settled: every Deployment rolled out with all its
    replicas available, every StatefulSet with all its replicas ready.

    After `up` restarted a cluster with its data, agent pods are Ready only once their workers
    registered again (the dev servers running); a `pulumi up --refresh` before then reports
    updates that only wait for them. Exit 1, naming what is not settled, after TIMEOUT.
    """
    from ..dev.cluster import kubeconfig_path, main_progress
    from ..dev.workloads import SettleError, wait_settled

    _running_cluster()
    started = time.monotonic()
    try:
        count = wait_settled(kubeconfig_path(), main_progress, timeout)
    except SettleError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if count:
        main_progress(f"{count} workload(s) settled in {time.monotonic() - started:.0f}s")


@cluster.command("workers")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def cluster_workers(fmt: str) -> None:
    """The agent pods the pod runner runs as workers: state, pid, loopback ports, and every
    rewrite of the pod's environment (values from Secrets are never shown)."""
    import json

    from ..dev.cluster import runner_dir
    from ..dev.podrunner import read_workers

    state = _running_cluster()
    workers = read_workers(runner_dir()) if state.get("agent_workers") else {}
    if fmt == "json":
        click.echo(json.dumps({"agent_workers": state.get("agent_workers"), "workers": list(workers.values())}, indent=2))
        return
    if not state.get("agent_workers"):
        click.echo("agent pods are not run (the cluster was started with --no-agent-workers)")
        return
    if not workers:
        click.echo("no agent pod placed yet")
    for w in workers.values():
        ports = ", ".join(f"{k}->{v}" for k, v in w["ports"].items())
        click.echo(f"{w['namespace']}/{w['pod']}  {w['state']}{' ready' if w['ready'] else ''}  pid {w['pid']}  "
                   f"restarts {w['restarts']}  ports {ports or '-'}  log {w['log']}")
        if w.get("message"):
            click.echo(f"  {w['message']}")
        for r in w["rewrites"]:
            click.echo(f"  {r['variable']}: {r['rendered']} -> {r['here']}  ({r['why']})")
        for note in w.get("notes", []):
            click.echo(f"  note: {note}")


@dev.group()
def servers() -> None:
    """Redis + livekit-server (and a region's gateway) on loopback, in the background until `down`."""


def _servers_progress(line: str) -> None:
    click.echo(f"devservers: {line}", err=True)


@servers.command("up")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="livekit-server config (YAML or JSON).")
@click.option("--region", metavar="NAME", help="Use the config voxplane renders for this region, and run its gateway too.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Repository root for --region [default: the nearest folder at or above the current one that "
                   "holds Pulumi.yaml].")
def servers_up(config_file: Path | None, region: str | None, root: Path | None) -> None:
    """Start; prints `export LIVEKIT_URL=... LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=...` for eval
    (with --region also VOXPLANE_LIVEKIT_TENANT_URL, the gateway's). Progress goes to stderr. Without
    --config or --region the server runs a minimal built-in config with a random key."""
    from ..dev.servers import ServersError, exports, load_config_file, up

    if config_file is not None and region is not None:
        raise click.UsageError("--config and --region are mutually exclusive")
    try:
        config = load_config_file(config_file) if config_file is not None else None
    except ServersError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    try:
        state = up(config, region=region, root=repository_root(root) if region is not None else Path("."),
                   progress=_servers_progress)
    except ServersError as exc:
        _servers_progress(str(exc))
        sys.exit(1)
    click.echo(exports(state))


@servers.command("down")
def servers_down() -> None:
    """Stop what `up` started."""
    from ..dev.servers import down

    down(_servers_progress)


@servers.command("env")
def servers_env() -> None:
    """Print the `export LIVEKIT_URL=...` line of the running servers; exit 1 when none run."""
    from ..dev.servers import exports, running_state

    state = running_state()
    if state is None:
        _servers_progress("not running (`make livekit-up`)")
        sys.exit(1)
    click.echo(exports(state))


@dev.command("calls")
@click.argument("region")
@click.option("--to", "number", required=True, help="The number called (one of a telephony.numbers).")
@click.option("--concurrent", type=click.IntRange(min=1), required=True, help="Calls to place; all are held at once "
              "unless --rate spreads them out.")
@click.option("--duration", type=click.FloatRange(min=1), required=True, help="Seconds each caller stays.")
@click.option("--rate", type=click.FloatRange(min=0.01), default=None, help="Calls placed per second (default: all at once).")
@click.option("--address", default="127.0.0.1", show_default=True,
              help="The calls' source address (the carrier's, as livekit-sip sees it).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--url", envvar="LIVEKIT_URL", help="livekit-server (default: the dev servers').")
@click.option("--api-key", envvar="LIVEKIT_API_KEY", help="A key of the server itself (default: the dev servers').")
@click.option("--api-secret", envvar="LIVEKIT_API_SECRET")
@click.option("--redis", envvar="VOXPLANE_LIVEKIT_REDIS", help="The server's Redis host:port (default: the dev servers').")
@root_option
def dev_calls(region: str, number: str, concurrent: int, duration: float, rate: float | None, address: str, fmt: str,
              url: str | None, api_key: str | None, api_secret: str | None, redis: str | None, root: Path) -> None:
    """Place CONCURRENT calls to NUMBER in REGION through the real routing, each a real rtc caller
    publishing audio for DURATION seconds.

    Each call is routed as livekit-sip routes it (the server's trunk and dispatch rule for the
    number, asked over its Redis), its room created with the rule's configuration, and joined by a
    caller with the SIP participant's identity and attributes. Prints each second the calls placed,
    answered by an agent, refused, waiting, in a call, dropped and ended (`--format json`: a JSON
    object a line, then a summary with every call).

    Exit status: 0 every call answered and kept to its end; 1 a call was never answered (refused,
    or still waiting at its end) or was dropped, or invalid manifests or an unknown region (as
    every command says them); 2 the calls could not be placed.
    """
    import json

    from ..dev.calls import CallerProcess, CallRun, CallsError, agents_python, endpoints_from
    from ..dev.paths import dev_dir
    from ..livekit.route import RouteError, RouteProbe

    loaded = load_region(root, region)  # invalid manifests, an unknown region: exit 1, as every command
    try:
        endpoints = endpoints_from(url, api_key, api_secret, redis)
        logs = dev_dir() / "calls"
        logs.mkdir(parents=True, exist_ok=True)
        callers = CallerProcess(agents_python(root), logs / "callers.log")
    except CallsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)

    def report(second: int, counts: dict[str, int]) -> None:
        if fmt == "json":
            click.echo(json.dumps({"t": second, **counts}))
        else:
            click.echo(f"{second:4d}s  " + "  ".join(f"{k} {v}" for k, v in counts.items()))

    try:
        with RouteProbe(endpoints.redis) as probe:
            run = CallRun(loaded.region, endpoints, probe, callers, number, concurrent, duration, rate, address)
            run.run(report)
    except RouteError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    finally:
        callers.close()
    missed = run.never_answered
    dropped = [c for c in run.calls if c.state == "dropped"]
    if fmt == "json":
        click.echo(json.dumps({"summary": run.counts(), "calls": [c.as_dict(run.start) for c in run.calls]}))
    else:
        counts = run.counts()
        click.echo(f"{counts['placed']} calls: {counts['answered']} answered, {counts['refused']} refused, "
                   f"{len(missed) - counts['refused']} never answered while waiting, {counts['dropped']} dropped")
        for c in missed + dropped:
            click.echo(f"  call {c.index} from {c.caller}: {c.state}: {c.reason or 'no agent joined'}")
    sys.exit(1 if missed or dropped else 0)


@dev.command("pulumi", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("region")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@root_option
def dev_pulumi(region: str, args: tuple[str, ...], root: Path) -> None:
    """Run `pulumi ARGS -s REGION` against the dev cluster and dev LiveKit server.

    Sets up what a user does by hand once: the engine and plugins (built from the Go module proxy
    on first use), a file state backend and passphrase under ~/.cache/voxplane/dev, dev values
    for every secret the region needs (in the cache's copy of Pulumi.REGION.yaml, never in the
    working tree), KUBECONFIG of `voxplane dev cluster up` and LIVEKIT_URL of `make livekit-up`.
    Example: `voxplane dev pulumi local up --yes`. Exit status: pulumi's.
    """
    from ..dev.stack import StackError, prepare

    try:
        stack = prepare(root, region, extra_env=_dev_endpoints())
    except StackError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    sys.exit(stack.pulumi(*args).returncode)


def _dev_endpoints() -> dict[str, str]:
    """KUBECONFIG of the dev cluster and LIVEKIT_URL of the dev LiveKit server, when running."""
    from ..dev.cluster import kubeconfig_path, running
    from ..dev.servers import running_state

    env: dict[str, str] = {}
    if running() is not None:
        env["KUBECONFIG"] = str(kubeconfig_path())
    state = running_state()
    if state is not None:
        env["LIVEKIT_URL"] = state["livekit"]["http_url"]
    return env


@dev.command("tenant-credentials")
@click.argument("region")
@click.argument("tenant")
@root_option
def tenant_credentials(region: str, tenant: str, root: Path) -> None:
    """Print TENANT's scoped LiveKit credentials in dev REGION, for eval: they work only through
    the gateway (VOXPLANE_LIVEKIT_TENANT_URL), never against livekit-server itself."""
    from ..dev.credentials import dev_tenant_credentials, exports

    try:
        key, secret = dev_tenant_credentials(root, region, tenant)
    except UnknownRegion:
        raise  # said as every command says it
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    click.echo(exports(key, secret))


dev.add_command(tenant_credentials, name="credentials")  # the name issue #9 asked for
dev.add_command(images_group)
