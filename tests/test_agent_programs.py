"""The agent programs in this repository keep the platform's contract with a worker.

Checked statically (livekit-agents is not installed here): every agent whose manifest builds it
(`code.build`), or whose name has a folder under agents/, registers for explicit dispatch under the
name the platform gives it, leaves load reporting to the platform, and ships an image that serves
the health port as a non-root user.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from .conftest import REPO

HEALTH_PORT = "8081"


def _programs() -> list:
    found = []
    for manifest in sorted((REPO / "agents").glob("*.yaml")):
        doc = yaml.safe_load(manifest.read_text())
        code = doc.get("code") or {}
        folder = REPO / code["build"] if code.get("build") else REPO / "agents" / doc["name"]
        if code.get("build") or folder.is_dir():
            found.append(pytest.param(folder, code.get("dockerfile", "Dockerfile"), id=doc["name"]))
    return found


PROGRAMS = _programs()


def _tree(folder: Path) -> ast.Module:
    path = folder / "agent.py"
    return ast.parse(path.read_text(), filename=str(path))


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    lines = [ln for ln in dockerfile.read_text().splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\s*\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, args = line.strip().partition(" ")
            out.append((word.upper(), args.strip()))
    return out


def test_agent_programs_are_found():
    """The checks below run on real programs and cannot pass vacuously."""
    names = {p.id for p in PROGRAMS}
    built = {
        yaml.safe_load(m.read_text())["name"]
        for m in (REPO / "agents").glob("*.yaml")
        if (yaml.safe_load(m.read_text()).get("code") or {}).get("build")
    }
    assert built and built <= names


@pytest.mark.parametrize("folder, dockerfile", PROGRAMS)
def test_agent_py_compiles(folder: Path, dockerfile: str):
    """agent.py is valid Python (warnings are errors here), so the image build does not fail on it."""
    path = folder / "agent.py"
    compile(path.read_text(), str(path), "exec")


@pytest.mark.parametrize("folder, dockerfile", PROGRAMS)
def test_agent_reads_its_name_from_the_environment(folder: Path, dockerfile: str):
    """The worker takes its name from LIVEKIT_AGENT_NAME, which the platform sets to <tenant>-<name>."""
    reads = [
        node
        for node in ast.walk(_tree(folder))
        if (isinstance(node, ast.Call) and _call_name(node) in ("get", "getenv") and node.args)
        or isinstance(node, ast.Subscript)
        if any(isinstance(c, ast.Constant) and c.value == "LIVEKIT_AGENT_NAME" for c in ast.walk(node))
    ]
    assert reads, f"{folder.name}/agent.py never reads LIVEKIT_AGENT_NAME from the environment"


@pytest.mark.parametrize("folder, dockerfile", PROGRAMS)
def test_agent_registers_for_explicit_dispatch(folder: Path, dockerfile: str):
    """The entrypoint registers with an agent_name computed at run time, never automatic dispatch."""
    registrations = [
        node
        for node in ast.walk(_tree(folder))
        if isinstance(node, ast.Call) and _call_name(node) in ("rtc_session", "WorkerOptions")
    ]
    assert registrations, f"{folder.name}/agent.py registers no entrypoint (rtc_session or WorkerOptions)"
    for call in registrations:
        name = next((k.value for k in call.keywords if k.arg == "agent_name"), None)
        assert name is not None, f"{folder.name}/agent.py line {call.lineno}: no agent_name, so dispatch is automatic"
        assert not isinstance(name, ast.Constant), (
            f"{folder.name}/agent.py line {call.lineno}: agent_name is a literal; use LIVEKIT_AGENT_NAME"
        )


@pytest.mark.parametrize("folder, dockerfile", PROGRAMS)
def test_agent_leaves_load_reporting_to_the_platform(folder: Path, dockerfile: str):
    """agent.py never mentions load_fnc or load_threshold: the platform owns load reporting."""
    text = (folder / "agent.py").read_text()
    for word in ("load_fnc", "load_threshold"):
        assert word not in text, f"{folder.name}/agent.py mentions {word}"


@pytest.mark.parametrize("folder, dockerfile", PROGRAMS)
def test_agent_takes_metrics_port_and_drain_timeout_from_the_platform(folder: Path, dockerfile: str):
    """AgentServer gets prometheus_port and drain_timeout from VOXPLANE_* env (autoscaling signal, drain bound)."""
    calls = [n for n in ast.walk(_tree(folder)) if isinstance(n, ast.Call) and _call_name(n) == "AgentServer"]
    assert len(calls) == 1, f"{folder.name}: expected one AgentServer(...)"
    keywords = {k.arg: ast.unparse(k.value) for k in calls[0].keywords}
    assert "VOXPLANE_METRICS_PORT" in keywords.get("prometheus_port", "")
    assert "VOXPLANE_DRAIN_TIMEOUT" in keywords.get("drain_timeout", "")


@pytest.mark.parametrize("folder, dockerfile", PROGRAMS)
def test_dockerfile_exposes_the_health_port(folder: Path, dockerfile: str):
    """The image exposes 8081, where a production worker serves its health check."""
    ports = [args.split() for word, args in _instructions(folder / dockerfile) if word == "EXPOSE"]
    exposed = {port.split("/")[0] for group in ports for port in group}
    assert HEALTH_PORT in exposed, f"{folder.name}/{dockerfile} exposes {sorted(exposed)}, not {HEALTH_PORT}"


@pytest.mark.parametrize("folder, dockerfile", PROGRAMS)
def test_dockerfile_runs_as_non_root(folder: Path, dockerfile: str):
    """The image's final USER is a numeric non-zero uid, so Kubernetes' runAsNonRoot can verify it."""
    users = [args for word, args in _instructions(folder / dockerfile) if word == "USER"]
    assert users, f"{folder.name}/{dockerfile} has no USER, so it runs as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{folder.name}/{dockerfile}: USER {users[-1]} is root or not numeric"


@pytest.mark.parametrize("folder, dockerfile", PROGRAMS)
def test_dockerfile_starts_a_production_worker(folder: Path, dockerfile: str):
    """CMD runs `agent.py start`: only production mode serves health on 8081 (dev picks a free port)."""
    cmds = [args for word, args in _instructions(folder / dockerfile) if word == "CMD"]
    assert cmds, f"{folder.name}/{dockerfile} has no CMD"
    assert re.search(r"agent\.py\W+start\b", cmds[-1]), f"{folder.name}/{dockerfile}: CMD {cmds[-1]}"


@pytest.mark.parametrize("folder, dockerfile", PROGRAMS)
def test_requirements_pin_livekit_agents(folder: Path, dockerfile: str):
    """requirements.txt pins livekit-agents to a release line, so a rebuild gets the API agent.py uses."""
    reqs = (folder / "requirements.txt").read_text()
    assert re.search(r"^livekit-agents(\[[^\]]*\])?\s*(~=|==)\s*1\.\d+", reqs, re.MULTILINE), reqs
