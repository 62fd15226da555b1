"""The agent programs in this repository keep the platform's contract with a worker.

Checked statically (livekit-agents is not installed in the project's venv; tests/agents runs the
programs for real): every agent whose manifest builds it (`code.build`), or whose name has a folder
under agents/, registers for explicit dispatch under the name the platform gives it, leaves load
reporting, drain, metrics and health to the platform glue (voxplane_agent.py, the same file in
every folder), and ships an image that serves the health port as a non-root user.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from .conftest import REPO

HEALTH_PORT = "8081"
#: The platform glue every program imports (voxplane_agent.py, one copy per agent folder).
GLUE = "voxplane_agent.py"


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
    """The worker takes its name from LIVEKIT_AGENT_NAME, which the platform sets to <tenant>-<name>:
    read by agent.py itself or through the platform glue's agent_name()."""
    tree = _tree(folder)
    reads = [
        node
        for node in ast.walk(tree)
        if (isinstance(node, ast.Call) and _call_name(node) in ("get", "getenv") and node.args)
        or isinstance(node, ast.Subscript)
        if any(isinstance(c, ast.Constant) and c.value == "LIVEKIT_AGENT_NAME" for c in ast.walk(node))
    ]
    via_glue = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _call_name(n) == "agent_name"
                and isinstance(n.func, ast.Attribute) and ast.unparse(n.func.value) == "platform"]
    assert reads or via_glue, f"{folder.name}/agent.py never reads LIVEKIT_AGENT_NAME from the environment"
    if via_glue:
        glue = ast.parse((folder / GLUE).read_text())
        (fn,) = [n for n in glue.body if isinstance(n, ast.FunctionDef) and n.name == "agent_name"]
        assert "LIVEKIT_AGENT_NAME" in ast.unparse(fn)


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
def test_agent_builds_its_server_with_the_platform_glue(folder: Path, dockerfile: str):
    """agent.py gets its AgentServer from voxplane_agent.agent_server() (load, drain, ports, metrics
    and health are the platform's), ties each job to its call, and runs through the glue's run()."""
    tree = _tree(folder)
    calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert "AgentServer" not in calls, f"{folder.name}/agent.py builds its own AgentServer"
    for needed in ("platform.agent_server", "platform.end_call_with_session", "platform.run"):
        assert needed in calls, f"{folder.name}/agent.py never calls {needed}()"
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import)]
    assert any(a.name == "voxplane_agent" and a.asname == "platform" for n in imports for a in n.names)


def test_the_glue_is_the_same_file_in_every_agent_folder():
    """One glue, copied: each image builds from its own folder, so the module is in each; the
    copies never drift (edit one, copy it over the others)."""
    copies = {p.id: (p.values[0] / GLUE) for p in PROGRAMS}
    missing = [name for name, path in copies.items() if not path.is_file()]
    assert not missing, f"no {GLUE} in the folders of {missing}"
    texts = {name: path.read_bytes() for name, path in copies.items()}
    first = next(iter(texts))
    differ = [name for name, text in texts.items() if text != texts[first]]
    assert not differ, (f"{GLUE} differs between agents/{first}/ and {['agents/' + d + '/' for d in differ]}: "
                        f"copy the edited one over the others")


def test_the_glue_passes_the_platform_settings_to_the_agent_server():
    """The AgentServer the glue builds takes load, threshold, drain and metrics port from the
    VOXPLANE_* settings the platform renders, and moves livekit-agents' own server off the health port."""
    glue = ast.parse((PROGRAMS[0].values[0] / GLUE).read_text())
    (fn,) = [n for n in glue.body if isinstance(n, ast.FunctionDef) and n.name == "agent_server"]
    (call,) = [n for n in ast.walk(fn) if isinstance(n, ast.Call) and _call_name(n) == "AgentServer"]
    kw = {k.arg: ast.unparse(k.value) for k in call.keywords}
    assert kw["load_fnc"] == "load" and kw["load_threshold"] == "threshold"
    assert "VOXPLANE_DRAIN_TIMEOUT" in kw["drain_timeout"] and kw["port"] == "0"
    body = ast.unparse(fn)
    for var in ("VOXPLANE_SESSIONS_PER_WORKER", "VOXPLANE_LOAD_THRESHOLD", "VOXPLANE_METRICS_PORT",
                "VOXPLANE_HEALTH_PORT", "VOXPLANE_LIVEKIT_LOST_TIMEOUT"):
        assert var in body, var


def test_every_setting_the_glue_requires_is_rendered_into_every_agent_pool():
    """What a production worker refuses to start without (PLATFORM_ENV) is exactly what the
    platform renders into each agent's Deployment, so no pool can miss one."""
    from voxplane.render import render

    glue = ast.parse((PROGRAMS[0].values[0] / GLUE).read_text())
    (defaults,) = [n for n in glue.body if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "DEFAULTS"]
    required = set(ast.literal_eval(defaults.value))
    deployments = [o for o in render("local", REPO).kubernetes
                   if o["kind"] == "Deployment" and "voxplane.io/agent" in o["metadata"]["labels"]]
    assert deployments
    for d in deployments:
        (container,) = d["spec"]["template"]["spec"]["containers"]
        rendered = {e["name"] for e in container["env"]}
        assert required <= rendered, (d["metadata"]["name"], sorted(required - rendered))


@pytest.mark.parametrize("folder, dockerfile", PROGRAMS)
def test_dockerfile_copies_every_local_module_the_program_imports(folder: Path, dockerfile: str):
    """The image holds agent.py and each module of its folder that it imports (the glue)."""
    local = {p.stem for p in folder.glob("*.py")}
    imported = {a.name.split(".")[0] for n in ast.walk(_tree(folder)) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(_tree(folder)) if isinstance(n, ast.ImportFrom) and n.module}
    needed = {"agent"} | (imported & local)
    copied = {Path(f).stem for word, args in _instructions(folder / dockerfile) if word == "COPY"
              for f in args.split()[:-1] if f.endswith(".py")}
    assert needed <= copied, f"{folder.name}/{dockerfile} does not COPY {sorted(needed - copied)}"


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
