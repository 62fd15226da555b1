"""Fixtures for the LiveKit control-plane tests: a manifest tree in tmp (a copy of the repo's
regions/, agents/ and stack files, edited there) and, for integration tests, a real Redis +
livekit-server per test on free loopback ports. Server fixtures never skip: a server that cannot
start fails the test with its reason."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner, Result

from voxplane.cli import main
from voxplane.dev.livekit import LiveKitServer
from voxplane.dev.redis import RedisServer
from voxplane.dev.region import region_config
from voxplane.livekit.client import LiveKitAdmin
from voxplane.loader import load
from voxplane.model import Agent, Region

REPO = Path(__file__).resolve().parents[2]
#: The support agent's digest password is `{config: northwindTrunkPassword}`.
TRUNK_PASSWORD = "nw-trunk-password-1"
SECRET_ENV = {"VOXPLANE_SECRET_northwindTrunkPassword": TRUNK_PASSWORD}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: talks to real servers (livekit-server, Redis) started by the test"
    )


class Tree:
    """A manifest tree in tmp: edit files as text (line numbers stay meaningful)."""

    def __init__(self, root: Path):
        self.root = root

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.root / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {rel}"
        path.write_text(text.replace(old, new, 1))

    def write(self, rel: str, text: str) -> None:
        (self.root / rel).write_text(text)

    def remove(self, rel: str) -> None:
        (self.root / rel).unlink()

    def project(self, region: str = "local") -> tuple[Region, tuple[Agent, ...]]:
        result = load((), self.root)
        assert not result.problems, "\n".join(map(str, result.problems))
        project = result.require_project()
        return project.regions[region], project.agents_in(region)


def copy_repo_tree(dest: Path) -> Tree:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "regions", dest / "regions")
    shutil.copytree(REPO / "agents", dest / "agents")
    for stack in REPO.glob("Pulumi*.yaml"):
        shutil.copyfile(stack, dest / stack.name)
    return Tree(dest)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return copy_repo_tree(tmp_path / "repo")


AGENT_TEMPLATE = """\
name: {name}
tenant: {tenant}
regions: [local]
code:
  image: example/agent:1.0.0
resources: {{ cpu: 100m, memory: 128Mi }}
scaling: {{ min_workers: 1, max_workers: 1 }}
telephony:
  numbers: ["{number}"]
  dispatch:
    kind: individual
    room_prefix: {prefix}
inference:
  stt: {{ model: whisper }}
  tts: {{ model: kokoro }}
  llm: {{ model: chat }}
"""


def generated_tree(dest: Path, count: int) -> Tree:
    """regions/ of the repo plus `count` generated agents (two tenants), no other agents; the
    tenants' quotas are raised to hold that many pools (validation refuses a quota below them)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "regions", dest / "regions")
    for region in (dest / "regions").glob("*.yaml"):
        region.write_text(re.sub(r"quotas: \{[^}]*\}", f'quotas: {{ cpu: "{count}", memory: {count}Gi, pods: {count} }}',
                                 region.read_text()))
    (dest / "agents").mkdir()
    for i in range(count):
        tenant = ("bellavista", "northwind")[i % 2]
        (dest / "agents" / f"gen{i:04d}.yaml").write_text(
            AGENT_TEMPLATE.format(name=f"gen{i:04d}", tenant=tenant, number=f"+1555{i:07d}", prefix=f"g{i}"))
    return Tree(dest)


@dataclass
class Server:
    redis: RedisServer
    livekit: LiveKitServer

    @property
    def url(self) -> str:
        return self.livekit.http_url

    @property
    def env(self) -> dict[str, str]:
        return {
            "LIVEKIT_URL": self.livekit.url,  # ws://: the CLI must turn it into http://
            "LIVEKIT_API_KEY": self.livekit.api_key,
            "LIVEKIT_API_SECRET": self.livekit.api_secret,
        }

    def client(self) -> LiveKitAdmin:
        return LiveKitAdmin(self.livekit.http_url, self.livekit.api_key, self.livekit.api_secret)


@pytest.fixture
def server() -> Iterator[Server]:
    """Redis + livekit-server running the config voxplane renders for the `local` region (only
    addresses and ports moved to loopback), so every test here also proves the server takes it."""
    with RedisServer() as redis, LiveKitServer(region_config("local", REPO), redis=redis) as lk:
        assert lk.api_key == "vx-admin"  # the admin key comes first in the rendered keys
        yield Server(redis, lk)


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Run `voxplane ...` in-process with an explicit environment (no ambient LIVEKIT_*)."""

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        base: dict[str, str | None] = {
            "LIVEKIT_URL": None, "LIVEKIT_API_KEY": None, "LIVEKIT_API_SECRET": None, "LIVEKIT_TOKEN": None,
            "VOXPLANE_SECRET_northwindTrunkPassword": None,
        }
        return CliRunner().invoke(main, list(args), env={**base, **(env or {})}, catch_exceptions=False)

    return run
