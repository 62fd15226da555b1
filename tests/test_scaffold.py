"""`voxplane new agent` and `voxplane new region`: files that validate (or say what to fill in),
a program that keeps the platform's contract, and nothing ever overwritten."""

from __future__ import annotations

import ast
import re
import inspect
import shutil
from pathlib import Path

import pytest
import yaml

from voxplane.devtools import scaffold
from voxplane.manifest.loader import load

from .support.repo import REPO, copy_manifests
from . import test_agent_programs as contract


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of this repository's manifests, stack files and agent programs."""
    root = copy_manifests(tmp_path / "repo")
    return root


def _contract_checks() -> list:
    """Every per-program check of tests/test_agent_programs.py (those taking folder and dockerfile)."""
    return [fn for name, fn in inspect.getmembers(contract, inspect.isfunction)
            if name.startswith("test_") and list(inspect.signature(fn).parameters) == ["folder", "dockerfile"]]


def test_new_agent_validates_and_its_program_keeps_the_contract(run_cli, repo):
    result = run_cli("new", "agent", "billing", "--tenant", "northwind", "--region", "us-east", "--root", str(repo))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "wrote agents/billing.yaml", "wrote agents/billing/agent.py", "wrote agents/billing/requirements.txt",
        "wrote agents/billing/Dockerfile",
    ]
    assert load((), repo).ok
    doc = yaml.safe_load((repo / "agents/billing.yaml").read_text())
    assert doc["code"] == {"build": "agents/billing"} and doc["regions"] == ["us-east"]
    assert doc["inference"] == {"stt": {"model": "whisper"}, "tts": {"model": "kokoro"}, "llm": {"model": "chat"}}
    folder = repo / "agents/billing"
    checks = _contract_checks()
    assert len(checks) >= 8
    for check in checks:
        check(folder, "Dockerfile")
    # The glue comes from the platform's agent base image, as for the example agents: no copy, no
    # repinned livekit-agents, the same Dockerfile head as theirs.
    assert sorted(p.name for p in folder.iterdir()) == ["Dockerfile", "agent.py", "requirements.txt"]
    assert "livekit-agents" not in (folder / "requirements.txt").read_text().replace("# livekit-agents", "")
    head = [ln for ln in (folder / "Dockerfile").read_text().splitlines() if ln and not ln.startswith("#")][:2]
    example = [ln for ln in (REPO / "agents/reservations/Dockerfile").read_text().splitlines()
               if ln and not ln.startswith("#")][:2]
    assert head == example == ["ARG VOXPLANE_AGENT_BASE=voxplane-agent-base", "FROM ${VOXPLANE_AGENT_BASE}"]
    assert "builds FROM the platform's agent base image (agents/_platform" in result.stderr
    # The conversation is its own: nothing of the example agents' programs.
    text = (folder / "agent.py").read_text()
    for word in ("reservation", "support", "schedul", "bella", "restaurant", "clinic", "patient"):
        assert word not in text.lower(), word


def test_without_a_platform_glue_the_program_stands_alone(run_cli, repo):
    """In a repository without the platform's agent base image, the program reads the contract itself:
    LIVEKIT_AGENT_NAME for dispatch, VOXPLANE_METRICS_PORT and VOXPLANE_DRAIN_TIMEOUT for AgentServer."""
    shutil.rmtree(repo / "agents/_platform")
    result = run_cli("new", "agent", "helper", "--tenant", "bellavista", "--region", "local", "--root", str(repo))
    assert result.exit_code == 0, result.output
    folder = repo / "agents/helper"
    assert sorted(p.name for p in folder.iterdir()) == ["Dockerfile", "agent.py", "requirements.txt"]
    tree = ast.parse((folder / "agent.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    (server,) = [c for c in calls if ast.unparse(c.func) == "AgentServer"]
    keywords = {k.arg: ast.unparse(k.value) for k in server.keywords}
    assert "VOXPLANE_METRICS_PORT" in keywords["prometheus_port"]
    assert "VOXPLANE_DRAIN_TIMEOUT" in keywords["drain_timeout"]
    assert "load_fnc" not in keywords and "load_threshold" not in keywords
    assert "LIVEKIT_AGENT_NAME" in (folder / "agent.py").read_text()
    (session,) = [c for c in calls if ast.unparse(c.func).endswith("rtc_session")]
    assert ast.unparse(session.keywords[0].value) == "AGENT_NAME"
    for check in (contract.test_dockerfile_exposes_the_health_port, contract.test_dockerfile_runs_as_non_root,
                  contract.test_dockerfile_starts_a_production_worker, contract.test_requirements_pin_livekit_agents,
                  contract.test_agent_py_compiles, contract.test_agent_registers_for_explicit_dispatch,
                  contract.test_agent_leaves_load_reporting_to_the_platform):
        check(folder, "Dockerfile")
    assert load((), repo).ok


def _help(run_cli) -> str:
    return " ".join(run_cli("new", "agent", "--help").stdout.split())


@pytest.mark.parametrize("glue", [True, False], ids=["with-the-platform-base", "standalone"])
def test_new_agent_help_says_what_the_command_writes(run_cli, repo, glue):
    """Issue #17 item 10: `new agent --help` describes the files written, in either kind of repository
    (it said "requirements.txt pinning livekit-agents" where the base image pins it and the file must not)."""
    if not glue:
        shutil.rmtree(repo / "agents/_platform")
    result = run_cli("new", "agent", "helper", "--tenant", "bellavista", "--region", "local", "--root", str(repo))
    assert result.exit_code == 0, result.output
    text = _help(run_cli)
    folder = repo / "agents/helper"
    for name in ["agents/NAME.yaml", *sorted(p.name for p in folder.iterdir())]:
        assert name in text, name
    requirements = (folder / "requirements.txt").read_text()
    dockerfile = (folder / "Dockerfile").read_text()
    program = (folder / "agent.py").read_text()
    if glue:
        assert "requirements.txt lists only the agent's own packages" in text
        assert not re.search(r"^livekit-agents", requirements, re.M)
        assert "Dockerfile builds FROM the platform's agent base image" in text and "FROM ${VOXPLANE_AGENT_BASE}" in dockerfile
        assert "agent.py imports the platform glue (voxplane_agent)" in text and "import voxplane_agent" in program
    else:
        assert "requirements.txt pins livekit-agents" in text and re.search(r"^livekit-agents==", requirements, re.M)
        assert "Dockerfile starts from python:3.11-slim" in text and dockerfile.startswith("FROM python:3.11-slim")
        assert "registers under LIVEKIT_AGENT_NAME" in text and "LIVEKIT_AGENT_NAME" in program
    assert "telephony and secrets are commented examples" in text
    manifest = (repo / "agents/helper.yaml").read_text()
    assert "# telephony:" in manifest and "# secrets:" in manifest


def test_new_agent_with_a_prebuilt_image(run_cli, repo):
    result = run_cli("new", "agent", "intake", "--tenant", "northwind", "--region", "eu-west", "--code", "image",
                     "--root", str(repo))
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load((repo / "agents/intake.yaml").read_text())
    assert doc["code"] == {"image": "northwind/intake-agent:0.1.0"}
    assert "pin its digest" in result.stderr
    assert load((), repo).ok


def test_new_agent_fits_the_quota_headroom(run_cli, repo):
    """local's northwind quota leaves 6 CPUs after support and scheduler: 6 workers of 1 CPU."""
    result = run_cli("new", "agent", "billing", "--tenant", "northwind", "--region", "local", "--root", str(repo))
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((repo / "agents/billing.yaml").read_text())["scaling"]["max_workers"] == 6
    assert "max_workers is 6" in result.stderr
    assert load((), repo).ok


def test_no_room_in_the_quota_writes_nothing(run_cli, repo):
    path = repo / "regions/local.yaml"
    path.write_text(path.read_text().replace('quotas: { cpu: "96", memory: 192Gi, pods: 60 }',
                                             'quotas: { cpu: "90", memory: 192Gi, pods: 60 }'))
    assert load((), repo).ok
    result = run_cli("new", "agent", "billing", "--tenant", "northwind", "--region", "local", "--root", str(repo))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: tenant 'northwind' has no room for one more worker in region 'local'")
    assert not (repo / "agents/billing.yaml").exists() and not (repo / "agents/billing").exists()


@pytest.mark.parametrize("args, message", [
    (["Bad_Name", "--tenant", "northwind", "--region", "us-east"], "error: agent name 'Bad_Name': lower-case"),
    (["billing", "--tenant", "acme", "--region", "us-east"], "error: region 'us-east' declares no tenant 'acme'"),
    (["billing", "--tenant", "northwind", "--region", "mars"], "error: no region 'mars' (regions: eu-west, local, us-east)"),
    (["support", "--tenant", "northwind", "--region", "us-east"],
     "error: tenant 'northwind' already has an agent 'support' (agents/support.yaml)"),
])
def test_new_agent_refusals_are_one_line(run_cli, repo, args, message):
    result = run_cli("new", "agent", *args, "--root", str(repo))
    assert result.exit_code == 1
    assert result.stderr.startswith(message), result.stderr
    assert sorted(p.name for p in (repo / "agents").iterdir()) == sorted(p.name for p in (REPO / "agents").iterdir()
                                                                           if p.name != "__pycache__")


def test_never_overwrites_a_file(run_cli, repo):
    (repo / "agents/billing").mkdir()
    (repo / "agents/billing/agent.py").write_text("# mine\n")
    result = run_cli("new", "agent", "billing", "--tenant", "northwind", "--region", "us-east", "--root", str(repo))
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: agents/billing/agent.py already exists; nothing was written "
                                     "(voxplane new never overwrites a file)")
    assert (repo / "agents/billing/agent.py").read_text() == "# mine\n"
    assert not (repo / "agents/billing.yaml").exists()
    again = run_cli("new", "region", "eu-west", "--root", str(repo))
    assert again.exit_code == 1 and "region 'eu-west' already exists" in again.stderr


#: What a user fills in for each placeholder, by field.
FILLED = {
    "description": "Asia Pacific. Mumbai.",
    "kubernetes.node_cidrs[0]": "10.50.0.0/20",
    "livekit.public_url": "wss://rtc.ap-south.voice.example.com",
    "livekit.turn.domain": "turn.ap-south.voice.example.com",
    "livekit.turn.tls_secret": "turn-ap-south-tls",
    "sip.public_host": "sip.ap-south.voice.example.com",
    "livekit.redis.address": "redis-livekit.ap-south.internal:6379",
    "sip.carrier_addresses[0]": "203.0.113.10/32",
    "peak_concurrent_calls": 100,
    "voxplane:kubeContext": "voice-ap-south-1",
    "voxplane:livekitApiUrl": "https://rtc.ap-south.voice.example.com",
    "voxplane:imageRegistry": "registry.invalid/agents",
}


def fill_in(root: Path, problems) -> None:
    """Replace each FILL-IN value a problem names with the value from FILLED, as a user would."""
    for problem in sorted(problems, key=lambda p: (p.file, -p.line)):
        field = problem.field
        value = FILLED[field]
        path = root / problem.file
        lines = path.read_text().split("\n")
        text = lines[problem.line - 1]
        start = problem.column - 1
        assert text[start:].startswith('"FILL-IN'), (problem, text)
        end = text.index('"', start + 1) + 1
        lines[problem.line - 1] = text[:start] + (str(value) if not isinstance(value, str) else value) + text[end:]
        path.write_text("\n".join(lines))


def test_new_region_from_another_marks_what_must_differ(run_cli, repo):
    result = run_cli("new", "region", "ap-south", "--from", "us-east", "--root", str(repo))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:2] == ["wrote regions/ap-south.yaml", "wrote Pulumi.ap-south.yaml"]
    assert "  pulumi config set --secret livekitRootSecret \"$(openssl rand -hex 32)\" -s ap-south" in result.stdout
    assert "  pulumi config set --secret hfToken ... -s ap-south" in result.stdout
    checked = run_cli("validate", "--root", str(repo))
    assert checked.exit_code == 1
    problems = load((), repo).problems
    marked = {p.field for p in problems if p.message.startswith("to fill in:")}
    assert marked == {"description", "kubernetes.node_cidrs[0]", "livekit.public_url", "livekit.turn.domain",
                      "livekit.turn.tls_secret", "sip.public_host", "sip.carrier_addresses[0]", "voxplane:kubeContext",
                      "voxplane:livekitApiUrl"}
    others = [p for p in problems if not p.message.startswith("to fill in:")]
    assert [str(p) for p in others] == ["Pulumi.ap-south.yaml:5:20: voxplane:region: region 'ap-south' is invalid (see above)"]
    # The copy keeps the source's layout and comments; only the name and the marked values differ.
    text = (repo / "regions/ap-south.yaml").read_text()
    assert "# Agents call tools; vLLM rejects tool requests unless auto tool choice is on." in text
    assert "name: ap-south\n" in text and "sip.us-east" not in text and "192.76.120.10" not in text
    fill_in(repo, [p for p in problems if p.message.startswith("to fill in:")])
    assert load((), repo).ok, [str(p) for p in load((), repo).problems]
    assert "voxplane:imageRegistry: registry.voice.example.com/agents" in (repo / "Pulumi.ap-south.yaml").read_text()


def test_new_region_counts_only_the_values_to_fill_in(run_cli, repo):
    """Issue #17 item 7: the stack's "region is invalid (see above)" follows from the placeholders;
    it is not one more value to fill in. The source's node CIDRs are one (they must differ)."""
    result = run_cli("new", "region", "ap-south", "--from", "us-east", "--root", str(repo))
    listed = [line.strip() for line in result.stdout.splitlines() if ": to fill in: " in line]
    assert "to fill in (9 values; `voxplane validate` lists them until done):" in result.stdout
    assert len(listed) == 9 and "is invalid" not in result.stdout and "also (" not in result.stdout
    assert any(line.startswith("regions/ap-south.yaml:14:16: kubernetes.node_cidrs[0]: to fill in: ") for line in listed)
    assert "10.40.0.0/20" not in (repo / "regions/ap-south.yaml").read_text().split("node_cidrs:", 1)[1].split("\n")[0]


def test_secrets_of_a_region_still_to_fill_in_says_so(run_cli, repo):
    """Not "no region 'ap-south' loaded": the file is there, with values still to fill in."""
    run_cli("new", "region", "ap-south", "--from", "us-east", "--root", str(repo))
    for command in ("secrets", "capacity"):
        result = run_cli(command, "ap-south", "--root", str(repo))
        assert result.exit_code == 1
        assert result.stderr.splitlines()[-1] == ("error: region 'ap-south' (regions/ap-south.yaml) does not load: "
                                                  "7 values still to fill in (above); fix them and run this again")


def test_new_blank_region(run_cli, repo):
    result = run_cli("new", "region", "lab", "--root", str(repo))
    assert result.exit_code == 0, result.output
    problems = load((), repo).problems
    marked = [p for p in problems if p.message.startswith("to fill in:")]
    assert {p.field for p in marked} == {"description", "peak_concurrent_calls", "livekit.public_url",
                                         "sip.public_host", "sip.carrier_addresses[0]", "voxplane:kubeContext",
                                         "voxplane:livekitApiUrl", "voxplane:imageRegistry"}
    fill_in(repo, marked)
    assert load((), repo).ok, [str(p) for p in load((), repo).problems]


def test_a_placeholder_replaces_the_schema_complaint_at_its_value(repo):
    path = repo / "regions/local.yaml"
    path.write_text(path.read_text().replace("public_url: ws://localhost:7880", 'public_url: "FILL-IN: the URL"'))
    problems = load((), repo).problems
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "FILL-IN" in text)
    assert [str(p) for p in problems if p.file == "regions/local.yaml"] == [
        f"regions/local.yaml:{line}:15: livekit.public_url: to fill in: the URL"]


def test_scaffold_module_holds_no_copy_of_the_glue():
    """The glue lives in the platform's agent base image (agents/_platform), never in voxplane itself."""
    source = Path(scaffold.__file__).read_text()
    assert "def agent_server" not in source and "end_call_with_session(ctx: JobContext" not in source
