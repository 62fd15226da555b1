"""`voxplane plan`: the working tree against a base revision, per manifest field, in real git
repositories built in tmp dirs (no cluster, no Pulumi CLI)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from voxplane.plan.output import MARKER, to_markdown, to_text
from voxplane.plan.result import FieldChange, ObjectRef, Plan, RegionPlan, Touch
from voxplane.plan.text import pair
from voxplane.plan.values import diff_values
from voxplane.drift.kubernetes.compare import format_path
from voxplane.plan.affected import explain_regions, affected_regions
from voxplane.drift.kubernetes.compare import UNSET, Keyed
from voxplane.manifest.loader import load_project

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
    assert text.startswith(MARKER + "\n### voxplane plan")
    assert "| `agents/support.yaml:20` | `scaling.max_workers` | 40 → 43 | `local` ~ ScaledObject " in text
    assert "**Routing:** unchanged" in text


def test_markdown_is_cut_to_fit_a_comment():
    plan = Plan("abc", "x", [], [FieldChange(f"agents/a{i}.yaml", ("env", "X"), "manifest", "a" * 50, "b", 1)
                                   for i in range(2000)])
    text = to_markdown(plan, limit=5000)
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


def test_affected_and_plan_share_the_default_base(run_cli, repo):
    """Neither needs origin/main: both compare with the merge base with the main branch (here a
    local `main`), and say so; main's own later commits are not part of the change."""
    git(repo, "checkout", "-q", "-b", "feature")
    edit(repo, "agents/scheduler.yaml", "max_workers: 10", "max_workers: 11")
    git(repo, "commit", "-qam", "feature")
    git(repo, "checkout", "-q", "main")
    edit(repo, "regions/us-east.yaml", "peak_concurrent_calls: 600", "peak_concurrent_calls: 700")
    git(repo, "commit", "-qam", "main moves on")
    git(repo, "checkout", "-q", "feature")
    merge_base = git(repo, "merge-base", "HEAD", "main").strip()
    affected = run_cli("affected", "--root", str(repo))
    assert affected.exit_code == 0, affected.output
    assert affected.stdout.splitlines() == ["eu-west", "local"]  # not us-east: main's change is not ours
    assert affected.stderr.strip().endswith(f"against {merge_base[:12]} (the merge base with main)")
    planned = json.loads(plan(run_cli, repo, "--format", "json").stdout)
    assert planned["regions"] == ["eu-west", "local"] and planned["base"] == {
        "commit": merge_base, "label": "the merge base with main"}


def test_without_a_main_branch_both_compare_with_head_and_say_so(run_cli, repo):
    """A repository whose branch is not called main or master (and has no origin): the uncommitted
    changes, against HEAD, and the note says why; no error."""
    git(repo, "branch", "-m", "main", "trunk")
    edit(repo, "agents/scheduler.yaml", "max_workers: 10", "max_workers: 11")
    head = git(repo, "rev-parse", "HEAD").strip()
    label = "HEAD; no main branch here, so only the uncommitted changes"
    affected = run_cli("affected", "--root", str(repo))
    assert affected.exit_code == 0, affected.output
    assert affected.stdout.splitlines() == ["eu-west", "local"]
    assert affected.stderr.strip().endswith(f"against {head[:12]} ({label})")
    planned = plan(run_cli, repo, "local")
    assert planned.exit_code == 2, planned.output
    assert planned.stdout.splitlines()[0] == f"plan: the working tree against {head[:12]} ({label}); regions: local"


def test_errors_are_one_line_exit_1(run_cli, repo, tmp_path):
    """Not a git repository, an unknown ref, an unknown region, invalid manifests: exit 1, no traceback."""
    plain = tmp_path / "plain"
    shutil.copytree(repo, plain, ignore=shutil.ignore_patterns(".git"), symlinks=True)
    not_git = plan(run_cli, plain)
    assert not_git.exit_code == 1 and not_git.stderr.strip().startswith("error: ")
    assert "not in a git repository" in not_git.stderr
    for command in ("plan", "affected"):
        bad_ref = run_cli(command, "--root", str(repo), "--base", "nosuchref")
        assert bad_ref.exit_code == 1, bad_ref.output
        assert bad_ref.stderr.splitlines() == [
            "error: --base nosuchref: no such revision in this repository (a branch, tag or commit: `git branch -a` "
            "lists the branches)"]
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
    for folder in ("voxplane", "schemas", "stacks"):
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
    # The LimitRange's one rule changed in part: the changed value, not the whole list.
    assert {(o["path"], o["before"], o["after"]) for o in limits} == {("spec.limits[0].defaultRequest.cpu", "200m", "100m")}
    assert doc["unattributed"] == []


# --- the pieces -----------------------------------------------------------------------------------


def test_diff_values_matches_named_lists_by_name_and_reads_config_files():
    before = {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
              "data": {"config.yaml": "port: 1\nkeys:\n  a: b\n"}}
    after = {"env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
             "data": {"config.yaml": "port: 2\nkeys:\n  a: b\n"}}
    found = {format_path(p): (a, b) for p, a, b in diff_values(before, after)}
    assert found == {
        "data.config.yaml.port": (1, 2),
        "env[A]": ({"name": "A", "value": "1"}, UNSET),
        "env[B].value": ("2", "3"),
        "env[C]": (UNSET, {"name": "C", "value": "4"}),
    }
    assert list(diff_values({"a": [1, 2]}, {"a": [1, 2]})) == []
    assert list(diff_values({"a": 1}, {"a": 1.5})) == [(("a",), 1, 1.5)]


def test_pair_elides_a_long_common_beginning():
    a = "registry.example/agents/bellavista-reservations:" + "a" * 64
    b = "registry.example/agents/bellavista-reservations:" + "b" * 64
    text = pair(a, b)
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
    assert marker_re and re.match(marker_re.group(1), MARKER)
    assert "startswith($m)" in comment_runs and "--method PATCH" in comment_runs and "--method POST" in comment_runs
    uses = {step["uses"] for job in jobs.values() for step in job["steps"] if "uses" in step}
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses), uses


# --- the same inputs give the same bytes ---------------------------------------------------------

_PLAN_ALL_FORMATS = r"""
import json, sys
from pathlib import Path
from voxplane.plan.output import RENDERERS
from voxplane.plan.plan import plan_between
from voxplane.plan.sides import exported
from voxplane.plan.affected import resolve_base
from voxplane.deploy.render import render
root = Path(sys.argv[1])
with exported(root, resolve_base(root, "main")) as base_root:
    result = plan_between(base_root, root, ["local"], base="BASE", base_label="main")
for fmt in ("text", "json", "markdown"):
    print(RENDERERS[fmt](result))
rendered = render("local", root)
print(json.dumps({"kubernetes": rendered.kubernetes, "livekit": rendered.livekit}))
"""


def test_the_same_change_gives_the_same_bytes_whatever_the_hash_seed(repo):
    """Issue #17: the pull-request comment changed on every push, because key order inside
    NetworkPolicy values (and every other rendered mapping) followed the interpreter's hash seed.
    The plan in every format, and the rendered objects drift and status compare, are byte for
    byte the same under different seeds."""
    import os
    import sys

    edit(repo, "agents/scheduler.yaml", "  llm: { model: chat }",
         "  llm:\n    provider: { name: openai, model: gpt-4o-mini, endpoint: https://api.openai.com/v1,"
         " api_key: { config: northwindOpenaiKey } }")
    outputs = []
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", _PLAN_ALL_FORMATS, str(repo)], env=env, capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(done.stdout)
    assert "NetworkPolicy vox-inference/chat" in outputs[0]
    assert outputs[1] == outputs[0] and outputs[2] == outputs[0]


# --- a plan a reviewer can read (issue #17 item 3) --------------------------------------------------


def _objects_once(text: str) -> None:
    """Every object line (`REGION  +|-|~ KIND NS/NAME ...`) names a different object."""
    import re

    refs = [m.group(1) for m in re.finditer(r"^    \S+\s+[+~-] (\S+ \S+)", text, re.M)]
    assert refs and len(refs) == len(set(refs)), sorted(r for r in refs if refs.count(r) > 1)


def test_a_move_from_a_model_to_a_provider_is_one_change_with_its_rules_added_and_removed(run_cli, repo):
    """scheduler's LLM moves from the region's `chat` to OpenAI: one change (not `model` removed and
    `provider` added with the same objects twice), each object once, and the NetworkPolicy rules
    and env vars it drops or adds shown whole as items, not as a cut before → after string."""
    edit(repo, "agents/scheduler.yaml", "  llm: { model: chat }",
         "  llm:\n    provider: { name: openai, model: gpt-4o-mini, endpoint: https://api.openai.com/v1,"
         " api_key: { config: northwindOpenaiKey } }")
    result = plan(run_cli, repo, "local")
    assert result.exit_code == 2, result.output
    text = result.stdout
    (headline,) = [line for line in text.splitlines() if line.startswith("agents/")]
    assert headline == ('agents/scheduler.yaml:35: inference.llm model: "chat" → provider: {"name": "openai", '
                        '"model": "gpt-4o-mini", "endpoint": "https://api.openai.com/v1", "api_key": {"config": '
                        '"northwindOpenaiKey"}}')
    _objects_once(text)
    lines = text.splitlines()
    peer = ('{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "vox-t-northwind"}}, '
            '"podSelector": {"matchLabels": {"voxplane.io/agent": "scheduler"}}}')
    assert f"    local  ~ NetworkPolicy vox-inference/chat spec.ingress[0].from - {peer}" in lines
    (egress,) = [line for line in lines if "NetworkPolicy vox-t-northwind/allow-platform" in line]
    assert egress.startswith("    local  ~ NetworkPolicy vox-t-northwind/allow-platform spec.egress - {")
    assert '"app.kubernetes.io/name": "chat"' in egress and "…" not in egress
    assert ('               spec.template.spec.containers[agent].env + {"name": "VOXPLANE_LLM_PROVIDER", '
            '"value": "openai"}') in lines
    assert lines[-1] == "plan: 4 to change, 0 to add, 0 to remove in 1 region, from 1 field change"
    doc = json.loads(plan(run_cli, repo, "local", "--format", "json").stdout)
    (field,) = doc["fields"]
    assert field["field"] == "inference.llm" and field["before"] == {"model": "chat"}
    removed = [o for o in field["objects"] if o["kind"] == "NetworkPolicy" and o["name"] == "allow-platform"]
    assert [(o["path"], o["item"], o["after"]) for o in removed] == [("spec.egress", "removed", None)]
    assert removed[0]["before"]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "chat"


def test_a_new_agent_is_one_headline_with_its_objects(run_cli, repo):
    """`voxplane new agent` writes a manifest and a code folder: one change (the new agent, with
    its code), not "(new file) added" and again "code.build ... contents changed" with the same
    objects; every object listed once (not again under "objects:")."""
    made = run_cli("new", "agent", "billing", "--tenant", "northwind", "--region", "us-east", "--root", str(repo))
    assert made.exit_code == 0, made.output
    result = plan(run_cli, repo, "us-east")
    assert result.exit_code == 2, result.output
    text = result.stdout
    headlines = [line for line in text.splitlines() if line.startswith("agents/")]
    assert headlines == ["agents/billing.yaml:1: new agent northwind/billing, with its code agents/billing/ "
                         "(Dockerfile, agent.py, requirements.txt)"]
    _objects_once(text)
    assert "    us-east  + Deployment vox-t-northwind/billing" in text.splitlines()
    assert ('    us-east  ~ ConfigMap vox-system/livekit-gateway data.config.json.tenants.northwind.agents '
            '+ "northwind-billing"') in text.splitlines()
    markdown = plan(run_cli, repo, "us-east", "--format", "markdown").stdout
    assert markdown.count("Deployment vox-t-northwind/billing") == 1
    assert "code.build" not in markdown


def test_a_new_region_is_listed_once_with_its_capacity(run_cli, repo):
    """A new region (its manifest and its stack file) is one change with its objects listed once;
    capacity shows the region's whole plan, not `unchanged`, and says what is short (no agent
    runs there yet: the pools carry no calls)."""
    region = (repo / "regions/us-east.yaml").read_text().replace("name: us-east", "name: ap-south", 1)
    (repo / "regions/ap-south.yaml").write_text(region)
    (repo / "Pulumi.ap-south.yaml").write_text(
        (repo / "Pulumi.us-east.yaml").read_text().replace("voxplane:region: us-east", "voxplane:region: ap-south"))
    result = plan(run_cli, repo)
    assert result.exit_code == 2, result.output
    text = result.stdout
    lines = text.splitlines()
    assert lines[0].endswith("; regions: ap-south")
    assert [line for line in lines if line[:1].isalpha() and ".yaml:" in line] == [
        "regions/ap-south.yaml:1: new region ap-south, with its stack file Pulumi.ap-south.yaml"]
    _objects_once(text)
    assert "    ap-south  + Deployment vox-system/livekit" in lines
    capacity = lines[lines.index("capacity:") + 1:lines.index("routing:" if "routing:" in lines else "routing: unchanged")]
    assert capacity[0] == "    ap-south  new region: peak 600 concurrent calls"
    assert "    ap-south  agent pools at max_workers: 0 sessions for 600 peak calls" in capacity
    assert "    ap-south  short: agent pools at max_workers carry 0 sessions for 600 peak calls" in capacity
    assert any(line.startswith("    ap-south  model chat (llm): ") for line in capacity)


def test_an_object_change_with_two_causes_is_listed_once():
    """A touch two changes cause (a config checksum follows every ConfigMap of its namespace) is
    listed under the first and counted under the second; changes with the very same objects share
    one list."""
    def ref(name: str) -> ObjectRef:
        return ObjectRef("local", "kubernetes", "ConfigMap", "vox-system", name)

    t1, t2, t3 = (Touch(ref(n), "change", "data.x", "1", "2") for n in ("a", "b", "c"))
    a = FieldChange("regions/local.yaml", ("livekit", "log_level"), "manifest", "debug", "info", 25, touches=[t1, t2])
    b = FieldChange("regions/local.yaml", ("sip", "log_level"), "manifest", "debug", "info", 40, touches=[t2, t3])
    c = FieldChange("regions/local.yaml", ("x",), "manifest", 1, 2, 50, touches=[t3])
    d = FieldChange("regions/local.yaml", ("y",), "manifest", 1, 2, 51, touches=[t3])
    text = to_text(Plan("abc", "x", [RegionPlan("local", changed=[t1.ref, t2.ref, t3.ref])], [a, b, c, d]))
    body = text.split("\n\n")[1].splitlines()
    assert body == [
        "regions/local.yaml:25: livekit.log_level debug → info",
        "    local  ~ ConfigMap vox-system/a data.x 1 → 2",
        "    local  ~ ConfigMap vox-system/b data.x 1 → 2",
        "regions/local.yaml:40: sip.log_level debug → info",
        "    local  ~ ConfigMap vox-system/c data.x 1 → 2",
        "           (and 1 object change listed above)",
        "regions/local.yaml:50: x 1 → 2",
        "regions/local.yaml:51: y 1 → 2",
        "           (and 1 object change listed above)",
    ]
