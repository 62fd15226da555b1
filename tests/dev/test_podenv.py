"""A container's environment as the kubelet builds it (voxplane/dev/podenv.py): the pod runner
starts each agent worker with exactly this, so each rule is pinned here against the kubelet's."""

from __future__ import annotations

from typing import Any

import pytest

from voxplane.dev.podenv import EnvError, container_run, expand

SECRETS = {("ns", "api"): {"KEY": "k-123", "SECRET": "s-456"}, ("ns", "bulk"): {"A": "from-secret", "bad name": "x"}}
CONFIGS = {("ns", "cfg"): {"A": "from-config", "B": "b", "URL": "http://x"}}


def lookup(table: dict[tuple[str, str], dict[str, str]]):
    return lambda ns, name: table.get((ns, name))


def pod(container: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "p-1", "namespace": "ns", "uid": "u-1", "labels": {"app": "a"},
                         "annotations": {"note": "n"}},
            "spec": {"nodeName": "node-1", "serviceAccountName": "sa", "containers": [container]},
            "status": {"podIP": "10.0.0.7", "podIPs": [{"ip": "10.0.0.7"}], "hostIP": "10.0.0.1"}}


def run(container: dict[str, Any], **kw: Any):
    return container_run(pod(container), container, secret=lookup(SECRETS), config_map=lookup(CONFIGS), **kw)


def test_env_from_comes_first_and_env_overrides_it_in_order() -> None:
    c = {"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "bulk"}, "prefix": "S_"}],
         "env": [{"name": "A", "value": "explicit"}, {"name": "Z", "value": "z"}]}
    r = run(c)
    assert r.env == {"A": "explicit", "B": "b", "URL": "http://x", "S_A": "from-secret", "Z": "z"}
    assert list(r.env) == ["A", "B", "URL", "S_A", "Z"]
    # "bad name" is not a variable name: skipped, as the kubelet skips it.
    assert r.from_secrets == {"S_A"}


def test_references_resolve_and_secret_values_are_marked() -> None:
    c = {"name": "c", "env": [
        {"name": "K", "valueFrom": {"secretKeyRef": {"name": "api", "key": "KEY"}}},
        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "B"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "COPY", "value": "key=$(K)"},
    ]}
    r = run(c)
    assert r.env == {"K": "k-123", "B": "b", "POD": "p-1", "IP": "10.0.0.7", "APP": "a", "COPY": "key=k-123"}
    assert r.from_secrets == {"K", "COPY"}


@pytest.mark.parametrize("text,expected", [
    ("$(A)-$(B)", "1-2"), ("$$(A)", "$(A)"), ("$(MISSING)", "$(MISSING)"), ("$A", "$A"), ("$(A", "$(A"), ("a$", "a$"),
])
def test_dollar_references_expand_as_kubernetes_expands_them(text: str, expected: str) -> None:
    assert expand(text, {"A": "1", "B": "2"}) == expected


def test_command_and_args_are_expanded_with_the_environment() -> None:
    c = {"name": "c", "command": ["python", "$(PROG)"], "args": ["start", "$$(KEEP)"], "env": [{"name": "PROG", "value": "agent.py"}]}
    assert run(c).argv == ("python", "agent.py", "start", "$(KEEP)")


@pytest.mark.parametrize("env,message", [
    ([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "K"}}}], 'secret "nope" not found'),
    ([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "api", "key": "NOPE"}}}], "couldn't find key NOPE in Secret ns/api"),
    ([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "NOPE"}}}], "couldn't find key NOPE in ConfigMap ns/cfg"),
])
def test_a_missing_reference_is_the_kubelets_config_error(env: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(EnvError, match=message):
        run({"name": "c", "env": env})


def test_optional_references_to_what_is_missing_set_nothing() -> None:
    c = {"name": "c", "envFrom": [{"secretRef": {"name": "nope", "optional": True}}],
         "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "api", "key": "NOPE", "optional": True}}}]}
    assert run(c).env == {}


def test_resource_fields_use_the_divisor_and_default_limits_to_the_node() -> None:
    c = {"name": "c", "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}},
         "env": [{"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
                 {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory", "divisor": "1Mi"}}},
                 {"name": "LIM", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]}
    assert run(c, allocatable={"cpu": "32"}).env == {"CPU": "250", "MEM": "1024", "LIM": "32"}
