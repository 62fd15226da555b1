"""Fixtures for the LiveKit control-plane tests: a manifest tree in tmp (a copy of the repo's
regions/, agents/ and stack files, edited there). Integration tests take a real Redis +
livekit-server per test from tests/conftest.py (`livekit_local`)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner, Result

from voxplane.cli import main
from voxplane.manifest.loader import load
from voxplane.manifest.model import Agent, Region

from ..support.repo import REPO, copy_manifests

#: The support agent's digest password is `{config: northwindTrunkPassword}`.
TRUNK_PASSWORD = "nw-trunk-password-1"
SECRET_ENV = {"VOXPLANE_SECRET_northwindTrunkPassword": TRUNK_PASSWORD}


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


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    """A copy of the repository's manifests to edit (tests/support/repo.py)."""
    return Tree(copy_manifests(tmp_path / "repo"))


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
