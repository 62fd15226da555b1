"""An agent pool: one agent manifest in one region — its Deployment of livekit-agents workers, the
Secret its config-held secrets land in, a PDB, a PodMonitor and the KEDA ScaledObject that scales
it on active jobs (never on CPU).

Facts (livekit-agents' worker and livekit-server's routing, as the worker tests run them): workers register over a WebSocket to
`LIVEKIT_URL` and need no inbound ports; `LIVEKIT_AGENT_NAME` set ⇒ explicit dispatch only; SIGTERM
drains for up to `drain_timeout` seconds; `lk_agents_active_job_count` is the worker's job gauge,
with no sample before a worker's first job. livekit-agents 1.8's own health `GET /` answers 200
while it reconnects (503 only once its 16 attempts are spent), while draining and while full, so
the probes use the platform's endpoint instead: agents/<name>/voxplane_agent.py serves `/ready`
(registered, not draining) and `/live` (LiveKit lost for less than VOXPLANE_LIVEKIT_LOST_TIMEOUT,
or draining) on VOXPLANE_HEALTH_PORT, and reports load as active sessions / sessions_per_worker
against VOXPLANE_LOAD_THRESHOLD (the env contract: README, "The agent contract").
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..manifest.model import ROLES, Agent, NodePool, Region, SecretRef
from .common import (
    AGENT_HEALTH_PORT,
    AGENT_METRICS_PORT,
    K8sObject,
    RESTRICTED_CONTAINER,
    SecretValue,
    active_jobs_selector,
    agent_source,
    env_secret,
    env_value,
    labels,
    gateway_internal_url,
    has_llm_router,
    metadata,
    model_base_url,
    pdb,
    placement,
    prune,
    resources,
    restricted_pod,
    scratch_volume,
    secret,
    secret_fingerprint,
    selector,
    tenant_api_key,
    tenant_namespace,
)
from .llm_router import session_end_url
from .tenant import LIVEKIT_SECRET

#: Seconds added to `drain_timeout` for the grace period: livekit-agents drains for up to
#: drain_timeout on SIGTERM, then closes job processes (shutdown_process_timeout 10 s) and its
#: HTTP/metrics servers; the margin keeps SIGKILL from landing mid-shutdown.
SHUTDOWN_MARGIN_SECONDS = 30
#: The startup probe allows this long before liveness takes over: workers may download models
#: (VAD, turn detector) at start when the image did not bake them in with `download-files`.
STARTUP_SECONDS = 300
#: Readiness probes start once the startup probe passes, so its period delays every new worker's
#: Ready: at 10 s it was a third of a scale-up (bench/autoscale.py); a GET of a local port every 2 s
#: while a worker starts costs nothing.
STARTUP_PERIOD_SECONDS = 2
#: How often Prometheus scrapes a worker's active jobs: the first stage of every scale-up (at 15 s,
#: ~10 s of an 18.5 s one, bench/autoscale.py) and the age of the deletion costs. A few series per
#: worker: cheap at 5 s.
SCRAPE_INTERVAL_SECONDS = 5
#: Scale-up: add up to this many workers per period — a call burst must not wait on a slow ramp.
SCALE_UP_PODS = 4
SCALE_UP_PERIOD_SECONDS = 30
#: Scale-down: remove one worker per period; each removal drains its calls first.
SCALE_DOWN_PODS = 1
SCALE_DOWN_PERIOD_SECONDS = 120
#: A worker is full (refuses jobs) at load ≥ this, its load being active sessions over
#: sessions_per_worker. The autoscaler aims below it (`scaling.target_utilization`): with a target
#: of sessions_per_worker itself the active jobs could never exceed the target, and no pool would
#: ever scale up (voxplane/hpa.py).
LOAD_THRESHOLD = "1.0"
#: The platform health endpoint's liveness fails after LiveKit has been lost this long (never
#: while draining); the liveness probe then restarts the worker after its own failures.
LIVEKIT_LOST_TIMEOUT_SECONDS = 60
READY_PATH = "/ready"
LIVE_PATH = "/live"
#: Consolidation (Karpenter) must not evict a worker carrying live calls.
DO_NOT_DISRUPT = {"karpenter.sh/do-not-disrupt": "true"}
CONTAINER = "agent"


def secret_name(agent: Agent) -> str:
    """The Secret holding an agent's config-held secrets (stack config, never git)."""
    return f"{agent.name}-secrets"


def active_jobs_query(namespace: str, podmonitor: str) -> str:
    """PromQL summing active jobs over the pool's pods."""
    # `or vector(0)`: a pool whose pods exported no sample yet (the gauge appears with the
    # first job; before any scrape there is no series at all) counts as 0 active jobs, not as
    # "no data" (sum() of nothing is an empty vector). Checked with Prometheus' own engine
    # (tests/desired/test_scaling_query.py, tools/promqleval).
    return f"sum({active_jobs_selector(namespace, podmonitor)}) or vector(0)"


def build_agent_pool(region: Region, agent: Agent, *, image: str) -> list[K8sObject]:
    """Objects of `agent`'s worker pool in `region`. `image` is the manifest's prebuilt image or
    the digest-pinned reference of the image built from `code.build` (the component decides)."""
    ns = tenant_namespace(region, agent.tenant)
    lab = labels(region, name=agent.name, component="agent", tenant=agent.tenant, agent=agent.name)
    ann = agent_source(agent)
    env, secret_data = _env(region, agent)
    objects: list[K8sObject] = []
    if secret_data:
        objects.append(secret(secret_name(agent), ns, lab, dict(sorted(secret_data.items())), ann))
    disruption = pdb(agent.name, ns, lab, max_unavailable=1)
    if ann:
        disruption["metadata"]["annotations"] = dict(ann)
    objects += [
        # The pods read the tenant's LiveKit key (derived from the root secret) and the agent's
        # config-held secrets: a new value of any rolls them, with no secret in the annotation.
        _deployment(region, agent, ns, lab, ann, image, env, secret_fingerprint(
            SecretValue("livekit-secret", tenant_api_key(agent.tenant)),
            *(v for _, v in sorted(secret_data.items())))),
        disruption,
        _pod_monitor(agent, ns, lab, ann),
        _scaled_object(region, agent, ns, lab, ann),
    ]
    return objects


# --- environment ---------------------------------------------------------------------------------


def _env(region: Region, agent: Agent) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Container env and the `<agent>-secrets` payload. Config-held secrets are copied into the
    agent's Secret (as `SecretValue` markers); references to existing Secrets are used in place."""
    secret_data: dict[str, Any] = {}

    def from_ref(var: str, ref: SecretRef) -> dict[str, Any]:
        if ref.config:
            secret_data[var] = SecretValue("config", ref.config)
            return env_secret(var, secret_name(agent), var)
        assert ref.secret and ref.key  # schema: a secretRef is `config` or `secret` + `key`
        return env_secret(var, ref.secret, ref.key)

    env = [
        # The gateway, never livekit-server itself: the tenant key only works there.
        env_value("LIVEKIT_URL", gateway_internal_url(region)),
        env_secret("LIVEKIT_API_KEY", LIVEKIT_SECRET, "LIVEKIT_API_KEY"),
        env_secret("LIVEKIT_API_SECRET", LIVEKIT_SECRET, "LIVEKIT_API_SECRET"),
        # Tenant-scoped and non-empty: the worker only takes explicitly dispatched jobs, so a
        # dispatch for another tenant's agent can never land here.
        env_value("LIVEKIT_AGENT_NAME", agent.scoped_name),
    ]
    roles = agent.inference.roles()
    for role in ROLES:
        if role not in roles:
            continue
        spec, prefix = roles[role], f"VOXPLANE_{role.upper()}"
        if spec.model is not None:
            model = region.models[spec.model]
            env += [
                env_value(f"{prefix}_BASE_URL", model_base_url(region, spec.model)),
                env_value(f"{prefix}_MODEL", model.model_id),
            ]
            if has_llm_router(model):
                # The glue ends the call's session on the router when the call ends (its key
                # goes with every request as a header).
                env.append(env_value(f"{prefix}_SESSION_END_URL", session_end_url(region, model)))
        elif spec.provider is not None:
            p = spec.provider
            env += [env_value(f"{prefix}_PROVIDER", p.name), env_value(f"{prefix}_BASE_URL", p.endpoint),
                    env_value(f"{prefix}_MODEL", p.model), from_ref(f"{prefix}_API_KEY", p.api_key)]
    # livekit-agents reads neither setting from the environment; the platform glue passes them to
    # AgentServer(prometheus_port=..., drain_timeout=...) (agents/*/voxplane_agent.py). The drain
    # bound must stay inside the pod's grace period, so the platform, not the code, decides it.
    env.append(env_value("VOXPLANE_METRICS_PORT", str(AGENT_METRICS_PORT)))
    env.append(env_value("VOXPLANE_DRAIN_TIMEOUT", str(agent.scaling.drain_timeout)))
    # The rest of the platform's contract with voxplane_agent.py: load = sessions over
    # sessions_per_worker, full at the threshold; the health endpoint the probes below use.
    env.append(env_value("VOXPLANE_SESSIONS_PER_WORKER", str(agent.scaling.sessions_per_worker)))
    env.append(env_value("VOXPLANE_LOAD_THRESHOLD", LOAD_THRESHOLD))
    env.append(env_value("VOXPLANE_HEALTH_PORT", str(AGENT_HEALTH_PORT)))
    env.append(env_value("VOXPLANE_LIVEKIT_LOST_TIMEOUT", str(LIVEKIT_LOST_TIMEOUT_SECONDS)))
    # One prewarmed job process per session the worker may take: an idle livekit-agents worker
    # accepts only as many simultaneous job requests as it has prewarmed processes (bench/dispatch.py
    # --bursts), so fewer drops calls in a burst the autoscaler sized the pool for.
    env.append(env_value("VOXPLANE_IDLE_PROCESSES", str(agent.scaling.sessions_per_worker)))
    env += [env_value(k, v) for k, v in sorted(agent.env.items())]
    env += [from_ref(k, ref) for k, ref in sorted(agent.secrets.items())]
    return env, secret_data


# --- workload ------------------------------------------------------------------------------------


def _node_pool(region: Region, agent: Agent) -> NodePool | None:
    """A dedicated-nodes tenant runs on its own pool; everyone else shares the region's agent pool."""
    tenant = region.tenants[agent.tenant]
    if tenant.isolation == "dedicated-nodes" and tenant.node_pool is not None:
        return tenant.node_pool
    return region.agents.node_pool


def _health_get(path: str) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": AGENT_HEALTH_PORT}}


def _deployment(
    region: Region,
    agent: Agent,
    ns: str,
    lab: dict[str, str],
    ann: dict[str, str],
    image: str,
    env: list[dict[str, Any]],
    fingerprint: dict[str, Any],
) -> K8sObject:
    container = prune(
        {
            "name": CONTAINER,
            "image": image,
            "command": list(agent.command),
            "env": env,
            "ports": [
                {"name": "health", "containerPort": AGENT_HEALTH_PORT, "protocol": "TCP"},
                {"name": "metrics", "containerPort": AGENT_METRICS_PORT, "protocol": "TCP"},
            ],
            # Ready = registered with LiveKit and not draining: a rollout (maxUnavailable 0)
            # waits for the new worker to register before the old one drains. Live fails only
            # after LiveKit has been lost for LIVEKIT_LOST_TIMEOUT_SECONDS (a brief SFU restart
            # is not a reason to restart) and never while draining, so calls finish.
            "startupProbe": {
                **_health_get(LIVE_PATH),
                "periodSeconds": STARTUP_PERIOD_SECONDS,
                "failureThreshold": STARTUP_SECONDS // STARTUP_PERIOD_SECONDS,
            },
            "readinessProbe": {**_health_get(READY_PATH), "periodSeconds": 5, "failureThreshold": 2},
            "livenessProbe": {**_health_get(LIVE_PATH), "periodSeconds": 15, "timeoutSeconds": 5, "failureThreshold": 2},
            "resources": resources(agent.resources) or None,
            "securityContext": {**RESTRICTED_CONTAINER, "readOnlyRootFilesystem": True},
            # livekit-agents writes to /tmp (job process IPC, temp files); the rest stays read-only.
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        }
    )
    pod_spec = {
        # The worker never calls the Kubernetes API.
        "automountServiceAccountToken": False,
        # Grace ≥ drain_timeout: SIGTERM starts the drain, and in-flight calls get all of it.
        "terminationGracePeriodSeconds": agent.scaling.drain_timeout + SHUTDOWN_MARGIN_SECONDS,
        "securityContext": restricted_pod(),
        **placement(_node_pool(region, agent)),
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector(lab)},
                # Spread each rollout's ReplicaSet on its own, not against pods that are draining.
                "matchLabelKeys": ["pod-template-hash"],
            }
        ],
        "containers": [container],
        # Bounded: a worker filling /tmp is evicted alone (its disk request = limit), never its
        # neighbours on a shared agent node.
        "volumes": [scratch_volume("tmp", agent.resources.ephemeral_storage)],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(agent.name, ns, lab, ann),
        "spec": {
            # The initial size only: KEDA owns replicas afterwards (the component ignores changes).
            "replicas": agent.scaling.min_workers,
            "selector": {"matchLabels": selector(lab)},
            # New workers come up before old ones start draining: a rollout never lowers capacity.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            "template": {
                "metadata": {"labels": dict(lab), "annotations": {**ann, **DO_NOT_DISRUPT, **fingerprint}},
                "spec": pod_spec,
            },
        },
    }


# --- monitoring and scaling ----------------------------------------------------------------------


def _pod_monitor(agent: Agent, ns: str, lab: dict[str, str], ann: dict[str, str]) -> K8sObject:
    """Prometheus scrapes the workers' metrics port (the tenant NetworkPolicy admits the
    monitoring namespace on it), so `lk_agents_active_job_count` exists for the autoscaler."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": metadata(agent.name, ns, lab, ann),
        "spec": {
            "selector": {"matchLabels": selector(lab)},
            "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": f"{SCRAPE_INTERVAL_SECONDS}s"}],
        },
    }


def decimal_text(value: Decimal) -> str:
    """`7`, `0.7`, `2.25`: a Decimal as plain text, no exponent, no trailing zeros."""
    return format(value.normalize(), "f")


def _scaled_object(region: Region, agent: Agent, ns: str, lab: dict[str, str], ann: dict[str, str]) -> K8sObject:
    """KEDA scales on active jobs per worker (AverageValue: desired = ceil(sum / target), outside
    the HPA's 10% tolerance), the target being `target_utilization` percent of what a worker
    carries, so a pool adds workers while it still has sessions free (voxplane/hpa.py).
    Never CPU: a worker's CPU says little about free call slots (livekit/agents#2130, #7102)."""
    s = agent.scaling
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata(agent.name, ns, lab, ann),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": agent.name},
            "minReplicaCount": s.min_workers,
            "maxReplicaCount": s.max_workers,
            "pollingInterval": 15,
            # Only used for the last step to zero (min_workers 0): same patience as scale-down.
            "cooldownPeriod": s.scale_down_window,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleUp": {
                            "stabilizationWindowSeconds": 0,
                            "selectPolicy": "Max",
                            "policies": [
                                {"type": "Pods", "value": SCALE_UP_PODS, "periodSeconds": SCALE_UP_PERIOD_SECONDS}
                            ],
                        },
                        "scaleDown": {
                            "stabilizationWindowSeconds": s.scale_down_window,
                            "selectPolicy": "Min",
                            "policies": [
                                {"type": "Pods", "value": SCALE_DOWN_PODS, "periodSeconds": SCALE_DOWN_PERIOD_SECONDS}
                            ],
                        },
                    }
                }
            },
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": region.kubernetes.prometheus_url,
                        "query": active_jobs_query(ns, agent.name),
                        "threshold": decimal_text(s.target_sessions),
                        # Active from the first job: with a target (not a constant added to the
                        # query) 0 jobs ask for 0 workers, so nothing keeps a pool from its minimum.
                        "activationThreshold": "0",
                    },
                }
            ],
        },
    }
