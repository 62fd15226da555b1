"""The tenant gateway (`python -m voxplane.gateway serve`) on loopback, from the config a region
renders (`voxplane.dev.region.region_gateway`) with its listen addresses and keys folder replaced."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from .paths import write_private
from .ports import LOOPBACK, free_ports
from .process import HttpServer, answers_ok

__all__ = ["GatewayServer"]


class GatewayServer(HttpServer):
    """The gateway (`python -m voxplane.gateway serve`) on loopback, from a rendered config whose
    listen addresses and keys folder are replaced; `keys` maps key names to secrets."""

    name = "gateway"
    # The first SIGTERM starts a drain (readiness fails, sockets stay); the second ends it.
    term_twice = True

    def __init__(
        self,
        config_json: str,
        keys: Mapping[str, str],
        *,
        startup_timeout: float = 20.0,
        workdir: Path | str | None = None,
        detached: bool = False,
        python: str = sys.executable,
        pythonpath: Path | None = None,
    ) -> None:
        """`python` and `pythonpath`: the interpreter and import path to run the gateway with
        (default: this one's; tests run it as its image does, from a copy of the build context)."""
        super().__init__(workdir, detached)
        self.port, self.metrics_port = free_ports(2, "tcp")
        self._python, self._pythonpath = python, pythonpath
        self._source = json.loads(config_json)
        self._keys = dict(keys)
        self.startup_timeout = startup_timeout

    @property
    def config_path(self) -> Path:
        return self.workdir / "gateway.json"

    def start(self) -> Self:
        keys_dir = self.workdir / "gateway-keys"
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for key, secret in self._keys.items():
            write_private(keys_dir / key, secret)
        config = {**self._source, "listen_host": LOOPBACK, "listen_port": self.port,
                  "metrics_port": self.metrics_port, "keys_dir": str(keys_dir)}
        self.config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        self._spawn([self._python, "-m", "voxplane.gateway", "serve", "--config", str(self.config_path)],
                    env={"PYTHONPATH": str(self._pythonpath)} if self._pythonpath else None)
        self._await_start(self.ready, f"not ready at {LOOPBACK}:{self.metrics_port}/readyz", 0.05, self.startup_timeout)
        return self

    def ready(self) -> bool:
        """True when /readyz on the metrics port answers 200 (it fails while draining)."""
        return answers_ok(f"http://{LOOPBACK}:{self.metrics_port}/readyz")
