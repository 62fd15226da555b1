"""Inference models: the builder's objects for every model in every example region, and the
InferencePool component under Pulumi mocks (GPU request, toleration, ignore_changes, token secret)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pulumi
import pytest

from voxplane.desired.common import (
    GPU_RESOURCE,
    SecretValue,
    inference_namespace,
    model_base_url,
    walk_secret_values,
)
from voxplane.desired.gpu import gpu_affinity, gpu_tolerations
from voxplane.desired.inference import (
    CACHE_MOUNT,
    build_model,
    pod_monitor_job,
    queue_query,
    vllm_args,
)
from voxplane.components.inference import InferencePool, InferencePoolArgs
from voxplane.components.secrets import SecretResolver
from voxplane.manifest.model import Model, Region, SecretRef

from ._helpers import LIVEKIT_ROOT_SECRET, by_kind, by_name, desired, project, secret_wrapping, validate_strict

CRD_KINDS = {"PodMonitor", "ScaledObject"}

PAIRS = [(r, m) for r in sorted(project().regions) for m in sorted(project().regions[r].models)]
LLMS = [(r, m) for r, m in PAIRS if project().regions[r].models[m].kind == "llm"]
SPEECH = [(r, m) for r, m in PAIRS if (r, m) not in LLMS]


def _model(region_name: str, model_name: str) -> tuple[Region, Model]:
    region = project().regions[region_name]
    return region, region.models[model_name]


def _by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Objects by kind; the StatefulSet's headless governing Service as "HeadlessService"."""
    headless = [o for o in objects if o["kind"] == "Service" and o["spec"].get("clusterIP") == "None"]
    keyed = by_kind([o for o in objects if not any(o is h for h in headless)])
    (keyed["HeadlessService"],) = headless
    return keyed


def _build(region_name: str, model_name: str) -> tuple[Region, Model, dict[str, dict[str, Any]]]:
    """The model's objects by kind; the StatefulSet's headless governing Service as "HeadlessService"."""
    region, model = _model(region_name, model_name)
    return region, model, _by_kind(build_model(region, model, project().agents_in(region_name)))


def _pod(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return objs["StatefulSet"]["spec"]["template"]["spec"]


def _container(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    containers = _pod(objs)["containers"]
    assert len(containers) == 1
    return containers[0]


def _env(objs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return by_name(_container(objs)["env"])


def _flag(args: list[str], flag: str) -> str:
    assert args.count(flag) == 1, f"{flag} in {args}"
    return args[args.index(flag) + 1]


def test_examples_cover_every_model_kind():
    """The example regions declare llm, tts and stt models (so every branch below is exercised)."""
    kinds = {project().regions[r].models[m].kind for r, m in PAIRS}
    assert kinds == {"llm", "tts", "stt"}


@pytest.mark.parametrize("region_name,model_name", PAIRS)
def test_objects_live_in_inference_namespace_with_component_label(region_name, model_name):
    """Every object is in <prefix>-inference, named after the model, labelled component=inference and owned by the region."""
    region, model, objs = _build(region_name, model_name)
    expected_kinds = {"Service", "HeadlessService", "StatefulSet", "PodDisruptionBudget", "PodMonitor", "ScaledObject",
                      "NetworkPolicy"}
    if model.hf_token is not None and model.hf_token.config:
        expected_kinds.add("Secret")
    assert set(objs) == expected_kinds
    for obj in objs.values():
        meta = obj["metadata"]
        assert meta["namespace"] == inference_namespace(region) == "vox-inference"
        assert meta["name"] == (f"{model_name}-hf-token" if obj["kind"] == "Secret"
                                else f"{model_name}-headless" if obj["spec"].get("clusterIP") == "None" else model_name)
        assert meta["labels"]["app.kubernetes.io/component"] == "inference"
        assert meta["labels"]["app.kubernetes.io/part-of"] == region_name
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "voxplane"
        assert meta["annotations"]["voxplane.io/source"] == f"regions/{region_name}.yaml"
    # Tenant NetworkPolicies admit agents to pods labelled component=inference.
    assert objs["StatefulSet"]["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "inference"


@pytest.mark.parametrize("region_name,model_name", PAIRS)
def test_builtin_kinds_pass_strict_schema_validation(region_name, model_name):
    """Every built-in object validates against the Kubernetes 1.34 schema (strict: no unknown fields)."""
    _, _, objs = _build(region_name, model_name)
    checked = 0
    for obj in objs.values():
        if obj["kind"] in CRD_KINDS:
            continue
        validate_strict(obj)
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("region_name,model_name", PAIRS)
def test_service_is_what_agents_are_pointed_at(region_name, model_name):
    """The ClusterIP Service <model> exposes port `http` = model.port and is the host of model_base_url()."""
    region, model, objs = _build(region_name, model_name)
    svc = objs["Service"]
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"name": "http", "protocol": "TCP", "port": model.port, "targetPort": "http"}]
    pod_labels = objs["StatefulSet"]["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert model_base_url(region, model_name) == (
        f"http://{model_name}.vox-inference.svc.{region.kubernetes.cluster_domain}:{model.port}/v1"
    )
    assert _container(objs)["ports"] == [{"name": "http", "containerPort": model.port, "protocol": "TCP"}]


@pytest.mark.parametrize("region_name,model_name", PAIRS)
def test_workload_requests_gpus_and_lands_on_its_group(region_name, model_name):
    """nvidia.com/gpu request = limit = gpus_per_replica; tolerations and node affinity of the model's group."""
    region, model, objs = _build(region_name, model_name)
    group = region.gpu_node_groups[model.node_group]
    res = _container(objs)["resources"]
    assert res["requests"][GPU_RESOURCE] == res["limits"][GPU_RESOURCE] == str(model.gpus_per_replica)
    assert res["requests"]["cpu"] == model.resources.cpu
    assert res["requests"]["memory"] == res["limits"]["memory"] == model.resources.memory
    pod = _pod(objs)
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["tolerations"] == gpu_tolerations(group)
    assert pod["affinity"] == gpu_affinity(group)
    expressions = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]["matchExpressions"]
    assert {"key": "nvidia.com/gpu.product", "operator": "In", "values": [group.gpu_product]} in expressions
    assert {"key": "voxplane.io/gpu-group", "operator": "In", "values": [model.node_group]} in expressions


@pytest.mark.parametrize("region_name,model_name", PAIRS)
def test_probes_are_sized_for_model_load(region_name, model_name):
    """startupProbe on /health covers startup_seconds (failureThreshold*periodSeconds); liveness on
    /health; readiness on /health where it means "model loaded" (vLLM, Kokoro-FastAPI), else (speaches)
    on the loaded-model list."""
    _, model, objs = _build(region_name, model_name)
    c = _container(objs)
    startup = c["startupProbe"]
    budget = startup["failureThreshold"] * startup["periodSeconds"]
    assert model.startup_seconds <= budget < model.startup_seconds + startup["periodSeconds"]
    for probe in ("startupProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}
    if model.server_name == "speaches":
        assert "httpGet" not in c["readinessProbe"] and "/api/ps" in c["readinessProbe"]["exec"]["command"][2]
    else:
        assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["livenessProbe"]["failureThreshold"] * c["livenessProbe"]["periodSeconds"] >= 60


def test_local_chat_startup_budget_is_its_manifest_value():
    """local chat declares startup_seconds 900: 90 checks every 10 s."""
    _, _, objs = _build("local", "chat")
    assert _container(objs)["startupProbe"]["failureThreshold"] == 90
    assert _container(objs)["startupProbe"]["periodSeconds"] == 10


@pytest.mark.parametrize("region_name,model_name", PAIRS)
def test_workload_lifecycle(region_name, model_name):
    """replicas start at min_replicas; 120 s grace for in-flight requests; parallel pod start; no API token, no service links."""
    _, model, objs = _build(region_name, model_name)
    sts = objs["StatefulSet"]
    assert sts["spec"]["replicas"] == model.min_replicas
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["serviceName"] == f"{model_name}-headless"
    assert objs["HeadlessService"]["spec"]["clusterIP"] == "None"
    assert objs["HeadlessService"]["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]
    pod = _pod(objs)
    assert pod["terminationGracePeriodSeconds"] == 120
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    security = _container(objs)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in security
    assert "hostNetwork" not in pod and "hostPath" not in json.dumps(pod)


@pytest.mark.parametrize("region_name,model_name", PAIRS)
def test_every_replica_has_its_own_cache_volume(region_name, model_name):
    """Model cache: one RWO claim per replica (volumeClaimTemplates) of cache_size, region storage class, at /models = HF_HOME."""
    region, model, objs = _build(region_name, model_name)
    spec = objs["StatefulSet"]["spec"]
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "cache"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"] == {"requests": {"storage": model.cache_size}}
    assert claim["spec"].get("storageClassName") == region.kubernetes.storage_class
    assert {"name": "cache", "mountPath": CACHE_MOUNT} in _container(objs)["volumeMounts"]
    assert _env(objs)["HF_HOME"] == {"name": "HF_HOME", "value": "/models"}
    # Scaled-in replicas drop their claim, so nothing pins a future replica to an old volume.
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Delete", "whenScaled": "Delete"}
    # fsGroup makes the volume writable for whichever user the image runs as.
    assert _pod(objs)["securityContext"]["fsGroup"] == 10001


def test_storage_classes_follow_the_region():
    """us-east caches on gp3, eu-west on local-nvme, local on the cluster default (no storageClassName)."""
    for region_name, expected in (("us-east", "gp3"), ("eu-west", "local-nvme"), ("local", None)):
        _, _, objs = _build(region_name, "chat")
        assert objs["StatefulSet"]["spec"]["volumeClaimTemplates"][0]["spec"].get("storageClassName") == expected


@pytest.mark.parametrize("region_name,model_name", LLMS)
def test_llm_runs_vllm_serve_with_engine_args(region_name, model_name):
    """vLLM: `vllm serve <model_id>` (positional), --port, --served-model-name, TP = gpus_per_replica, engine args as flags."""
    _, model, objs = _build(region_name, model_name)
    c = _container(objs)
    e = model.engine_args
    assert c["command"] == ["vllm", "serve"]
    args = c["args"]
    assert args[0] == model.model_id
    assert "--model" not in args
    assert _flag(args, "--port") == str(model.port)
    assert _flag(args, "--served-model-name") == model.model_id
    assert _flag(args, "--tensor-parallel-size") == str(model.gpus_per_replica)
    assert _flag(args, "--dtype") == e.dtype
    assert float(_flag(args, "--gpu-memory-utilization")) == e.gpu_memory_utilization
    assert _flag(args, "--kv-cache-dtype") == e.kv_cache_dtype
    assert ("--enable-prefix-caching" in args) is e.enable_prefix_caching
    assert ("--no-enable-prefix-caching" in args) is (not e.enable_prefix_caching)
    if e.max_model_len is not None:
        assert _flag(args, "--max-model-len") == str(e.max_model_len)
    if e.max_num_seqs is not None:
        assert _flag(args, "--max-num-seqs") == str(e.max_num_seqs)
    if e.quantization is not None:
        assert _flag(args, "--quantization") == e.quantization
    assert args[len(args) - len(e.extra_args):] == list(e.extra_args)


def test_us_east_chat_args_are_exact():
    """us-east chat renders exactly these vllm serve arguments."""
    _, model = _model("us-east", "chat")
    assert vllm_args(model)[:16] == [
        "meta-llama/Llama-3.1-8B-Instruct",
        "--port", "8000",
        "--served-model-name", "meta-llama/Llama-3.1-8B-Instruct",
        "--tensor-parallel-size", "1",
        "--dtype", "auto",
        "--gpu-memory-utilization", "0.9",
        "--kv-cache-dtype", "fp8",
        "--enable-prefix-caching",
        "--max-model-len", "16384",
    ]
    assert _flag(vllm_args(model), "--max-num-seqs") == "128"


def test_eu_west_chat_passes_quantization():
    """eu-west chat (AWQ checkpoint) gets --quantization awq and its 16k context."""
    _, model = _model("eu-west", "chat")
    args = vllm_args(model)
    assert _flag(args, "--quantization") == "awq"
    assert _flag(args, "--max-model-len") == "16384"


def test_prefix_caching_off_uses_the_negative_flag():
    """enable_prefix_caching: false renders --no-enable-prefix-caching (vLLM's BooleanOptionalAction spelling)."""
    _, model = _model("local", "chat")
    off = dataclasses.replace(model, engine_args=dataclasses.replace(model.engine_args, enable_prefix_caching=False))
    args = vllm_args(off)
    assert "--no-enable-prefix-caching" in args and "--enable-prefix-caching" not in args


def test_tensor_parallel_follows_gpus_per_replica():
    """A 2-GPU replica requests 2 GPUs and shards with --tensor-parallel-size 2."""
    region, model = _model("eu-west", "chat")
    two = dataclasses.replace(model, gpus_per_replica=2)
    objs = _by_kind(build_model(region, two))
    c = _container(objs)
    assert _flag(c["args"], "--tensor-parallel-size") == "2"
    assert c["resources"]["limits"][GPU_RESOURCE] == "2"


@pytest.mark.parametrize("region_name,model_name", LLMS)
def test_llm_pod_has_memory_backed_shm_and_runs_non_root(region_name, model_name):
    """vLLM gets /dev/shm as a memory emptyDir of `shm_size` and runs as uid 1000 non-root with a writable HOME."""
    _, model, objs = _build(region_name, model_name)
    pod = _pod(objs)
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": model.shm_size}} in pod["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in _container(objs)["volumeMounts"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the default: no host account
    assert _container(objs)["securityContext"]["runAsNonRoot"] is True
    env = _env(objs)
    assert env["HOME"]["value"] == "/tmp"
    assert env["VLLM_NO_USAGE_STATS"]["value"] == "1"
    # The uid has no passwd entry: torch's getpass.getuser() must find USER (tests/upstream runs it).
    assert env["USER"]["value"] == "vllm"


@pytest.mark.parametrize("region_name,model_name", SPEECH)
def test_speech_servers_keep_their_image_command_and_get_only_settings_they_read(region_name, model_name):
    """TTS/STT: the image's command and CMD stay (no args declared), no MODEL_ID (neither speaches
    nor Kokoro-FastAPI reads one: tests/upstream holds each variable against their settings), no
    /dev/shm; they run as the model's uid (`run_as_user`)."""
    _, model, objs = _build(region_name, model_name)
    c = _container(objs)
    assert c["image"] == model.image
    assert "command" not in c
    assert model.args == () and "args" not in c
    assert "MODEL_ID" not in _env(objs)
    assert "dshm" not in {v["name"] for v in _pod(objs)["volumes"]}
    assert _pod(objs)["securityContext"]["runAsUser"] == model.run_as_user


def test_speech_server_args_are_passed_when_declared():
    """Declared `args` of a TTS/STT model become the container's args verbatim."""
    region, model = _model("us-east", "whisper")
    with_args = dataclasses.replace(model, args=("--log-level", "debug"))
    assert _container(_by_kind(build_model(region, with_args)))["args"] == ["--log-level", "debug"]


def test_hf_token_from_config_becomes_a_secret():
    """us-east chat (hf_token: {config: hfToken}) gets Secret chat-hf-token holding the config
    secret; the server reads it as a mounted file (HF_TOKEN_PATH), never from a variable."""
    _, _, objs = _build("us-east", "chat")
    secret = objs["Secret"]
    assert secret["metadata"]["name"] == "chat-hf-token"
    assert secret["stringData"] == {"HF_TOKEN": SecretValue("config", "hfToken")}
    _assert_token_file(objs, "chat-hf-token", "HF_TOKEN")


def _assert_token_file(objs: dict[str, Any], secret_name: str, key: str) -> None:
    env = _env(objs)
    assert "HF_TOKEN" not in env
    assert not any("secretKeyRef" in (e.get("valueFrom") or {}) for e in env.values())
    assert env["HF_TOKEN_PATH"] == {"name": "HF_TOKEN_PATH", "value": "/var/run/secrets/huggingface/token"}
    pod = objs["StatefulSet"]["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"] == {"secretName": secret_name, "items": [{"key": key, "path": "token"}], "defaultMode": 0o440}
    mount = next(m for m in _container(objs)["volumeMounts"] if m["name"] == volume["name"])
    assert mount == {"name": volume["name"], "mountPath": "/var/run/secrets/huggingface", "readOnly": True}


def test_hf_token_from_existing_secret_is_referenced_not_copied():
    """hf_token {secret, key} mounts that Secret's key as the token file; no Secret object is built."""
    region, model = _model("eu-west", "chat")
    ref = dataclasses.replace(model, hf_token=SecretRef(secret="hf-credentials", key="token"))
    objs = _by_kind(build_model(region, ref))
    assert "Secret" not in objs
    _assert_token_file(objs, "hf-credentials", "token")


@pytest.mark.parametrize("region_name,model_name", PAIRS)
def test_secret_values_only_in_secrets(region_name, model_name):
    """Secret markers appear only in Secret objects; no env entry has a literal value that is a secret."""
    _, _, objs = _build(region_name, model_name)
    for obj in objs.values():
        if obj["kind"] != "Secret":
            assert list(walk_secret_values(obj)) == []
    for entry in _container(objs)["env"]:
        assert "valueFrom" in entry or isinstance(entry["value"], str)


@pytest.mark.parametrize("region_name,model_name", PAIRS)
def test_pdb_allows_one_replica_down(region_name, model_name):
    """PDB maxUnavailable 1 over the model's pods."""
    _, _, objs = _build(region_name, model_name)
    pdb = objs["PodDisruptionBudget"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == objs["StatefulSet"]["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("region_name,model_name", PAIRS)
def test_pod_monitor_scrapes_metrics_on_http_port(region_name, model_name):
    """PodMonitor selects the model's pods and scrapes /metrics on the `http` port (vLLM serves it on its API port)."""
    _, _, objs = _build(region_name, model_name)
    pm = objs["PodMonitor"]
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    assert pm["spec"]["selector"]["matchLabels"] == objs["StatefulSet"]["spec"]["selector"]["matchLabels"]
    assert pm["spec"]["podMetricsEndpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    assert "jobLabel" not in pm["spec"]  # so job = <namespace>/<podmonitor name>, as the query expects


@pytest.mark.parametrize("region_name,model_name", PAIRS)
def test_scaled_object_scales_the_workload_on_its_queue(region_name, model_name):
    """KEDA: targets the StatefulSet, min/max replicas, prometheus query on scaling_metric for the PodMonitor's job, threshold queue_target, long scale-down."""
    region, model, objs = _build(region_name, model_name)
    so = objs["ScaledObject"]["spec"]
    assert so["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": model_name}
    assert so["scaleTargetRef"]["kind"] == objs["StatefulSet"]["kind"]
    assert so["minReplicaCount"] == model.min_replicas
    assert so["maxReplicaCount"] == model.max_replicas
    trigger = so["triggers"][0]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["serverAddress"] == region.kubernetes.prometheus_url
    assert trigger["metadata"]["threshold"] == str(model.queue_target)
    assert "metricName" not in trigger["metadata"]
    assert trigger["metadata"]["query"] == queue_query(region, model) == (
        f'sum({model.scaling_metric}{{namespace="vox-inference",job="vox-inference/{model_name}"}})'
    )
    assert pod_monitor_job(region, model) == f"{objs['PodMonitor']['metadata']['namespace']}/{objs['PodMonitor']['metadata']['name']}"
    behavior = so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 600
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0


def test_llm_scales_on_vllm_queue_length():
    """vLLM models scale on vllm:num_requests_waiting (no queue_metric declared); us-east chat 2..8 replicas, 5 waiting per replica."""
    region, model, objs = _build("us-east", "chat")
    query = objs["ScaledObject"]["spec"]["triggers"][0]["metadata"]["query"]
    assert query == 'sum(vllm:num_requests_waiting{namespace="vox-inference",job="vox-inference/chat"})'
    assert objs["ScaledObject"]["spec"]["minReplicaCount"] == 2
    assert objs["ScaledObject"]["spec"]["maxReplicaCount"] == 8
    assert objs["ScaledObject"]["spec"]["triggers"][0]["metadata"]["threshold"] == "5"
    assert len(objs["ScaledObject"]["spec"]["triggers"]) == 1


def test_scale_to_zero_adds_a_wake_trigger():
    """min_replicas 0: the model's own queue metric cannot wake it, so a second trigger on livekit rooms does."""
    region, model = _model("us-east", "kokoro")
    zero = dataclasses.replace(model, min_replicas=0)
    objs = _by_kind(build_model(region, zero))
    triggers = objs["ScaledObject"]["spec"]["triggers"]
    assert len(triggers) == 2
    assert triggers[1]["metadata"]["query"] == "sum(livekit_room_total)"
    assert triggers[1]["metadata"]["activationThreshold"] == "0"
    assert objs["StatefulSet"]["spec"]["replicas"] == 0


# --- the component under Pulumi mocks -------------------------------------------------------------

SECRETS = {"livekitRootSecret": LIVEKIT_ROOT_SECRET, "hfToken": "hf_test_token_not_in_plain_inputs"}


@pytest.fixture
def stack_secrets() -> dict[str, str]:
    """The mocked stack's secrets: the root secret and the Hugging Face token."""
    return SECRETS


def _pool(region_name: str, model_name: str) -> InferencePool:
    region, model = _model(region_name, model_name)
    secrets = SecretResolver(region.name, ["vx-admin", *(f"vx-{t}" for t in region.tenants)])
    return InferencePool(
        f"{region_name}-model-{model_name}", InferencePoolArgs(region=region, model=model, objects=desired(region_name).models[model_name],
                                                        secrets=secrets)
    )


@pulumi.runtime.test
def test_component_registers_gpu_workload_with_toleration(mocked):
    """InferencePool for us-east chat registers a StatefulSet requesting nvidia.com/gpu, tolerating the GPU taint, replicas ignored."""
    pool = _pool("us-east", "chat")

    def check(outputs):
        sts = mocked.one("kubernetes:apps/v1:StatefulSet")
        assert sts.name == "us-east-model-chat-statefulset-chat"
        pod = sts.inputs["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        assert container["args"][0] == "meta-llama/Llama-3.1-8B-Instruct"
        request = next(r for r in mocked.requests if r.type == "kubernetes:apps/v1:StatefulSet")
        assert list(request.ignoreChanges) == ["spec.replicas"]
        for other in mocked.requests:
            if other.type != "kubernetes:apps/v1:StatefulSet":
                assert "spec.replicas" not in list(other.ignoreChanges)
        kinds = sorted(r.typ for r in mocked.resources if r.custom)
        assert kinds == sorted(
            [
                "kubernetes:core/v1:Secret",
                "kubernetes:core/v1:Service",
                "kubernetes:core/v1:Service",
                "kubernetes:apps/v1:StatefulSet",
                "kubernetes:policy/v1:PodDisruptionBudget",
                "kubernetes:monitoring.coreos.com/v1:PodMonitor",
                "kubernetes:keda.sh/v1alpha1:ScaledObject",
                "kubernetes:networking.k8s.io/v1:NetworkPolicy",
            ]
        )
        # The token reaches the Secret only as a Pulumi secret, never as plain input.
        secret_request = next(r for r in mocked.requests if r.type == "kubernetes:core/v1:Secret")
        hits = secret_wrapping(secret_request, SECRETS["hfToken"])
        assert hits and all(hits)
        assert outputs == ["http://chat.vox-inference.svc.cluster.local:8000/v1", "meta-llama/Llama-3.1-8B-Instruct"]
        assert mocked.one("voxplane:inference:InferencePool").custom is False

    urns = [pool.urn, *(c.urn for c in pool.children.values())]
    return pulumi.Output.all(pulumi.Output.all(pool.service_url, pool.model_id), *urns).apply(lambda v: check(v[0]))


@pulumi.runtime.test
def test_component_without_token_registers_no_secret(mocked):
    """InferencePool for eu-west kokoro (no hf_token) registers no Secret; its URL is the kokoro Service on 8880."""
    pool = _pool("eu-west", "kokoro")

    def check(outputs):
        assert not [r for r in mocked.resources if r.typ == "kubernetes:core/v1:Secret"]
        assert outputs == ["http://kokoro.vox-inference.svc.cluster.local:8880/v1", _model("eu-west", "kokoro")[1].model_id]

    urns = [pool.urn, *(c.urn for c in pool.children.values())]
    return pulumi.Output.all(pulumi.Output.all(pool.service_url, pool.model_id), *urns).apply(lambda v: check(v[0]))


@pytest.mark.parametrize("region_name,model_name", [(r, m) for r, m in SPEECH if project().regions[r].models[m].server_name == "speaches"])
def test_speaches_installs_and_loads_its_model_before_it_turns_ready(region_name, model_name):
    """speaches 0.8.3 reads no model setting: a postStart hook installs the model through its API
    (`POST /v1/models/{id}`, into the replica's cache volume) and loads it (`POST /api/ps/{id}`);
    readiness asks whether it is loaded (`GET /api/ps`), not whether the process is up; it never
    unloads it (WHISPER__TTL=-1), and listens on the model's port (UVICORN_PORT)."""
    _, model, objs = _build(region_name, model_name)
    c = _container(objs)
    hook = c["lifecycle"]["postStart"]["exec"]["command"]
    assert hook[:2] == ["sh", "-c"]
    assert f"base=http://127.0.0.1:{model.port} model={model.model_id} budget={model.startup_seconds}" in hook[2]
    for route in ('-X POST "$base/v1/models/$model"', '"$base/v1/models/$model"', '-X POST "$base/api/ps/$model"'):
        assert route in hook[2]
    ready = c["readinessProbe"]["exec"]["command"]
    assert ready == ["sh", "-c", f"curl -fsS --max-time 4 http://127.0.0.1:{model.port}/api/ps | grep -qF '\"{model.model_id}\"'"]
    env = _env(objs)
    assert env["UVICORN_PORT"]["value"] == str(model.port) and env["WHISPER__TTL"]["value"] == "-1"
    assert env["HF_HOME"]["value"] == CACHE_MOUNT


@pytest.mark.parametrize("region_name,model_name", [(r, m) for r, m in SPEECH if project().regions[r].models[m].server_name == "kokoro-fastapi"])
def test_kokoro_is_ready_when_its_health_answers(region_name, model_name):
    """Kokoro-FastAPI loads and warms its model before uvicorn opens the port: /health is the
    readiness, on 8880, and nothing is installed at start (the model is in the image)."""
    _, model, objs = _build(region_name, model_name)
    c = _container(objs)
    assert "lifecycle" not in c and model.port == 8880
    assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["ports"] == [{"name": "http", "containerPort": 8880, "protocol": "TCP"}]
