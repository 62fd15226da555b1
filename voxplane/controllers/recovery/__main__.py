"""`python -m voxplane.controllers.recovery serve --config FILE`: the container's command."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import click


@click.group()
def main() -> None:
    """Dispatches an agent again when a live call loses it (its worker died)."""


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The controller's config (the ConfigMap's config.json).")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning"]))
def serve(config_path: Path, log_level: str) -> None:
    """Serve livekit-server's webhooks until SIGTERM."""
    from .config import Config
    from .controller import RecoveryController

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        controller = RecoveryController(Config.from_json(config_path.read_text()))
    except ValueError as e:
        raise click.ClickException(f"{config_path}: {e}") from e
    asyncio.run(controller.run())


if __name__ == "__main__":
    main()
