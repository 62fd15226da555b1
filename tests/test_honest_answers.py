"""Issue #8: answers that are true of the whole repository, not just of the files named.

`validate FILE` checks FILE against everything (and shows a problem between files at both ends);
stack files are validated; no command ends in a traceback; `secrets` lists what a region needs;
capacity shortfalls are reported (validate) and can gate CI (`capacity --fail-on short`); one bad
region does not turn into "no region" everywhere; messages say what to do.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voxplane.manifest.loader import load

from .support.repo import REPO


CASES = Path(__file__).parent / "manifests" / "invalid"
BUILD_AGENT = "name: echo\ntenant: acme\nregions: [test]\ncode:\n  build: agents/echo\n"
SECURE = "{secure: v1:AAAABBBBCCCC}"


def _lines(result) -> list[str]:
    return result.stdout.splitlines()


# --- item 2: one file, checked against the whole repository -----------------------------------


def test_one_file_is_checked_against_every_other_agent(manifest_tree, run_cli, monkeypatch):
    """A number claimed twice shows when only the earlier claimant is validated, at both ends:
    where it is reported, and the named file's own line."""
    monkeypatch.chdir(manifest_tree(overlay=CASES / "phone-number-claimed-twice"))
    result = run_cli("validate", "agents/echo.yaml")
    assert result.exit_code == 1
    assert _lines(result) == [
        "agents/echo.yaml:8:13: telephony.numbers[0]: +15550100001 is also claimed by agent 'globex-other' "
        "(agents/other.yaml:7:29) in region 'test'",
        "agents/other.yaml:7:29: telephony.numbers[1]: +15550100001 is already routed to agent 'acme-echo' "
        "(agents/echo.yaml:8:13) in region 'test'",
    ]
    assert result.stderr.strip() == "invalid: 2 problems in 2 of 2 files"


def test_a_quota_problem_shows_at_the_agent_that_pushed_it_over(manifest_tree, run_cli, monkeypatch):
    """Raising max_workers in an agent breaks the tenant's quota in the region file: validating the
    agent shows the quota line and the agent's own max_workers line."""
    monkeypatch.chdir(manifest_tree(overlay=CASES / "tenant-quota-below-pools"))
    result = run_cli("validate", "agents/echo.yaml")
    assert result.exit_code == 1
    lines = _lines(result)
    assert lines[0].startswith("regions/test.yaml:14:26: tenants.acme.quotas.cpu: quota 64 is below")
    assert "agents/echo.yaml:7:24: scaling.max_workers: max_workers 40 counts toward the cpu quota of tenant 'acme' " \
           "in region 'test' (regions/test.yaml:14:26), which is below the pools at max_workers" in lines


def test_problems_of_other_files_are_counted_not_listed(manifest_tree, run_cli, monkeypatch):
    """A named file that is fine says ok, and says the repository has problems elsewhere."""
    root = manifest_tree(files={"agents/broken.yaml": "name: broken\n"})
    monkeypatch.chdir(root)
    result = run_cli("validate", "agents/echo.yaml")
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr.strip() == (
        "ok: 1 file, checked against the whole repository; 3 problems in other files (`voxplane validate` lists them)"
    )


def test_an_invalid_region_is_shown_with_the_agent_that_names_it(manifest_tree, run_cli, monkeypatch):
    """"(see above)" is true when one agent is validated: the region's own problem comes first."""
    monkeypatch.chdir(manifest_tree(overlay=CASES / "region-invalid-cascade"))
    result = run_cli("validate", "agents/echo.yaml")
    assert _lines(result) == [
        "regions/test.yaml:4:15: livekit.public_url: expected a string, got number 42; quote the value to keep it text",
        "agents/echo.yaml:4:11: regions[0]: region 'test' is invalid (see above)",
    ]


def test_json_of_one_file_carries_both_ends(manifest_tree, run_cli, monkeypatch):
    monkeypatch.chdir(manifest_tree(overlay=CASES / "phone-number-claimed-twice"))
    doc = json.loads(run_cli("validate", "agents/echo.yaml", "--format", "json").stdout)
    assert doc["valid"] is False and doc["files"] == ["agents/echo.yaml"]
    assert [(e["file"], e["line"]) for e in doc["errors"]] == [("agents/echo.yaml", 8), ("agents/other.yaml", 7)]


# --- item 3: stack files, no tracebacks, `voxplane secrets` ------------------------------------


def test_a_stack_file_can_be_validated_by_name(manifest_tree, run_cli, monkeypatch):
    monkeypatch.chdir(manifest_tree(overlay=CASES / "stack-key-typo"))
    result = run_cli("validate", "Pulumi.test.yaml")
    assert result.exit_code == 1
    assert _lines(result) == [
        "Pulumi.test.yaml:3:3: voxplane:imageRegistery: unknown config key; did you mean 'imageRegistry'?"
    ]


def test_known_keys_include_the_new_ones_and_what_pulumi_yaml_declares(manifest_tree):
    """buildImages, livekitApiKey/livekitApiSecret and keys declared in Pulumi.yaml are known."""
    root = manifest_tree(files={
        "Pulumi.yaml": "name: voxplane\nruntime: python\nconfig:\n  voxplane:newKnob:\n    type: integer\n",
        "Pulumi.test.yaml": (
            "config:\n  voxplane:buildImages: false\n  voxplane:livekitApiKey: vx-admin\n"
            f"  voxplane:livekitApiSecret: {SECURE}\n  voxplane:newKnob: 3\n  voxplane:livekitRootSecret: {SECURE}\n"
        ),
    })
    assert load((), root).problems == []


def test_a_plain_text_stack_secret_shows_at_both_ends(manifest_tree, run_cli, monkeypatch):
    """The agent that references it and the stack file that holds it each get their line."""
    monkeypatch.chdir(manifest_tree(overlay=CASES / "plain-text-stack-secret"))
    result = run_cli("validate", "Pulumi.test.yaml")
    assert [line.split(": ", 1)[0] for line in _lines(result)] == ["Pulumi.test.yaml:2:22", "agents/echo.yaml:7:23"]


def test_render_of_a_build_agent_without_a_stack_file_is_one_line(manifest_tree, run_cli, tmp_path):
    """It used to end in pulumi.RunError's traceback; validation now says what to add."""
    root = manifest_tree(files={"agents/echo.yaml": BUILD_AGENT, "agents/echo/Dockerfile": "FROM scratch\n"})
    result = run_cli("render", "test", "--out", str(tmp_path / "out"), "--root", str(root))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "agents/echo.yaml:5:10: code.build: builds from source, but no stack deploys region 'test'" in result.stderr


def test_an_unexpected_error_is_one_line(run_cli, monkeypatch):
    """The last line of defence: a bug in a command is named in one line, not a traceback."""
    import voxplane.plan.capacity

    def broken(*args, **kwargs):
        raise KeyError("chat")

    monkeypatch.setattr(voxplane.plan.capacity, "plan", broken)
    monkeypatch.chdir(REPO)
    result = run_cli("capacity", "us-east")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: KeyError: 'chat' (a bug in voxplane; VOXPLANE_TRACEBACK=1 shows where)"
    )


def _secrets_tree(manifest_tree, stack: str):
    agent = (
        "name: echo\ntenant: acme\nregions: [test]\ncode:\n  image: acme/echo-agent:1.0.0\n"
        "secrets:\n  CRM_TOKEN: {config: crmToken}\n"
        "telephony:\n  numbers: ['+15550100001']\n  auth:\n    username: carrier\n    password: {config: trunkPassword}\n"
    )
    # The stack builds the gateway's image, so it names a registry (not what these tests are about).
    stack = stack.replace("config:\n", "config:\n  voxplane:imageRegistry: registry.test.example.com/agents\n", 1)
    return manifest_tree(files={"agents/echo.yaml": agent, "Pulumi.test.yaml": stack})


def test_secrets_lists_what_the_region_needs_and_what_is_set(manifest_tree, run_cli, monkeypatch):
    root = _secrets_tree(manifest_tree, f"config:\n  voxplane:livekitRootSecret: {SECURE}\n  voxplane:crmToken: {SECURE}\n")
    monkeypatch.chdir(root)
    result = run_cli("secrets", "test")
    assert result.exit_code == 1
    assert _lines(result) == [
        "region test: 3 stack secrets in Pulumi.test.yaml",
        "key                status   needed by",
        "-----------------  -------  ---------------------------------------------------------------",
        "crmToken           set      agents/echo.yaml:7:23 (agent 'acme-echo')",
        "livekitRootSecret  set      LiveKit API keys and the Redis password of the region (derived)",
        "trunkPassword      missing  agents/echo.yaml:12:24 (agent 'acme-echo')",
    ]
    assert result.stderr.strip() == (
        "1 of 3 secrets not set: pulumi config set --secret KEY -s test for each of trunkPassword"
    )
    doc = json.loads(run_cli("secrets", "test", "--format", "json").stdout)
    assert doc["unset"] == ["trunkPassword"]
    assert {s["key"]: s["status"] for s in doc["secrets"]} == {
        "crmToken": "set", "livekitRootSecret": "set", "trunkPassword": "missing",
    }


def test_secrets_exits_0_when_all_are_set(manifest_tree, run_cli, monkeypatch):
    stack = "config:\n" + "".join(f"  voxplane:{k}: {SECURE}\n" for k in ("livekitRootSecret", "crmToken", "trunkPassword"))
    monkeypatch.chdir(_secrets_tree(manifest_tree, stack))
    result = run_cli("secrets", "test")
    assert result.exit_code == 0, result.output


def test_secrets_reads_another_config_file(manifest_tree, run_cli, tmp_path, monkeypatch):
    """`--config-file` reads a copy (the dev stack keeps its secrets in one under the cache)."""
    monkeypatch.chdir(_secrets_tree(manifest_tree, "config:\n"))
    copy = tmp_path / "copy.yaml"
    copy.write_text("config:\n  voxplane:imageRegistry: registry.test.example.com/agents\n" + "".join(f"  voxplane:{k}: {SECURE}\n" for k in ("livekitRootSecret", "crmToken", "trunkPassword")))
    assert run_cli("secrets", "test", "--config-file", str(copy)).exit_code == 0


def test_secrets_of_the_examples_name_every_reference():
    """The example stacks set no secrets in git; the list is what `pulumi config set --secret` needs."""
    from voxplane.manifest.loader import load_project
    from voxplane.manifest.stackfile import needed_secrets

    project = load_project(REPO)
    assert sorted(needed_secrets(project.regions["us-east"], project.agents)) == [
        "hfToken", "livekitRootSecret", "northwindOpenaiKey", "northwindTrunkPassword",
    ]


# --- item 5: capacity shortfalls ---------------------------------------------------------------


@pytest.mark.parametrize("region", ["local", "us-east", "eu-west"])
def test_example_regions_are_not_short(run_cli, monkeypatch, region):
    monkeypatch.chdir(REPO)
    result = run_cli("capacity", region, "--fail-on", "short")
    assert result.exit_code == 0, result.output


def test_capacity_fails_on_short_when_the_pools_cannot_carry_the_peak(manifest_tree, run_cli, monkeypatch):
    """A peak of 500 calls is more than echo's pools carry at max_workers (10 x 10): exit 2, one line why."""
    base = (Path(__file__).parent / "manifests" / "base" / "regions" / "test.yaml").read_text()
    root = manifest_tree(files={"regions/test.yaml": base.replace("name: test\n", "name: test\npeak_concurrent_calls: 500\n")})
    monkeypatch.chdir(root)
    plain = run_cli("capacity", "test")
    assert plain.exit_code == 0
    gated = run_cli("capacity", "test", "--fail-on", "short")
    assert gated.exit_code == 2
    assert gated.stderr.strip() == "short: agent pools at max_workers carry 100 sessions for 500 peak calls"


# --- item 6: cascades and copies ----------------------------------------------------------------


def test_a_copied_region_named_first_still_blames_the_copy(manifest_tree):
    """The original is the file named after the region, whatever sorts first."""
    base = (Path(__file__).parent / "manifests" / "base" / "regions" / "test.yaml").read_text()
    problems = load((), manifest_tree(files={"regions/a-copy.yaml": base})).problems
    assert [str(p) for p in problems] == [
        "regions/a-copy.yaml:2:7: name: region 'test' is already declared in regions/test.yaml:2:7; "
        "give this copy its own name (and file name)"
    ]


# --- item 7: messages and forms -----------------------------------------------------------------


def test_one_problem_is_singular(manifest_tree, run_cli, monkeypatch):
    monkeypatch.chdir(manifest_tree(overlay=CASES / "region-typo"))
    assert run_cli("validate").stderr.strip() == "invalid: 1 problem in 1 of 2 files"


def test_the_root_is_found_from_a_sub_folder(manifest_tree, run_cli, monkeypatch):
    """Without --root, the nearest folder holding Pulumi.yaml is the repository; paths stay relative
    to where the command runs."""
    root = manifest_tree(overlay=CASES / "region-typo", files={"Pulumi.yaml": "name: voxplane\nruntime: python\n"})
    monkeypatch.chdir(root / "agents")
    result = run_cli("validate", "echo.yaml")
    expected = ["agents/echo.yaml:3:11: regions[0]: no region 'tset' (regions: test); did you mean 'test'?"]
    assert _lines(result) == expected
    assert _lines(run_cli("validate")) == expected
