"""kwok's stages with agent pods left to the pod runner (voxplane/dev/kwokstages.py): kwok's own
`pod-ready` and `pod-delete` never act on an agent pod (else it would be Ready with no worker, and
deleted at once ignoring its drain), and one stage gives an agent pod only its node's part."""

from __future__ import annotations

from pathlib import Path

import yaml

from voxplane.dev.cluster import STAGES
from voxplane.dev.kwokstages import AGENT_POD_START, stages
from voxplane.dev.paths import cache_dir

AGENT = {"key": '.metadata.labels["voxplane.io/agent"]', "operator": "DoesNotExist"}


def stage_dir() -> Path:
    return cache_dir() / "toolchain" / "kwok-stages"


def by_name(texts: list[str]) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in map(yaml.safe_load, texts)}


def test_without_the_runner_kwoks_stages_are_as_shipped() -> None:
    texts = stages(stage_dir(), STAGES, agent_workers=False)
    assert texts == [(stage_dir() / f"{name}.yaml").read_text() for name in STAGES]


def test_with_the_runner_agent_pods_are_left_to_it() -> None:
    shipped = by_name([(stage_dir() / f"{name}.yaml").read_text() for name in STAGES])
    ours = by_name(stages(stage_dir(), STAGES, agent_workers=True))
    assert set(ours) == set(shipped) | {AGENT_POD_START}
    for name in STAGES:
        expected = shipped[name]
        if name in ("pod-ready", "pod-delete"):
            expected["spec"]["selector"]["matchExpressions"].append(AGENT)
        assert ours[name] == expected, name
    start = ours[AGENT_POD_START]["spec"]
    assert {"key": AGENT["key"], "operator": "Exists"} in start["selector"]["matchExpressions"]
    status = start["next"]["statusTemplate"]
    assert "phase: Pending" in status and "reason: ContainerCreating" in status
    assert 'status: "True"\n  type: Ready' not in status
