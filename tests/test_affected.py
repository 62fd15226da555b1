"""`voxplane affected`: the CI preview matrix is the regions a change can alter, no more."""

from __future__ import annotations

import subprocess
from functools import cache

import pytest

import dataclasses

from voxplane.plan.affected import affected_regions, explain_regions
from voxplane.manifest.loader import load_project

from .support.repo import REPO, copy_manifests


@cache
def project():
    return load_project(REPO)


@pytest.mark.parametrize(
    "changed, expected",
    [
        (["regions/eu-west.yaml"], ["eu-west"]),
        (["Pulumi.us-east.yaml"], ["us-east"]),
        (["agents/support.yaml"], ["local", "us-east"]),
        (["agents/support/agent.py"], ["local", "us-east"]),
        (["agents/scheduler/agent.py"], []),  # deployed by digest: its code folder builds nothing here
        # The platform's agent base image: every agent built from source (support, reservations)
        # builds FROM it; scheduler's image is prebuilt, so its regions count only through those.
        (["agents/_platform/voxplane_agent.py"], ["eu-west", "local", "us-east"]),
        (["agents/_platform/Dockerfile", "agents/_platform/requirements.txt"], ["eu-west", "local", "us-east"]),
        (["agents/scheduler.yaml", "regions/us-east.yaml"], ["eu-west", "local", "us-east"]),
        (["README.md", "tests/test_cli.py", "docs/manifest-reference.md"], []),
        (["voxplane/desired/sfu.py"], ["eu-west", "local", "us-east"]),
        (["schemas/agent.schema.json"], ["eu-west", "local", "us-east"]),
    ],
)
def test_changed_paths_map_to_regions(changed, expected):
    """Each kind of change selects the regions it can alter."""
    assert affected_regions(changed, project()) == expected


def test_an_agent_leaving_a_region_still_previews_it():
    """Removing us-east from an agent's regions must preview us-east (its pool is deleted there)."""
    assert affected_regions(["agents/reservations.yaml"], project(), {"agents/reservations.yaml": ["us-east"]}) == [
        "eu-west", "local", "us-east",
    ]
    assert affected_regions(["agents/gone.yaml"], project(), {"agents/gone.yaml": ["eu-west"]}) == ["eu-west"]


def test_cli_compares_with_a_git_base(tmp_path, run_cli):
    """In a real git repository: an agent moved from eu-west to us-east affects both, as JSON."""
    repo = copy_manifests(tmp_path / "repo")

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("-c", "user.name=t", "-c", "user.email=t@t.invalid", "add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qm", "base")
    scheduler = repo / "agents/scheduler.yaml"
    scheduler.write_text(scheduler.read_text().replace("regions: [local, eu-west]", "regions: [local, us-east]"))
    result = run_cli("affected", "--base", "main", "--root", str(repo), "--format", "json")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == '["eu-west", "local", "us-east"]'


def test_the_agent_base_image_affects_exactly_the_regions_of_agents_built_from_source():
    """A change of agents/_platform/ previews the regions where an agent built from source runs,
    and no region whose agents all run prebuilt images."""
    p = project()
    built = {a.scoped_name: sorted(a.regions) for a in p.agents if a.code.build}
    assert built == {"northwind-support": ["local", "us-east"],
                     "bellavista-reservations": ["eu-west", "local", "us-east"]}
    only_support = dataclasses.replace(p, agents=tuple(
        a if a.code.build is None or a.name == "support" else dataclasses.replace(a, code=dataclasses.replace(
            a.code, build=None, image="registry.example.com/x@sha256:" + "0" * 64)) for a in p.agents))
    assert affected_regions(["agents/_platform/voxplane_agent.py"], only_support) == ["local", "us-east"]
    no_builds = dataclasses.replace(p, agents=tuple(
        dataclasses.replace(a, code=dataclasses.replace(a.code, build=None, image="r.example.com/x:1"))
        for a in p.agents))
    assert affected_regions(["agents/_platform/voxplane_agent.py"], no_builds) == []


def test_explain_names_the_base_image_and_each_agent_built_from_it():
    reasons = explain_regions(["agents/_platform/voxplane_agent.py"], project())
    assert reasons["eu-west"] == [
        "agents/_platform/voxplane_agent.py changed: the platform's agent base image (agents/_platform), which agent "
        "bellavista/reservations (code.build: agents/reservations) builds FROM, runs here"]
    assert len(reasons["us-east"]) == 2 and any("northwind/support" in r for r in reasons["us-east"])
