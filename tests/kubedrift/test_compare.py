"""The comparison rules of Kubernetes drift (voxplane/drift/kubernetes/compare.py), on plain dicts."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from voxplane.drift.kubernetes.compare import (
    SECRET_TEXT,
    UNSET,
    Keyed,
    comparable,
    diff_object,
    diff_values,
    digest,
    format_path,
    scalars_equal,
    secret_diffs,
)


def fields(desired: Any, live: Any, **kw: Any) -> list[str]:
    return [d.field for d in diff_values(desired, live, **kw)]


def deployment(**container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "support", "namespace": "t", "labels": {"app.kubernetes.io/managed-by": "voxplane"},
                     "annotations": {"voxplane.io/source": "agents/support.yaml", "pulumi.com/timeoutSeconds": "600"}},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "agent", **container}]}}},
    }


@pytest.mark.parametrize(("declared", "live", "path"), [
    ("1000m", "1", ("resources", "requests", "cpu")),
    ("0.5", "500m", ("resources", "limits", "cpu")),
    (2, "2", ("resources", "requests", "cpu")),
    ("60", "60", ("spec", "hard", "pods")),
    (60, "60", ("spec", "hard", "pods")),
    ("1Gi", "1024Mi", ("resources", "limits", "memory")),
    ("20Gi", "20Gi", ("spec", "resources", "requests", "storage")),
])
def test_quantities_equal_as_kubernetes_normalises_them(declared: Any, live: Any, path: tuple[str, ...]) -> None:
    assert scalars_equal(declared, live, path)


@pytest.mark.parametrize(("declared", "live", "path"), [
    ("1", 1, ("env", "value")),               # an env value is text; 1 is not "1" there
    (8081, "8081", ("httpGet", "port")),      # int-or-string keeps its type
    ("2", "3", ("resources", "requests", "cpu")),
    (True, 1, ("spec", "paused")),
    ("abc", "abc ", ("data", "x")),
])
def test_other_scalars_are_compared_as_they_are(declared: Any, live: Any, path: tuple[str, ...]) -> None:
    assert not scalars_equal(declared, live, path)


def test_server_defaults_and_status_are_not_drift() -> None:
    desired = deployment(image="a:1", ports=[{"name": "health", "containerPort": 8081}])
    live = deployment(image="a:1", imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log",
                      ports=[{"name": "health", "containerPort": 8081, "protocol": "TCP"}])
    live["metadata"].update(uid="u", resourceVersion="7", labels={**live["metadata"]["labels"], "extra": "x"})
    live["spec"]["revisionHistoryLimit"] = 10
    live["status"] = {"replicas": 2}
    assert diff_object(desired, live) == []


def test_identity_and_tool_annotations_are_not_compared() -> None:
    desired = deployment(image="a:1")
    live = deployment(image="a:1")
    live["metadata"]["name"] = "other"
    del live["metadata"]["annotations"]["pulumi.com/timeoutSeconds"]
    assert diff_object(desired, live) == []
    assert "pulumi.com/timeoutSeconds" not in str(comparable(desired))


def test_a_removed_label_or_annotation_is_drift() -> None:
    desired = deployment(image="a:1")
    live = deployment(image="a:1")
    live["metadata"]["labels"] = {}
    live["metadata"]["annotations"] = {"voxplane.io/source": "agents/other.yaml"}
    assert [d.field for d in diff_object(desired, live)] == [
        "metadata.labels.app.kubernetes.io/managed-by", "metadata.annotations.voxplane.io/source"]


def test_ignored_paths_are_not_compared() -> None:
    desired, live = deployment(image="a:1"), deployment(image="a:1")
    live["spec"]["replicas"] = 9
    assert [d.field for d in diff_object(desired, live)] == ["spec.replicas"]
    assert diff_object(desired, live, [("spec", "replicas")]) == []


def test_env_is_compared_by_name_both_ways() -> None:
    desired = deployment(env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
    live = deployment(env=[{"name": "B", "value": "3"}, {"name": "A", "value": "1"}, {"name": "HACK", "value": "x"}])
    diffs = diff_object(desired, live)
    assert [d.field for d in diffs] == ["spec.template.spec.containers[agent].env[B].value",
                                        "spec.template.spec.containers[agent].env[HACK]"]
    assert (diffs[0].declared, diffs[0].live) == ("2", "3")
    assert diffs[1].declared is UNSET and diffs[1].live == {"name": "HACK", "value": "x"}
    removed = diff_object(desired, deployment(env=[{"name": "A", "value": "1"}]))
    assert [(d.field, d.live) for d in removed] == [("spec.template.spec.containers[agent].env[B]", UNSET)]


def test_unnamed_lists_are_compared_as_wholes_with_defaults_inside_items_ignored() -> None:
    desired = {"ports": [{"port": 53}, {"port": 7880, "protocol": "TCP"}]}
    assert fields(desired, {"ports": [{"port": 53, "protocol": "TCP"}, {"port": 7880, "protocol": "TCP"}]}) == []
    assert fields(desired, {"ports": [{"port": 7880, "protocol": "TCP"}, {"port": 53}]}) == ["ports"]
    assert fields(desired, {"ports": [{"port": 53}]}) == ["ports"]
    assert fields({"policyTypes": ["Ingress", "Egress"]}, {"policyTypes": ["Ingress"]}) == ["policyTypes"]


def test_named_lists_fall_back_to_wholes_when_names_are_missing_or_repeated() -> None:
    desired = {"ports": [{"port": 53}, {"port": 54}]}
    assert fields(desired, {"ports": [{"port": 54}, {"port": 53}]}) == ["ports"]


def test_an_empty_selector_means_everything_and_must_stay_empty() -> None:
    assert fields({"podSelector": {}}, {"podSelector": {}}) == []
    assert fields({"podSelector": {}}, {"podSelector": {"matchLabels": {"a": "b"}}}) == ["podSelector"]


def test_empty_declared_values_match_absent_live_ones() -> None:
    assert fields({"args": [], "x": {}, "y": None}, {}) == []
    assert fields({"args": ["a"]}, {}) == ["args"]


def test_configmap_data_is_compared_as_a_whole() -> None:
    desired = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
    live = {**desired, "data": {"a": "1", "added": "by hand"}}
    (d,) = diff_object(desired, live)
    assert d.field == "data" and d.live == {"a": "1", "added": "by hand"}
    # Elsewhere, a mapping with more keys live matches (defaults).
    assert fields({"spec": {"a": 1}}, {"spec": {"a": 1, "b": 2}}) == []


def test_type_changes_are_drift() -> None:
    assert fields({"a": {"b": 1}}, {"a": "x"}) == ["a"]
    assert fields({"a": [1]}, {"a": {"b": 1}}) == ["a"]


def test_paths_read_like_kubectl_explain() -> None:
    assert format_path(("spec", "template", "spec", "containers", Keyed("name", "agent"), "env", Keyed("name", "X"))) \
        == "spec.template.spec.containers[agent].env[X]"
    assert format_path(("spec", "ports", 0, "port")) == "spec.ports[0].port"
    assert format_path(()) == "(object)"


def test_secret_payloads_by_hash_only() -> None:
    live = {"data": {"same": base64.b64encode(b"v1").decode(), "other": base64.b64encode(b"changed").decode(),
                     "added": base64.b64encode(b"x").decode(), "unknown": base64.b64encode(b"?").decode()}}
    diffs, checks = secret_diffs(
        ["same", "other", "gone", "unknown"],
        {"same": digest(b"v1"), "other": digest(b"v2"), "gone": digest(b"g")},
        live, {"unknown": "set VOXPLANE_SECRET_X"})
    assert [(d.field, d.declared, d.live) for d in diffs] == [
        ("data.gone", SECRET_TEXT, UNSET),
        ("data.other", SECRET_TEXT, f"{SECRET_TEXT} (a different value)"),
        ("data.added", UNSET, SECRET_TEXT),
    ]
    assert [(c.key, c.reason) for c in checks] == [("unknown", "set VOXPLANE_SECRET_X")]
    shown = repr(diffs) + repr(checks)
    for value in ("v1", "v2", "changed", digest(b"v1"), digest(b"changed")):
        assert value not in shown.replace("data.", "")


def test_secret_payload_is_left_to_secret_diffs() -> None:
    desired = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque",
               "stringData": {"k": "<redacted>"}}
    live = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque",
            "data": {"k": base64.b64encode(b"x").decode()}}
    assert diff_object(desired, live) == []
    assert [d.field for d in diff_object(desired, {**live, "type": "kubernetes.io/tls"})] == ["type"]
