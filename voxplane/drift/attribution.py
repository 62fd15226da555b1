"""Which manifest field owns a path of a rendered Kubernetes object: file, line, column and field.

An object names its manifest in the annotation `voxplane.io/source` (agent objects: the agent's
file; most region objects: the region's file); objects without one (tenant objects, some PDBs)
belong to the region's file. Within the file, well-known paths map to the manifest field they are
built from (the builders in voxplane/desired/ are the reference), e.g.

    ScaledObject spec.maxReplicaCount                 -> scaling.max_workers
    Deployment …containers[agent].env[NAME]           -> env.NAME (secrets.NAME, inference.ROLE…)
    …containers[agent].resources.requests.cpu         -> resources.cpu
    …containers[agent].image                          -> code.image (or code.build)
    Deployment livekit spec.replicas                  -> livekit.nodes
    ResourceQuota spec.hard.requests.cpu              -> tenants.T.quotas.cpu

Anything else falls back to the object's own part of the file (`tenants.T`, `models.M`, `livekit`,
`sip`), or to the top of its file with field `(object)`. Lines and columns come from the manifest's
source map; a field the manifest does not write (a schema default) points at its nearest written
parent.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from ..desired.common import ANNOTATION_SOURCE, LABEL_AGENT, LABEL_TENANT
from ..livekit.desired import Origin
from ..manifest.model import ROLES, Agent, Region, Source
from .kubernetes.compare import Keyed, Path

OBJECT_FIELD = "(object)"
ManifestPath = tuple[str, ...]

_COMPONENT = "app.kubernetes.io/component"
_NAME = "app.kubernetes.io/name"
_INSTANCE = "app.kubernetes.io/instance"
_POD = ("spec", "template", "spec")


def _plain(path: Path) -> list[Any]:
    """Path segments with list items by their key value (`env[FOO]` -> "FOO")."""
    return [s.value if isinstance(s, Keyed) else s for s in path]


def _container_part(p: list[Any]) -> Optional[list[Any]]:
    """What follows `spec.template.spec.containers[X]` in `p` (None when `p` is elsewhere)."""
    if p[:3] == list(_POD) and len(p) >= 5 and p[3] in ("containers", "initContainers"):
        return p[5:]
    return None


def _resource(rest: list[Any], base: ManifestPath) -> Optional[ManifestPath]:
    """`resources.requests.cpu` -> base.cpu (memory alike); other resources -> base."""
    if not rest or rest[0] != "resources":
        return None
    leaf = rest[2] if len(rest) > 2 else None
    if leaf in ("cpu", "memory"):
        return base + (str(leaf),)
    return base


def _workload(p: list[Any], base: ManifestPath, *, replicas: str, image: ManifestPath, grace: str) -> Optional[ManifestPath]:
    """Fields shared by the SFU, SIP and model workloads."""
    if p == ["spec", "replicas"]:
        return base + (replicas,)
    if p[:4] == [*_POD, "terminationGracePeriodSeconds"]:
        return base + (grace,)
    if p[:4] in ([*_POD, "nodeSelector"], [*_POD, "tolerations"]):
        return base + ("node_pool",)
    rest = _container_part(p)
    if rest:
        if rest[0] == "image":
            return image
        return _resource(rest, base + ("resources",))
    return None


class Attribution:
    """Maps rendered objects and their paths to manifest origins for one region."""

    def __init__(self, region: Region, agents: Sequence[Agent]):
        self.region = region
        self.agents = tuple(agents)
        self._by_name = {(a.tenant, a.name): a for a in agents}
        self._by_file = {a.source.file: a for a in agents if a.source is not None}

    # --- owners ------------------------------------------------------------------------------------

    def agent_of(self, obj: Mapping[str, Any]) -> Optional[Agent]:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        agent = self._by_name.get((str(labels.get(LABEL_TENANT)), str(labels.get(LABEL_AGENT))))
        if agent is None:
            agent = self._by_file.get((meta.get("annotations") or {}).get(ANNOTATION_SOURCE, ""))
        return agent

    def source_of(self, obj: Mapping[str, Any]) -> Optional[Source]:
        agent = self.agent_of(obj)
        return agent.source if agent is not None else self.region.source

    def source_file(self, obj: Mapping[str, Any]) -> str:
        """The manifest file owning `obj`: its annotation, else the region's file."""
        annotated = ((obj.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_SOURCE)
        if annotated:
            return str(annotated)
        source = self.source_of(obj)
        return source.file if source is not None else "?"

    def base(self, obj: Mapping[str, Any]) -> ManifestPath:
        """The part of its manifest an object is built from (() for the whole file)."""
        if self.agent_of(obj) is not None:
            return ()
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        component, name = labels.get(_COMPONENT), labels.get(_NAME)
        tenant = labels.get(LABEL_TENANT)
        if tenant:
            return ("tenants", str(tenant))
        if component == "inference" and name in self.region.models:
            return ("models", str(name))
        if component == "sfu":
            return ("livekit",)
        if component == "redis":
            return ("livekit", "redis")
        if component == "sip":
            return ("sip",)
        if component == "gpu-node-group" and labels.get(_INSTANCE) in self.region.gpu_node_groups:
            return ("gpu_node_groups", str(labels.get(_INSTANCE)))
        if obj.get("kind") == "Namespace":
            return ("kubernetes", "namespace_prefix")
        return ()

    # --- origins -----------------------------------------------------------------------------------

    def object_origin(self, obj: Mapping[str, Any]) -> Origin:
        """Where a whole object is declared (missing objects, and fields without a rule)."""
        return self._origin(obj, self.base(obj))

    def field_origin(self, obj: Mapping[str, Any], path: Path) -> Origin:
        """The manifest field that owns `path` of `obj`."""
        agent = self.agent_of(obj)
        kind = str(obj.get("kind"))
        p = _plain(path)
        if agent is not None:
            field = self._agent_field(agent, kind, p)
        else:
            field = self._region_field(obj, kind, p)
        return self._origin(obj, field if field is not None else self.base(obj))

    def _origin(self, obj: Mapping[str, Any], field: ManifestPath) -> Origin:
        source = self.source_of(obj)
        file = self.source_file(obj)
        if source is None or source.file != file:
            return Origin(file, 1, 1, ".".join(field) or OBJECT_FIELD)
        if not field:
            return Origin(file, 1, 1, OBJECT_FIELD)
        key, value = source.map.keys.get(field), source.map.values.get(field)
        if key is not None and value is not None and value[0] != key[0]:
            line, col = key  # a block below its key: point at the key (`livekit:`), not its first child
        else:
            where, at_line, at_col = source.locate(*field).rsplit(":", 2)
            line, col = int(at_line), int(at_col)
        return Origin(file, line, col, ".".join(field))

    # --- agent manifests ---------------------------------------------------------------------------

    def _agent_field(self, agent: Agent, kind: str, p: list[Any]) -> Optional[ManifestPath]:
        if kind == "Deployment":
            if p == ["spec", "replicas"]:
                return ("scaling", "min_workers")
            if p[:4] == [*_POD, "terminationGracePeriodSeconds"]:
                return ("scaling", "drain_timeout")
            rest = _container_part(p)
            if rest:
                if rest[0] == "image":
                    return ("code", "image") if agent.code.image else ("code", "build")
                if rest[0] == "command":
                    return ("command",)
                if rest[0] == "env" and len(rest) > 1:
                    return self._env_field(agent, str(rest[1]))
                return _resource(rest, ("resources",))
        if kind == "ScaledObject" and p[:1] == ["spec"] and len(p) > 1:
            return {
                "maxReplicaCount": ("scaling", "max_workers"),
                "minReplicaCount": ("scaling", "min_workers"),
                "cooldownPeriod": ("scaling", "scale_down_window"),
                "advanced": ("scaling", "scale_down_window"),
                "triggers": ("scaling", "sessions_per_worker"),
            }.get(str(p[1]))
        if kind == "Secret" and p[:1] in (["data"], ["stringData"]) and len(p) > 1:
            return self._env_field(agent, str(p[1]))
        return None

    @staticmethod
    def _env_field(agent: Agent, name: str) -> ManifestPath:
        if name in agent.env:
            return ("env", name)
        if name in agent.secrets:
            return ("secrets", name)
        if name == "LIVEKIT_AGENT_NAME":
            return ("name",)
        if name == "VOXPLANE_DRAIN_TIMEOUT":
            return ("scaling", "drain_timeout")
        if name in ("VOXPLANE_SESSIONS_PER_WORKER", "VOXPLANE_IDLE_PROCESSES"):
            return ("scaling", "sessions_per_worker")
        for role in ROLES:
            prefix = f"VOXPLANE_{role.upper()}_"
            if name.startswith(prefix):
                spec = agent.inference.roles().get(role)
                what = name[len(prefix):]
                if spec is not None and spec.provider is not None:
                    leaf = {"BASE_URL": "endpoint", "MODEL": "model", "PROVIDER": "name", "API_KEY": "api_key"}.get(what)
                    return ("inference", role, "provider") + ((leaf,) if leaf else ())
                return ("inference", role, "model") if what in ("BASE_URL", "MODEL") else ("inference", role)
        return ("env", name)

    # --- the region manifest -----------------------------------------------------------------------

    def _region_field(self, obj: Mapping[str, Any], kind: str, p: list[Any]) -> Optional[ManifestPath]:
        base = self.base(obj)
        if base[:1] == ("models",):
            if kind == "ScaledObject" and p[:1] == ["spec"] and len(p) > 1:
                leaf = {"maxReplicaCount": "max_replicas", "minReplicaCount": "min_replicas",
                        "triggers": "queue_target"}.get(str(p[1]))
                return base + (leaf,) if leaf else None
            if kind == "Service" and p[:2] == ["spec", "ports"]:
                return base + ("port",)
            if kind == "Secret":
                return base + ("hf_token",)
            rest = _container_part(p)
            if rest and rest[0] == "resources" and len(rest) > 2 and str(rest[2]).endswith("/gpu"):
                return base + ("gpus_per_replica",)
            if rest and rest[0] in ("args", "command"):
                return base + ("engine_args",)
            if rest and rest[0] == "startupProbe":
                return base + ("startup_seconds",)
            if rest and rest[0] == "ports":
                return base + ("port",)
            if p[:2] == ["spec", "volumeClaimTemplates"]:
                return base + ("cache_size",)
            return _workload(p, base, replicas="min_replicas", image=base + ("image",), grace="startup_seconds")
        if base == ("livekit",):
            if kind == "Service" and p[:2] == ["spec", "ports"]:
                return base + ("ports",)
            return _workload(p, base, replicas="nodes", image=base + ("version",), grace="drain_seconds")
        if base == ("livekit", "redis"):
            if p[:2] == ["spec", "volumeClaimTemplates"]:
                return base + ("storage",)
            rest = _container_part(p)
            if rest and rest[0] == "image":
                return base + ("image",)
            return None
        if base == ("sip",):
            return _workload(p, base, replicas="replicas", image=base + ("version",), grace="drain_seconds")
        if base[:1] == ("tenants",) and kind == "ResourceQuota" and p[:2] == ["spec", "hard"] and len(p) > 2:
            key = str(p[2])
            for leaf in ("cpu", "memory", "pods"):
                if key == leaf or key.endswith("." + leaf):
                    return base + ("quotas", leaf)
        if base[:1] == ("gpu_node_groups",) and p[:2] == ["spec", "limits"]:
            return base + ("max_nodes",)
        return None
