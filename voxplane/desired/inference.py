"""One inference model in a region: a GPU StatefulSet (vLLM for `llm`, the declared
OpenAI-compatible speech server for `tts`/`stt`), its Service, PDB, PodMonitor, KEDA ScaledObject
and, where the Hugging Face token comes from stack config, a Secret.

Facts, each held against the pinned release by tests/upstream (voxplane/manifest/servers.py lists the
releases):
- vLLM images run `vllm serve`, which takes the model as its positional argument. Boolean engine
  flags come in pairs (`--enable-prefix-caching` / `--no-enable-prefix-caching`).
- vLLM serves `/health` and Prometheus `/metrics` on its API port; `/health` answers only once
  the engine has loaded the model and is up. The queue gauge `vllm:num_requests_waiting` is the
  autoscaling signal (production-stack's default, threshold 5).
- vLLM's model loading imports `torch._inductor`, whose cache path asks `getpass.getuser()`
  for the user's name: with no `USER`/`LOGNAME` that is a passwd lookup, which fails for a uid
  without an account (the default `run_as_user`; vLLM's image creates none) and kills the
  server at start. `USER` is set.
- KEDA's prometheus trigger: `serverAddress`, `query` (one sample), `threshold` per replica
  (AverageValue); `metricName` is gone since KEDA 2.12.
- prometheus-operator labels PodMonitor targets `namespace=<pod namespace>` and
  `job=<podmonitor namespace>/<podmonitor name>` when the PodMonitor sets no jobLabel.
- Kokoro-FastAPI (v0.2.4) loads and warms its model in the app's lifespan, which uvicorn runs
  before it opens its socket: `/health` on 8880 answers once it can serve. Its image's
  entrypoint starts the server from CMD, so container `args` replace it.
- speaches (0.8.3) must be told to install and load its model: see speaches.py.

Server convention for `tts`/`stt`: the container keeps the image's command; `args` from the
manifest are passed only when given (they replace the image's CMD). `HF_HOME` points at the cache
volume, so servers that download from Hugging Face (vLLM, speaches) cache there. The model id
reaches a speech server only where it reads one (speaches' install hook); agents send it as the
request's `model`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from ..manifest.model import Agent, Model, Region
from . import speaches
from .common import (
    GPU_RESOURCE,
    K8sObject,
    LABEL_AGENT,
    SecretValue,
    env_value,
    inference_namespace,
    labels,
    metadata,
    pdb,
    region_source,
    resources,
    scratch_volume,
    secret,
    selector,
    service,
    tenant_namespace,
)
from .gpu import gpu_affinity, gpu_tolerations
from .network import dns_egress, internet_peer, monitoring_peer, namespace_peer, network_policy, ports, rule

#: Value of `app.kubernetes.io/component`; tenant NetworkPolicies admit agents to these pods.
COMPONENT = "inference"
#: The workload kind. A StatefulSet, not a Deployment: each replica gets its own ReadWriteOnce
#: cache volume from `volumeClaimTemplates`. One RWO PVC shared by a Deployment's replicas fails as
#: soon as two replicas land on different nodes (Multi-Attach error); an emptyDir would download
#: the weights again on every restart.
WORKLOAD_KIND = "StatefulSet"
CACHE_VOLUME = "cache"
CACHE_MOUNT = "/models"
TMP_VOLUME = "tmp"
TMP_MOUNT = "/tmp"
HTTP_PORT_NAME = "http"
HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"
HF_TOKEN_KEY = "HF_TOKEN"
#: The Hugging Face token as a file, never a variable (an environment is readable by anything that
#: can inspect the process and lands in crash dumps): huggingface_hub, which vLLM and the speech
#: servers download through, reads `HF_TOKEN_PATH` when `HF_TOKEN` is unset, on each download.
HF_TOKEN_VOLUME = "hf-token"
HF_TOKEN_DIR = "/var/run/secrets/huggingface"
HF_TOKEN_PATH = f"{HF_TOKEN_DIR}/token"
#: In-flight requests (a streamed completion, a TTS utterance) finish within this; vLLM shuts
#: down gracefully on SIGTERM.
TERMINATION_GRACE_SECONDS = 120
STARTUP_PERIOD_SECONDS = 10
#: Model load takes minutes, so scale-in waits long enough that a short lull does not throw a
#: warm replica away.
SCALE_DOWN_WINDOW_SECONDS = 600
#: The StatefulSet's governing (headless) Service is `<model>-headless`.
HEADLESS_SUFFIX = "-headless"
#: vLLM's USER: any name does (it only names torch's cache folder under /tmp).
VLLM_USER = "vllm"
#: Group of every cache volume (fsGroup makes it writable whatever uid the server runs as): no
#: group of a host, as the default `run_as_user` is no host account.
INFERENCE_FS_GROUP = 10001


def headless_service_name(model: Model) -> str:
    """The StatefulSet's governing Service (per-replica DNS names); agents use `model.name`'s."""
    return f"{model.name}{HEADLESS_SUFFIX}"


def hf_token_secret_name(model: Model) -> str:
    return f"{model.name}-hf-token"


def model_labels(region: Region, model: Model) -> dict[str, str]:
    return labels(region, name=model.name, component=COMPONENT)


def pod_monitor_job(region: Region, model: Model) -> str:
    """The `job` label Prometheus gives the model's series (PodMonitor without jobLabel)."""
    return f"{inference_namespace(region)}/{model.name}"


def queue_query(region: Region, model: Model) -> str:
    """PromQL of the model's waiting requests, summed over its replicas."""
    ns = inference_namespace(region)
    return f'sum({model.scaling_metric}{{namespace="{ns}",job="{pod_monitor_job(region, model)}"}})'


def vllm_args(model: Model) -> list[str]:
    """`vllm serve` arguments: model positional, then the checked engine flags, then extra_args."""
    e = model.engine_args
    args = [
        model.model_id,
        # No --host: vLLM binds every address by default, which also works on IPv6-only clusters.
        "--port", str(model.port),
        # Agents send the model id as `model`; serve it under exactly that name.
        "--served-model-name", model.model_id,
        # One replica shards over all of its GPUs (the loader checks tensor_parallel_size agrees).
        "--tensor-parallel-size", str(model.gpus_per_replica),
        "--dtype", e.dtype,
        "--gpu-memory-utilization", _number(e.gpu_memory_utilization),
        "--kv-cache-dtype", e.kv_cache_dtype,
        "--enable-prefix-caching" if e.enable_prefix_caching else "--no-enable-prefix-caching",
    ]
    if e.max_model_len is not None:
        args += ["--max-model-len", str(e.max_model_len)]
    if e.max_num_seqs is not None:
        args += ["--max-num-seqs", str(e.max_num_seqs)]
    if e.quantization is not None:
        args += ["--quantization", e.quantization]
    return args + list(e.extra_args)


def model_clients(model: Model, agents: Sequence[Agent]) -> list[Agent]:
    """The agents (of the region) that call `model`."""
    return [a for a in agents if any(spec.model == model.name for spec in a.inference.roles().values())]


def build_model(region: Region, model: Model, agents: Sequence[Agent] = ()) -> list[K8sObject]:
    """Objects of one model in `inference_namespace(region)`, all named after the model. `agents`
    are the region's agents: those that call the model are the only ones its NetworkPolicy admits."""
    ns = inference_namespace(region)
    lab = model_labels(region, model)
    ann = region_source(region)
    objects: list[K8sObject] = []
    if model.hf_token is not None and model.hf_token.config:
        objects.append(_hf_token_secret(model, ns, lab, ann))
    objects += [
        _service(model, ns, lab, ann),
        _headless_service(model, ns, lab, ann),
        _stateful_set(region, model, ns, lab, ann),
        _pdb(model, ns, lab, ann),
        _pod_monitor(model, ns, lab, ann),
        _scaled_object(region, model, ns, lab, ann),
        _network_policy(region, model, ns, lab, ann, agents),
    ]
    return objects


def _network_policy(
    region: Region, model: Model, ns: str, lab: dict[str, str], ann: dict[str, str], agents: Sequence[Agent]
) -> K8sObject:
    """In: the agents that use this model (their pods, in their tenants' namespaces) and
    Prometheus, both on the API port (the servers serve /metrics there too); no one else, not the
    SFU or the SIP bridge either (neither calls a model). Out: DNS and HTTPS to public addresses,
    for the weights the servers download from Hugging Face into the cache volume."""
    clients = [
        namespace_peer(tenant_namespace(region, a.tenant), {LABEL_AGENT: a.name})
        for a in sorted(model_clients(model, agents), key=lambda a: (a.tenant, a.name))
    ]
    ingress = [rule([monitoring_peer(region)], ports(("TCP", model.port)), direction="ingress")]
    if clients:
        ingress.insert(0, rule(clients, ports(("TCP", model.port)), direction="ingress"))
    return network_policy(
        model.name, ns, lab, selector(lab),
        ingress=ingress,
        egress=[dns_egress(), rule([internet_peer()], ports(("TCP", 443)), direction="egress")],
        annotations=ann,
    )


# --- pieces ------------------------------------------------------------------------------------


def _hf_token_secret(model: Model, ns: str, lab: dict[str, str], ann: dict[str, str]) -> K8sObject:
    assert model.hf_token is not None and model.hf_token.config is not None
    return secret(hf_token_secret_name(model), ns, lab, {HF_TOKEN_KEY: SecretValue("config", model.hf_token.config)}, ann)


def _service(model: Model, ns: str, lab: dict[str, str], ann: dict[str, str]) -> K8sObject:
    """What `model_base_url()` points agents at."""
    return service(model.name, ns, lab, [(HTTP_PORT_NAME, model.port)], ann)


def _headless_service(model: Model, ns: str, lab: dict[str, str], ann: dict[str, str]) -> K8sObject:
    """The StatefulSet's `serviceName`: headless, so each replica has its own DNS name."""
    return service(headless_service_name(model), ns, lab, [(HTTP_PORT_NAME, model.port)], ann, headless=True)


def _env(model: Model) -> list[dict[str, Any]]:
    env = [env_value("HF_HOME", CACHE_MOUNT)]
    if model.hf_token is not None:
        env.append(env_value("HF_TOKEN_PATH", HF_TOKEN_PATH))
    env += [
        # The root filesystem is read-only and the uid may have no passwd entry (or a home it
        # cannot write): whatever a server writes under ~ goes to the /tmp scratch volume.
        env_value("HOME", TMP_MOUNT),
        # Caches that follow XDG (torch.compile / Triton / FlashInfer for vLLM; uv, torch hub,
        # pip for the speech servers) persist next to the weights, so a restart skips the work.
        env_value("XDG_CACHE_HOME", f"{CACHE_MOUNT}/.cache"),
    ]
    server = model.server_name
    if server == "vllm":
        # No usage reports leave a private inference region.
        env.append(env_value("VLLM_NO_USAGE_STATS", "1"))
        # getpass.getuser() (torch._inductor's cache path) reads USER before it looks the uid up
        # in /etc/passwd, where run_as_user has no entry: without it vLLM dies loading the model.
        env.append(env_value("USER", VLLM_USER))
    elif server == "speaches":
        env += [env_value(speaches.PORT_ENV, str(model.port)), env_value(*speaches.TTL_ENV)]
    return env


def _hf_token_volume(model: Model) -> dict[str, Any]:
    """The token Secret (voxplane's own from stack config, or the one the manifest names) as the
    file HF_TOKEN_PATH; 0440: the pod's fsGroup reads it, nobody else."""
    assert model.hf_token is not None
    if model.hf_token.config:
        name, key = hf_token_secret_name(model), HF_TOKEN_KEY
    else:
        assert model.hf_token.secret is not None and model.hf_token.key is not None
        name, key = model.hf_token.secret, model.hf_token.key
    return {"name": HF_TOKEN_VOLUME,
            "secret": {"secretName": name, "items": [{"key": key, "path": "token"}], "defaultMode": 0o440}}


def _container(model: Model) -> dict[str, Any]:
    res = resources(model.resources)
    gpus = str(model.gpus_per_replica)
    # Extended resources: request and limit must be equal; the device plugin hands out whole GPUs.
    res.setdefault("requests", {})[GPU_RESOURCE] = gpus
    res.setdefault("limits", {})[GPU_RESOURCE] = gpus
    mounts: list[dict[str, Any]] = [
        {"name": CACHE_VOLUME, "mountPath": CACHE_MOUNT},
        {"name": TMP_VOLUME, "mountPath": TMP_MOUNT},
    ]
    mounts += [{"name": name, "mountPath": path} for name, path in _writable_volumes(model)]
    if model.hf_token is not None:
        mounts.append({"name": HF_TOKEN_VOLUME, "mountPath": HF_TOKEN_DIR, "readOnly": True})
    # `restricted`, whatever the image's own user: a fixed non-root uid, no privilege, and a
    # read-only root filesystem (writes go to /tmp, the cache volume and `writable_paths`).
    security: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container: dict[str, Any] = {"name": "server", "image": model.image}
    if model.server_name == "vllm":
        # Explicit, so the positional model argument holds whatever the image's entrypoint is.
        container["command"] = ["vllm", "serve"]
        container["args"] = vllm_args(model)
        # Tensor-parallel workers exchange tensors through shared memory; the container
        # runtime's default /dev/shm is 64 MiB. tmpfs pages count against the memory limit.
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    elif model.args:
        container["args"] = list(model.args)
    probe: dict[str, Any] = {"httpGet": {"path": HEALTH_PATH, "port": HTTP_PORT_NAME}}
    # Ready means "can serve a request": vLLM's and Kokoro-FastAPI's /health answer only once the
    # model is loaded (and, for Kokoro, warmed up); speaches' always does, so its readiness asks
    # whether the model is loaded, which the install hook makes true before anything else can.
    ready = speaches.loaded_probe(model.model_id, model.port) if model.server_name == "speaches" else probe
    if model.server_name == "speaches":
        container["lifecycle"] = {"postStart": speaches.install_hook(model.model_id, model.port, model.startup_seconds)}
    container.update(
        {
            "ports": [{"name": HTTP_PORT_NAME, "containerPort": model.port, "protocol": "TCP"}],
            "env": _env(model),
            "resources": res,
            "volumeMounts": mounts,
            # Sized for download + load: failureThreshold * periodSeconds >= startup_seconds.
            "startupProbe": {
                **probe,
                "periodSeconds": STARTUP_PERIOD_SECONDS,
                "timeoutSeconds": 5,
                "failureThreshold": math.ceil(model.startup_seconds / STARTUP_PERIOD_SECONDS),
            },
            "readinessProbe": {**ready, "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": 3},
            # Modest: a replica busy with long prefills may answer slowly; restarting it costs a
            # full model load.
            "livenessProbe": {**probe, "periodSeconds": 15, "timeoutSeconds": 10, "failureThreshold": 4},
            "securityContext": security,
        }
    )
    return container


def _writable_volumes(model: Model) -> list[tuple[str, str]]:
    """(volume name, path) of each `writable_paths` entry."""
    return [(f"writable-{i}", path) for i, path in enumerate(model.writable_paths)]


def _pod_security(model: Model) -> dict[str, Any]:
    """Every server runs as the model's fixed non-root uid (`run_as_user`): vLLM's image defaults
    to root yet needs no privilege once HOME and its caches point at writable paths; the speech
    servers' images name their users (Kokoro-FastAPI's `appuser`, which `runAsNonRoot` alone
    cannot verify), so the uid is stated. fsGroup makes the cache volume group-writable for
    whichever uid it is."""
    return {
        "runAsNonRoot": True,
        "runAsUser": model.run_as_user,
        "runAsGroup": model.run_as_user,
        "fsGroup": INFERENCE_FS_GROUP,
        # Skip the recursive chown of tens of GiB of weights on every start.
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _stateful_set(region: Region, model: Model, ns: str, lab: dict[str, str], ann: dict[str, str]) -> K8sObject:
    group = region.gpu_node_groups[model.node_group]
    scratch = model.resources.ephemeral_storage
    volumes = [scratch_volume(TMP_VOLUME, scratch)]
    volumes += [scratch_volume(name, scratch) for name, _ in _writable_volumes(model)]
    if model.server_name == "vllm":
        volumes.append(scratch_volume("dshm", model.shm_size, memory=True))
    if model.hf_token is not None:
        volumes.append(_hf_token_volume(model))
    pod_spec: dict[str, Any] = {
        # Inference servers never call the Kubernetes API.
        "automountServiceAccountToken": False,
        # Service env vars collide with server settings (a Service named `vllm` yields VLLM_PORT,
        # which vLLM reads as its own setting).
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": _pod_security(model),
        "affinity": gpu_affinity(group),
        "tolerations": gpu_tolerations(group),
        "containers": [_container(model)],
        "volumes": volumes,
    }
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": model.cache_size}},
    }
    if region.kubernetes.storage_class:
        claim_spec["storageClassName"] = region.kubernetes.storage_class
    # Pulumi waits for the rollout; replicas start in parallel but roll one at a time, and each
    # may take the whole startup budget.
    timeout = model.startup_seconds * max(1, model.min_replicas) + 300
    return {
        "apiVersion": "apps/v1",
        "kind": WORKLOAD_KIND,
        "metadata": metadata(model.name, ns, lab, {**ann, "pulumi.com/timeoutSeconds": str(timeout)}),
        "spec": {
            # Starting value only: KEDA owns replicas afterwards (the component ignores drift here).
            "replicas": model.min_replicas,
            "serviceName": headless_service_name(model),
            # Scale-out starts every new replica at once; ordered start would serialize model loads.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector(lab)},
            "updateStrategy": {"type": "RollingUpdate"},
            # Scaled-in replicas drop their volume: a later scale-out provisions afresh where the
            # scheduler puts it, instead of being pinned to the zone (or, with local storage, the
            # node) of an old volume. Replicas that stay keep their cache across restarts.
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Delete"},
            "template": {"metadata": {"labels": dict(lab)}, "spec": pod_spec},
            "volumeClaimTemplates": [
                {"metadata": {"name": CACHE_VOLUME, "labels": dict(lab)}, "spec": claim_spec}
            ],
        },
    }


def _pdb(model: Model, ns: str, lab: dict[str, str], ann: dict[str, str]) -> K8sObject:
    """Node drains and Karpenter expiry take one replica at a time."""
    obj = pdb(model.name, ns, lab, max_unavailable=1)
    if ann:
        obj["metadata"]["annotations"] = dict(ann)
    return obj


def _pod_monitor(model: Model, ns: str, lab: dict[str, str], ann: dict[str, str]) -> K8sObject:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": metadata(model.name, ns, lab, ann),
        "spec": {
            "selector": {"matchLabels": selector(lab)},
            "podMetricsEndpoints": [{"port": HTTP_PORT_NAME, "path": METRICS_PATH, "interval": "15s"}],
        },
    }


def _scaled_object(region: Region, model: Model, ns: str, lab: dict[str, str], ann: dict[str, str]) -> K8sObject:
    triggers: list[dict[str, Any]] = [
        {
            "type": "prometheus",
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": region.kubernetes.prometheus_url,
                "query": queue_query(region, model),
                "threshold": str(model.queue_target),
                "activationThreshold": "0",
            },
        }
    ]
    if model.min_replicas == 0:
        # Scale to zero trades a cold start (download + load: up to startup_seconds) on the first
        # call for idle GPUs. The queue metric comes from the model's own pods, so with none
        # running it never rises: wake the model whenever the region has any room (call), and
        # never ask for more than one replica from this trigger below the region's peak.
        triggers.append(
            {
                "type": "prometheus",
                "metricType": "AverageValue",
                "metadata": {
                    "serverAddress": region.kubernetes.prometheus_url,
                    "query": "sum(livekit_room_total)",
                    "threshold": str(max(1, region.peak_concurrent_calls)),
                    "activationThreshold": "0",
                },
            }
        )
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata(model.name, ns, lab, ann),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": WORKLOAD_KIND, "name": model.name},
            "minReplicaCount": model.min_replicas,
            "maxReplicaCount": model.max_replicas,
            "pollingInterval": 15,
            # Used only for the last step to zero.
            "cooldownPeriod": SCALE_DOWN_WINDOW_SECONDS,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleUp": {
                            "stabilizationWindowSeconds": 0,
                            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}],
                        },
                        "scaleDown": {
                            "stabilizationWindowSeconds": SCALE_DOWN_WINDOW_SECONDS,
                            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}],
                        },
                    }
                }
            },
            "triggers": triggers,
        },
    }


def _number(value: float) -> str:
    """0.9 -> "0.9", 1.0 -> "1"."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
