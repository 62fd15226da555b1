"""tests.support.k8s_schema: built-in kinds against kubernetes-validate (strict), custom resources
against the real CRDs that scripts/fetch-crds.sh brings from the projects' Go modules."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from voxplane.desired.common import SecretValue

from .support.repo import REPO
from tests.support.k8s_schema import (
    CRD_SCRIPT,
    KUBERNETES_VERSION,
    crd_dir,
    load_crds,
    strict_schema,
    validate_object,
)

SCRIPT = REPO / CRD_SCRIPT

# The CRDs the platform renders, by file name in crd_dir().
EXPECTED_CRDS = {
    "keda.sh_scaledobjects.yaml": ("keda.sh", "ScaledObject", "v1alpha1"),
    "karpenter.sh_nodepools.yaml": ("karpenter.sh", "NodePool", "v1"),
    "monitoring.coreos.com_podmonitors.yaml": ("monitoring.coreos.com", "PodMonitor", "v1"),
}


def _run_script() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT)], cwd=REPO, capture_output=True, text=True, timeout=600, env=dict(os.environ)
    )


@pytest.fixture(scope="session", autouse=True)
def crds() -> Path:
    """Run scripts/fetch-crds.sh once per session; a failure fails the tests (never skips)."""
    result = _run_script()
    if result.returncode != 0:
        pytest.fail(f"{CRD_SCRIPT} failed (exit {result.returncode}):\n{result.stderr}", pytrace=False)
    return crd_dir()


def _deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "agent-support",
            "namespace": "vox-t-acme",
            "labels": {"app.kubernetes.io/name": "support"},
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "support"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "support"}},
                "spec": {
                    "terminationGracePeriodSeconds": 3600,
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [
                        {
                            "name": "agent",
                            "image": "registry.example/support:1.0",
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [{"name": "health", "containerPort": 8081}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": "health"}},
                            "env": [
                                {
                                    "name": "LIVEKIT_API_SECRET",
                                    "valueFrom": {"secretKeyRef": {"name": "livekit-api", "key": "secret"}},
                                }
                            ],
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }


def _scaled_object() -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "agent-support", "namespace": "vox-t-acme"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "agent-support"},
            "minReplicaCount": 1,
            "maxReplicaCount": 10,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 600, "tolerance": "0.1"}}
                }
            },
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": "http://prometheus.monitoring.svc:9090",
                        "query": 'sum(lk_agents_active_job_count{agent_name="support"})',
                        "threshold": "20",
                    },
                }
            ],
        },
    }


def _node_pool() -> dict[str, Any]:
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": "gpu-h100"},
        "spec": {
            "template": {
                "metadata": {"labels": {"voxplane.dev/gpu-group": "h100"}},
                "spec": {
                    "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "gpu"},
                    "requirements": [
                        {"key": "karpenter.k8s.aws/instance-gpu-name", "operator": "In", "values": ["h100"]},
                        {
                            "key": "karpenter.sh/capacity-type",
                            "operator": "In",
                            "values": ["on-demand", "reserved"],
                        },
                    ],
                    "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}],
                    "expireAfter": "720h",
                    "terminationGracePeriod": "48h",
                },
            },
            "limits": {"nvidia.com/gpu": 8, "cpu": "1000", "memory": "4000Gi"},
            "disruption": {
                "consolidationPolicy": "WhenEmpty",
                "consolidateAfter": "30m",
                "budgets": [{"nodes": "10%"}],
            },
            "weight": 10,
        },
    }


def _pod_monitor() -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "agents", "namespace": "vox-t-acme"},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/component": "agent"}},
            "namespaceSelector": {"matchNames": ["vox-t-acme"]},
            "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
        },
    }


# --- the script --------------------------------------------------------------------------------


def test_script_puts_pinned_crds_in_the_cache(crds: Path) -> None:
    """fetch-crds.sh copies the KEDA, Karpenter and prometheus-operator CRDs into crd_dir()."""
    assert crds == crd_dir()
    index = load_crds(crds)
    for filename, (group, kind, version) in EXPECTED_CRDS.items():
        path = crds / filename
        assert path.is_file(), f"{filename} missing from {crds}"
        assert path.read_text().startswith("# voxplane fetch-crds source: ")
        assert index[(group, kind)][version].served, f"{kind} {version} not served"
    assert not str(crds).startswith(str(REPO)), "third-party CRDs must not land in the repository"


def test_script_is_idempotent(crds: Path) -> None:
    """A second run fetches nothing and leaves the cached files untouched."""
    before = {p.name: p.stat().st_mtime_ns for p in crds.glob("*.yaml")}
    result = _run_script()
    assert result.returncode == 0, result.stderr
    assert "done: 0 fetched" in result.stderr
    assert {p.name: p.stat().st_mtime_ns for p in crds.glob("*.yaml")} == before


# --- built-in kinds ----------------------------------------------------------------------------


def test_valid_deployment_passes() -> None:
    """A well-formed Deployment passes strict validation for the pinned Kubernetes version."""
    assert KUBERNETES_VERSION == "1.34"
    assert validate_object(_deployment()) == []


def test_deployment_unknown_field_is_named() -> None:
    """Strict mode: an unknown container field is an error naming its full path."""
    dep = _deployment()
    dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert validate_object(dep) == [
        "Deployment vox-t-acme/agent-support: "
        "spec.template.spec.containers[0].imagePullPolicyy: unknown field"
    ]


def test_builtin_lists_every_problem() -> None:
    """All schema errors of a built-in object are reported, not only the first."""
    dep = _deployment()
    container = dep["spec"]["template"]["spec"]["containers"][0]
    container["imagePullPolicyy"] = "Always"
    container["ports"][0]["containerPort"] = "8081"
    problems = validate_object(dep)
    assert len(problems) == 2
    assert any("containers[0].ports[0].containerPort: '8081' is not of type 'integer'" in p for p in problems)


def test_secret_values_never_appear_in_problems() -> None:
    """A Secret's values are redacted from messages; a SecretValue marker validates as a string."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "provider-keys", "namespace": "vox-t-acme"},
        "type": "Opaque",
        "stringData": {"OPENAI_API_KEY": SecretValue("config", "openai"), "BAD": ["sk-do-not-print"]},
    }
    problems = validate_object(secret)
    assert problems == ["Secret vox-t-acme/provider-keys: stringData.BAD: invalid value (fails 'type')"]
    assert "sk-do-not-print" not in "".join(problems)


def test_names_and_labels_are_checked() -> None:
    """Object names must be DNS-1123; label values at most 63 characters of the allowed set."""
    dep = _deployment()
    dep["metadata"]["name"] = "Agent_Support"
    dep["metadata"]["labels"]["voxplane.dev/region"] = "eu/west"
    problems = validate_object(dep)
    assert any("metadata.name: 'Agent_Support' is not a DNS-1123 subdomain" in p for p in problems)
    assert any(
        "metadata.labels.voxplane.dev/region: 'eu/west' is not a valid label value" in p for p in problems
    )


# --- custom resources --------------------------------------------------------------------------


def test_valid_scaled_object_passes() -> None:
    """A KEDA v1alpha1 ScaledObject with a prometheus trigger matches the real CRD."""
    assert validate_object(_scaled_object()) == []


def test_scaled_object_typo_fails() -> None:
    """`minReplicas` is not a ScaledObject field (it is `minReplicaCount`): unknown field, not pruned."""
    so = _scaled_object()
    so["spec"]["minReplicas"] = so["spec"].pop("minReplicaCount")
    assert validate_object(so) == ["ScaledObject vox-t-acme/agent-support: spec.minReplicas: unknown field"]


def test_scaled_object_trigger_metadata_must_be_strings() -> None:
    """KEDA trigger metadata is map[string]string: an unquoted YAML number is rejected."""
    so = _scaled_object()
    so["spec"]["triggers"][0]["metadata"]["threshold"] = 20
    assert validate_object(so) == [
        "ScaledObject vox-t-acme/agent-support: "
        "spec.triggers[0].metadata.threshold: 20 is not of type 'string'"
    ]


def test_valid_node_pool_passes() -> None:
    """A Karpenter v1 NodePool (nodeClassRef, requirements, taints, limits, disruption) matches the CRD."""
    assert validate_object(_node_pool()) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        # v1beta1 kept expireAfter under disruption; v1 moved it to template.spec.
        (
            lambda s: s["disruption"].__setitem__("expireAfter", "720h"),
            "spec.disruption.expireAfter: unknown field",
        ),
        # v1beta1's WhenUnderutilized became WhenEmptyOrUnderutilized in v1.
        (
            lambda s: s["disruption"].__setitem__("consolidationPolicy", "WhenUnderutilized"),
            "spec.disruption.consolidationPolicy: 'WhenUnderutilized' is not one of",
        ),
        (
            lambda s: s["template"]["spec"]["nodeClassRef"].pop("group"),
            "spec.template.spec.nodeClassRef.group: required field is missing",
        ),
        (lambda s: s.__setitem__("weight", 0), "spec.weight: 0 is less than the minimum of 1"),
    ],
)
def test_node_pool_bad_field_fails(mutate: Any, expected: str) -> None:
    """Karpenter v1 schema: moved/renamed v1beta1 fields, required fields and bounds are enforced."""
    pool = _node_pool()
    mutate(pool["spec"])
    problems = validate_object(pool)
    assert len(problems) == 1
    assert problems[0].startswith(f"NodePool gpu-h100: {expected}")


def test_node_pool_int_or_string_limits() -> None:
    """`limits` values are int-or-string quantities: both forms pass, a list does not."""
    pool = _node_pool()
    pool["spec"]["limits"] = {"cpu": 1000, "memory": "4000Gi"}
    assert validate_object(pool) == []
    pool["spec"]["limits"]["cpu"] = [1000]
    assert validate_object(pool) == [
        "NodePool gpu-h100: spec.limits.cpu: [1000] is not valid under any of the given schemas"
    ]


def test_cluster_scoped_node_pool_has_no_namespace() -> None:
    """NodePool is cluster-scoped (CRD scope: Cluster), so metadata.namespace is a mistake."""
    pool = _node_pool()
    pool["metadata"]["namespace"] = "vox-system"
    assert validate_object(pool) == [
        "NodePool vox-system/gpu-h100: "
        "metadata.namespace: NodePool is cluster-scoped; namespace must not be set"
    ]


def test_valid_pod_monitor_passes() -> None:
    """A prometheus-operator PodMonitor with podMetricsEndpoints matches the CRD."""
    assert validate_object(_pod_monitor()) == []


def test_pod_monitor_with_service_monitor_field_fails() -> None:
    """`endpoints` belongs to ServiceMonitor; a PodMonitor needs `podMetricsEndpoints`."""
    monitor = _pod_monitor()
    monitor["spec"]["endpoints"] = monitor["spec"].pop("podMetricsEndpoints")
    assert validate_object(monitor) == ["PodMonitor vox-t-acme/agents: spec.endpoints: unknown field"]


def test_custom_resource_metadata_is_object_meta() -> None:
    """CR metadata is checked as ObjectMeta: a name is required and unknown keys are refused."""
    monitor = _pod_monitor()
    del monitor["metadata"]["name"]
    monitor["metadata"]["label"] = {"a": "b"}
    problems = validate_object(monitor)
    assert "PodMonitor vox-t-acme/<no name>: metadata.name: required field is missing" in problems
    assert "PodMonitor vox-t-acme/<no name>: metadata.label: unknown field" in problems


def test_list_map_keys_must_be_unique() -> None:
    """`x-kubernetes-list-type: map` lists (PrometheusRule groups by name) refuse duplicate keys."""
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "agents", "namespace": "vox-t-acme"},
        "spec": {"groups": [{"name": "agents", "rules": []}, {"name": "agents", "rules": []}]},
    }
    assert validate_object(rule) == [
        "PrometheusRule vox-t-acme/agents: spec.groups: duplicate entry name='agents' (items 0 and 1)"
    ]


def test_unknown_custom_kind_names_missing_crd() -> None:
    """A CR whose CRD is not available fails, naming the kind/group and the fetch script."""
    problems = validate_object({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    assert problems == [
        f"Widget w: no CRD for kind 'Widget' in group 'example.com' (apiVersion example.com/v1) in "
        f"{crd_dir()}; run {CRD_SCRIPT} (add the CRD there if it is a new kind)"
    ]


def test_empty_cache_never_passes_silently(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With no CRDs fetched, a valid ScaledObject is reported as unverifiable, not accepted."""
    monkeypatch.setenv("VOXPLANE_CACHE", str(tmp_path))
    assert crd_dir() == tmp_path / "crds"
    problems = validate_object(_scaled_object())
    assert len(problems) == 1
    assert "no CRD for kind 'ScaledObject' in group 'keda.sh'" in problems[0]
    assert CRD_SCRIPT in problems[0]


def test_unserved_version_fails() -> None:
    """An apiVersion the CRD does not serve (keda.sh/v1) is named with the served ones."""
    so = copy.deepcopy(_scaled_object())
    so["apiVersion"] = "keda.sh/v1"
    assert validate_object(so) == [
        "ScaledObject vox-t-acme/agent-support: apiVersion keda.sh/v1 is not served by CRD "
        "scaledobjects.keda.sh (served: v1alpha1)"
    ]


def test_strict_schema_rules() -> None:
    """Structural → strict: objects close unless preserve-unknown-fields; int-or-string and nullable."""
    converted = strict_schema(
        {
            "type": "object",
            "properties": {
                "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "port": {
                    "x-kubernetes-int-or-string": True,
                    "anyOf": [{"type": "integer"}, {"type": "string"}],
                },
                "note": {"type": "string", "nullable": True, "description": "dropped"},
            },
        }
    )
    assert converted["additionalProperties"] is False
    assert "additionalProperties" not in converted["properties"]["open"]
    assert converted["properties"]["note"] == {"type": ["string", "null"]}
    assert "type" not in converted["properties"]["port"]
