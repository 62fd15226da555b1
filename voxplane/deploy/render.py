"""`voxplane render`: run the region's real Pulumi program in-process under the SDK's mock engine
and write what it registers — Kubernetes objects and LiveKit objects — as YAML, secrets redacted.

No cluster, no Pulumi CLI, no credentials: config secrets the program asks for get placeholders,
and every secret value is redacted on the way out anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings

from ..manifest import crosscheck
from . import output_dir
from ..manifest.loader import load_region

REDACTED = "<redacted>"
# Pulumi wraps secret values in maps tagged with these well-known signatures (sdk rpc.py).
_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
_K8S_PREFIX = "kubernetes:"
_LIVEKIT_TYPES = ("pulumi-python:dynamic",)
#: The digest an image the stack builds gets in a render: only `pulumi up` learns the real one,
#: from the registry it pushes to. All zeros, after the pushed tag (the build context's content
#: hash, so a code change still changes the pod template), and said so in each file that has one.
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64


@dataclass
class Registered:
    """One resource the program registered: its type, name, component and inputs."""

    type: str
    name: str
    component: str
    inputs: dict[str, Any]


@dataclass
class RenderResult:
    region: str
    resources: list[Registered] = field(default_factory=list)
    kubernetes: list[dict[str, Any]] = field(default_factory=list)
    livekit: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> list[tuple[str, str, int]]:
        """(component, kind, count) rows, sorted."""
        counts = Counter((r.component, _kind_of(r)) for r in self.resources)
        return sorted((c, k, n) for (c, k), n in counts.items())


class _RecordingMocks(pulumi.runtime.Mocks):
    """Answers every registration with its own inputs; docker images get the placeholder digest
    after their name (`<repository>:<content hash>@sha256:000…`), so renders are reproducible and
    never show a digest no registry returned."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[Optional[str], dict]:
        state = dict(args.inputs)
        if args.typ.startswith("docker:"):
            state["repoDigest"] = f"{state.get('imageName', args.name)}@{PLACEHOLDER_DIGEST}"
        if args.typ.startswith(_LIVEKIT_TYPES):
            # LiveKit assigns IDs on create; a render can only name the object they will belong to.
            return f"<id of {state.get('name', args.name)}>", state
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, Optional[list]]:
        return {}, None


def render(region_name: str, root: Path = Path("."), *, extra_config: Optional[dict[str, str]] = None) -> RenderResult:
    """Run the program for `region_name` under mocks; raise `ManifestError` on invalid manifests,
    `UnknownRegion` for a name that names no region."""
    from .program import StackConfig, run

    project = load_region(root, region_name).project

    config, secret_keys = _stack_config(root.resolve(), region_name, project)
    config.update(extra_config or {})
    outputs: dict[str, Any] = {}

    def program() -> Any:
        stack: Any = run(StackConfig(), project)
        return pulumi.Output.all(
            livekit_url=stack.livekit_url,
            sip_uri=stack.sip_uri,
            firewall_rules=stack.firewall_rules,
            agents=stack.agent_names,
        ).apply(outputs.update)

    registered = run_mocked(program, stack=region_name, config=config, secret_keys=secret_keys)
    out = RenderResult(region=region_name, outputs=outputs)
    for urn, reg in registered.items():
        typ, name = _urn_type(urn), urn.rsplit("::", 1)[1]
        if typ.startswith("pulumi:pulumi:Stack") or typ.startswith("pulumi:providers:"):
            continue
        chain = urn.split("::")[2].split("$")  # [parent type, own type]
        if typ.startswith("voxplane:"):
            continue  # components are structure, not objects
        owner = chain[-2].rsplit(":", 1)[-1] if len(chain) > 1 else "(stack)"
        inputs = _clean(_redact_secret_payload(reg.state))
        item = Registered(typ, name, owner, inputs)
        out.resources.append(item)
        if typ.startswith(_K8S_PREFIX) and "kind" in inputs:
            out.kubernetes.append(canonical(_k8s_object(inputs)))
        elif typ.startswith(_LIVEKIT_TYPES):
            out.livekit.append(canonical(_redact_livekit(inputs)))
    out.resources.sort(key=lambda r: (r.component, r.type, r.name))
    out.kubernetes.sort(key=_object_sort_key)
    out.livekit.sort(key=lambda o: (str(o.get("kind")), str(o.get("name"))))
    return out


def run_mocked(
    program: Callable[[], Any], *, stack: str, config: dict[str, str], secret_keys: list[str]
) -> dict[str, Any]:
    """Run `program` under the SDK's mock engine with `_RecordingMocks`; return the registered
    resources by URN (see `mocked_engine`)."""
    with mocked_engine(pulumi_mocks.MockMonitor(_RecordingMocks()), stack=stack, config=config,
                       secret_keys=secret_keys) as monitor:
        pulumi_mocks.test(program)()
        return dict(monitor.get_registered_resources())


@contextlib.contextmanager
def mocked_engine(monitor: pulumi_mocks.MockMonitor, *, stack: str, config: Mapping[str, str],
                  secret_keys: Sequence[str]) -> Iterator[pulumi_mocks.MockMonitor]:
    """Pulumi set to run against the mock `monitor` (and its mocks) as project `voxplane`, stack
    `stack`, with `config` (`secret_keys` of it secret), on an event loop of its own and a fresh
    root stack. Settings, the root stack and the event loop are restored afterwards, so runs can
    repeat in one process (render, tests, benchmarks)."""
    saved = pulumi_settings.SETTINGS
    token = pulumi_settings.ROOT.set(None)  # a fresh root stack per run
    with _private_event_loop():
        try:
            pulumi.runtime.set_mocks(monitor.mocks, project="voxplane", stack=stack, preview=False, monitor=monitor)
            pulumi.runtime.set_all_config(dict(config), list(secret_keys))
            yield monitor
        finally:
            pulumi_settings.configure(saved)
            pulumi_settings.ROOT.reset(token)


def _current_loop() -> Optional[asyncio.AbstractEventLoop]:
    """The thread's current event loop, or None — without creating one: the policy's
    get_event_loop() makes a loop when none is set, and one made here and dropped later (by any
    asyncio.run or set_event_loop(None)) would be collected unclosed in some later code."""
    local = getattr(asyncio.get_event_loop_policy(), "_local", None)
    loop = getattr(local, "_loop", None)
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None


@contextlib.contextmanager
def _private_event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A fresh event loop for one mocked run, closed afterwards with everything it spawned.

    The mock monitor answers registrations on the loop's executor threads, and the SDK gives each
    such thread an event loop of its own; those are created here, tracked, and closed, so no
    loop is left for the garbage collector (and the caller's loop, if any, is put back).
    """
    previous = _current_loop()
    thread_loops: list[asyncio.AbstractEventLoop] = []

    def give_thread_a_loop() -> None:
        thread_loop = asyncio.new_event_loop()
        asyncio.set_event_loop(thread_loop)
        thread_loops.append(thread_loop)

    executor = ThreadPoolExecutor(thread_name_prefix="voxplane-mocks", initializer=give_thread_a_loop)
    loop = asyncio.new_event_loop()
    loop.set_default_executor(executor)
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        executor.shutdown(wait=True)
        for thread_loop in thread_loops:
            thread_loop.close()
        loop.close()
        asyncio.set_event_loop(previous if previous is not None and not previous.is_closed() else None)


def write(result: RenderResult, out_dir: Path) -> list[Path]:
    """One file per object: kubernetes/<namespace|_cluster>/<kind>.<name>.yaml, livekit/<kind>.<name>.yaml.

    Replaces only what an earlier render wrote there (output_dir); refuses any other folder. The
    marker lists the files before they are written, so an interrupted write is still ours to replace.
    """
    planned: list[tuple[Path, dict[str, Any]]] = []
    for obj in result.kubernetes:
        meta = obj.get("metadata", {})
        folder = out_dir / "kubernetes" / (meta.get("namespace") or "_cluster")
        planned.append((folder / f"{obj['kind'].lower()}.{meta['name']}.yaml", obj))
    for obj in result.livekit:
        planned.append((out_dir / "livekit" / f"{str(obj.get('kind', 'object')).lower()}.{obj.get('name')}.yaml", obj))
    output_dir.claim(out_dir, "render")
    output_dir.seal(out_dir, [path for path, _ in planned], "render")
    return [_dump(path, obj) for path, obj in planned]


_LEADING = ("apiVersion", "kind", "name", "metadata")


def canonical(obj: dict[str, Any]) -> dict[str, Any]:
    """An object in one key order: identity first, then every mapping's keys sorted.

    The mock engine hands inputs back through protobuf Structs, whose key order follows the
    interpreter's hash seed; everything that shows or compares a render (its files, plan,
    drift, status) reads this order instead, so the same inputs give the same bytes."""
    ordered = {k: _sorted(obj[k]) for k in _LEADING if k in obj}
    ordered.update({k: _sorted(obj[k]) for k in sorted(obj) if k not in ordered})
    return ordered


def to_yaml_stream(objects: list[dict[str, Any]]) -> str:
    """The objects as one YAML stream (`---` between documents), each as its file holds it."""
    return "".join("---\n" + placeholder_notes(o) + yaml.safe_dump(canonical(o), sort_keys=False,
                                                                   default_flow_style=False, width=120)
                   for o in objects)


def _dump(path: Path, obj: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(placeholder_notes(obj) + yaml.safe_dump(canonical(obj), sort_keys=False, default_flow_style=False,
                                                            width=120))
    return path


def placeholder_notes(obj: dict[str, Any]) -> str:
    """Comment lines saying which image digests in `obj` are placeholders (images the stack builds)."""
    return "".join(f"# placeholder: the digest of {image.rsplit('@', 1)[0]} below ({PLACEHOLDER_DIGEST[:12]}…); "
                   f"pulumi up runs the one the registry returns when it pushes that tag\n"
                   for image in placeholder_images(obj))


def placeholder_images(obj: Any) -> list[str]:
    """The images in `obj` that carry the placeholder digest (built by the stack), in order."""
    if isinstance(obj, dict):
        return list(dict.fromkeys(i for v in obj.values() for i in placeholder_images(v)))
    if isinstance(obj, list):
        return list(dict.fromkeys(i for v in obj for i in placeholder_images(v)))
    return [obj] if isinstance(obj, str) and obj.endswith("@" + PLACEHOLDER_DIGEST) else []


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _stack_config(root: Path, region: str, project: Any) -> tuple[dict[str, str], list[str]]:
    """The stack's plain config plus a placeholder for every secret the program may read."""
    config: dict[str, str] = {}
    for key, value in crosscheck.stack_config(root, region).items():
        if isinstance(value, (str, int, float, bool)):
            config[f"voxplane:{key}"] = str(value)
    config["voxplane:region"] = region
    config["voxplane:repoRoot"] = str(root)
    config.pop("voxplane:renderYamlTo", None)  # mocks never apply; nothing to write
    if "voxplane:imageRegistry" not in config:
        # No registry to push to (a region no stack deploys yet): name the content-hash tags.
        config.setdefault("voxplane:buildImages", "false")
    secret_keys = []
    for key in secret_config_keys(project, region):
        full = f"voxplane:{key}"
        config.setdefault(full, f"render-placeholder-{key}")
        secret_keys.append(full)
    return config, secret_keys


def secret_config_keys(project: Any, region: str) -> set[str]:
    """Stack config keys (without `voxplane:`) whose secret values region `region` reads: the root
    secret, model tokens, the Redis password and the agents' `{config: KEY}` references."""
    from ..livekit.keys import ROOT_SECRET_CONFIG

    keys = {ROOT_SECRET_CONFIG}
    reg = project.regions[region]
    for model in reg.models.values():
        if model.hf_token and model.hf_token.config:
            keys.add(model.hf_token.config)
    if reg.livekit.redis.password and reg.livekit.redis.password.config:
        keys.add(reg.livekit.redis.password.config)
    for agent in project.agents_in(region):
        for ref, _path in agent.secret_refs():
            if ref.config:
                keys.add(ref.config)
    return keys


def _urn_type(urn: str) -> str:
    return urn.split("::")[2].split("$")[-1]


def _kind_of(r: Registered) -> str:
    if "kind" in r.inputs and r.type.startswith(_K8S_PREFIX):
        return str(r.inputs["kind"])
    if "kind" in r.inputs and r.type.startswith(_LIVEKIT_TYPES):
        return str(r.inputs["kind"])
    return r.type.split(":")[-1]


def _clean(value: Any) -> Any:
    """Mock-engine values back to plain YAML data: secrets redacted, whole numbers as ints."""
    if isinstance(value, dict):
        if value.get(_SIG_KEY) == _SECRET_SIG:
            return REDACTED
        return {k: _clean(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _redact_secret_payload(state: dict[str, Any]) -> dict[str, Any]:
    """A Secret's payload is one Pulumi secret as a whole; keep its keys, redact every value."""
    if state.get("kind") != "Secret":
        return state
    out = dict(state)
    for section in ("data", "stringData"):
        payload = out.get(section)
        if isinstance(payload, dict) and payload.get(_SIG_KEY) == _SECRET_SIG:
            payload = payload.get("value")
        if isinstance(payload, dict):
            out[section] = {k: REDACTED for k in payload}
    return out


def _k8s_object(inputs: dict[str, Any]) -> dict[str, Any]:
    obj = {"apiVersion": inputs["apiVersion"], "kind": inputs["kind"]}
    obj.update({k: v for k, v in inputs.items() if k not in ("apiVersion", "kind")})
    return obj


def _redact_livekit(inputs: dict[str, Any]) -> dict[str, Any]:
    secret_fields = {"auth_password", "authPassword", "pin"}

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: (REDACTED if k in secret_fields and v[k] else walk(x)) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(inputs)


def _object_sort_key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata", {})
    return (meta.get("namespace", ""), obj["kind"], meta.get("name", ""))


def to_json(result: RenderResult) -> str:
    return json.dumps(
        {"region": result.region, "summary": [{"component": c, "kind": k, "count": n} for c, k, n in result.summary()]},
        indent=2,
    )
