"""`voxplane plan`: the working tree against a base revision, per manifest field, in real git
repositories built in tmp dirs (no cluster, no Pulumi CLI)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from voxplane import plan as pl
from voxplane.affected import explain_regions, affected_regions
from voxplane.kubedrift.compare import UNSET, Keyed
from voxplane.loader import load_project

from .support.repo import REPO, copy_manifests

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", "-c", "commit.gpgsign=false"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def edit(repo: Path, rel: str, old: str, new: str) -> None:
    path = repo / rel
    text = path.read_text()
    assert old in text, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding this repository's manifests and stack files, committed on main."""
    root = copy_manifests(tmp_path / "repo")
    # As in this repository: the stack program's folder links the environment (dangling in the
    # base's `git archive` export), which is no change of the tool.
    (root / "stacks").mkdir()
    shutil.copy(REPO / "stacks" / "__main__.py", root / "stacks" / "__main__.py")
    (root / "stacks" / ".venv").symlink_to("../.venv")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    return root


def plan(run_cli, repo: Path, *args: str):
    return run_cli("plan", "--root", str(repo), *args)


def test_a_field_change_names_the_objects_it_touches(run_cli, repo):
    """scaling.max_workers 40 -> 43: the ScaledObject's maxReplicaCount in both regions of the agent; exit 2."""
    edit(repo, "agents/support.yaml", "max_workers: 40", "max_workers: 43")
    result = plan(run_cli, repo)
    assert result.exit_code == 2, result.output
    lines = result.stdout.splitlines()
    at = lines.index("agents/support.yaml:20: scaling.max_workers 40 → 43")
    assert lines[at + 1:at + 3] == [
        "    local    ~ ScaledObject vox-t-northwind/support spec.maxReplicaCount 40 → 43",
        "    us-east  ~ ScaledObject vox-t-northwind/support spec.maxReplicaCount 40 → 43",
    ]
    assert "regions: local, us-east" in lines[0]  # the regions the agent runs in, as `affected` says
    assert not any("the tool itself changed" in line or line.startswith("(tool)") for line in lines), lines
    assert lines[-1] == "plan: 2 to change, 0 to add, 0 to remove in 2 regions, from 1 field change"
    assert "    us-east  agent pools at max_workers: 600 → 630 sessions for 600 peak calls" in lines


def test_no_change_exits_0(run_cli, repo):
    result = plan(run_cli, repo)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "plan: no changes to objects in 0 regions"


def test_a_change_no_object_reflects_exits_0_and_is_listed(run_cli, repo):
    """A description is documentation: listed, no objects, exit 0."""
    edit(repo, "agents/support.yaml", "escalates to a human.", "escalates to a person.")
    result = plan(run_cli, repo, "local")
    assert result.exit_code == 0, result.output
    assert "agents/support.yaml:4: description" in result.stdout
    assert "    (no object changes)" in result.stdout
    assert result.stdout.splitlines()[-1] == (
        "plan: no changes to objects in 1 region; 1 manifest change that no object reflects")


def test_moving_an_agent_adds_and_removes_objects_attributed_to_regions(run_cli, repo):
    """scheduler moves from eu-west to us-east: its objects leave one, appear in the other, and its number moves."""
    edit(repo, "agents/scheduler.yaml", "regions: [local, eu-west]", "regions: [local, us-east]")
    result = plan(run_cli, repo, "--format", "json")
    assert result.exit_code == 2, result.output
    doc = json.loads(result.stdout)
    assert doc["regions"] == ["eu-west", "local", "us-east"]
    (field,) = [f for f in doc["fields"] if f["file"] == "agents/scheduler.yaml"]
    assert field["field"] == "regions" and field["before"] == ["local", "eu-west"]
    touched = {(o["region"], o["action"], o["kind"], o["name"]) for o in field["objects"]}
    for kind in ("Deployment", "ScaledObject", "PodDisruptionBudget"):
        assert ("eu-west", "remove", kind, "scheduler") in touched
        assert ("us-east", "add", kind, "scheduler") in touched
    assert ("us-east", "add", "SIPInboundTrunk", "vx-northwind-scheduler") in touched
    assert "Deployment vox-t-northwind/scheduler" in doc["objects"]["eu-west"]["removed"]
    assert doc["objects"]["us-east"]["routing"] == [
        {"number": "+442079460123", "change": "added", "before": "", "after": "northwind/scheduler"}]
    assert doc["objects"]["eu-west"]["routing"] == [
        {"number": "+442079460123", "change": "removed", "before": "northwind/scheduler", "after": ""}]
    assert doc["unattributed"] == []


def test_numbers_moved_between_agents_and_quota_headroom(run_cli, repo):
    """A number given to another agent is `moved`; a lower quota shows as less headroom."""
    edit(repo, "agents/reservations.yaml", '"+13125550143"]', '"+13125550143", "+16175550188"]')
    edit(repo, "agents/support.yaml", 'numbers: ["+16175550188"]', 'numbers: ["+16175550189"]')
    edit(repo, "regions/local.yaml", "quotas: { cpu: \"56\", memory: 112Gi, pods: 30 }",
         "quotas: { cpu: \"56\", memory: 112Gi, pods: 28 }")
    result = plan(run_cli, repo, "local")
    assert result.exit_code == 2, result.output
    out = result.stdout
    assert "    local  +16175550188 moved northwind/support → bellavista/reservations" in out
    assert "    local  +16175550189 added → northwind/support" in out
    assert "    local  tenant bellavista quota headroom: pods 5 → 3 (25 of 28 at max_workers)" in out
    line = next(n for n, text in enumerate((repo / "regions/local.yaml").read_text().splitlines(), 1) if "pods: 28" in text)
    assert f"regions/local.yaml:{line}: tenants.bellavista.quotas.pods 30 → 28" in out
    assert "    local  ~ ResourceQuota vox-t-bellavista/tenant-quota spec.hard.pods 30 → 28" in out


def test_code_changes_show_as_code_build(run_cli, repo):
    """An edit in an agent's code folder changes its image tag, attributed to that agent's code.build."""
    (repo / "agents/support/agent.py").write_text((repo / "agents/support/agent.py").read_text() + "\n# tweak\n")
    result = plan(run_cli, repo, "--format", "json", "local")
    assert result.exit_code == 2, result.output
    doc = json.loads(result.stdout)
    (field,) = doc["fields"]
    assert (field["file"], field["field"], field["kind"]) == ("agents/support.yaml", "code.build", "code")
    assert "agent.py" in field["note"]
    (touch,) = field["objects"]
    assert touch["name"] == "support" and touch["path"] == "spec.template.spec.containers[agent].image"
    assert touch["via"] == "field"


def test_an_agent_base_image_change_is_a_code_change_of_every_agent_built_on_it(run_cli, repo):
    """agents/_platform/ (the glue every agent image built from source starts FROM) is part of each
    such image's tag: its change is `code.build` of support and reservations (not of scheduler,
    whose image is prebuilt), each touching its Deployment's image, nothing unattributed."""
    glue = repo / "agents/_platform/voxplane_agent.py"
    glue.write_text(glue.read_text() + "\n# tweak\n")
    result = plan(run_cli, repo, "--format", "json", "local")
    assert result.exit_code == 2, result.output
    doc = json.loads(result.stdout)
    assert sorted((f["file"], f["field"], f["kind"]) for f in doc["fields"]) == [
        ("agents/reservations.yaml", "code.build", "code"), ("agents/support.yaml", "code.build", "code")]
    for f in doc["fields"]:
        assert f["note"].startswith("agents/_platform/ (the agent base image agents/") and "voxplane_agent.py" in f["note"]
        (touch,) = f["objects"]
        assert touch["path"] == "spec.template.spec.containers[agent].image" and touch["via"] == "field"
    assert doc["unattributed"] == []


def test_an_agent_not_built_on_the_base_image_ignores_it(run_cli, repo):
    """A Dockerfile that does not start FROM ${VOXPLANE_AGENT_BASE} keeps its tag when the base changes;
    its own folder and the base changing at once give one code.build change per manifest."""
    dockerfile = repo / "agents/support/Dockerfile"
    dockerfile.write_text("FROM python:3.11-slim\nCOPY agent.py .\nUSER 10001:10001\nCMD [\"python\", \"agent.py\", \"start\"]\n")
    git(repo, "commit", "-qam", "support builds on its own")
    glue = repo / "agents/_platform/voxplane_agent.py"
    glue.write_text(glue.read_text() + "\n# tweak\n")
    program = repo / "agents/reservations/agent.py"
    program.write_text(program.read_text() + "\n# tweak\n")
    doc = json.loads(plan(run_cli, repo, "--format", "json", "local").stdout)
    (field,) = doc["fields"]
    assert field["file"] == "agents/reservations.yaml"
    assert field["note"] == ("agents/reservations/ contents changed: agent.py; agents/_platform/ (the agent base image "
                             "agents/reservations/ builds FROM) contents changed: voxplane_agent.py")
    assert doc["unattributed"] == []


def test_a_new_agent_file_adds_objects(run_cli, repo):
    shutil.copy(repo / "agents/scheduler.yaml", repo / "agents/helpdesk.yaml")
    edit(repo, "agents/helpdesk.yaml", "name: scheduler", "name: helpdesk")
    edit(repo, "agents/helpdesk.yaml", '"+442079460123"', '"+442079460124"')
    edit(repo, "agents/helpdesk.yaml", "room_prefix: nw-sched", "room_prefix: nw-help")
    edit(repo, "agents/helpdesk.yaml", "max_workers: 10", "max_workers: 2")
    edit(repo, "agents/helpdesk.yaml", "regions: [local, eu-west]", "regions: [eu-west]")
    result = plan(run_cli, repo, "--format", "json")
    assert result.exit_code == 2, result.output
    doc = json.loads(result.stdout)
    assert doc["regions"] == ["eu-west"]
    new = [f for f in doc["fields"] if f["file"] == "agents/helpdesk.yaml"]
    assert [f["field"] for f in new] == ["(new file)"]
    assert {"Deployment vox-t-northwind/helpdesk", "SIPInboundTrunk vx-northwind-helpdesk"} <= set(
        doc["objects"]["eu-west"]["added"])
    assert doc["unattributed"] == []


def test_markdown_is_one_comment(run_cli, repo):
    edit(repo, "agents/support.yaml", "max_workers: 40", "max_workers: 43")
    result = plan(run_cli, repo, "--format", "markdown", "local")
    assert result.exit_code == 2
    text = result.stdout
    assert text.startswith(pl.MARKER + "\n### voxplane plan")
    assert "| `agents/support.yaml:20` | `scaling.max_workers` | 40 → 43 | `local` ~ ScaledObject " in text
    assert "**Routing:** unchanged" in text


def test_markdown_is_cut_to_fit_a_comment():
    plan = pl.Plan("abc", "x", [], [pl.FieldChange(f"agents/a{i}.yaml", ("env", "X"), "manifest", "a" * 50, "b", 1)
                                   for i in range(2000)])
    text = pl.to_markdown(plan, limit=5000)
    assert len(text) < 5200 and text.rstrip().endswith("shows all of it)")


def test_default_base_is_the_merge_base_with_main(run_cli, repo):
    """Commits on main after the branch point are not part of the change."""
    git(repo, "checkout", "-q", "-b", "feature")
    edit(repo, "agents/support.yaml", "max_workers: 40", "max_workers: 43")
    git(repo, "commit", "-qam", "feature")
    git(repo, "checkout", "-q", "main")
    edit(repo, "regions/local.yaml", "log_level: debug", "log_level: info")
    git(repo, "commit", "-qam", "main moves on")
    git(repo, "checkout", "-q", "feature")
    result = plan(run_cli, repo, "--format", "json")
    doc = json.loads(result.stdout)
    assert result.exit_code == 2
    assert [f["field"] for f in doc["fields"]] == ["scaling.max_workers"]
    assert doc["base"]["label"] == "the merge base with main"
    # Against main's tip instead, main's own change shows, reversed.
    against_tip = json.loads(plan(run_cli, repo, "--format", "json", "--base", "main", "local").stdout)
    assert {f["field"] for f in against_tip["fields"]} == {"scaling.max_workers", "livekit.log_level"}
    assert against_tip["base"]["label"] == "main"


def test_errors_are_one_line_exit_1(run_cli, repo, tmp_path):
    """Not a git repository, an unknown ref, an unknown region, invalid manifests: exit 1, no traceback."""
    plain = tmp_path / "plain"
    shutil.copytree(repo, plain, ignore=shutil.ignore_patterns(".git"), symlinks=True)
    not_git = plan(run_cli, plain)
    assert not_git.exit_code == 1 and not_git.stderr.strip().startswith("error: ")
    bad_ref = plan(run_cli, repo, "--base", "nope")
    assert bad_ref.exit_code == 1 and bad_ref.stderr.strip().startswith("error: git rev-parse")
    region = plan(run_cli, repo, "mars")
    assert region.exit_code == 1 and "no region 'mars'" in region.stderr
    edit(repo, "agents/support.yaml", "max_workers: 40", "max_worker: 40")
    invalid = plan(run_cli, repo)
    assert invalid.exit_code == 1
    assert "agents/support.yaml:20:3: scaling.max_worker: unknown field" in invalid.stderr


def test_a_tool_change_renders_the_base_with_its_own_code(run_cli, repo):
    """When voxplane itself changed, the base is rendered by the base's code: a builder's change
    shows as the objects it changes, attributed to the tool."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".venv")
    for folder in ("voxplane", "components", "schemas", "stacks"):
        shutil.copytree(REPO / folder, repo / folder, ignore=ignore, symlinks=True, dirs_exist_ok=True)
    for name in ("Pulumi.yaml", "pyproject.toml"):
        shutil.copy(REPO / name, repo / name)
    tenant = repo / "voxplane/desired/tenant.py"
    original = tenant.read_text()
    assert '"defaultRequest": {"cpu": "100m"' in original
    tenant.write_text(original.replace('"defaultRequest": {"cpu": "100m"', '"defaultRequest": {"cpu": "200m"'))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tool at the base")
    base = git(repo, "rev-parse", "HEAD").strip()
    tenant.write_text(original)  # the working tree's code is the running one again
    result = plan(run_cli, repo, "--format", "json", "--base", base, "local")
    assert result.exit_code == 2, result.output
    doc = json.loads(result.stdout)
    assert "the base was rendered by the base's own code" in " ".join(doc["notes"])
    (tool,) = [f for f in doc["fields"] if f["kind"] == "tool"]
    assert "voxplane/desired/tenant.py" in tool["note"]
    limits = [o for o in tool["objects"] if o["kind"] == "LimitRange"]
    assert {o["namespace"] for o in limits} == {"vox-t-bellavista", "vox-t-northwind"}
    assert {o["path"] for o in limits} == {"spec.limits"}
    assert all(o["before"][0]["defaultRequest"]["cpu"] == "200m" and o["after"][0]["defaultRequest"]["cpu"] == "100m"
               for o in limits)
    assert doc["unattributed"] == []


# --- the pieces -----------------------------------------------------------------------------------


def test_diff_values_matches_named_lists_by_name_and_reads_config_files():
    before = {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
              "data": {"config.yaml": "port: 1\nkeys:\n  a: b\n"}}
    after = {"env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
             "data": {"config.yaml": "port: 2\nkeys:\n  a: b\n"}}
    found = {pl.format_path(p): (a, b) for p, a, b in pl.diff_values(before, after)}
    assert found == {
        "data.config.yaml.port": (1, 2),
        "env[A]": ({"name": "A", "value": "1"}, UNSET),
        "env[B].value": ("2", "3"),
        "env[C]": (UNSET, {"name": "C", "value": "4"}),
    }
    assert list(pl.diff_values({"a": [1, 2]}, {"a": [1, 2]})) == []
    assert list(pl.diff_values({"a": 1}, {"a": 1.5})) == [(("a",), 1, 1.5)]


def test_pair_elides_a_long_common_beginning():
    a = "registry.example/agents/bellavista-reservations:" + "a" * 64
    b = "registry.example/agents/bellavista-reservations:" + "b" * 64
    text = pl.pair(a, b)
    assert text.startswith("…vations:aaa") and "→ …vations:bbb" in text


def test_explain_says_why_each_region_is_affected():
    project = load_project(REPO)
    changed = ["agents/scheduler.yaml", "agents/support/agent.py", "regions/eu-west.yaml"]
    before = {"agents/scheduler.yaml": ["us-east"]}
    reasons = explain_regions(changed, project, before)
    assert list(reasons) == affected_regions(changed, project, before)
    assert reasons["us-east"] == [
        "agents/scheduler.yaml changed: agent northwind/scheduler ran here before the change (removed from its regions)",
        "agents/support/agent.py changed: the code of agent northwind/support (code.build: agents/support), which runs here",
    ]
    assert "regions/eu-west.yaml changed: the region's manifest" in reasons["eu-west"]
    assert "agents/scheduler.yaml changed: agent northwind/scheduler now runs here (added to its regions)" in reasons["eu-west"]
    assert explain_regions(["voxplane/desired/sfu.py"], project)["local"] == [
        "voxplane/desired/sfu.py changed: the tool itself (affects every region)"]


def test_affected_explain_cli(run_cli, repo):
    edit(repo, "agents/support.yaml", "max_workers: 40", "max_workers: 43")
    text = run_cli("affected", "--base", "main", "--root", str(repo), "--explain")
    assert text.exit_code == 0, text.output
    assert text.stdout.splitlines() == [
        "local", "  agents/support.yaml changed: agent northwind/support runs here",
        "us-east", "  agents/support.yaml changed: agent northwind/support runs here",
    ]
    doc = json.loads(run_cli("affected", "--base", "main", "--root", str(repo), "--explain", "--format", "json").stdout)
    assert doc == {"local": ["agents/support.yaml changed: agent northwind/support runs here"],
                   "us-east": ["agents/support.yaml changed: agent northwind/support runs here"]}


def test_the_preview_workflow_posts_the_plan_once_per_pull_request():
    """preview.yml has a `plan` job (markdown starting with the plan's marker, left as an artifact)
    and one `comment` job that posts each such file as one comment found again by its first line
    and updated in place; every action is pinned by commit."""
    import re

    import yaml

    workflow = yaml.safe_load((REPO / ".github/workflows/preview.yml").read_text())
    jobs = workflow["jobs"]
    assert {"validate", "preview", "plan", "comment"} <= set(jobs)
    plan_runs = "\n".join(step.get("run", "") for step in jobs["plan"]["steps"])
    assert "voxplane plan --base" in plan_runs and "--format markdown > comment/plan.md" in plan_runs
    comment_runs = "\n".join(step.get("run", "") for step in jobs["comment"]["steps"])
    marker_re = re.search(r"marker_re='([^']+)'", comment_runs)
    assert marker_re and re.match(marker_re.group(1), pl.MARKER)
    assert "startswith($m)" in comment_runs and "--method PATCH" in comment_runs and "--method POST" in comment_runs
    uses = {step["uses"] for job in jobs.values() for step in job["steps"] if "uses" in step}
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses), uses
