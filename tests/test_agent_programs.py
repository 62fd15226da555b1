"""The agent programs in this repository keep the platform's contract with a worker.

Checked statically (livekit-agents is not installed in the project's venv; tests/agents runs the
programs for real): every agent whose manifest builds it (`code.build`), or whose name has a folder
under agents/, registers for explicit dispatch under the name the platform gives it, leaves load
reporting, drain, metrics and health to the platform glue (voxplane_agent.py, once, in the
platform's agent base image agents/_platform), and ships an image built on that base that serves
the health port as a non-root user.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from voxplane.deploy import agent_base

from .support.repo import REPO


HEALTH_PORT = "8081"
#: The platform's agent base image (voxplane-agent-base) and the glue in it, which every program imports.
BASE = REPO / agent_base.FOLDER
GLUE = BASE / agent_base.GLUE
#: What the base image installs; a program built on it never pins these itself.
BASE_PACKAGES = ("livekit-agents", "livekit-plugins-openai", "livekit-plugins-silero")


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
        glue = ast.parse(GLUE.read_text())
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


def _imports_the_glue(folder: Path) -> bool:
    return any(a.name == "voxplane_agent" for n in ast.walk(_tree(folder)) if isinstance(n, ast.Import) for a in n.names)


def _base_build_arg_and_from(dockerfile: Path) -> tuple[bool, bool]:
    """(an ARG VOXPLANE_AGENT_BASE before the first FROM, the first FROM is ${VOXPLANE_AGENT_BASE})."""
    steps = _instructions(dockerfile)
    first_from = next(i for i, (word, _) in enumerate(steps) if word == "FROM")
    arg = any(word == "ARG" and args.split("=")[0].strip() == agent_base.BUILD_ARG for word, args in steps[:first_from])
    return arg, agent_base.uses_base(dockerfile.read_text())


@pytest.mark.parametrize("folder, dockerfile", PROGRAMS)
def test_the_image_gets_the_glue_from_the_platform_base_image(folder: Path, dockerfile: str):
    """A program importing voxplane_agent builds FROM ${VOXPLANE_AGENT_BASE} (declared before the
    FROM, so pulumi-docker can pass the pushed base digest), and keeps no copy of the glue: one in
    its folder would shadow the base's (the script's folder comes first on sys.path)."""
    if not _imports_the_glue(folder):
        return
    arg, from_base = _base_build_arg_and_from(folder / dockerfile)
    assert arg and from_base, (f"{folder.name}/{dockerfile} must start with `ARG {agent_base.BUILD_ARG}=...` and "
                               f"`FROM ${{{agent_base.BUILD_ARG}}}` (the platform's agent base image)")
    assert not (folder / agent_base.GLUE).exists(), f"{folder.name}/{agent_base.GLUE}: a copy of the glue; delete it"


def test_the_base_image_puts_the_glue_on_pythonpath_as_the_uid_the_pods_run_as():
    """agents/_platform/Dockerfile installs its requirements, copies the glue into the folder its
    PYTHONPATH names, checks the glue imports, and creates uid 10001 (runAsUser of every pod)."""
    steps = _instructions(BASE / "Dockerfile")
    env = " ".join(args for word, args in steps if word == "ENV")
    (pythonpath,) = re.findall(r"PYTHONPATH=(\S+)", env)
    copies = [args.split() for word, args in steps if word == "COPY"]
    assert [agent_base.GLUE, pythonpath + "/"] in copies or [agent_base.GLUE, pythonpath] in copies, copies
    runs = [args for word, args in steps if word == "RUN"]
    assert any("pip install -r" in r and "requirements.txt" in r for r in runs)
    assert any('import voxplane_agent' in r for r in runs)
    assert any("--uid 10001" in r for r in runs)
    assert steps[0][0] == "FROM" and steps[0][1].startswith("python:3.11")


def test_the_glue_lives_once():
    """The only voxplane_agent.py under agents/ is the base image's."""
    assert sorted(p.relative_to(REPO).as_posix() for p in (REPO / "agents").rglob(agent_base.GLUE)) == [
        f"{agent_base.FOLDER}/{agent_base.GLUE}"]


def test_the_glue_passes_the_platform_settings_to_the_agent_server():
    """The AgentServer the glue builds takes load, threshold, drain, metrics port and the number of
    prewarmed job processes from the VOXPLANE_* settings the platform renders, wraps the program's
    own setup in the platform's process warm-up, and moves livekit-agents' own server off the health port."""
    glue = ast.parse(GLUE.read_text())
    (fn,) = [n for n in glue.body if isinstance(n, ast.FunctionDef) and n.name == "agent_server"]
    (call,) = [n for n in ast.walk(fn) if isinstance(n, ast.Call) and _call_name(n) == "AgentServer"]
    kw = {k.arg: ast.unparse(k.value) for k in call.keywords}
    assert kw["load_fnc"] == "load" and kw["load_threshold"] == "threshold"
    assert "VOXPLANE_DRAIN_TIMEOUT" in kw["drain_timeout"] and kw["port"] == "0"
    assert kw["num_idle_processes"] == "idle_processes(spw)"
    assert kw["setup_fnc"] == "functools.partial(_setup_process, agent_setup)"
    body = ast.unparse(fn)
    for var in ("VOXPLANE_SESSIONS_PER_WORKER", "VOXPLANE_LOAD_THRESHOLD", "VOXPLANE_METRICS_PORT",
                "VOXPLANE_HEALTH_PORT", "VOXPLANE_LIVEKIT_LOST_TIMEOUT"):
        assert var in body, var
    (idle,) = [n for n in glue.body if isinstance(n, ast.FunctionDef) and n.name == "idle_processes"]
    assert "VOXPLANE_IDLE_PROCESSES" in ast.unparse(idle)


def test_settings_the_glue_does_not_require_have_defaults():
    """OPTIONAL_ENV (read with a default, so a pool rendered before they existed still starts) and
    the required DEFAULTS are apart, and each optional one is read with os.environ.get."""
    glue = ast.parse(GLUE.read_text())
    values = {ast.unparse(n.targets[0]): n.value for n in glue.body if isinstance(n, ast.Assign)}
    required = set(ast.literal_eval(values["DEFAULTS"]))
    optional = set(ast.literal_eval(values["OPTIONAL_ENV"]))
    assert optional and not optional & required
    text = GLUE.read_text()
    for var in optional:
        assert re.search(rf'os\.environ\.get\("{var}"', text), var


def test_every_setting_the_glue_requires_is_rendered_into_every_agent_pool():
    """What a production worker refuses to start without (PLATFORM_ENV) is exactly what the
    platform renders into each agent's Deployment, so no pool can miss one."""
    from voxplane.deploy.render import render

    glue = ast.parse(GLUE.read_text())
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
    """livekit-agents is pinned to a release line where the image installs it, so a rebuild gets the
    API agent.py and the glue use: in the base image's requirements for an image built on it (and
    then never repinned by the program), else in the program's own requirements.txt."""
    pin = r"^livekit-agents(\[[^\]]*\])?\s*(~=|==)\s*1\.\d+"
    reqs = (folder / "requirements.txt").read_text()
    if agent_base.uses_base((folder / dockerfile).read_text()):
        base = (BASE / "requirements.txt").read_text()
        assert re.search(pin, base, re.MULTILINE), base
        names = {re.split(r"[\s\[<>=~!;]", ln.strip(), maxsplit=1)[0].lower()
                 for ln in reqs.splitlines() if ln.strip() and not ln.lstrip().startswith("#")}
        repinned = sorted(names & set(BASE_PACKAGES))
        assert not repinned, f"{folder.name}/requirements.txt repins {repinned}: the base image owns them"
    else:
        assert re.search(pin, reqs, re.MULTILINE), reqs
