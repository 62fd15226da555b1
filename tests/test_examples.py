"""The repository's own manifests are valid and load into the model the later stages expect."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxplane.manifest.loader import load, load_project
from voxplane.manifest.sourcemap import parse

from .support.repo import REPO


EXAMPLES = sorted((REPO / "regions").glob("*.yaml")) + sorted((REPO / "agents").glob("*.yaml"))


def test_every_example_is_valid(run_cli, monkeypatch):
    """`voxplane validate` on the repository exits 0 with no problem lines."""
    monkeypatch.chdir(REPO)
    result = run_cli("validate")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("ok: 9 files, 3 regions, 3 stacks, 2 tenants, 3 agents")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_declares_its_schema_for_editors(path: Path):
    """Every example starts with a yaml-language-server $schema header pointing at a real schema."""
    first = path.read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    target = (path.parent / first.split("=", 1)[1]).resolve()
    assert target.is_file() and target.parent.name == "schemas"


def test_regions_and_tenants_are_what_the_examples_say():
    """The model carries the example facts: three regions, two tenants, three agents."""
    project = load_project(REPO)
    assert sorted(project.regions) == ["eu-west", "local", "us-east"]
    assert {a.scoped_name for a in project.agents} == {
        "bellavista-reservations", "northwind-support", "northwind-scheduler",
    }
    assert [a.name for a in project.agents_in("eu-west")] == ["reservations", "scheduler"]


def test_defaults_come_from_the_schema():
    """Fields left out of a manifest get the schema's documented default (e.g. drain 3600 s, SFU 18000 s)."""
    project = load_project(REPO)
    support = next(a for a in project.agents if a.name == "support")
    assert support.scaling.drain_timeout == 3600
    assert support.command == ("python", "agent.py", "start")
    us = project.regions["us-east"]
    assert us.livekit.drain_seconds == 18000
    assert us.livekit.ports.rtc_tcp == 7881
    assert us.sip is not None and us.sip.sip_port == 5060 and str(us.sip.rtp_ports) == "10000-20000"
    assert us.gpu_node_groups["h100"].taints[0].key == "nvidia.com/gpu"
    assert us.models["chat"].scaling_metric == "vllm:num_requests_waiting"


def test_model_objects_are_frozen():
    """Later stages cannot mutate the model."""
    project = load_project(REPO)
    agent = project.agents[0]
    with pytest.raises(AttributeError):
        agent.name = "other"  # type: ignore[misc]


def test_source_positions_point_into_the_file():
    """Model objects remember file and line, so drift can name the field that owns a difference."""
    project = load_project(REPO)
    support = next(a for a in project.agents if a.name == "support")
    assert support.source is not None
    location = support.source.locate("telephony", "numbers", 0)
    file, line, _ = location.split(":")
    assert file == "agents/support.yaml"
    assert '"+16175550188"' in (REPO / file).read_text().splitlines()[int(line) - 1]


def test_validating_one_agent_still_checks_it_against_all_regions(monkeypatch):
    """`voxplane validate agents/x.yaml` resolves regions from regions/ even when not given."""
    monkeypatch.chdir(REPO)
    result = load(["agents/support.yaml"], REPO)
    assert result.problems == []
    assert result.files == ["agents/support.yaml"]


def test_parse_keeps_key_and_value_positions():
    """The source map has 1-based positions of keys and values, list items included."""
    data, smap = parse(b"a:\n  b: [1, 2]\n  c: x\n")
    assert data == {"a": {"b": [1, 2], "c": "x"}}
    assert smap.key(("a", "c")) == (3, 3)
    assert smap.value(("a", "c")) == (3, 6)
    assert smap.value(("a", "b", 1)) == (2, 10)
