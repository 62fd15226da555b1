"""Rules no single schema can state: references between files and conflicts inside a region.

Each rule reports at the field a person has to change, and its message names the fix.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import yaml

from . import stackfile
from .model import Agent, Model, PortRange, Region, SecretRef, Source
from .problems import Problem, format_path
from .providers import GENERIC, OPENAI_COMPATIBLE
from .quantity import parse_quantity
from .secret_fields import SECRET_LIKE_ENV
from .servers import SERVERS
from .stackfile import StackFile

#: Set by the platform on every agent pod; a manifest must not override them.
RESERVED_ENV = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "LIVEKIT_AGENT_NAME")
RESERVED_ENV_PREFIX = "VOXPLANE_"


def _at(source: Source | None, path: tuple[str | int, ...], message: str, *, key: bool = False,
        ends: tuple[Problem, ...] = (), see: tuple[str, ...] = (), mutual: bool = False) -> Problem:
    assert source is not None
    line, col = source.map.key(path) if key else source.map.value(path)
    return Problem(source.file, line, col, format_path(path), message, ends=ends, see=see, mutual=mutual)


def _where(source: Source | None, path: tuple[str | int, ...], *, key: bool = False) -> str:
    """`agents/echo.yaml:7:13`: the other end of a problem between files, in its message."""
    if source is None:
        return "?"
    line, col = source.map.key(path) if key else source.map.value(path)
    return f"{source.file}:{line}:{col}"


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def check(
    regions: Sequence[Region],
    agents: Sequence[Agent],
    root: Path,
    *,
    stacks: Sequence[StackFile] | None = None,
    invalid_regions: Mapping[str, str] | None = None,
    changed: set[str] | None = None,
) -> list[Problem]:
    """Every rule between files. `stacks` are the parsed stack files (None: read Pulumi.<region>.yaml
    for secrets only, as before stack files were checked); `invalid_regions` maps the name of each
    region file that did not load to that file, so references to it say so instead of "no region".
    `changed` are the files the working tree changes (voxplane.manifest.changes; None: unknown): of two agents
    in conflict, the changed one (else a copy, not named after its agent) is where it is stated, and
    a conflict between two files neither of which tells is marked `mutual`, to be stated at both."""
    invalid = dict(invalid_regions or {})
    problems: list[Problem] = []
    by_name: dict[str, Region] = {}
    # The original of a copied region is the file named after it; the copy gets the one problem.
    for region in sorted(regions, key=lambda r: (not _named_after(r), r.source.file if r.source else "")):
        if region.name in by_name:
            first = by_name[region.name].source
            problems.append(_at(
                region.source, ("name",),
                f"region {region.name!r} is already declared in {_where(first, ('name',))}; give this copy its own name "
                f"(and file name)",
            ))
            continue
        by_name[region.name] = region
        problems.extend(_region_rules(region, root, stacks))
    for name in list(invalid):
        if name in by_name:
            del invalid[name]  # a valid region of that name exists; references resolve to it
    problems.extend(_agent_rules(by_name, invalid, _in_claim_order(agents, changed), root, stacks, changed))
    if stacks is not None:
        keys = stackfile.project_keys(root)
        deployed = {s.region for s in stacks}
        for stack in stacks:
            problems.extend(stackfile.check(stack, by_name, invalid, agents, keys))
        for agent in agents:
            if agent.code.build is None:
                continue
            for region_name in agent.regions:
                if region_name in by_name and region_name not in deployed:
                    problems.append(_at(
                        agent.source, ("code", "build"),
                        f"builds from source, but no stack deploys region {region_name!r} to give the image a registry; "
                        f"add Pulumi.{region_name}.yaml with voxplane:imageRegistry",
                    ))
    return problems


def _named_after(region: Region | Agent) -> bool:
    return region.source is not None and Path(region.source.file).stem == region.name


def _in_claim_order(agents: Sequence[Agent], changed: set[str] | None) -> list[Agent]:
    """Agents as they claim names and numbers: the ones the working tree leaves alone first, then
    those named after their file (an original before its copy), then by file."""
    def key(agent: Agent) -> tuple[bool, bool, str]:
        file = agent.source.file if agent.source else ""
        return (changed is not None and file in changed, not _named_after(agent), file)

    return sorted(agents, key=key)


def _told_apart(first: Agent, later: Agent, changed: set[str] | None) -> bool:
    """Whether the later claimant is known to be the newer one: it alone changed, or it alone is
    a copy (not named after its agent). Otherwise a conflict between them is mutual."""
    def file(agent: Agent) -> str:
        return agent.source.file if agent.source else ""

    if changed is not None and (file(first) in changed) != (file(later) in changed):
        return True
    return _named_after(first) and not _named_after(later)


# --- regions -----------------------------------------------------------------------------------


def _region_rules(region: Region, root: Path, stacks: Sequence[StackFile] | None) -> Iterator[Problem]:
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
            yield _at(src, base + ("node_group",), f"no GPU node group {model.node_group!r} in this region (groups: {known})"
                      + did_you_mean(model.node_group, sorted(region.gpu_node_groups)))
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
            yield from _stack_secret(region.name, model.hf_token, src, base + ("hf_token", "config"), root, stacks)
        for i, writable in enumerate(model.writable_paths):
            taken = next((m for m in _MODEL_MOUNTS if writable.rstrip("/") == m or writable.startswith(m + "/")), None)
            if taken is not None:
                yield _at(src, base + ("writable_paths", i),
                          f"{writable} is {'under ' if writable.rstrip('/') != taken else ''}{taken}, which is writable already "
                          f"({_MODEL_MOUNTS[taken]}); list only paths elsewhere in the image")
        yield from _server_rules(src, base, model)
        if name.endswith("-headless") and name[: -len("-headless")] in region.models:
            yield _at(src, base, f"model name {name!r} is the name of model {name[: -len('-headless')]!r}'s headless "
                                 f"Service; choose another name", key=True)
    if lk.redis.password is not None:
        yield from _stack_secret(region.name, lk.redis.password, src, ("livekit", "redis", "password", "config"), root, stacks)


def _server_rules(src: Source | None, base: tuple[str | int, ...], model: Model) -> Iterator[Problem]:
    """What the model's server (voxplane/manifest/servers.py) accepts at its pinned release."""
    server = SERVERS[model.server_name]
    named = model.server is not None
    if model.kind not in server.kinds:
        fitting = sorted(s.name for s in SERVERS.values() if model.kind in s.kinds)
        yield _at(src, base + (("server",) if named else ("kind",)),
                  f"{server.project} serves {'/'.join(server.kinds)} models, not {model.kind}"
                  f"{'' if named else ' (the default server of a ' + model.kind + ' is ' + server.name + ')'}; "
                  f"{model.kind} models run on: {', '.join(fitting)}")
        return
    if server.fixed_port is not None and model.port != server.fixed_port:
        yield _at(src, base + ("port",),
                  f"{server.project} {server.version} listens on {server.fixed_port} whatever is configured "
                  f"(its image's entrypoint binds it); set port: {server.fixed_port}", key=True)
    if server.model_names is not None and model.model_id not in server.model_names:
        yield _at(src, base + ("model_id",),
                  f"{server.project} {server.version} answers 400 to any model but {', '.join(server.model_names)}")


#: Paths a model server's pod mounts itself (inference.py), with what they are.
_MODEL_MOUNTS = {"/tmp": "the scratch volume", "/models": "the cache volume", "/dev/shm": "shared memory"}


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


def _agent_rules(regions: dict[str, Region], invalid: dict[str, str], agents: Sequence[Agent], root: Path,
                 stacks: Sequence[StackFile] | None, changed: set[str] | None = None) -> Iterator[Problem]:
    owners: dict[tuple[str, str], Agent] = {}
    numbers: dict[tuple[str, str], tuple[Agent, int]] = {}
    for agent in agents:
        src = agent.source
        assert src is not None
        key = (agent.tenant, agent.name)
        if key in owners:
            first = owners[key]
            end = _at(first.source, ("name",), f"tenant {agent.tenant!r} has another agent {agent.name!r} "
                                               f"({_where(src, ('name',))})")
            yield _at(src, ("name",), f"tenant {agent.tenant!r} already has an agent {agent.name!r} "
                                      f"({_where(first.source, ('name',))})", ends=(end,),
                      mutual=not _told_apart(first, agent, changed))
            continue
        owners[key] = agent
        yield from _agent_fields(agent, root)

        for index, region_name in enumerate(agent.regions):
            region = regions.get(region_name)
            if region is None:
                if region_name in invalid:
                    yield _at(src, ("regions", index), f"region {region_name!r} is invalid (see above)",
                              see=(invalid[region_name],))
                    continue
                misnamed = [r for r in regions.values() if r.source and Path(r.source.file).stem == region_name]
                if misnamed:
                    file = misnamed[0].source.file if misnamed[0].source else "?"
                    yield _at(src, ("regions", index), f"no region {region_name!r}: {file} declares "
                                                       f"{misnamed[0].name!r} (see above)", see=(file,))
                    continue
                names = sorted(set(regions) | set(invalid))
                known = ", ".join(names) or "none"
                yield _at(src, ("regions", index), f"no region {region_name!r} (regions: {known})" + did_you_mean(region_name, names))
                continue
            if agent.tenant not in region.tenants:
                tenants = sorted(region.tenants)
                yield _at(src, ("tenant",),
                          f"tenant {agent.tenant!r} is not declared in region {region_name!r} "
                          f"({region.source.file if region.source else '?'}; tenants: {', '.join(tenants) or 'none'})"
                          + did_you_mean(agent.tenant, tenants),
                          ends=(_tenant_end(region, agent),) if region.source else ())
            for role, spec in agent.inference.roles().items():
                if spec.model is None:
                    continue
                model = region.models.get(spec.model)
                if model is None:
                    fitting = sorted(n for n, m in region.models.items() if m.kind == role)
                    listed = f"{role} models: {', '.join(fitting)}" if fitting else f"it has no {role} model"
                    here: tuple[str | int, ...] = ("inference", role, "model")
                    end = _at(region.source, ("models",), f"has no model {spec.model!r}, which {_where(src, here)} names",
                              key=True)
                    yield _at(src, here,
                              f"region {region_name!r} has no model {spec.model!r} ({listed})"
                              + did_you_mean(spec.model, fitting or sorted(region.models)), ends=(end,))
                elif model.kind != role:
                    here = ("inference", role, "model")
                    end = _at(region.source, ("models", spec.model, "kind"),
                              f"{spec.model!r} is a {model.kind} model, and {_where(src, here)} uses it as {role}")
                    yield _at(src, here, f"model {spec.model!r} in region {region_name!r} is a {model.kind} model, not {role}",
                              ends=(end,))
            if agent.telephony is not None:
                if region.sip is None:
                    yield _at(src, ("telephony",), f"region {region_name!r} has no SIP bridge; add `sip:` to it or remove telephony", key=True)

                for n, number in enumerate(agent.telephony.numbers):
                    claimed = numbers.get((region_name, number))
                    if claimed is not None and claimed[0] is not agent:
                        other, other_n = claimed
                        here, there = ("telephony", "numbers", n), ("telephony", "numbers", other_n)
                        end = _at(other.source, there, f"{number} is also claimed by agent {agent.scoped_name!r} "
                                                       f"({_where(src, here)}) in region {region_name!r}")
                        yield _at(src, here,
                                  f"{number} is already routed to agent {other.scoped_name!r} ({_where(other.source, there)}) "
                                  f"in region {region_name!r}", ends=(end,), mutual=not _told_apart(other, agent, changed))
                    elif claimed is None:
                        numbers[(region_name, number)] = (agent, n)
            for ref, path in agent.secret_refs():
                yield from _stack_secret(region_name, ref, src, path, root, stacks)
        yield from _noise_cancellation(regions, agent)
    yield from _quotas(regions, agents)
    yield from _room_scopes(regions, [a for a in agents if owners.get((a.tenant, a.name)) is a], changed)


def _noise_cancellation(regions: dict[str, Region], agent: Agent) -> Iterator[Problem]:
    """Refused, not warned about: it would do nothing. livekit-sip's GetMediaProcessor
    (pkg/service/service.go) returns nil, so the trunk's Krisp flag is honoured by LiveKit Cloud's
    SIP service only, and every voxplane region runs livekit-sip itself."""
    if agent.telephony is None or not agent.telephony.noise_cancellation:
        return
    sips = {f"livekit-sip {r.sip.version}" for n in agent.regions if (r := regions.get(n)) is not None and r.sip}
    if sips:
        yield _at(agent.source, ("telephony", "noise_cancellation"),
                  f"the self-hosted SIP bridge of voxplane's regions ({', '.join(sorted(sips))}) applies no noise "
                  f"cancellation to calls (Krisp on SIP is a LiveKit Cloud feature); remove it")


def _room_scopes(regions: dict[str, Region], agents: Sequence[Agent], changed: set[str] | None) -> Iterator[Problem]:
    """The gateway tells whose a room is by its name (voxplane/gateway/scope.py): a tenant owns
    `<tenant>_...`, its rules' `<room_prefix>_...` and `room_name`s. Two tenants' claims that
    one room name can satisfy would let one reach the other's calls."""
    from ..gateway.scope import ROOM_SEPARATOR

    for region in regions.values():
        claims: list[tuple[str, str, str, Source | None, tuple[str | int, ...]]] = []
        for tenant in sorted(region.tenants):
            claims.append((tenant, "prefix", tenant, region.source, ("tenants", tenant)))
        for agent in agents:
            tel = agent.telephony
            if region.name not in agent.regions or agent.tenant not in region.tenants or tel is None:
                continue
            if tel.dispatch.kind == "direct":
                if tel.dispatch.room_name:
                    claims.append((agent.tenant, "room", tel.dispatch.room_name, agent.source,
                                   ("telephony", "dispatch", "room_name")))
            elif tel.dispatch.room_prefix:
                claims.append((agent.tenant, "prefix", tel.dispatch.room_prefix, agent.source,
                               ("telephony", "dispatch", "room_prefix")))
        for i, (t1, k1, v1, src1, path1) in enumerate(claims):
            for t2, k2, v2, src2, path2 in claims[i + 1:]:
                if t1 == t2 or not _rooms_overlap(k1, v1, k2, v2, ROOM_SEPARATOR):
                    continue
                if src2 is region.source:
                    continue  # two tenant names (listed first) never overlap: `_` is not allowed in them
                # Reported at the later agent's field; a tenant's own name is the last thing to change.
                what = "room prefix" if k2 == "prefix" else "room"
                other = f"{region.source.file if region.source else '?'}: its tenant name" if src1 is region.source \
                    else _where(src1, path1)
                example = next((v for k, v in ((k1, v1), (k2, v2)) if k == "room"), None) \
                    or max(v1, v2, key=len) + ROOM_SEPARATOR + "1"
                # Between two agents, stated at both unless the later one is known to be new.
                ends = () if src1 is region.source else (_at(
                    src1, path1, f"{'room prefix' if k1 == 'prefix' else 'room'} {v1!r} overlaps the {what} {v2!r} of "
                                 f"tenant {t2!r} ({_where(src2, path2)}) in region {region.name!r}"),)
                first_agent = next((a for a in agents if a.source is src1), None)
                later_agent = next((a for a in agents if a.source is src2), None)
                mutual = bool(ends) and not (first_agent and later_agent and _told_apart(first_agent, later_agent, changed))
                yield _at(src2, path2, f"{what} {v2!r} overlaps the rooms of tenant {t1!r} in region {region.name!r} "
                                       f"({other}): a room such as {example!r} would be both tenants', and the "
                                       f"gateway could not tell whose it is; choose another {what}", ends=ends, mutual=mutual)


def _rooms_overlap(k1: str, v1: str, k2: str, v2: str, sep: str) -> bool:
    if k1 == "room" and k2 == "room":
        return v1 == v2
    if k1 == "prefix" and k2 == "prefix":
        a, b = v1 + sep, v2 + sep
        return a.startswith(b) or b.startswith(a)
    room, prefix = (v1, v2) if k1 == "room" else (v2, v1)
    return room.startswith(prefix + sep)


def _tenant_end(region: Region, agent: Agent) -> Problem:
    assert region.source is not None
    return Problem(region.source.file, *region.source.map.key(("tenants",)), "tenants",
                   f"declares no tenant {agent.tenant!r}, which {_where(agent.source, ('tenant',))} names")


def _quotas(regions: dict[str, Region], agents: Sequence[Agent]) -> Iterator[Problem]:
    """A tenant's ResourceQuota must hold its agent pools at max_workers, or they stop scaling
    below it (pods are refused, silently for the caller waiting on a worker)."""
    from ..plan.capacity import tenant_usage

    for region in regions.values():
        for name, tenant in region.tenants.items():
            pools = [a for a in agents if region.name in a.regions and a.tenant == name]
            if not pools:
                continue
            usage = tenant_usage(region, name, pools)
            checks = [
                ("cpu", usage.cpu_at_max, usage.cpu_quota, f"{usage.cpu_at_max:g} CPUs", f"{tenant.quotas.cpu}"),
                ("memory", usage.memory_gib_at_max, usage.memory_gib_quota, f"{usage.memory_gib_at_max:g}Gi",
                 f"{tenant.quotas.memory}"),
                ("pods", usage.pods_at_max, usage.pods_quota, f"{usage.pods_at_max} pods", f"{tenant.quotas.pods}"),
            ]
            # Local disk: each worker requests (and is limited to) its ephemeral_storage.
            disk_at_max = sum(float(parse_quantity(a.resources.ephemeral_storage or "0")) * a.scaling.max_workers
                              for a in pools) / 2**30
            disk_quota = float(parse_quantity(tenant.quotas.ephemeral_storage)) / 2**30
            checks.append(("ephemeral_storage", disk_at_max, disk_quota, f"{disk_at_max:g}Gi",
                           f"{tenant.quotas.ephemeral_storage}"))
            for field, want, have, wanted, quota in checks:
                if want <= have:
                    continue
                path = ("tenants", name, "quotas", field)
                sums = ", ".join(f"{a.name} {a.scaling.max_workers} x {_per_pod(a, field)}" for a in pools)
                ends = tuple(
                    _at(a.source, ("scaling", "max_workers"),
                        f"max_workers {a.scaling.max_workers} counts toward the {field} quota of tenant {name!r} in region "
                        f"{region.name!r} ({_where(region.source, path)}), which is below the pools at max_workers")
                    for a in pools
                )
                written = region.source is not None and path in region.source.map.values
                # Mutual: the quota or any pool's max_workers may be what changed.
                yield _at(region.source, path,
                          f"quota {quota}{'' if written else ' (the default)'} is below what the agent pools of tenant "
                          f"{name!r} request at max_workers ({wanted}: {sums}); raise it or lower max_workers", ends=ends,
                          mutual=True)


def _per_pod(agent: Agent, field: str) -> str:
    if field == "pods":
        return "1"
    value = getattr(agent.resources, field)
    return str(value) if value is not None else "0"


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
    for role, spec in agent.inference.roles().items():
        if spec.provider is not None and spec.provider.name not in OPENAI_COMPATIBLE[role]:
            names = OPENAI_COMPATIBLE[role]
            named = ", ".join(n for n in names if n != GENERIC)
            yield _at(src, ("inference", role, "provider", "name"),
                      f"{spec.provider.name!r} is not an OpenAI-compatible {role} provider, and the platform glue reaches "
                      f"every provider through the OpenAI API: {named}, or {GENERIC} for another endpoint that serves "
                      f"it; a provider with an API of its own needs its own livekit plugin in the agent's program"
                      + did_you_mean(spec.provider.name, names))
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


def _stack_secret(region: str, ref: SecretRef, src: Source | None, path: tuple[str | int, ...], root: Path,
                  stacks: Sequence[StackFile] | None = None) -> Iterator[Problem]:
    """A `config:` reference must not point at a plain-text value in a stack file of its region."""
    if ref.config is None:
        return
    if stacks is None:
        value = stack_config(root, region).get(ref.config)
        if isinstance(value, str):
            yield _at(src, path, f"stack config {ref.config!r} in Pulumi.{region}.yaml is plain text; set it with `pulumi config set --secret {ref.config} -s {region}`")
        return
    for stack in stacks:
        if stack.region != region or stack.status(ref.config) != "plain text":
            continue
        if isinstance(stack.config[ref.config], (dict, list)):
            continue  # the stack check says what is wrong with its shape
        end = stack.problem(ref.config, f"is plain text, and {_where(src, path)} references it as a secret; remove it "
                                         f"and set it with `pulumi config set --secret {ref.config} -s {stack.stack}`")
        yield _at(src, path, f"stack config {ref.config!r} in {stack.file} is plain text; set it with "
                             f"`pulumi config set --secret {ref.config} -s {stack.stack}`", ends=(end,))


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
