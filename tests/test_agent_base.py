"""The platform's agent base image (agents/_platform, voxplane.deploy.agent_base): built once per region
stack before the agents built on it, passed to their builds as VOXPLANE_AGENT_BASE, part of their
image tags; recognised in a Dockerfile only by its FROM line."""

from __future__ import annotations

import pytest

from voxplane.deploy import agent_base
from voxplane.deploy.render import PLACEHOLDER_DIGEST, render

from .support.repo import REPO


IMAGE = "docker:index/image:Image"


def _images(region: str) -> dict[str, dict]:
    return {r.name: r.inputs for r in render(region, REPO).resources if r.type == IMAGE}


def test_a_region_stack_builds_the_base_once_and_each_agent_from_its_digest():
    """us-east builds reservations and support from source: one base image, and each agent's
    build gets the base's pushed digest as VOXPLANE_AGENT_BASE (so it is built after the base)."""
    images = _images("us-east")
    bases = [name for name in images if name.endswith(agent_base.IMAGE)]
    assert bases == ["us-east-voxplane-agent-base"], sorted(images)
    base = images[bases[0]]
    assert base["imageName"].startswith("registry.voice.example.com/agents/voxplane-agent-base:")
    assert base["build"]["context"].endswith(agent_base.FOLDER)
    agents = {name: inputs for name, inputs in images.items() if name.startswith("us-east-agent-")}
    assert len(agents) == 2, sorted(images)
    for name, inputs in agents.items():
        ref = inputs["build"]["args"][agent_base.BUILD_ARG]
        assert ref == f"{base['imageName']}@{PLACEHOLDER_DIGEST}", (name, ref)  # the base's repoDigest, in a render


def test_renders_in_one_process_never_share_a_base_image():
    """The base is shared per RegionStack (weakly): a second render registers its own, once."""
    first, second = _images("us-east"), _images("us-east")
    assert sorted(first) == sorted(second)
    assert sum(name.endswith(agent_base.IMAGE) for name in second) == 1


def test_a_stack_that_only_renders_names_tags_that_include_the_base():
    """The local stack builds nothing (voxplane:buildImages false): no Image at all, and the tags of
    agents built on the base differ from their folder's own hash."""
    from voxplane.components.images import build_context_hash

    assert _images("local") == {}
    deployments = {o["metadata"]["name"]: o for o in render("local", REPO).kubernetes if o["kind"] == "Deployment"}
    image = deployments["reservations"]["spec"]["template"]["spec"]["containers"][0]["image"]
    folder_only = build_context_hash(str(REPO / "agents/reservations"))
    with_base = build_context_hash(str(REPO / "agents/reservations"),
                                   base=build_context_hash(str(REPO / agent_base.FOLDER)))
    assert image.endswith(":" + with_base) and folder_only != with_base


@pytest.mark.parametrize("text, uses", [
    ("ARG VOXPLANE_AGENT_BASE=voxplane-agent-base\nFROM ${VOXPLANE_AGENT_BASE}\n", True),
    ("ARG VOXPLANE_AGENT_BASE\nFROM $VOXPLANE_AGENT_BASE AS app\n", True),
    ("ARG VOXPLANE_AGENT_BASE\nfrom --platform=linux/amd64 ${VOXPLANE_AGENT_BASE}\n", True),
    ("FROM python:3.11-slim\n# FROM ${VOXPLANE_AGENT_BASE}\n", False),
    ("FROM ${VOXPLANE_AGENT_BASE_OTHER}\n", False),
    ("FROM python:3.11-slim\n", False),
])
def test_uses_base_reads_the_from_line(text: str, uses: bool):
    assert agent_base.uses_base(text) is uses


def test_the_base_folder_is_where_the_module_says():
    folder = REPO / agent_base.FOLDER
    assert (folder / agent_base.GLUE).is_file() and (folder / "Dockerfile").is_file()
    assert agent_base.is_base_path(f"{agent_base.FOLDER}/{agent_base.GLUE}")
    assert not agent_base.is_base_path("agents/_platformx/a.py") and not agent_base.is_base_path("agents/support/x")
