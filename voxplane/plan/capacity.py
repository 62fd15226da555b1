"""`voxplane capacity`: how many calls a region's declared GPUs and agent pools can carry.

An analytic plan, not a benchmark. For an llm with a `profile`, per replica:

    usable GPU memory = gpu_memory_gib × gpus_per_replica × gpu_memory_utilization
    weights           = params × weight_bits / 8
    KV budget         = usable − weights − activation reserve            (an estimate: below)
    KV cache          = what vLLM allocates for that budget               (vLLM's own arithmetic)
    streams           = KV blocks / blocks of one max_model_len request   (capped by max_num_seqs)
    calls             = streams / duty cycle

The KV cache is vLLM's arithmetic exactly (vLLM 0.11, the release the examples pin; held against
vLLM's own config classes and a running server by tests/upstream/test_vllm_capacity.py): each GPU
of a replica holds `max(1, kv_heads // tensor_parallel)` KV heads (vLLM replicates heads when
there are fewer than GPUs), an element takes the KV dtype's bytes (fp8: 1; "auto": the model's
dtype, 4 only for an explicit float32, else 2), the cache is cut into blocks of 16 tokens and a GPU
gets `budget // (16 × bytes of a token on it)` whole blocks (vllm/v1/core/kv_cache_utils.py
get_num_blocks), every GPU of the replica the same number. vLLM logs the result at start-up ("GPU
KV cache size: N tokens", "Maximum concurrency for L tokens per request") and exports it
(`vllm:cache_config_info`'s num_gpu_blocks and block_size).

The budget is the estimate: vLLM measures it after loading the model (GPU memory × utilization
less the weights and the peak activation it profiles); the 10% activation reserve stands in for
that measurement. The duty cycle is the share of a call's time its LLM stream is active (the
caller talks, TTS plays the rest of the time): 0.25 by default, a planning assumption to replace
with a measured one.

A model whose server exports no queue metric (the speech servers) has no analytic model: one
replica carries its declared `calls_per_replica` (a load test's number), else the planner's
assumption. Its autoscaler divides the live calls of the agents that use it by the same number
(desired/inference.py), so the plan and the scaling agree.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional, Sequence

from .. import hpa
from ..manifest.model import Agent, Model, Project, Region
from ..manifest.quantity import parse_quantity
from ..manifest.servers import SERVERS

GIB = 1024**3
#: Activation and CUDA-graph memory vLLM keeps outside the KV cache, as a share of usable memory.
ACTIVATION_RESERVE = 0.10
DEFAULT_DUTY_CYCLE = 0.25
#: Tokens per KV-cache block: vLLM's default on CUDA (and on CPU without IPEX). vLLM allocates the
#: cache in whole blocks and gives a request whole blocks.
KV_BLOCK_TOKENS = 16
#: --dtype values vLLM runs in 4-byte floats; every other one ("auto" included, which on a GPU
#: resolves a float32 checkpoint to a 16-bit type) is 2 bytes.
FLOAT32_DTYPES = ("float32", "float")


def kv_dtype_bytes(model: Model) -> int:
    """Bytes of one KV-cache element: the KV cache dtype's, or with "auto" the model's dtype."""
    e = model.engine_args
    if e.kv_cache_dtype.startswith("fp8"):
        return 1
    return 4 if e.dtype in FLOAT32_DTYPES else 2


def kv_heads_per_gpu(model: Model) -> Optional[int]:
    """KV heads each GPU of a replica holds (vLLM's ModelConfig.get_num_kv_heads): the heads split
    over the tensor-parallel GPUs, at least one (replicated when there are fewer heads than GPUs)."""
    if model.profile is None:
        return None
    return max(1, model.profile.kv_heads // model.gpus_per_replica)


def kv_bytes_per_token_per_gpu(model: Model) -> Optional[int]:
    """KV-cache bytes one token occupies on each GPU of a replica (all layers, K and V)."""
    p, heads = model.profile, kv_heads_per_gpu(model)
    if p is None or heads is None:
        return None
    return 2 * p.layers * heads * p.head_dim * kv_dtype_bytes(model)


#: Calls one replica of a server without a queue metric carries when its model declares no
#: `calls_per_replica`. A planning assumption, like the duty cycle, and a cautious one: neither
#: speech server publishes a concurrency figure, and a call needs each utterance's first audio (or
#: transcript) fast, which a busy replica delays long before its throughput runs out (Kokoro-82M
#: alone synthesizes 35-100x real time on a mid-range GPU). Replace it with a load test's number.
ASSUMED_CALLS_PER_REPLICA = 10


def scales_on_calls(model: Model) -> bool:
    """Whether the model's server exports no queue metric, so the model scales on its agents' calls."""
    return not SERVERS[model.server_name].exports_queue


def replica_calls(model: Model) -> int:
    """Calls one replica of a model that scales on calls carries: its `calls_per_replica`, else
    ASSUMED_CALLS_PER_REPLICA."""
    return model.calls_per_replica or ASSUMED_CALLS_PER_REPLICA


def kv_bytes_per_token(model: Model) -> Optional[int]:
    """KV-cache bytes one token occupies in a replica (all its GPUs); None without a profile."""
    per_gpu = kv_bytes_per_token_per_gpu(model)
    return None if per_gpu is None else per_gpu * model.gpus_per_replica


def kv_cache_blocks(model: Model, budget_bytes: float, block_tokens: int = KV_BLOCK_TOKENS) -> Optional[int]:
    """Whole KV-cache blocks each GPU of a replica gets from a replica's KV budget (split evenly
    over its GPUs), as vLLM's get_num_blocks counts them. `block_tokens`: the device's block size
    (vLLM's CPU build with IPEX uses 128)."""
    per_gpu = kv_bytes_per_token_per_gpu(model)
    if per_gpu is None:
        return None
    return max(0, int(budget_bytes // model.gpus_per_replica) // (block_tokens * per_gpu))


def kv_cache_tokens(model: Model, budget_bytes: float, block_tokens: int = KV_BLOCK_TOKENS) -> Optional[int]:
    """Tokens the KV cache of a replica holds with that budget: vLLM's "KV cache size"."""
    blocks = kv_cache_blocks(model, budget_bytes, block_tokens)
    return None if blocks is None else blocks * block_tokens


def max_concurrency(model: Model, budget_bytes: float, block_tokens: int = KV_BLOCK_TOKENS) -> Optional[float]:
    """Requests of max_model_len tokens the KV cache holds at once (vLLM's "Maximum
    concurrency"): whole blocks over the blocks one such request takes."""
    blocks, context = kv_cache_blocks(model, budget_bytes, block_tokens), model.engine_args.max_model_len
    if blocks is None or context is None:
        return None
    return blocks / math.ceil(context / block_tokens)


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
    """One agent pool: what it carries at max_workers and where its autoscaler aims.

    `target_sessions_per_worker` is the autoscaler's target (sessions_per_worker ×
    target_utilization); `sessions_at_target` the load at which the pool reaches max_workers with
    its spare intact. `first_scale_up_at` is the active sessions at which the HPA first adds a
    worker to a pool at min_workers, and `spare_at_first_scale_up` the sessions then still free
    for calls arriving during the scale-up (None when min_workers = max_workers: no autoscaling).
    """

    agent: str
    max_sessions: int
    min_workers: int = 0
    max_workers: int = 0
    sessions_per_worker: int = 0
    target_sessions_per_worker: float = 0.0
    sessions_at_target: float = 0.0
    first_scale_up_at: Optional[int] = None
    spare_at_first_scale_up: Optional[int] = None


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

    @property
    def agent_sessions_at_target(self) -> float:
        """Sessions the pools carry at max_workers while each keeps its autoscaling spare."""
        return round(sum(a.sessions_at_target for a in self.agents), 2)

    def as_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "peak_calls": self.peak_calls,
            "duty_cycle": self.duty_cycle,
            "agent_sessions_at_max_workers": self.agent_sessions,
            "agent_sessions_at_target": self.agent_sessions_at_target,
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
    agents = [agent_capacity(a) for a in project.agents_in(region_name)]
    tenants = [_tenant(region, name, project) for name in sorted(region.tenants)]
    return RegionCapacity(region_name, region.peak_concurrent_calls, duty_cycle, models, agents, tenants)


def agent_capacity(agent: Agent) -> AgentCapacity:
    """An agent pool's sessions at max_workers and its autoscaling target (voxplane/hpa.py)."""
    s = agent.scaling
    first = spare = None
    if s.min_workers < s.max_workers:
        first = hpa.scale_up_starts_at(hpa.milli(s.target_sessions), s.min_workers)
        spare = s.min_workers * s.sessions_per_worker - first
    return AgentCapacity(
        agent.scoped_name, s.max_workers * s.sessions_per_worker, s.min_workers, s.max_workers, s.sessions_per_worker,
        float(s.target_sessions), float(s.target_sessions * s.max_workers), first, spare)


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
    if scales_on_calls(model):
        replicas = math.ceil(region.peak_concurrent_calls / replica_calls(model))
        return ModelCapacity(**{**base.as_dict(), "calls_per_replica": float(replica_calls(model)),
                                "replicas_needed": replicas, "gpus_needed": replicas * model.gpus_per_replica})
    per_token = kv_bytes_per_token(model)
    context = model.engine_args.max_model_len
    if model.kind != "llm" or model.profile is None or per_token is None or context is None:
        return base
    p = model.profile
    usable = memory * model.engine_args.gpu_memory_utilization
    weights = p.params_billion * 1e9 * p.weight_bits / 8 / GIB
    budget = usable * (1 - ACTIVATION_RESERVE) - weights
    tokens = kv_cache_tokens(model, max(0.0, budget * GIB)) or 0
    streams = max_concurrency(model, max(0.0, budget * GIB)) or 0.0
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
    on_calls = scales_on_calls(model)
    # A model sized from calls_per_replica always has a size; an llm may lack what sizes its KV cache.
    status = ("" if on_calls else _unsized(model, m)) or _against_peak(m, model, demand)
    if on_calls and model.calls_per_replica is None:
        # Say where the number came from, in the plan's own line.
        status += f"; assumed {ASSUMED_CALLS_PER_REPLICA} calls/replica: set calls_per_replica"
    return ModelCapacity(**{**m.as_dict(), "status": status})


def _against_peak(m: ModelCapacity, model: Model, demand: dict[str, int]) -> str:
    if m.replicas_needed is not None and m.replicas_needed > model.max_replicas:
        return f"short: needs {m.replicas_needed} replicas, max_replicas is {model.max_replicas}"
    if demand[model.node_group] > m.gpus_available:
        return f"short: models on {model.node_group!r} need {demand[model.node_group]} GPUs, it has {m.gpus_available}"
    return "ok"


def _unsized(model: Model, m: ModelCapacity) -> str:
    """Why an llm's KV cache could not be sized, or "" when it was."""
    if model.profile is None:
        return "add `profile` to size the KV cache"
    if model.engine_args.max_model_len is None:
        return "set engine_args.max_model_len to size the KV cache"
    if m.kv_tokens == 0:
        return "weights do not fit: no memory left for the KV cache"
    return ""
