"""The lost-agent recovery controller (`python -m voxplane.controllers.recovery serve`) on loopback,
from the config a region renders (`voxplane.dev.region.region_recovery`) with its listen addresses
and key file replaced. livekit-server sends it webhooks at `webhook_url` (`LiveKitServer(...,
webhook_urls=[...])`), so its ports are chosen before the server starts."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Self

from .paths import write_private
from .ports import LOOPBACK, free_ports
from .process import HttpServer, answers_ok

__all__ = ["RecoveryServer"]


class RecoveryServer(HttpServer):
    """The recovery controller on loopback; `upstream` is livekit-server's http:// URL (it may be
    set after construction, once the server's port is known), `secret` its key's secret."""

    name = "recovery"

    def __init__(
        self,
        config_json: str,
        secret: str,
        *,
        upstream: str = "",
        startup_timeout: float = 20.0,
        workdir: Path | str | None = None,
        detached: bool = False,
        python: str = sys.executable,
        pythonpath: Path | None = None,
    ) -> None:
        """`python` and `pythonpath`: the interpreter and import path to run it with (default: this
        one's; tests run it as its image does, from a copy of the build context)."""
        super().__init__(workdir, detached)
        self.port, self.metrics_port = free_ports(2, "tcp")
        self.upstream = upstream
        self._python, self._pythonpath = python, pythonpath
        self._source = json.loads(config_json)
        self._secret = secret
        self.startup_timeout = startup_timeout

    @property
    def webhook_url(self) -> str:
        """What livekit-server's `webhook.urls` names."""
        return f"http://{LOOPBACK}:{self.port}/webhook"

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.metrics_port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "recovery.json"

    def start(self) -> Self:
        if not self.upstream:
            raise ValueError("RecoveryServer: set `upstream` (livekit-server's http:// URL) before start()")
        key_file = self.workdir / "recovery-key" / self._source["api_key"]
        key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(key_file, self._secret)
        config = {**self._source, "livekit_url": self.upstream, "listen_host": LOOPBACK, "listen_port": self.port,
                  "metrics_port": self.metrics_port, "key_file": str(key_file)}
        self.config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        self._spawn([self._python, "-m", "voxplane.controllers.recovery", "serve", "--config", str(self.config_path)],
                    env={"PYTHONPATH": str(self._pythonpath)} if self._pythonpath else None)
        self._await_start(self.ready, f"not ready at {self.metrics_url}/readyz", 0.05, self.startup_timeout)
        return self

    def ready(self) -> bool:
        return answers_ok(f"{self.metrics_url}/readyz")
