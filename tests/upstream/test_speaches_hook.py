"""The speaches install hook and readiness script, run by a real `sh` with a real `curl`, against
a stand-in that answers as speaches 0.8.3's routes do (facts/speaches.yaml: speaches itself cannot
run here). What is tested is voxplane's script: it installs only what is missing, loads, repairs an
incomplete cache, and fails (so the kubelet restarts the container) when it cannot.
"""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from voxplane.desired import speaches

MODEL = "Systran/faster-distil-whisper-small.en"


class Speaches:
    """Route behaviour of speaches 0.8.3 (src/speaches/routers/models.py, misc.py)."""

    def __init__(self, *, cached: bool = False, complete: bool = True, in_registry: bool = True, healthy: bool = True):
        self.cached, self.complete, self.in_registry, self.healthy = cached, complete, in_registry, healthy
        self.loaded: list[str] = []
        self.calls: list[str] = []

    def answer(self, method: str, path: str) -> tuple[int, str]:
        self.calls.append(f"{method} {path}")
        if path == "/health":
            return (200, "OK") if self.healthy else (503, "")
        if path == "/api/ps" and method == "GET":
            return 200, json.dumps({"models": self.loaded})
        if path == f"/v1/models/{MODEL}":
            if method == "GET":
                return (200, "{}") if self.cached else (404, "")
            if not self.in_registry:
                return 404, ""
            was_there = self.cached and self.complete
            self.cached = self.complete = True
            return (201, "already exists") if was_there else (200, "downloaded")
        if path == f"/api/ps/{MODEL}" and method == "POST":
            if MODEL in self.loaded:
                return 409, "Model already loaded"
            if not (self.cached and self.complete):
                return 500, "model.bin missing"
            self.loaded.append(MODEL)
            return 201, ""
        return 404, ""


@pytest.fixture
def stand_in() -> Iterator[tuple[Speaches, int, list[Speaches]]]:
    holder: list[Speaches] = [Speaches()]

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, method: str) -> None:
            status, body = holder[0].answer(method, self.path)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def do_GET(self) -> None:  # noqa: N802
            self._reply("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._reply("POST")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0], server.server_address[1], holder
    finally:
        server.shutdown()
        server.server_close()


def _run(command: list[str]) -> int:
    return subprocess.run(command, capture_output=True, timeout=60).returncode


def _hook(port: int, budget: int = 30) -> list[str]:
    return speaches.install_hook(MODEL, port, budget)["exec"]["command"]


def _ready(port: int) -> list[str]:
    return speaches.loaded_probe(MODEL, port)["exec"]["command"]


def test_fresh_cache_installs_then_loads_and_then_is_ready(stand_in):
    server, port, _ = stand_in
    assert _run(_ready(port)) == 1  # not loaded: not ready, though /health says 200
    assert _run(_hook(port)) == 0
    assert server.calls[-3:] == [f"GET /v1/models/{MODEL}", f"POST /v1/models/{MODEL}", f"POST /api/ps/{MODEL}"]
    assert _run(_ready(port)) == 0


def test_a_cached_model_is_not_downloaded_again(stand_in):
    server, port, holder = stand_in
    holder[0] = server = Speaches(cached=True)
    assert _run(_hook(port)) == 0
    assert f"POST /v1/models/{MODEL}" not in server.calls and server.loaded == [MODEL]


def test_an_incomplete_cache_is_repaired(stand_in):
    server, port, holder = stand_in
    holder[0] = server = Speaches(cached=True, complete=False)
    assert _run(_hook(port)) == 0
    assert server.calls[-3:] == [f"POST /api/ps/{MODEL}", f"POST /v1/models/{MODEL}", f"POST /api/ps/{MODEL}"]
    assert server.loaded == [MODEL]


def test_a_model_the_hub_does_not_have_fails_the_hook(stand_in):
    server, port, holder = stand_in
    holder[0] = Speaches(in_registry=False)
    assert _run(_hook(port)) != 0
    assert _run(_ready(port)) == 1


def test_a_server_that_never_answers_fails_the_hook_within_its_budget(stand_in):
    server, port, holder = stand_in
    holder[0] = Speaches(healthy=False)
    assert _run(_hook(port, budget=4)) != 0
