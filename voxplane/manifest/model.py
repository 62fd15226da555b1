"""The typed model: frozen dataclasses that mirror schemas/*.json field for field.

Later stages (builders, components, render, drift, capacity) read only these classes. Defaults are
not repeated here: the loader fills them from the schema before `from_data` runs, and
tests/test_model_matches_schema.py fails if a field exists on one side only.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Iterator, Literal, Mapping, Optional, TypeVar

from .quantity import quantity_text
from .sourcemap import SourceMap

T = TypeVar("T")

ModelKind = Literal["llm", "tts", "stt"]
#: The server program a model's image runs (voxplane/manifest/servers.py holds what each one reads).
ServerName = Literal["vllm", "kokoro-fastapi", "speaches"]
#: The server of a model that names none: its kind's usual one.
DEFAULT_SERVER: dict[str, ServerName] = {"llm": "vllm", "tts": "kokoro-fastapi", "stt": "speaches"}
ROLES: tuple[ModelKind, ...] = ("stt", "tts", "llm")


# --- shared pieces ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives: a Pulumi config secret (`config`) or an existing Secret (`secret`, `key`)."""

    config: Optional[str] = None
    secret: Optional[str] = None
    key: Optional[str] = None

    def describe(self) -> str:
        return f"config:{self.config}" if self.config else f"secret:{self.secret}/{self.key}"


@dataclass(frozen=True)
class PortRange:
    start: int
    end: int

    def overlaps(self, other: "PortRange") -> bool:
        return self.start <= other.end and other.start <= self.end

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


@dataclass(frozen=True)
class Resources:
    cpu: Optional[str] = None
    memory: Optional[str] = None
    ephemeral_storage: Optional[str] = None


@dataclass(frozen=True)
class Toleration:
    key: str
    value: Optional[str] = None
    effect: Optional[str] = None


@dataclass(frozen=True)
class Taint:
    key: str
    effect: str
    value: Optional[str] = None


@dataclass(frozen=True)
class NodePool:
    selector: Mapping[str, str]
    tolerations: tuple[Toleration, ...] = ()


# --- region ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KubernetesTarget:
    namespace_prefix: str
    cluster_domain: str
    prometheus_url: str
    node_cidrs: tuple[str, ...]
    storage_class: Optional[str] = None
    monitoring_namespace: Optional[str] = None


@dataclass(frozen=True)
class LiveKitPorts:
    http: int
    rtc_tcp: int
    rtc_udp: PortRange
    prometheus: int


@dataclass(frozen=True)
class Turn:
    enabled: bool
    tls_port: int
    udp_port: int
    domain: Optional[str] = None
    tls_secret: Optional[str] = None


@dataclass(frozen=True)
class Redis:
    mode: Literal["in-cluster", "external"]
    storage: str
    image: str
    address: Optional[str] = None
    password: Optional[SecretRef] = None


@dataclass(frozen=True)
class LiveKit:
    image: str
    version: str
    public_url: str
    nodes: int
    node_pool: NodePool
    ports: LiveKitPorts
    turn: Turn
    redis: Redis
    resources: Resources
    drain_seconds: int
    log_level: str
    digest: Optional[str] = None


@dataclass(frozen=True)
class Sip:
    image: str
    version: str
    public_host: str
    replicas: int
    node_pool: NodePool
    sip_port: int
    rtp_ports: PortRange
    health_port: int
    prometheus_port: int
    carrier_addresses: tuple[str, ...]
    resources: Resources
    drain_seconds: int
    digest: Optional[str] = None


@dataclass(frozen=True)
class AgentPlacement:
    node_pool: Optional[NodePool] = None


@dataclass(frozen=True)
class Quotas:
    cpu: str
    memory: str
    pods: int
    ephemeral_storage: str


@dataclass(frozen=True)
class RateLimit:
    per_second: float
    burst: int


@dataclass(frozen=True)
class GatewayLimits:
    """A tenant's limits at each gateway replica (schema: `tenants.<name>.limits`)."""

    joins: RateLimit
    api_calls: RateLimit
    worker_registrations: RateLimit
    connections: int


@dataclass(frozen=True)
class Tenant:
    name: str
    isolation: Literal["namespace", "dedicated-nodes"]
    quotas: Quotas
    limits: GatewayLimits
    description: Optional[str] = None
    node_pool: Optional[NodePool] = None


@dataclass(frozen=True)
class KarpenterSettings:
    node_class: str
    node_class_kind: str
    node_class_group: str
    capacity_types: tuple[str, ...]
    consolidate_after: str


@dataclass(frozen=True)
class GpuNodeGroup:
    name: str
    gpu_product: str
    gpu_memory_gib: int
    gpus_per_node: int
    min_nodes: int
    max_nodes: int
    provisioner: Literal["karpenter", "preprovisioned"]
    karpenter: KarpenterSettings
    taints: tuple[Taint, ...]


@dataclass(frozen=True)
class VllmArgs:
    dtype: str
    gpu_memory_utilization: float
    enable_prefix_caching: bool
    kv_cache_dtype: str
    extra_args: tuple[str, ...]
    max_model_len: Optional[int] = None
    max_num_seqs: Optional[int] = None
    quantization: Optional[str] = None
    tensor_parallel_size: Optional[int] = None


@dataclass(frozen=True)
class ModelProfile:
    """Architecture numbers of an llm; `voxplane capacity` sizes its KV cache from them."""

    params_billion: float
    layers: int
    kv_heads: int
    head_dim: int
    weight_bits: int


@dataclass(frozen=True)
class Model:
    name: str
    kind: ModelKind
    image: str
    model_id: str
    node_group: str
    gpus_per_replica: int
    min_replicas: int
    max_replicas: int
    port: int
    engine_args: VllmArgs
    args: tuple[str, ...]
    cache_size: str
    startup_seconds: int
    queue_target: int
    resources: Resources
    run_as_user: int
    writable_paths: tuple[str, ...]
    shm_size: str
    queue_metric: Optional[str] = None
    hf_token: Optional[SecretRef] = None
    profile: Optional[ModelProfile] = None
    server: Optional[ServerName] = None

    @property
    def server_name(self) -> ServerName:
        """The declared server, else the kind's default (DEFAULT_SERVER)."""
        return self.server or DEFAULT_SERVER[self.kind]

    @property
    def scaling_metric(self) -> str:
        """The Prometheus metric of waiting requests the model's autoscaler targets."""
        if self.queue_metric:
            return self.queue_metric
        return "vllm:num_requests_waiting" if self.kind == "llm" else "queue_depth"


@dataclass(frozen=True)
class Region:
    name: str
    peak_concurrent_calls: int
    kubernetes: KubernetesTarget
    livekit: LiveKit
    agents: AgentPlacement
    tenants: Mapping[str, Tenant]
    gpu_node_groups: Mapping[str, GpuNodeGroup]
    models: Mapping[str, Model]
    description: Optional[str] = None
    sip: Optional[Sip] = None
    source: Optional["Source"] = field(default=None, compare=False, repr=False)


# --- agent -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Code:
    image: Optional[str] = None
    build: Optional[str] = None
    dockerfile: Optional[str] = None


@dataclass(frozen=True)
class Scaling:
    min_workers: int
    max_workers: int
    sessions_per_worker: int
    drain_timeout: int
    scale_down_window: int


@dataclass(frozen=True)
class DigestAuth:
    username: str
    password: SecretRef


@dataclass(frozen=True)
class Dispatch:
    kind: Literal["individual", "direct", "callee"]
    room_prefix: str
    room_name: Optional[str] = None
    #: Concurrent callers may share a room (callee: no per-call randomisation; direct: required).
    shared_room: bool = False
    pin: Optional[SecretRef] = None


@dataclass(frozen=True)
class Telephony:
    numbers: tuple[str, ...]
    allowed_addresses: tuple[str, ...]
    dispatch: Dispatch
    noise_cancellation: bool
    auth: Optional[DigestAuth] = None


@dataclass(frozen=True)
class Provider:
    name: str
    model: str
    endpoint: str
    api_key: SecretRef

    @property
    def host(self) -> str:
        return self.endpoint.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0]


@dataclass(frozen=True)
class InferenceRole:
    model: Optional[str] = None
    provider: Optional[Provider] = None


@dataclass(frozen=True)
class Inference:
    stt: Optional[InferenceRole] = None
    tts: Optional[InferenceRole] = None
    llm: Optional[InferenceRole] = None

    def roles(self) -> dict[ModelKind, InferenceRole]:
        return {role: getattr(self, role) for role in ROLES if getattr(self, role) is not None}


@dataclass(frozen=True)
class Agent:
    name: str
    tenant: str
    regions: tuple[str, ...]
    code: Code
    command: tuple[str, ...]
    env: Mapping[str, str]
    secrets: Mapping[str, SecretRef]
    resources: Resources
    scaling: Scaling
    inference: Inference
    description: Optional[str] = None
    telephony: Optional[Telephony] = None
    source: Optional["Source"] = field(default=None, compare=False, repr=False)

    def secret_refs(self) -> Iterator[tuple[SecretRef, tuple[str, ...]]]:
        """Every secret reference of the manifest, with the path of its `config` key."""
        for name, ref in self.secrets.items():
            yield ref, ("secrets", name, "config")
        for role, spec in self.inference.roles().items():
            if spec.provider is not None:
                yield spec.provider.api_key, ("inference", role, "provider", "api_key", "config")
        if self.telephony is not None:
            if self.telephony.auth is not None:
                yield self.telephony.auth.password, ("telephony", "auth", "password", "config")
            if self.telephony.dispatch.pin is not None:
                yield self.telephony.dispatch.pin, ("telephony", "dispatch", "pin", "config")

    @property
    def scoped_name(self) -> str:
        """The LiveKit agent name: tenant-scoped, so one tenant's calls never reach another's agent."""
        return f"{self.tenant}-{self.name}"


# --- where things came from --------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """The manifest a model object was loaded from, to point people back at file and line."""

    file: str
    map: SourceMap = field(compare=False, repr=False)

    def locate(self, *path: str | int) -> str:
        line, col = self.map.value(tuple(path))
        return f"{self.file}:{line}:{col}"


@dataclass(frozen=True)
class Project:
    """Everything in the repository: regions by name, agents by (tenant, name)."""

    regions: Mapping[str, Region]
    agents: tuple[Agent, ...]

    def agents_in(self, region: str) -> tuple[Agent, ...]:
        return tuple(a for a in self.agents if region in a.regions)


# --- plain data -> dataclasses -----------------------------------------------------------------

#: Map-valued fields whose keys are copied into the value's `name` field.
_NAMED_MAPS = {"tenants", "gpu_node_groups", "models"}


def from_data(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build `cls` from schema-valid data with defaults applied (see `schema.with_defaults`)."""
    hints = _hints(cls)  # type: ignore[arg-type]  # dataclass types are hashable
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name], f.name)
    return cls(**kwargs)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(hint: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return None if value is None else _convert(inner[0], value, name)
    if origin is tuple:
        return tuple(_convert(args[0], v, name) for v in value)
    if origin in (collections.abc.Mapping, dict):
        value_type = args[1] if args else Any
        if name in _NAMED_MAPS:
            return {k: _convert(value_type, {**v, "name": k}, name) for k, v in value.items()}
        return {k: _convert(value_type, v, name) for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):  # type: ignore[arg-type]
            return value
        return from_data(hint, value)  # type: ignore[arg-type]
    if hint is float and isinstance(value, int):
        return float(value)
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        # The schema lets CPU quantities be YAML numbers (`cpu: 2`); the model keeps quantities as text.
        return quantity_text(value)
    return value
