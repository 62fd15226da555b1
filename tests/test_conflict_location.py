"""Issue #17 item 5: a conflict between two files is reported, in whole-repository validation, at
the file that changed.

"Changed" is what git reports against HEAD (voxplane/manifest/changes.py): the file being edited or added.
Of two agents in conflict, the changed one is where the conflict is stated; else a copy (a file not
named after its agent) rather than its original; and when nothing tells them apart (no git, or both
changed) it is stated at both. A quota exceeded by raising max_workers is shown at the agent's line
as well as at the region's.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from voxplane.manifest.changes import changed_files

CASES = Path(__file__).parent / "manifests" / "invalid"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", "-c", "commit.gpgsign=false"]

NEW_AGENT = """name: billing
tenant: globex
regions: [test]
code:
  image: globex/billing:1.0.0
telephony:
  numbers: ["+15550100001"]
  dispatch: { room_prefix: globex-billing }
"""


def _committed(root: Path) -> Path:
    subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "base"], cwd=root, check=True)
    return root


def test_a_number_a_new_agent_claims_is_reported_at_the_new_agent(manifest_tree, run_cli, monkeypatch):
    """agents/billing.yaml (new, sorting before echo.yaml) claims echo's number: the one line is at
    billing, and says the number is echo's."""
    root = _committed(manifest_tree())
    (root / "agents/billing.yaml").write_text(NEW_AGENT)
    monkeypatch.chdir(root)
    result = run_cli("validate")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "agents/billing.yaml:7:13: telephony.numbers[0]: +15550100001 is already routed to agent 'acme-echo' "
        "(agents/echo.yaml:8:13) in region 'test'",
    ]


def test_an_edited_agent_that_takes_a_number_is_reported_there(manifest_tree, run_cli, monkeypatch):
    """The same when the agent that now claims the number existed before and was edited."""
    root = manifest_tree()
    (root / "agents/billing.yaml").write_text(NEW_AGENT.replace("+15550100001", "+15550100009"))
    _committed(root)
    (root / "agents/billing.yaml").write_text(NEW_AGENT)
    monkeypatch.chdir(root)
    lines = run_cli("validate").stdout.splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["agents/billing.yaml"], lines


def test_without_git_a_number_claimed_twice_is_stated_at_both_agents(manifest_tree, run_cli, monkeypatch):
    """Nothing says which agent is new: each gets its line, naming the other."""
    monkeypatch.chdir(manifest_tree(overlay=CASES / "phone-number-claimed-twice"))
    result = run_cli("validate")
    assert result.stdout.splitlines() == [
        "agents/echo.yaml:8:13: telephony.numbers[0]: +15550100001 is also claimed by agent 'globex-other' "
        "(agents/other.yaml:7:29) in region 'test'",
        "agents/other.yaml:7:29: telephony.numbers[1]: +15550100001 is already routed to agent 'acme-echo' "
        "(agents/echo.yaml:8:13) in region 'test'",
    ]
    assert result.stderr.strip() == "invalid: 2 problems in 2 of 3 files"


def test_a_copied_agent_is_reported_at_the_copy(manifest_tree, run_cli, monkeypatch):
    """agents/a-copy.yaml is echo.yaml copied (sorting before it): the copy is not named after its
    agent, so the duplicate is stated there, with or without git."""
    root = manifest_tree()
    copy = (root / "agents/echo.yaml").read_text().replace('"+15550100001"', '"+15550100007"')
    (root / "agents/a-copy.yaml").write_text(copy)
    monkeypatch.chdir(root)
    lines = run_cli("validate").stdout.splitlines()
    assert lines == ["agents/a-copy.yaml:2:7: name: tenant 'acme' already has an agent 'echo' (agents/echo.yaml:2:7)"]


def test_raising_max_workers_over_the_quota_shows_at_the_agent_too(manifest_tree, run_cli, monkeypatch):
    """The quota line in the region and, as the agent's file is the one edited, its max_workers line."""
    root = _committed(manifest_tree())
    overlay = CASES / "tenant-quota-below-pools" / "agents" / "echo.yaml"
    (root / "agents/echo.yaml").write_text(overlay.read_text())
    monkeypatch.chdir(root)
    lines = run_cli("validate").stdout.splitlines()
    assert [line.split(": ", 2)[:2] for line in lines] == [
        ["regions/test.yaml:14:26", "tenants.acme.quotas.cpu"],
        ["regions/test.yaml:14:40", "tenants.acme.quotas.memory"],
        ["agents/echo.yaml:7:24", "scaling.max_workers"],
        ["agents/echo.yaml:7:24", "scaling.max_workers"],
    ], lines


def test_lowering_a_quota_shows_at_the_region_only(manifest_tree, run_cli, monkeypatch):
    """When the region's quota is what changed, the agents' max_workers lines stay out of it."""
    root = manifest_tree()
    overlay = CASES / "tenant-quota-below-pools" / "agents" / "echo.yaml"
    (root / "agents/echo.yaml").write_text(overlay.read_text())
    region = root / "regions/test.yaml"
    region.write_text(region.read_text().replace('acme: { quotas: { cpu: "64", memory: 128Gi } }',
                                                 'acme: { quotas: { cpu: "96", memory: 192Gi } }'))
    _committed(root)
    region.write_text(region.read_text().replace('cpu: "96"', 'cpu: "64"'))
    monkeypatch.chdir(root)
    lines = run_cli("validate").stdout.splitlines()
    assert [line.split(": ", 2)[:2] for line in lines] == [["regions/test.yaml:14:26", "tenants.acme.quotas.cpu"]], lines


def test_what_changed_is_read_from_git_relative_to_the_root(tmp_path):
    """Modified and untracked files, relative to a root below the repository's top; None outside git."""
    repo = tmp_path / "repo"
    (repo / "infra" / "agents").mkdir(parents=True)
    (repo / "infra" / "agents" / "a.yaml").write_text("a\n")
    (repo / "infra" / "agents" / "b.yaml").write_text("b\n")
    _committed(repo)
    (repo / "infra" / "agents" / "a.yaml").write_text("a2\n")
    (repo / "infra" / "agents" / "new.yaml").write_text("n\n")
    assert changed_files(repo / "infra") == {"agents/a.yaml", "agents/new.yaml"}
    assert changed_files(tmp_path / "elsewhere") is None
