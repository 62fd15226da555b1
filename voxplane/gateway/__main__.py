"""`python -m voxplane.gateway serve --config FILE`: the container's command."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import click


@click.group()
def main() -> None:
    """The voxplane LiveKit gateway."""


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The gateway config (the ConfigMap's config.json).")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning"]))
def serve(config_path: Path, log_level: str) -> None:
    """Serve until SIGTERM."""
    from .scope import GatewayConfig
    from .server import Gateway

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        gateway = Gateway(GatewayConfig.from_json(config_path.read_text()))
    except (ValueError, KeyError) as e:
        raise click.ClickException(str(e)) from e
    asyncio.run(gateway.run())


if __name__ == "__main__":
    main()
