"""`voxplane dev ...`: the local stand-ins for a region's cluster, for demos and tests."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..manifest.loader import UnknownRegion, load_region


@click.group()
def dev() -> None:
    """Local stand-ins for a region's infrastructure (loopback only)."""


@dev.group()
def cluster() -> None:
    """A local Kubernetes control plane with simulated nodes (etcd, kube-apiserver,
    controller-manager, scheduler, kwok) and its autoscaling stack (Prometheus, KEDA's operator and
    metrics adapter). The real API server admits and the real scheduler places every object, KEDA
    and the HPA controller scale workloads; pods become Ready, but nothing inside them runs."""


@cluster.command("up")
@click.option("--region", default="local", show_default=True, help="Region whose node pools and GPU groups become simulated nodes.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="Repository root holding regions/ and agents/.")
def cluster_up(region: str, root: Path) -> None:
    """Start (or reuse) the control plane; make its simulated nodes exactly REGION's.

    Prints `export KUBECONFIG=...` on stdout for `eval "$(voxplane dev cluster up)"`; progress goes
    to stderr. The first run builds the control plane and KEDA from the Go module proxy
    (~25-30 min on 2 cores) and installs Prometheus from Debian's packages.
    """
    from ..dev.cluster import ClusterError, exports, main_progress, up

    loaded = load_region(root, region)
    try:
        up(loaded.region, loaded.agents, main_progress)
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
    from ..dev.cluster import exports, running

    if running() is None:
        click.echo("error: the dev cluster is not running (`voxplane dev cluster up`)", err=True)
        sys.exit(1)
    click.echo(exports())


@dev.group()
def servers() -> None:
    """Redis + livekit-server (and a region's gateway) on loopback, in the background until `down`."""


def _servers_progress(line: str) -> None:
    click.echo(f"devservers: {line}", err=True)


@servers.command("up")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="livekit-server config (YAML or JSON).")
@click.option("--region", metavar="NAME", help="Use the config voxplane renders for this region, and run its gateway too.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="Repository root for --region.")
def servers_up(config_file: Path | None, region: str | None, root: Path) -> None:
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
        state = up(config, region=region, root=root, progress=_servers_progress)
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


@dev.command("pulumi", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("region")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="Repository root holding Pulumi.yaml.")
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
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="Repository root.")
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
