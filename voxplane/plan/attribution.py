"""Which field changes cause each object change, in the order plan.py's docstring gives: the field
`drift.attribution` names for the object path (or a region field that path comes from), the tool,
the object's own file, its region's files.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable, Mapping, Optional, Sequence

from ..drift.attribution import Attribution
from ..drift.kubernetes.compare import UNSET, Keyed, format_path
from ..drift.kubernetes.compare import Path as ObjPath
from ..livekit.desired import Desired, desired_objects
from ..manifest.model import ROLES, Agent, Project, Region
from .result import FieldChange, ObjectRef, Touch
from .text import short


def _as_path(dotted: str) -> tuple[str, ...]:
    if not dotted or dotted.startswith("("):
        return ()
    return tuple(dotted.split("."))


def _related(a: Sequence[str | int], b: Sequence[str | int]) -> bool:
    n = min(len(a), len(b))
    return tuple(map(str, a[:n])) == tuple(map(str, b[:n]))


_POD = ("spec", "template", "spec")


def region_fields(region: Region, agent: Optional[Agent], path: ObjPath) -> list[tuple[str, ...]]:
    """Fields of the region file an agent object's path comes from, where attribution names only
    the agent's file (an extension of kubedrift.attribution for agent objects)."""
    if agent is None:
        return []
    plain = [s.value if isinstance(s, Keyed) else s for s in path]
    out: list[tuple[str, ...]] = []
    if tuple(plain[:3]) == _POD and len(plain) > 3 and plain[3] in ("nodeSelector", "tolerations", "affinity",
                                                                   "topologySpreadConstraints"):
        out += [("agents", "node_pool"), ("tenants", agent.tenant, "node_pool"), ("tenants", agent.tenant, "isolation")]
    if tuple(plain[:3]) == _POD and len(plain) > 6 and plain[3] == "containers" and plain[5] == "env":
        name = str(plain[6])
        for role in ROLES:
            spec = agent.inference.roles().get(role)
            if name.startswith(f"VOXPLANE_{role.upper()}_") and spec is not None and spec.model:
                out.append(("models", spec.model))
    if tuple(plain[:3]) == _POD and len(plain) > 6 and plain[3] == "containers" and plain[5] == "image":
        out.append(("kubernetes",))
    return out


def agent_fields(agent: Optional[Agent], path: ObjPath) -> list[tuple[str, ...]]:
    """Fields of an agent's own file a `VOXPLANE_<FIELD>` env var of its container is set from,
    where attribution falls back to `env.<NAME>` (`VOXPLANE_SESSIONS_PER_WORKER` ->
    `scaling.sessions_per_worker`)."""
    if agent is None:
        return []
    plain = [s.value if isinstance(s, Keyed) else s for s in path]
    if not (tuple(plain[:3]) == _POD and len(plain) > 6 and plain[3] == "containers" and plain[5] == "env"):
        return []
    name = str(plain[6])
    if not name.startswith("VOXPLANE_") or name in agent.env:
        return []
    leaf = name[len("VOXPLANE_"):].lower()
    return [("scaling", leaf), (leaf,), ("telephony", leaf), ("resources", leaf)]


class Attributor:
    """Finds the field changes that cause an object change (the tiers in the module docstring)."""

    def __init__(self, changes: list[FieldChange], region: str, head: Optional[Project], base: Optional[Project]):
        self.changes = changes
        self.region = region
        self.by_file: dict[str, list[FieldChange]] = {}
        for c in changes:
            if c.kind != "tool":
                self.by_file.setdefault(c.file, []).append(c)
        self.tool = [c for c in changes if c.kind == "tool"]
        self.head, self.base = head, base
        self.sides: dict[str, tuple[Optional[Attribution], dict[tuple[str, str], Desired]]] = {}
        for label, project in (("head", head), ("base", base)):
            reg = project.regions.get(region) if project else None
            if reg is None or project is None:
                self.sides[label] = (None, {})
                continue
            agents = project.agents_in(region)
            self.sides[label] = (Attribution(reg, agents), {(d.kind, d.name): d for d in desired_objects(reg, agents)})
        region_files = {f"Pulumi.{region}.yaml"}
        agent_files: set[str] = set()
        for project in (head, base):
            if project and region in project.regions and project.regions[region].source:
                src = project.regions[region].source
                assert src is not None
                region_files.add(src.file)
            for agent in (project.agents_in(region) if project else ()):
                if agent.source is not None:
                    agent_files.add(agent.source.file)
        region_files |= {c.file for c in changes if c.kind == "manifest" and c.file == f"regions/{region}.yaml"}
        self.region_files, self.agent_files = region_files, agent_files

    def _in(self, files: Iterable[str]) -> list[FieldChange]:
        return [c for f in sorted(files) for c in self.by_file.get(f, [])]

    def _evidenced(self, before: Any, after: Any) -> set[str]:
        """Agent files whose agent a changed value names on one side only (its LIVEKIT_AGENT_NAME,
        room prefix or a number): a shared object (a gateway's config listing every agent) changed
        because of that agent."""
        a, b = short(before, 10**9), short(after, 10**9)
        found: set[str] = set()
        for project in (self.head, self.base):
            for agent in (project.agents_in(self.region) if project else ()):
                marks = [agent.scoped_name, *(agent.telephony.numbers if agent.telephony else ())]
                if agent.telephony and agent.telephony.dispatch.room_prefix:
                    marks.append(agent.telephony.dispatch.room_prefix)
                if agent.source is not None and any((f'"{m}"' in a) != (f'"{m}"' in b) or (m == a) != (m == b)
                                                    for m in marks):
                    found.add(agent.source.file)
        return found

    def causes(self, ref: ObjectRef, action: str, obj: Mapping[str, Any], path: ObjPath,
               before: Any = UNSET, after: Any = UNSET) -> tuple[list[FieldChange], str]:
        side = "base" if action == "remove" else "head"
        attribution, desired = self.sides[side]
        candidates: list[tuple[str, tuple[str, ...]]] = []
        own_file = ""
        if ref.target == "kubernetes" and attribution is not None:
            origin = attribution.field_origin(obj, path) if path else attribution.object_origin(obj)
            own_file = origin.file
            agent = attribution.agent_of(obj)
            if action in ("add", "remove") and agent is not None:
                candidates.append((own_file, ("regions",)))
            candidates += [(own_file, p) for p in agent_fields(agent, path)]
            candidates.append((own_file, _as_path(origin.field)))
            region_file = attribution.region.source.file if attribution.region.source else ""
            candidates += [(region_file, p) for p in region_fields(attribution.region, agent, path)]
        elif ref.target == "livekit":
            d = desired.get((ref.kind, ref.name))
            if d is not None:
                origin = d.origin(format_path(path) if path else "*")
                own_file = origin.file
                if action in ("add", "remove"):
                    candidates.append((d.source or own_file, ("regions",)))
                    candidates.append((d.source or own_file, ("telephony",)))
                candidates.append((origin.file, _as_path(origin.field)))
        for file, fpath in candidates:
            if not fpath:
                continue
            found = [c for c in self.by_file.get(file, []) if _related(c.path, fpath)]
            if found:
                return found, "field"
        if self.tool:
            # The tool changed: what no changed field explains is most likely its doing.
            return list(self.tool), "tool"
        if own_file and self.by_file.get(own_file):
            return list(self.by_file[own_file]), "file"
        for files in (self.region_files, self.agent_files):
            found = self._in(files)
            if found and files is self.agent_files:
                named = self._in(self._evidenced(before, after) & self.agent_files)
                # A shared object that names an agent (the gateway's tenant scopes) changes because
                # the agent joined or left the region, or its routing changed: not its other fields.
                def scoped(changes: list[FieldChange]) -> list[FieldChange]:
                    # In this order: joining/leaving the region explains the most, then routing.
                    for prefix in (("regions",), ("telephony", "dispatch"), ("name",)):
                        hit = [c for c in changes if c.path[:len(prefix)] == prefix]
                        if hit:
                            return hit
                    return []

                found = scoped(named) or named or scoped(found) or found
            if found:
                return found, "region"
        return [], "none"


def checksums_follow_configs(found: list[tuple[Touch, list[FieldChange]]]) -> list[tuple[Touch, list[FieldChange]]]:
    """A config checksum annotation (`…checksum`) changes because a ConfigMap or Secret of its
    namespace did: it gets their causes, not a guess of its own."""
    configs: dict[str, list[FieldChange]] = {}
    for touch, causes in found:
        if touch.ref.kind in ("ConfigMap", "Secret") and touch.ref.target == "kubernetes":
            bucket = configs.setdefault(touch.ref.namespace, [])
            bucket += [c for c in causes if c not in bucket]
    out = []
    for touch, causes in found:
        leaf = touch.path.rsplit(".", 1)[-1]
        if touch.action == "change" and "annotations" in touch.path and "checksum" in leaf and configs.get(touch.ref.namespace):
            out.append((replace(touch, via="field"),
                        list(configs[touch.ref.namespace])))
        else:
            out.append((touch, causes))
    return out
