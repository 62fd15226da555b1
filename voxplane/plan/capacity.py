"""`voxplane capacity`: how many calls a region's declared GPUs and agent pools can carry.

An analytic plan, not a benchmark. For an llm with a `profile`, per replica:

    usable GPU memory = gpu_memory_gib × gpus_per_replica × gpu_memory_utilization
    weights           = params × weight_bits / 8
    KV budget         = usable − weights − activation reserve
    KV bytes/token    = 2 (K and V) × layers × kv_heads × head_dim × KV dtype bytes
    streams           = KV budget / KV bytes/token / max_model_len   (capped by max_num_seqs)
    calls             = streams / duty cycle

The duty cycle is the share of a call's time its LLM stream is active (the caller talks, TTS plays
the rest of the time): 0.25 by default, a planning assumption to replace with a measured one. vLLM
measures the real KV budget after loading the model ("GPU KV cache size: N tokens"); compare.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional, Sequence

from ..manifest.model import Agent, Model, Project, Region
from ..manifest.quantity import parse_quantity

GIB = 1024**3
#: Activation and CUDA-graph memory vLLM keeps outside the KV cache, as a share of usable memory.
ACTIVATION_RESERVE = 0.10
DEFAULT_DUTY_CYCLE = 0.25


def kv_bytes_per_token(model: Model) -> Optional[int]:
    """KV-cache bytes one token occupies (all layers, K and V); None without a profile."""
    p = model.profile
    if p is None:
        return None
    kv_dtype_bytes = 1 if model.engine_args.kv_cache_dtype.startswith("fp8") else 2
    return 2 * p.layers * p.kv_heads * p.head_dim * kv_dtype_bytes


@dataclass(frozen=True)
class ModelCapacity:
    region: str
    model: str
    kind: str
    gpu: str
    gpus_per_replica: int
    gpu_memory_gib: float
    weights_gib: Optional[float] = None
    kv_budget_gib: Optional[float] = None
    kv_bytes_per_token: Optional[int] = None
    kv_tokens: Optional[int] = None
    streams_per_replica: Optional[float] = None
    calls_per_replica: Optional[float] = None
    replicas_needed: Optional[int] = None
    max_replicas: int = 0
    gpus_needed: Optional[int] = None
    gpus_available: int = 0
    status: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AgentCapacity:
    agent: str
    max_sessions: int


@dataclass(frozen=True)
class TenantCapacity:
    """What the tenant's agent pools request at max_workers against its ResourceQuota."""

    tenant: str
    cpu_at_max: float
    cpu_quota: float
    memory_gib_at_max: float
    memory_gib_quota: float
    pods_at_max: int
    pods_quota: int

    @property
    def status(self) -> str:
        over = [name for name, want, have in (
            ("cpu", self.cpu_at_max, self.cpu_quota),
            ("memory", self.memory_gib_at_max, self.memory_gib_quota),
            ("pods", self.pods_at_max, self.pods_quota),
        ) if want > have]
        return "ok" if not over else f"quota ({', '.join(over)}) stops the pools below max_workers"


@dataclass(frozen=True)
class RegionCapacity:
    region: str
    peak_calls: int
    duty_cycle: float
    models: list[ModelCapacity]
    agents: list[AgentCapacity]
    tenants: list[TenantCapacity]

    @property
    def agent_sessions(self) -> int:
        return sum(a.max_sessions for a in self.agents)

    def as_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "peak_calls": self.peak_calls,
            "duty_cycle": self.duty_cycle,
            "agent_sessions_at_max_workers": self.agent_sessions,
            "agents": [asdict(a) for a in self.agents],
            "tenants": [{**asdict(t), "status": t.status} for t in self.tenants],
            "models": [m.as_dict() for m in self.models],
        }


def shortfalls(report: RegionCapacity) -> list[str]:
    """What keeps the region from its peak, one phrase each (empty when the plan holds)."""
    short = [f"model {m.model!r}: {m.status}" for m in report.models
             if m.status.startswith("short") or m.status.startswith("weights do not fit")]
    if report.agent_sessions < report.peak_calls:
        short.append(f"agent pools at max_workers carry {report.agent_sessions} sessions for {report.peak_calls} peak calls")
    short += [f"tenant {t.tenant!r}: {t.status}" for t in report.tenants if t.status != "ok"]
    return short


def plan(project: Project, region_name: str, duty_cycle: float = DEFAULT_DUTY_CYCLE) -> RegionCapacity:
    """Capacity of every model and agent pool of `region_name` against its peak calls."""
    if not 0 < duty_cycle <= 1:
        raise ValueError(f"duty cycle must be in (0, 1], got {duty_cycle}")
    region = project.regions[region_name]
    # Each group's GPUs are shared by the models placed on it.
    demand: dict[str, int] = {}
    models = [_model(region, m, duty_cycle) for m in region.models.values()]
    for m, spec in zip(models, region.models.values(), strict=True):
        demand[spec.node_group] = demand.get(spec.node_group, 0) + (m.gpus_needed or spec.gpus_per_replica * spec.max_replicas)
    models = [_with_status(region, m, spec, demand) for m, spec in zip(models, region.models.values(), strict=True)]
    agents = [
        AgentCapacity(a.scoped_name, a.scaling.max_workers * a.scaling.sessions_per_worker)
        for a in project.agents_in(region_name)
    ]
    tenants = [_tenant(region, name, project) for name in sorted(region.tenants)]
    return RegionCapacity(region_name, region.peak_concurrent_calls, duty_cycle, models, agents, tenants)


def _tenant(region: Region, name: str, project: Project) -> TenantCapacity:
    return tenant_usage(region, name, [a for a in project.agents_in(region.name) if a.tenant == name])


def tenant_usage(region: Region, name: str, pools: Sequence[Agent]) -> TenantCapacity:
    """What the tenant's agent pools `pools` request at max_workers, against its quota in `region`."""
    quota = region.tenants[name].quotas

    def total(field: str) -> float:
        return float(sum(parse_quantity(getattr(a.resources, field) or "0") * a.scaling.max_workers for a in pools))

    return TenantCapacity(
        tenant=name,
        cpu_at_max=round(total("cpu"), 2),
        cpu_quota=float(parse_quantity(quota.cpu)),
        memory_gib_at_max=round(total("memory") / GIB, 2),
        memory_gib_quota=round(float(parse_quantity(quota.memory)) / GIB, 2),
        pods_at_max=sum(a.scaling.max_workers for a in pools),
        pods_quota=quota.pods,
    )


def _model(region: Region, model: Model, duty_cycle: float) -> ModelCapacity:
    group = region.gpu_node_groups[model.node_group]
    memory = float(group.gpu_memory_gib * model.gpus_per_replica)
    base = ModelCapacity(
        region=region.name,
        model=model.name,
        kind=model.kind,
        gpu=group.gpu_product,
        gpus_per_replica=model.gpus_per_replica,
        gpu_memory_gib=memory,
        max_replicas=model.max_replicas,
        gpus_available=group.max_nodes * group.gpus_per_node,
    )
    per_token = kv_bytes_per_token(model)
    context = model.engine_args.max_model_len
    if model.kind != "llm" or model.profile is None or per_token is None or context is None:
        return base
    p = model.profile
    usable = memory * model.engine_args.gpu_memory_utilization
    weights = p.params_billion * 1e9 * p.weight_bits / 8 / GIB
    budget = usable * (1 - ACTIVATION_RESERVE) - weights
    tokens = max(0, int(budget * GIB // per_token))
    streams = tokens / context
    if model.engine_args.max_num_seqs is not None:
        streams = min(streams, float(model.engine_args.max_num_seqs))
    calls = streams / duty_cycle
    needed = math.ceil(region.peak_concurrent_calls / calls) if calls > 0 else None
    return ModelCapacity(
        **{
            **base.as_dict(),
            "weights_gib": round(weights, 2),
            "kv_budget_gib": round(budget, 2),
            "kv_bytes_per_token": per_token,
            "kv_tokens": tokens,
            "streams_per_replica": round(streams, 1),
            "calls_per_replica": round(calls, 1),
            "replicas_needed": needed,
            "gpus_needed": needed * model.gpus_per_replica if needed is not None else None,
        }
    )


def _with_status(region: Region, m: ModelCapacity, model: Model, demand: dict[str, int]) -> ModelCapacity:
    if m.kind != "llm":
        status = "no analytic model for tts/stt: load-test the server"
    elif model.profile is None:
        status = "add `profile` to size the KV cache"
    elif model.engine_args.max_model_len is None:
        status = "set engine_args.max_model_len to size the KV cache"
    elif m.kv_tokens == 0:
        status = "weights do not fit: no memory left for the KV cache"
    elif m.replicas_needed is not None and m.replicas_needed > model.max_replicas:
        status = f"short: needs {m.replicas_needed} replicas, max_replicas is {model.max_replicas}"
    elif demand[model.node_group] > m.gpus_available:
        status = f"short: models on {model.node_group!r} need {demand[model.node_group]} GPUs, it has {m.gpus_available}"
    else:
        status = "ok"
    return ModelCapacity(**{**m.as_dict(), "status": status})
