"""`python -m voxplane.controllers.deletion_cost run --config FILE`: the container's command."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Optional

import click


@click.group()
def main() -> None:
    """Keeps each agent pod's pod-deletion-cost equal to its worker's active jobs."""


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The controller's config (the ConfigMap's config.json).")
@click.option("--kubeconfig", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Outside a cluster: the kubeconfig to use (default: KUBECONFIG). In a pod: its service account.")
@click.option("--listen-host", default="0.0.0.0", show_default=True, help="Address of /metrics, /healthz, /readyz.")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning"]))
def run(config_path: Path, kubeconfig: Optional[str], listen_host: str, log_level: str) -> None:
    """Run until SIGTERM."""
    from kubernetes import client, config as kubeconfig_loader

    from .config import Config
    from .controller import Controller, serve

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        config = Config.from_json(config_path.read_text())
    except ValueError as e:
        raise click.ClickException(f"{config_path}: {e}") from e
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubeconfig_loader.load_incluster_config()  # the service account's token, re-read as the kubelet rotates it
    else:
        kubeconfig_loader.load_kube_config(config_file=kubeconfig)
    controller = Controller(config, client.CoreV1Api())
    server = serve(controller, listen_host)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logging.getLogger("voxplane.deletion_cost").info(
        "deletion-cost: %d pools in %s, every %gs, up to %g writes/s (burst %d); metrics on %s:%d",
        len(config.pools), ",".join(config.namespaces), config.interval_seconds, config.writes_per_second, config.burst,
        listen_host, config.metrics_port)
    try:
        controller.run(stop)
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
