"""Rules no single schema can state: references between files and conflicts inside a region.

Each rule reports at the field a person has to change, and its message names the fix.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import yaml

from .model import Agent, PortRange, Region, SecretRef, Source
from .problems import Problem, format_path

#: Set by the platform on every agent pod; a manifest must not override them.
RESERVED_ENV = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "LIVEKIT_AGENT_NAME")
RESERVED_ENV_PREFIX = "VOXPLANE_"
#: Plain `env` entries whose names say they hold a secret.
SECRET_LIKE_ENV = re.compile(r"(^|_)(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)($|_)")


def _at(source: Source | None, path: tuple[str | int, ...], message: str, *, key: bool = False) -> Problem:
    assert source is not None
    line, col = source.map.key(path) if key else source.map.value(path)
    return Problem(source.file, line, col, format_path(path), message)


def check(regions: Sequence[Region], agents: Sequence[Agent], root: Path) -> list[Problem]:
    problems: list[Problem] = []
    by_name: dict[str, Region] = {}
    for region in regions:
        if region.name in by_name:
            other = by_name[region.name].source
            problems.append(_at(region.source, ("name",), f"region {region.name!r} is already declared in {other.file if other else '?'}"))
            continue
        by_name[region.name] = region
        problems.extend(_region_rules(region, root))
    problems.extend(_agent_rules(by_name, agents, root))
    return problems


# --- regions -----------------------------------------------------------------------------------


def _region_rules(region: Region, root: Path) -> Iterator[Problem]:
    src = region.source
    assert src is not None
    stem = Path(src.file).stem
    if stem != region.name and Path(src.file).parent.name == "regions":
        yield _at(src, ("name",), f"region name {region.name!r} must match its file name {stem!r}")

    lk = region.livekit
    for path, rng in [(("livekit", "ports", "rtc_udp"), lk.ports.rtc_udp)] + (
        [(("sip", "rtp_ports"), region.sip.rtp_ports)] if region.sip else []
    ):
        if rng.start > rng.end:
            yield _at(src, path + ("end",), f"range ends ({rng.end}) before it starts ({rng.start})")

    if lk.turn.enabled:
        for needed in ("domain", "tls_secret"):
            if getattr(lk.turn, needed) is None:
                yield _at(src, ("livekit", "turn", needed), "required when TURN is enabled", key=True)
    if lk.redis.mode == "external" and not lk.redis.address:
        yield _at(src, ("livekit", "redis", "address"), "required when redis.mode is external", key=True)
    if lk.redis.mode == "in-cluster" and lk.redis.address:
        yield _at(src, ("livekit", "redis", "address"), "only used when redis.mode is external; remove it or set mode: external", key=True)

    yield from _port_conflicts(region)

    for name, tenant in region.tenants.items():
        if tenant.isolation == "dedicated-nodes" and tenant.node_pool is None:
            yield _at(src, ("tenants", name, "node_pool"), "required when isolation is dedicated-nodes", key=True)

    for name, spec in region.gpu_node_groups.items():
        if spec.min_nodes > spec.max_nodes:
            yield _at(src, ("gpu_node_groups", name, "min_nodes"), f"min_nodes ({spec.min_nodes}) exceeds max_nodes ({spec.max_nodes})")

    for name, model in region.models.items():
        base = ("models", name)
        group = region.gpu_node_groups.get(model.node_group)
        if group is None:
            known = ", ".join(sorted(region.gpu_node_groups)) or "none declared"
            yield _at(src, base + ("node_group",), f"no GPU node group {model.node_group!r} in this region (groups: {known})")
        elif model.gpus_per_replica > group.gpus_per_node:
            fitting = [g for g, spec in region.gpu_node_groups.items() if spec.gpus_per_node >= model.gpus_per_replica]
            hint = f"; groups with enough GPUs per node: {', '.join(fitting)}" if fitting else "; no declared group has that many"
            yield _at(src, base + ("gpus_per_replica",),
                      f"{model.gpus_per_replica} GPUs per replica do not fit on a node of {model.node_group!r} ({group.gpus_per_node} per node){hint}")
        elif model.min_replicas * model.gpus_per_replica > group.max_nodes * group.gpus_per_node:
            yield _at(src, base + ("min_replicas",),
                      f"{model.min_replicas} replicas need {model.min_replicas * model.gpus_per_replica} GPUs; {model.node_group!r} has at most {group.max_nodes * group.gpus_per_node}")
        if model.min_replicas > model.max_replicas:
            yield _at(src, base + ("min_replicas",), f"min_replicas ({model.min_replicas}) exceeds max_replicas ({model.max_replicas})")
        tp = model.engine_args.tensor_parallel_size
        if tp is not None and tp != model.gpus_per_replica:
            yield _at(src, base + ("engine_args", "tensor_parallel_size"), f"must equal gpus_per_replica ({model.gpus_per_replica})")
        if model.hf_token is not None:
            yield from _stack_secret(region.name, model.hf_token, src, base + ("hf_token", "config"), root)


def _port_conflicts(region: Region) -> Iterator[Problem]:
    """SFU and SIP both use host networking: on shared nodes, their ports must not collide."""
    lk = region.livekit
    one = lambda port: PortRange(port, port)  # noqa: E731
    sfu: list[tuple[tuple[str | int, ...], PortRange]] = [
        (("livekit", "ports", "http"), one(lk.ports.http)),
        (("livekit", "ports", "rtc_tcp"), one(lk.ports.rtc_tcp)),
        (("livekit", "ports", "prometheus"), one(lk.ports.prometheus)),
        (("livekit", "ports", "rtc_udp"), lk.ports.rtc_udp),
    ]
    if lk.turn.enabled:
        sfu.append((("livekit", "turn", "udp_port"), one(lk.turn.udp_port)))
        sfu.append((("livekit", "turn", "tls_port"), one(lk.turn.tls_port)))
    sip: list[tuple[tuple[str | int, ...], PortRange]] = []
    if region.sip:
        sip = [
            (("sip", "sip_port"), one(region.sip.sip_port)),
            (("sip", "rtp_ports"), region.sip.rtp_ports),
            (("sip", "health_port"), one(region.sip.health_port)),
            (("sip", "prometheus_port"), one(region.sip.prometheus_port)),
        ]
    if region.sip and dict(region.sip.node_pool.selector) == dict(lk.node_pool.selector):
        yield from _overlaps(region.source, sfu + sip)
    else:
        yield from _overlaps(region.source, sfu)
        yield from _overlaps(region.source, sip)


def _overlaps(src: Source | None, claims: list[tuple[tuple[str | int, ...], PortRange]]) -> Iterator[Problem]:
    for i, (path, rng) in enumerate(claims):
        for other_path, other in claims[:i]:
            if rng.overlaps(other):
                yield _at(src, path, f"ports {rng} overlap {format_path(other_path)} ({other}) on the same nodes")
                break


# --- agents ------------------------------------------------------------------------------------


def _agent_rules(regions: dict[str, Region], agents: Sequence[Agent], root: Path) -> Iterator[Problem]:
    owners: dict[tuple[str, str], Agent] = {}
    numbers: dict[tuple[str, str], Agent] = {}
    for agent in agents:
        src = agent.source
        assert src is not None
        key = (agent.tenant, agent.name)
        if key in owners:
            first = owners[key].source
            yield _at(src, ("name",), f"tenant {agent.tenant!r} already has an agent {agent.name!r} ({first.file if first else '?'})")
            continue
        owners[key] = agent
        yield from _agent_fields(agent, root)

        for index, region_name in enumerate(agent.regions):
            region = regions.get(region_name)
            if region is None:
                known = ", ".join(sorted(regions)) or "none"
                yield _at(src, ("regions", index), f"no region {region_name!r} (regions: {known})")
                continue
            if agent.tenant not in region.tenants:
                yield _at(src, ("tenant",), f"tenant {agent.tenant!r} is not declared in region {region_name!r} ({region.source.file if region.source else ''})")
            for role, spec in agent.inference.roles().items():
                if spec.model is None:
                    continue
                model = region.models.get(spec.model)
                if model is None:
                    yield _at(src, ("inference", role, "model"), f"region {region_name!r} has no model {spec.model!r}")
                elif model.kind != role:
                    yield _at(src, ("inference", role, "model"), f"model {spec.model!r} in region {region_name!r} is a {model.kind} model, not {role}")
            if agent.telephony is not None:
                if region.sip is None:
                    yield _at(src, ("telephony",), f"region {region_name!r} has no SIP bridge; add `sip:` to it or remove telephony", key=True)
                for n, number in enumerate(agent.telephony.numbers):
                    claimed = numbers.get((region_name, number))
                    if claimed is not None and claimed is not agent:
                        yield _at(src, ("telephony", "numbers", n),
                                  f"{number} is already routed to agent {claimed.scoped_name!r} ({claimed.source.file if claimed.source else '?'}) in region {region_name!r}")
                    else:
                        numbers[(region_name, number)] = agent
            for ref, path in agent.secret_refs():
                yield from _stack_secret(region_name, ref, src, path, root)


def _agent_fields(agent: Agent, root: Path) -> Iterator[Problem]:
    src = agent.source
    if agent.scaling.min_workers > agent.scaling.max_workers:
        yield _at(src, ("scaling", "min_workers"), f"min_workers ({agent.scaling.min_workers}) exceeds max_workers ({agent.scaling.max_workers})")
    if agent.code.build is not None:
        folder = root / agent.code.build
        dockerfile = folder / (agent.code.dockerfile or "Dockerfile")
        if not folder.is_dir():
            yield _at(src, ("code", "build"), f"build directory {agent.code.build!r} does not exist")
        elif not dockerfile.is_file():
            yield _at(src, ("code", "build"), f"no {dockerfile.name} in {agent.code.build!r}")
    for name, value in agent.env.items():
        if name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIX):
            yield _at(src, ("env", name), "set by the platform; remove it from env", key=True)
        elif name in agent.secrets:
            yield _at(src, ("env", name), "also listed under secrets; keep only the secret", key=True)
        elif value and SECRET_LIKE_ENV.search(name):
            yield _at(src, ("env", name), "looks like a secret in plain text; move it to `secrets:` as a reference", key=True)
    for name in agent.secrets:
        if name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIX):
            yield _at(src, ("secrets", name), "set by the platform; remove it", key=True)
    if agent.telephony is not None:
        # Trunk passwords and PINs are written into LiveKit by the deployer, which cannot read a
        # Secret inside the cluster: they must be stack config secrets.
        in_livekit = [(("telephony", "auth", "password"), agent.telephony.auth.password if agent.telephony.auth else None),
                      (("telephony", "dispatch", "pin"), agent.telephony.dispatch.pin)]
        for path, ref in in_livekit:
            if ref is not None and ref.secret is not None:
                yield _at(src, path + ("secret",), "is written into LiveKit, not the cluster; reference a stack config secret instead ({config: KEY})", key=True)
        d = agent.telephony.dispatch
        if d.room_name is not None and d.kind != "direct":
            yield _at(src, ("telephony", "dispatch", "room_name"), f"only used by direct dispatch (kind is {d.kind!r})", key=True)


def _stack_secret(region: str, ref: SecretRef, src: Source | None, path: tuple[str | int, ...], root: Path) -> Iterator[Problem]:
    """A `config:` reference must not point at a plain-text value in the region's stack file."""
    if ref.config is None:
        return
    value = stack_config(root, region).get(ref.config)
    if isinstance(value, str):
        yield _at(src, path, f"stack config {ref.config!r} in Pulumi.{region}.yaml is plain text; set it with `pulumi config set --secret {ref.config} -s {region}`")


def stack_config(root: Path, stack: str) -> dict[str, object]:
    """`Pulumi.<stack>.yaml` config, keys without the project prefix; {} when absent or unreadable."""
    file = root / f"Pulumi.{stack}.yaml"
    try:
        return dict(_read_stack_config(file.resolve(), file.stat().st_mtime_ns))
    except OSError:
        return {}


@lru_cache(maxsize=64)
def _read_stack_config(file: Path, _mtime_ns: int) -> dict[str, object]:
    """Parsed once per file version (the mtime is part of the cache key)."""
    try:
        doc = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    values: dict[str, object] = {}
    if isinstance(doc, dict) and isinstance(doc.get("config"), dict):
        for name, value in doc["config"].items():
            values[str(name).split(":", 1)[-1]] = value
    return values
