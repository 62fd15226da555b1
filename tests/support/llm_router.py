"""The LLM router (vllm-router, from the venv scripts/ensure-image-venv.sh builds out of the router
image's own locked requirements) started with the command, arguments and environment the render
gives a model's router Deployment, in front of real vLLM servers (tests/support/vllm.py).

Rewritten, and only these (`RouterProcess.rewrites` records each one):
- the replicas: the rendered Kubernetes service discovery (`--service-discovery --selector ...
  --service-discovery-namespace ... --service-discovery-port ...`: Ready pods of the model) becomes
  `--worker-urls` of the servers given, as there are no pods here;
- `--host` and `--prometheus-host`: 127.0.0.1 instead of every address (a shared machine);
- `--port` and `--prometheus-port`: free ports;
- PATH (the image's).
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pytest

from voxplane.dev.ports import free_ports
from voxplane.deploy.render import render

from .image_venv import image_python
from .repo import REPO
from .vllm import get, scrape
from .wait import wait_until

__all__ = ["RouterProcess", "rendered_router", "router_python"]

#: The rendered flags of service discovery: each with the number of values it takes (None: the
#: values up to the next flag).
DISCOVERY_FLAGS = {"--service-discovery": 0, "--selector": None, "--service-discovery-namespace": 1,
                   "--service-discovery-port": 1}


@functools.lru_cache(maxsize=None)
def router_python() -> Path:
    """The interpreter of the router venv (scripts/ensure-image-venv.sh, cached)."""
    try:
        return image_python("voxplane/llm_router")
    except RuntimeError as e:
        pytest.fail(str(e))


@functools.lru_cache(maxsize=None)
def _rendered(region: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(region, REPO).kubernetes)


def rendered_router(region: str, model: str = "chat") -> dict[str, Any]:
    """The router container of the model's rendered router Deployment."""
    [deployment] = [o for o in _rendered(region) if o["kind"] == "Deployment" and o["metadata"]["name"] == f"{model}-router"]
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def _without_discovery(args: list[str]) -> tuple[list[str], list[str]]:
    """(the arguments without service discovery, the discovery arguments removed)."""
    out: list[str] = []
    removed: list[str] = []
    i = 0
    while i < len(args):
        flag = args[i]
        if flag in DISCOVERY_FLAGS:
            n = DISCOVERY_FLAGS[flag]
            j = i + 1
            if n is None:
                while j < len(args) and not args[j].startswith("--"):
                    j += 1
            else:
                j += n
            removed += args[i:j]
            i = j
            continue
        out.append(flag)
        i += 1
    return out, removed


@dataclass
class RouterProcess:
    """One `vllm-router` started as rendered for `region`'s model, routing to `workers`."""

    region: str
    workers: Sequence[str]
    work: Path
    model: str = "chat"
    port: int = 0
    metrics_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    args: list[str] = field(default_factory=list)
    rewrites: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def log_path(self) -> Path:
        return self.work / "router.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> RouterProcess:
        container = rendered_router(self.region, self.model)
        assert container["command"] == ["vllm-router"], container["command"]
        if not (self.port and self.metrics_port):
            self.port, self.metrics_port = free_ports(2)
        args, removed = _without_discovery(list(container["args"]))
        self.rewrites["service discovery"] = (" ".join(removed), "--worker-urls " + " ".join(self.workers))
        for flag, value in (("--host", "127.0.0.1"), ("--prometheus-host", "127.0.0.1"), ("--port", str(self.port)),
                            ("--prometheus-port", str(self.metrics_port))):
            i = args.index(flag)
            self.rewrites[flag] = (args[i + 1], value)
            args[i + 1] = value
        self.args = [*args, "--worker-urls", *self.workers]
        env = {e["name"]: str(e["value"]) for e in container["env"]}
        env["PATH"] = f"{router_python().parent}:/usr/bin:/bin"
        self.rewrites["env PATH"] = ("(the image's)", env["PATH"])
        self.work.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen([str(router_python().parent / "vllm-router"), *self.args], env=env,
                                         cwd=self.work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 120) -> RouterProcess:
        """Until /readiness answers 200 (a worker is healthy)."""
        def ready() -> bool:
            try:
                return get(f"{self.base_url}/readiness", timeout=2)[0] == 200
            except (OSError, urllib.error.URLError):
                return False

        wait_until("the router's readiness", ready, timeout=timeout, interval=0.5,
                   unless=lambda: None if self.alive() else "the router exited",
                   details=lambda: self.log()[-3000:])
        return self

    def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        status, text = get(self.metrics_url)
        assert status == 200, text[:300]
        return scrape(text)

    def finish_session(self, session_id: str) -> tuple[int, str]:
        req = urllib.request.Request(f"{self.base_url}/finish_session?session_id={session_id}", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def stop(self) -> str:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.log()

    def __enter__(self) -> RouterProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
