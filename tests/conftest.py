"""Shared fixtures: a CLI runner, manifest trees built in tmp dirs, and the real Redis +
livekit-server pair (tests/support holds the helpers behind them).

A test that starts a real server carries the `integration` mark (`make unit` leaves those out):
a test without it that starts one (itself or through a function-scoped fixture) fails, saying so."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner, Result
from hypothesis import settings

# CI (CI=true) explores the same examples on every run, so a landing is judged on the code, not
# on the draw; local runs keep exploring new ones (and replay failures from .hypothesis/).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

from voxplane.cli import main  # noqa: E402
from voxplane.desired.common import ADMIN_KEY  # noqa: E402
from voxplane.dev.process import ServerProcess  # noqa: E402
from voxplane.dev.redis import RedisServer  # noqa: E402

from .support.repo import MANIFESTS  # noqa: E402
from .support.servers import DevLiveKit, livekit_with_redis  # noqa: E402


@pytest.fixture(autouse=True)
def _real_servers_need_the_integration_mark(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail a test that starts a dev server (Redis, livekit-server, the gateway, livekit-sip) but
    is not marked `integration`: `make unit` would run it without the servers being built."""
    if request.node.get_closest_marker("integration") is not None:
        return

    def refuse(self: ServerProcess, *args: object, **kwargs: object) -> None:
        pytest.fail(f"{request.node.nodeid} starts a real {self.name} server: mark it `integration`")

    monkeypatch.setattr(ServerProcess, "_spawn", refuse)


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    """Invoke `voxplane` in-process; exceptions propagate so a traceback fails the test."""

    def run(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return run


@pytest.fixture
def manifest_tree(tmp_path: Path) -> Callable[..., Path]:
    """A copy of tests/manifests/base with files added or replaced."""

    def build(overlay: Path | None = None, files: dict[str, str | bytes] | None = None) -> Path:
        root = tmp_path / "repo"
        shutil.copytree(MANIFESTS / "base", root)
        if overlay is not None:
            for src in overlay.rglob("*"):
                if src.is_file() and src.name != "expected.txt":
                    dest = root / src.relative_to(overlay)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, dest)
        for rel, content in (files or {}).items():
            dest = root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(content if isinstance(content, bytes) else content.encode())
        return root

    return build


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A throwaway redis-server on loopback."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def livekit_local() -> Iterator[DevLiveKit]:
    """Redis + livekit-server running the config voxplane renders for the `local` region (only
    addresses and ports moved to loopback), so every test using it also proves the server takes it."""
    with livekit_with_redis(region="local") as lk:
        assert lk.livekit.api_key == ADMIN_KEY  # the admin key comes first in the rendered keys
        yield lk
