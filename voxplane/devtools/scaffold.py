"""`voxplane new agent` and `voxplane new region`: the files to start from.

A new agent gets a manifest that validates as written (its pool sized to fit the tenant's quota
headroom in each region, the regions' own models for inference) and a minimal livekit-agents
program of its own in agents/<name>/ that keeps the platform's contract (README, "Adding an
agent"): in a repository with the platform's agent base image (agents/_platform, the glue), one
that imports the glue and builds FROM that image, as the example agents do; else one that reads
the contract itself. A new region gets its region file and stack file, copied from another region where asked,
with every value that must differ between regions replaced by a `FILL-IN: <hint>` placeholder:
`voxplane validate` lists exactly those until they are filled in. Nothing existing is ever
overwritten: when any file to write exists, nothing is written.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from ..deploy import agent_base
from ..plan import capacity
from ..manifest import stackfile
from ..manifest.loader import UnknownRegion, find_region, load, touching
from ..manifest.model import Project
from ..manifest.placeholders import placeholder
from ..manifest.problems import Problem
from ..manifest.quantity import parse_quantity
from ..manifest.sourcemap import parse

NAME = re.compile(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")
#: What a new agent's pool requests per worker, and at most how many workers it starts with.
WORKER_CPU, WORKER_MEMORY, MAX_WORKERS = "1", "2Gi", 10
LIVEKIT_AGENTS = agent_base.LIVEKIT_AGENTS
#: The platform glue, in the agent base image's folder (voxplane.deploy.agent_base), when present.
GLUE = agent_base.GLUE


class ScaffoldError(Exception):
    """Nothing was written; the lines say why."""

    def __init__(self, *lines: str):
        super().__init__(lines[0] if lines else "scaffold failed")
        self.lines = list(lines)


@dataclass
class Scaffolded:
    written: list[str] = field(default_factory=list)
    #: problems of the new files: for a region, the values to fill in (placeholders) and any other
    #: problem of its own (not those that only follow from a placeholder, such as a stack whose
    #: region "is invalid (see above)")
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: commands to run next (secrets to set, checks)
    next: list[str] = field(default_factory=list)


def _project(root: Path) -> Project:
    result = load((), root)
    return result.project or result.partial


def _check_name(kind: str, name: str) -> None:
    if not NAME.match(name):
        raise ScaffoldError(f"error: {kind} name {name!r}: lower-case letters, digits and '-', starting with a letter, "
                            f"at most 40 characters")


def _refuse_existing(root: Path, files: Sequence[str]) -> None:
    there = [f for f in files if (root / f).exists()]
    if there:
        raise ScaffoldError(f"error: {', '.join(there)} already exist{'s' if len(there) == 1 else ''}; "
                            f"nothing was written (voxplane new never overwrites a file)")


def _write(root: Path, files: dict[str, str]) -> list[str]:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x") as f:  # "x": never replace a file that appeared meanwhile
            f.write(text)
    return list(files)


# --- agents ---------------------------------------------------------------------------------------


def new_agent(root: Path, name: str, tenant: str, regions: Sequence[str], code: str = "build") -> Scaffolded:
    """Write agents/<name>.yaml and the program in agents/<name>/ (see the module docstring)."""
    _check_name("agent", name)
    if not regions:
        raise ScaffoldError("error: name at least one region (--region R)")
    project = _project(root)
    for region in regions:
        try:
            find_region(project, region)
        except UnknownRegion as exc:
            raise ScaffoldError(f"error: {exc}") from None
        if tenant not in project.regions[region].tenants:
            known = ", ".join(sorted(project.regions[region].tenants)) or "none"
            raise ScaffoldError(f"error: region {region!r} declares no tenant {tenant!r} (tenants: {known}); "
                                f"add it under `tenants:` in regions/{region}.yaml first")
    taken = [a for a in project.agents if a.tenant == tenant and a.name == name]
    if taken:
        where = taken[0].source.file if taken[0].source else "another manifest"
        raise ScaffoldError(f"error: tenant {tenant!r} already has an agent {name!r} ({where})")
    manifest = f"agents/{name}.yaml"
    glue = platform_glue(root)
    if glue is not None:
        program = {f"agents/{name}/agent.py": AGENT_WITH_GLUE_PY.replace("{name}", name).replace("{tenant}", tenant),
                   f"agents/{name}/requirements.txt": REQUIREMENTS_ON_BASE,
                   f"agents/{name}/Dockerfile": DOCKERFILE_ON_BASE.replace("{name}", name)}
    else:
        program = {f"agents/{name}/agent.py": AGENT_PY.replace("{name}", name),
                   f"agents/{name}/requirements.txt": REQUIREMENTS,
                   f"agents/{name}/Dockerfile": DOCKERFILE}
    files = [manifest, *program]
    _refuse_existing(root, files)
    workers = _workers_that_fit(project, tenant, regions)
    inference = _models(project, regions)
    text = _agent_manifest(name, tenant, regions, code, workers, inference)
    out = Scaffolded()
    out.written = _write(root, {manifest: text, **program})
    if workers < MAX_WORKERS:
        out.notes.append(f"max_workers is {workers}: what tenant {tenant}'s quota leaves in "
                         f"{', '.join(regions)} at {WORKER_CPU} CPU and {WORKER_MEMORY} per worker")
    missing = [role for role in ("stt", "tts", "llm") if role not in inference]
    if missing:
        out.notes.append(f"no model of kind {', '.join(missing)} in every one of {', '.join(regions)}: set "
                         f"inference.{missing[0]} (a model or an external provider) before the agent can answer calls")
    if glue is not None:
        out.notes.append(f"agents/{name}/ builds FROM the platform's agent base image ({agent_base.FOLDER}: "
                         f"livekit-agents and the glue {glue}); run it locally with PYTHONPATH={agent_base.FOLDER}")
    if code == "image":
        out.notes.append(f"code.image names {tenant}/{name}-agent:0.1.0: build agents/{name}/ in your pipeline, "
                         f"push it, and pin its digest (image: ...@sha256:...)")
    result = load((), root)
    out.problems = touching(result.problems, set(out.written))
    out.next = ["voxplane validate", f"voxplane plan {' '.join(regions)}"]
    return out


def platform_glue(root: Path) -> Optional[str]:
    """The path of the platform glue in the repository's agent base image (agents/_platform/
    voxplane_agent.py, with the base's Dockerfile), when there is one: a new program uses it too."""
    folder = root / agent_base.FOLDER
    if (folder / GLUE).is_file() and (folder / "Dockerfile").is_file():
        return f"{agent_base.FOLDER}/{GLUE}"
    return None


def _workers_that_fit(project: Project, tenant: str, regions: Sequence[str]) -> int:
    """The most workers (up to MAX_WORKERS) the tenant's quota leaves room for in every region."""
    cpu, memory = float(parse_quantity(WORKER_CPU)), float(parse_quantity(WORKER_MEMORY)) / capacity.GIB
    fits = MAX_WORKERS
    for region in regions:
        reg = project.regions[region]
        usage = capacity.tenant_usage(reg, tenant, [a for a in project.agents_in(region) if a.tenant == tenant])
        room = min(math.floor((usage.cpu_quota - usage.cpu_at_max) / cpu + 1e-9),
                   math.floor((usage.memory_gib_quota - usage.memory_gib_at_max) / memory + 1e-9),
                   usage.pods_quota - usage.pods_at_max)
        if room < 1:
            raise ScaffoldError(
                f"error: tenant {tenant!r} has no room for one more worker in region {region!r}: its pools at "
                f"max_workers take {usage.cpu_at_max:g} of {usage.cpu_quota:g} CPUs, {usage.memory_gib_at_max:g} of "
                f"{usage.memory_gib_quota:g} GiB and {usage.pods_at_max} of {usage.pods_quota} pods; raise "
                f"tenants.{tenant}.quotas in regions/{region}.yaml or lower another pool's max_workers; nothing was written")
        fits = min(fits, room)
    return fits


def _models(project: Project, regions: Sequence[str]) -> dict[str, str]:
    """Per role, a model of that kind every region declares under the same name."""
    out: dict[str, str] = {}
    for role in ("stt", "tts", "llm"):
        names = [sorted(n for n, m in project.regions[r].models.items() if m.kind == role) for r in regions]
        common = sorted(set(names[0]).intersection(*names[1:])) if names else []
        if common:
            out[role] = common[0]
    return out


def _agent_manifest(name: str, tenant: str, regions: Sequence[str], code: str, workers: int,
                    inference: dict[str, str]) -> str:
    if code == "image":
        code_block = (f"code:\n  image: {tenant}/{name}-agent:0.1.0   # built from agents/{name}/ by your pipeline; "
                      f"pin the pushed digest (...@sha256:...)\n")
    else:
        code_block = (f"code:\n  build: agents/{name}   # built and pushed on `pulumi up` (or {{ image: org/agent:1.2.3@sha256:... }})\n")
    roles = "\n".join(f"  {role}: {{ model: {model} }}" for role, model in inference.items())
    inference_block = f"inference:\n{roles}\n" if roles else (
        "# inference:   (no model of each kind in every region above; name one, or an external provider)\n"
        "#   llm: { provider: { name: openai, model: gpt-4o-mini, endpoint: https://api.openai.com/v1,\n"
        "#          api_key: { config: myOpenaiKey } } }\n")
    prefix = (name[:12].rstrip("-_") or "call")
    return f"""# yaml-language-server: $schema=../schemas/agent.schema.json
# Written by `voxplane new agent`; the program is in agents/{name}/. Reference: docs/manifest-reference.md
name: {name}
tenant: {tenant}
description: A voice agent of {tenant}; say here what it does.
regions: [{', '.join(regions)}]

{code_block}
env:
  LOG_LEVEL: info
# secrets:                                          # references only, never values
#   API_TOKEN: {{ secret: {name}-credentials, key: token }}   # a Kubernetes Secret in the tenant namespace
#   OTHER_KEY: {{ config: {tenant}OtherKey }}                 # a Pulumi stack secret

resources: {{ cpu: "{WORKER_CPU}", memory: {WORKER_MEMORY} }}

scaling:
  min_workers: 1
  max_workers: {workers}   # at most what tenant {tenant}'s quota leaves room for
  sessions_per_worker: 10

# Phone numbers this agent answers (E.164, quoted; no other agent of the region may claim them):
# telephony:
#   numbers: ["+15550100000"]
#   dispatch: {{ kind: individual, room_prefix: {prefix} }}

{inference_block}"""


AGENT_PY = '''"""{name}: a voice agent on voxplane, as `voxplane new agent` writes one. Change it freely.

The platform's side of the contract (README, "Adding an agent"):

- LIVEKIT_AGENT_NAME     the name this worker registers under (`<tenant>-<name>`): explicit dispatch,
                         so it only joins rooms dispatched to that name;
- VOXPLANE_METRICS_PORT  where the worker serves Prometheus metrics (the autoscaler reads its active
                         job count there);
- VOXPLANE_DRAIN_TIMEOUT seconds a stopping worker may spend finishing its calls (the pod's grace
                         period is sized from it);
- VOXPLANE_<ROLE>_BASE_URL, VOXPLANE_<ROLE>_MODEL (ROLE: STT, LLM, TTS; plus _API_KEY for an
                         external provider): OpenAI-compatible endpoints of the models.

livekit-agents reads none of these by itself, so they are passed to AgentServer here. How busy a
worker is, is the platform's to report (from the manifest's scaling targets), not this file's.
"""

from __future__ import annotations

import os
import sys

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobProcess, cli
from livekit.plugins import openai, silero

INSTRUCTIONS = (
    "You are a friendly voice assistant on a phone line. Answer briefly, in plain spoken sentences, "
    "and ask one question at a time."
)


def endpoint(role: str) -> dict[str, str]:
    """base_url, model and api_key of one inference role from the platform's variables."""
    base_url = os.environ.get(f"VOXPLANE_{role}_BASE_URL", "")
    model = os.environ.get(f"VOXPLANE_{role}_MODEL", "")
    if not base_url or not model:
        raise RuntimeError(f"VOXPLANE_{role}_BASE_URL and VOXPLANE_{role}_MODEL must be set (inference.{role.lower()})")
    # In-region model servers take no key; the OpenAI client wants a non-empty one anyway.
    return {"base_url": base_url, "model": model, "api_key": os.environ.get(f"VOXPLANE_{role}_API_KEY") or "none"}


def prewarm(proc: JobProcess) -> None:
    proc.userdata["vad"] = silero.VAD.load()


server = AgentServer(
    setup_fnc=prewarm,
    prometheus_port=int(os.environ.get("VOXPLANE_METRICS_PORT") or 0) or None,
    drain_timeout=int(os.environ.get("VOXPLANE_DRAIN_TIMEOUT") or 3600),
)
AGENT_NAME = os.environ.get("LIVEKIT_AGENT_NAME", "")


@server.rtc_session(agent_name=AGENT_NAME)
async def session(ctx: JobContext) -> None:
    voice = os.environ.get("TTS_VOICE")  # the voice names of the TTS model, e.g. set in the manifest's env
    tts = openai.TTS(**endpoint("TTS"), **({"voice": voice} if voice else {}))
    agent_session = AgentSession(
        vad=ctx.proc.userdata["vad"],
        stt=openai.STT(**endpoint("STT")),
        llm=openai.LLM(**endpoint("LLM")),
        tts=tts,
    )
    await agent_session.start(agent=Agent(instructions=INSTRUCTIONS), room=ctx.room)
    await agent_session.generate_reply(instructions="Greet the caller and ask how you can help.")


if __name__ == "__main__":
    if sys.argv[1:2] in (["start"], ["dev"]) and not AGENT_NAME:
        sys.exit("LIVEKIT_AGENT_NAME is not set: the platform sets it to <tenant>-<name>; for a local run, "
                 "export it yourself (without it the worker would take every room)")
    cli.run_app(server)
'''

AGENT_WITH_GLUE_PY = '''"""{name}: a voice agent on voxplane, as `voxplane new agent` writes one. Change it freely.

The platform's side of the contract is voxplane_agent, the platform glue every agent image gets from
the platform's agent base image (agents/_platform; a local run puts that folder on PYTHONPATH): the
name to register under (LIVEKIT_AGENT_NAME, explicit dispatch), load reporting, drain, metrics, the
health endpoint and prewarmed job processes from the VOXPLANE_* settings the platform renders, and
the models (VOXPLANE_<ROLE>_BASE_URL and _MODEL). This file holds only the conversation; how busy a
worker is, is the platform's to report, not this file's.
"""

from __future__ import annotations

from livekit.agents import Agent, AgentSession, JobContext, JobProcess
from livekit.plugins import silero

import voxplane_agent as platform

INSTRUCTIONS = (
    "You are a friendly voice assistant on a phone line. Answer briefly, in plain spoken sentences, "
    "and ask one question at a time."
)


def prewarm(proc: JobProcess) -> None:
    proc.userdata["vad"] = silero.VAD.load()


AGENT_NAME = platform.agent_name("{name}", example="{tenant}-{name}")
server = platform.agent_server(setup_fnc=prewarm)


@server.rtc_session(agent_name=AGENT_NAME)
async def session(ctx: JobContext) -> None:
    agent_session = AgentSession(
        vad=ctx.proc.userdata["vad"],
        stt=platform.stt(),
        llm=platform.llm(),
        tts=platform.tts(),
    )
    platform.end_call_with_session(ctx, agent_session)
    await agent_session.start(agent=Agent(instructions=INSTRUCTIONS), room=ctx.room)
    # A call the platform recovered (its first agent was lost) opens with an apology, not a greeting.
    await agent_session.generate_reply(instructions=platform.opening(ctx, "Greet the caller and ask how you can help."))


if __name__ == "__main__":
    platform.run(server)
'''

REQUIREMENTS = f"""# livekit-agents and its plugins move together; this program uses the {LIVEKIT_AGENTS} API (AgentServer).
livekit-agents=={LIVEKIT_AGENTS}
livekit-plugins-openai=={LIVEKIT_AGENTS}
livekit-plugins-silero=={LIVEKIT_AGENTS}
"""

DOCKERFILE = """FROM python:3.11-slim
# A package index mirror for `pip install`; unset: pip's default. Never the image's environment.
ARG PIP_INDEX_URL

ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# A numeric non-root user, so Kubernetes' runAsNonRoot can check it.
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin worker
WORKDIR /home/worker/app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY agent.py .
USER 10001:10001
# Model files of the plugins (the VAD) into the image, and a check that agent.py imports.
RUN python agent.py download-files

# Production mode serves the health check on 8081.
EXPOSE 8081
CMD ["python", "agent.py", "start"]
"""

REQUIREMENTS_ON_BASE = f"""# What agent.py needs beyond the platform's agent base image ({agent_base.FOLDER}/requirements.txt:
# livekit-agents and its openai and silero plugins, never repinned here), one package a line.
"""

DOCKERFILE_ON_BASE = f"""# Starts from the platform's agent base image ({agent_base.FOLDER}: Python, livekit-agents, the
# voxplane_agent glue, uid 10001); `pulumi up` builds it first and passes its digest. By hand:
#   docker build -t {agent_base.IMAGE} {agent_base.FOLDER} && docker build agents/{{name}}
ARG {agent_base.BUILD_ARG}={agent_base.IMAGE}
FROM ${{{agent_base.BUILD_ARG}}}
# A package index mirror for `pip install`; unset: pip's default (README, "Images").
ARG PIP_INDEX_URL

COPY requirements.txt .
RUN pip install -r requirements.txt
COPY agent.py .
USER 10001:10001
# Model files of the plugins (the VAD) into the image, and a check that agent.py imports (the glue
# exits without an agent name; the platform sets the real one at run time).
RUN LIVEKIT_AGENT_NAME=image-build python agent.py download-files

# The platform's health endpoint (VOXPLANE_HEALTH_PORT, rendered 8081).
EXPOSE 8081
CMD ["python", "agent.py", "start"]
"""


# --- regions --------------------------------------------------------------------------------------

#: Fields that must differ between regions, with what to put there.
PER_REGION: list[tuple[tuple[str, ...], str]] = [
    (("description",), "what this region is: where its cluster runs, where carriers hand calls over"),
    (("kubernetes", "node_cidrs"), "address range (CIDR) of this region's cluster nodes, not its pods"),
    (("kubernetes", "zones"), "zone of this region's nodes, as their topology.kubernetes.io/zone label says"),
    (("livekit", "public_url"), "wss:// URL clients reach this region's LiveKit at (behind your TLS load balancer)"),
    (("livekit", "turn", "domain"), "DNS name on this region's TURN certificate"),
    (("livekit", "turn", "tls_secret"), "Kubernetes Secret holding this region's TURN certificate"),
    (("livekit", "redis", "address"), "host:port of this region's own Redis (never shared between regions)"),
    (("sip", "public_host"), "host name carriers send this region's INVITEs to"),
    (("sip", "carrier_addresses"), "address or CIDR of a carrier that hands calls over in this region"),
]
STACK_PER_REGION: list[tuple[str, str]] = [
    ("kubeContext", "kubeconfig context of this region's cluster"),
    ("livekitApiUrl", "https:// URL where the SIP trunk and dispatch-rule provider reaches this region's LiveKit"),
]


def new_region(root: Path, name: str, source: Optional[str] = None) -> Scaffolded:
    """Write regions/<name>.yaml and Pulumi.<name>.yaml (see the module docstring)."""
    _check_name("region", name)
    project = _project(root)
    files = [f"regions/{name}.yaml", f"Pulumi.{name}.yaml"]
    if name in project.regions:
        src = project.regions[name].source
        raise ScaffoldError(f"error: region {name!r} already exists ({src.file if src else 'regions/'})")
    _refuse_existing(root, files)
    if source is not None:
        try:
            src_region = find_region(project, source)
        except UnknownRegion as exc:
            raise ScaffoldError(f"error: --from: {exc}") from None
        assert src_region.source is not None
        region_text = _copied_region(root / src_region.source.file, name)
        stack_text, copied = _copied_stack(root, source, name)
        needed = list(stackfile.needed_secrets(src_region, ()))
    else:
        src_region = None
        region_text = _blank_region(name)
        stack_text, copied = _stack_text(name, {}, f"`voxplane new region {name}`"), []
        needed = ["livekitRootSecret"]
    out = Scaffolded()
    out.written = _write(root, {files[0]: region_text, files[1]: stack_text})
    result = load((), root)
    mine = [p for p in touching(result.problems, set(out.written)) if p.file in out.written]
    out.problems = [p for p in mine if not set(p.see) & set(out.written)]
    if copied:
        out.notes.append(f"copied from Pulumi.{source}.yaml: {', '.join(copied)}")
    if src_region is not None:
        out.notes.append(f"the tenants, node pools, GPU node groups and models of {source} are copied; adjust them, "
                         f"and list {name} in the `regions:` of each agent that should run there")
    out.next = [f"pulumi stack init {name}"]
    for key in needed:
        value = '"$(openssl rand -hex 32)"' if key == "livekitRootSecret" else "..."
        out.next.append(f"pulumi config set --secret {key} {value} -s {name}")
    out.next.append(f"voxplane secrets {name}   # agents that list {name} in regions: add theirs")
    return out


def _scalar_end(text: str, start: int) -> int:
    """End (exclusive) of the YAML scalar starting at `start` of a line."""
    quote = text[start]
    if quote in "\"'":
        i = start + 1
        while i < len(text):
            if text[i] == "\\" and quote == '"':
                i += 2
                continue
            if text[i] == quote:
                if quote == "'" and text[i + 1:i + 2] == "'":
                    i += 2
                    continue
                return i + 1
            i += 1
        return len(text)
    flow = text[:start].count("{") + text[:start].count("[") > text[:start].count("}") + text[:start].count("]")
    end = len(text)
    comment = text.find(" #", start)
    if comment >= 0:
        end = comment
    if flow:
        for stop in ",}]":
            at = text.find(stop, start)
            if 0 <= at < end:
                end = at
    return len(text[:end].rstrip())


def _flow_end(text: str, start: int) -> int:
    depth = 0
    for i in range(start, len(text)):
        if text[i] in "[{":
            depth += 1
        elif text[i] in "]}":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(text)


def _copied_region(path: Path, name: str) -> str:
    """The source region's text with its name replaced and PER_REGION values made placeholders
    (comments and layout kept)."""
    raw = path.read_text()
    data, smap = parse(raw.encode())
    lines = raw.split("\n")
    edits: list[tuple[int, int, int, str]] = []  # (line, start col, end col, new text); 0-based cols
    drop: set[int] = set()

    def scalar(path_: tuple[Any, ...], new: str) -> None:
        line, col = smap.values[path_]
        text = lines[line - 1]
        edits.append((line, col - 1, _scalar_end(text, col - 1), new))

    scalar(("name",), name)
    for fpath, hint in PER_REGION:
        value = _get(data, fpath)
        if value is None:
            continue
        shown = _quoted(placeholder(hint))
        if isinstance(value, list):
            line, col = smap.values[fpath]
            text = lines[line - 1]
            if text[col - 1:col] == "[":
                edits.append((line, col - 1, _flow_end(text, col - 1), f"[{shown}]"))
            elif value:
                scalar(fpath + (0,), shown)
                drop.update(smap.keys[fpath + (i,)][0] for i in range(1, len(value)))
            continue
        line, col = smap.values[fpath]
        text = lines[line - 1]
        if text[col - 1:col] in (">", "|"):  # a block scalar: its text is on the lines below
            key_line = smap.keys[fpath][0]
            indent = len(lines[key_line - 1]) - len(lines[key_line - 1].lstrip())
            below = line
            while below < len(lines) and lines[below].strip() and len(lines[below]) - len(lines[below].lstrip()) > indent:
                drop.add(below + 1)
                below += 1
            edits.append((line, col - 1, len(text), shown))
        else:
            scalar(fpath, shown)
    for line, start, end, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        text = lines[line - 1]
        lines[line - 1] = text[:start] + new + text[end:]
    kept = [text for number, text in enumerate(lines, 1) if number not in drop]
    header = (f"# Written by `voxplane new region {name} --from {path.stem}`: every value marked FILL-IN differs\n"
              f"# between regions; `voxplane validate` lists them until they are filled in.\n")
    out = "\n".join(kept)
    if out.startswith("# yaml-language-server"):
        first, _, rest = out.partition("\n")
        return f"{first}\n{header}{rest}"
    return header + out


def _get(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _copied_stack(root: Path, source: str, name: str) -> tuple[str, list[str]]:
    """The new stack file: the source stack's plain settings, the per-region ones to fill in."""
    path = root / f"Pulumi.{source}.yaml"
    settings: dict[str, Any] = {}
    if path.is_file():
        stack, _ = stackfile.read(path, path.name)
        if stack is not None:
            for key, value in stack.config.items():
                if key == "region" or key in dict(STACK_PER_REGION) or stackfile.is_secure(value):
                    continue
                if isinstance(value, (str, int, float, bool)):
                    settings[key] = value
    return _stack_text(name, settings, f"`voxplane new region {name} --from {source}`"), sorted(settings)


def _stack_text(name: str, settings: dict[str, Any], how: str) -> str:
    lines = [f"# The {name} region's stack. Written by {how}: fill in the FILL-IN values",
             "# (`voxplane validate` lists them); secrets are set with `pulumi config set --secret KEY -s "
             f"{name}`", "# (`voxplane secrets {name}` lists them) and never live here in plain text.".replace("{name}", name),
             "config:", f"  voxplane:region: {name}"]
    for key, hint in STACK_PER_REGION:
        lines.append(f"  voxplane:{key}: {_quoted(placeholder(hint))}")
    if "imageRegistry" not in settings:
        hint = "registry (host/path) the stack pushes its images to: the gateway's, agents built from code.build"
        lines.append(f"  voxplane:imageRegistry: {_quoted(placeholder(hint))}")
    for key, value in settings.items():
        dumped = yaml.safe_dump({f"voxplane:{key}": value}, default_flow_style=False).strip()
        lines.append(f"  {dumped}")
    return "\n".join(lines) + "\n"


def _blank_region(name: str) -> str:
    q = lambda hint: _quoted(placeholder(hint))  # noqa: E731
    return f"""# yaml-language-server: $schema=../schemas/region.schema.json
# Written by `voxplane new region {name}`: every value marked FILL-IN is yours to give;
# `voxplane validate` lists them until they are filled in. Reference: docs/manifest-reference.md
name: {name}
description: {q("what this region is: where its cluster runs, where carriers hand calls over")}
peak_concurrent_calls: {q("concurrent calls at peak, a number (voxplane capacity sizes the GPUs for it)")}

kubernetes:
  namespace_prefix: vox

livekit:
  public_url: {q("wss:// URL clients reach this region's LiveKit at (behind your TLS load balancer)")}
  nodes: 2
  node_pool:
    selector:
      voxplane.io/pool: media

sip:
  public_host: {q("host name carriers send this region's INVITEs to")}
  node_pool:
    selector:
      voxplane.io/pool: sip
  carrier_addresses:
    - {q("address or CIDR of a carrier that hands calls over in this region")}

agents:
  node_pool:
    selector:
      voxplane.io/pool: agents

# Tenants own agents: each gets a namespace, a quota and its own LiveKit key.
tenants: {{}}
#   acme:
#     description: ...
#     quotas: {{ cpu: "32", memory: 64Gi, pods: 40 }}

# GPU node groups and the models on them (see regions/us-east.yaml for a full example).
gpu_node_groups: {{}}
models: {{}}
"""
