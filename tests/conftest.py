"""Shared fixtures: a CLI runner, manifest trees built in tmp dirs, and the real Redis +
livekit-server pair (tests/support holds the helpers behind them).

A test that starts a real server carries the `integration` mark (`make unit` leaves those out):
a test without it that starts one (itself or through a function-scoped fixture) fails, saying so.

`make test` runs the suite in lanes: tests/support/lanes.py says how it is cut into units of work."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

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

from .support import lanes  # noqa: E402
from .support.repo import MANIFESTS, REPO  # noqa: E402
from .support.servers import DevLiveKit, livekit_with_redis  # noqa: E402
from .support.vllm import VllmServer, make_tiny_model  # noqa: E402


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With lanes (`make test`: `-n 2 --dist loadscope`): tests/support/lanes.py's units."""
    return None if config.getoption("dist") == "each" else lanes.scheduler(config, log)


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # a lane (xdist's worker)
        lanes.plain_environment()
        lanes.own_ports(config.workerinput["workerid"], config.workerinput["workercount"])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):
        lanes.shared_first(items)


def pytest_runtest_setup(item: pytest.Item) -> None:
    problem = lanes.shared_fixture_outside(item)
    if problem is not None:
        pytest.fail(problem)


@pytest.fixture(scope="session", autouse=True)
def _dev_clusters_use_free_ports() -> Iterator[None]:
    """Fail a dev cluster started for a region whose `prometheus_url` is the repository's own:
    its Prometheus listens on that fixed port, which a running demo or another lane may hold.
    Tests start theirs from a copy with `tests.support.repo.use_free_prometheus_port`."""
    from voxplane.dev import cluster
    from voxplane.dev.autoscaling import region_prometheus_port
    from voxplane.manifest.loader import load

    up = cluster.up

    def checked_up(region: Any, *args: Any, **kwargs: Any) -> Any:
        repository = load((), REPO).require_project().regions.values()
        fixed = {region_prometheus_port(r.kubernetes.prometheus_url) for r in repository} - {None}
        if region_prometheus_port(region.kubernetes.prometheus_url) in fixed:
            pytest.fail(f"a dev cluster for {region.name!r} on the repository's Prometheus port "
                        f"({region.kubernetes.prometheus_url}): start it from a copy with use_free_prometheus_port")
        return up(region, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cluster, "up", checked_up)
        yield


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


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama (tests/support/tiny_model.py), readable by the servers' uid."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def vllm_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """One real vLLM started as the local region's LLM is rendered (tests/support/vllm.py lists the
    rewrites), ready (/health 200), shared by the session's tests (tests/upstream, and the
    agents' calls in tests/agents); a test that stops its server starts its own."""
    server = VllmServer(tiny_model, tmp_path_factory.mktemp("vllm"))
    try:
        yield server.start().wait_ready()
    finally:
        server.stop()
