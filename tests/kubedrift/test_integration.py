"""`voxplane drift` against a real kube-apiserver: the `local` region applied as `pulumi up` applies
it, then edited out of band with kubectl, each edit reported in terms of the manifest that owns it."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from click.testing import CliRunner, Result

from voxplane.cli import main
from voxplane.drift.kubernetes.live import LiveReader
from voxplane.drift.kubernetes.report import KubeDriftReport, detect, names
from voxplane.drift.kubernetes.secrets import env_lookup

from ..support.servers import livekit_with_redis
from .conftest import REGION, Cluster, counting

pytestmark = pytest.mark.integration


def drift_cli(c: Cluster, *args: str, env: dict[str, str] | None = None) -> Result:
    """`voxplane drift local --only kubernetes ...` in-process, with the cluster's kubeconfig."""
    environ = {"KUBECONFIG": str(c.kubeconfig), **c.env, **(env or {})}
    return CliRunner().invoke(main, ["drift", REGION, "--root", str(c.root), *args], env=environ,
                              catch_exceptions=False)


def detect_now(c: Cluster, api_client: Any = None) -> KubeDriftReport:
    return detect(c.region, c.agents, c.desired, LiveReader(api_client or c.api_client()), secrets=env_lookup(c.env))


def changed(report: KubeDriftReport, kind: str, name: str, field: str) -> Any:
    hits = [x for x in report.changed if (x.kind, x.name, x.field) == (kind, name, field)]
    assert len(hits) == 1, f"{kind} {name} {field} not among {[(x.kind, x.name, x.field) for x in report.changed]}"
    return hits[0]


def test_no_drift_right_after_apply(fresh: Cluster) -> None:
    result = drift_cli(fresh, "--only", "kubernetes", "--format", "json")
    data = json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    assert data["drift"] is False
    assert data["changed"] == [] and data["missing"] == [] and data["unexpected"] == []
    # Every Secret value was compared (the test's values are in the environment): nothing unchecked.
    assert data["unchecked"] == []
    assert data["context"] == "voxplane-local"  # the stack's voxplane:kubeContext
    text = drift_cli(fresh, "--only", "kubernetes")
    assert text.exit_code == 0 and text.output.strip().splitlines()[-1].startswith("no drift: region local")


def test_out_of_band_edits_are_reported_with_their_manifest_fields(fresh: Cluster) -> None:
    c = fresh
    c.kubectl("scale", "deployment", "livekit", "-n", "vox-system", "--replicas=3")
    c.kubectl("patch", "configmap", "livekit-config", "-n", "vox-system", "--type", "merge",
              "-p", json.dumps({"data": {"config.yaml": "port: 7880\nlogging:\n  level: info\n"}}))
    c.kubectl("delete", "networkpolicy", "default-deny", "-n", "vox-t-northwind")
    c.kubectl("patch", "scaledobject", "support", "-n", "vox-t-northwind", "--type", "merge",
              "-p", json.dumps({"spec": {"maxReplicaCount": 80}}))
    c.kubectl("set", "env", "deployment/support", "-n", "vox-t-northwind", "DEBUG_HACK=1")
    # What KEDA does all day is not drift: replicas of agent Deployments and model StatefulSets.
    c.kubectl("scale", "deployment", "support", "-n", "vox-t-northwind", "--replicas=7")
    c.kubectl("scale", "statefulset", "chat", "-n", "vox-inference", "--replicas=2")
    try:
        report = detect_now(c)
        assert report.drift

        sfu = changed(report, "Deployment", "livekit", "spec.replicas")
        assert (sfu.declared, sfu.live) == (1, 3)
        assert (sfu.source.file, sfu.source.field) == ("regions/local.yaml", "livekit.nodes")
        assert sfu.source.line == c.line_of("regions/local.yaml", "  nodes: 1")

        config = changed(report, "ConfigMap", "livekit-config", "data")
        assert config.live == {"config.yaml": "port: 7880\nlogging:\n  level: info\n"}
        assert "key_file: /etc/livekit/keys.yaml" in config.declared["config.yaml"]
        assert (config.source.file, config.source.field, config.source.line) == (
            "regions/local.yaml", "livekit", c.line_of("regions/local.yaml", "livekit:"))

        (missing,) = report.missing
        assert (missing.kind, missing.namespace, missing.name) == ("NetworkPolicy", "vox-t-northwind", "default-deny")
        assert (missing.source.file, missing.source.field, missing.source.line) == (
            "regions/local.yaml", "tenants.northwind", c.line_of("regions/local.yaml", "  northwind:"))

        scaled = changed(report, "ScaledObject", "support", "spec.maxReplicaCount")
        assert (scaled.declared, scaled.live) == (40, 80)
        assert (scaled.source.file, scaled.source.field, scaled.source.line) == (
            "agents/support.yaml", "scaling.max_workers", c.line_of("agents/support.yaml", "max_workers:"))

        env = changed(report, "Deployment", "support", "spec.template.spec.containers[agent].env[DEBUG_HACK]")
        assert env.declared == "(unset)" and env.live == {"name": "DEBUG_HACK", "value": "1"}
        assert (env.source.file, env.source.field, env.source.line) == (
            "agents/support.yaml", "env.DEBUG_HACK", c.line_of("agents/support.yaml", "env:"))

        assert {(x.kind, x.name) for x in report.changed} == {
            ("Deployment", "livekit"), ("ConfigMap", "livekit-config"), ("ScaledObject", "support"), ("Deployment", "support")}
        assert not [x for x in report.changed if x.field == "spec.replicas" and x.name in ("support", "chat")]

        # The CLI: exit 2, one line per finding at FILE:LINE:COL, and the same in json and markdown.
        result = drift_cli(c, "--only", "kubernetes")
        assert result.exit_code == 2, result.output
        lines = result.output.splitlines()
        max_line = c.line_of("agents/support.yaml", "max_workers:")
        assert any(line.startswith(f"agents/support.yaml:{max_line}:") and "scaling.max_workers" in line
                   and "is 80 in the cluster, declared 40" in line for line in lines), result.output
        assert any("tenants.northwind: NetworkPolicy vox-t-northwind/default-deny is missing in the cluster" in line
                   for line in lines), result.output
        assert lines[-1].startswith("drift: region local")
        as_json = drift_cli(c, "--only", "kubernetes", "--format", "json")
        assert as_json.exit_code == 2
        assert json.loads(as_json.stdout)["summary"] == {"changed": 4, "missing": 1, "unexpected": 0, "unowned": 0,
                                                        "unchecked": 0}
        md = drift_cli(c, "--only", "kubernetes", "--format", "markdown")
        assert md.exit_code == 2 and "| `agents/support.yaml:" in md.output and "`scaling.max_workers`" in md.output
    finally:
        c.kubectl("set", "env", "deployment/support", "-n", "vox-t-northwind", "DEBUG_HACK-")


def test_unlabelled_object_in_a_tenant_namespace_is_info_only(fresh: Cluster) -> None:
    c = fresh
    c.kubectl("create", "configmap", "hand-made", "-n", "vox-t-northwind", "--from-literal=a=b")
    c.kubectl("label", "configmap", "hand-made", "-n", "vox-t-northwind", "kubedrift-test=1")
    c.kubectl("create", "configmap", "elsewhere", "-n", "default", "--from-literal=a=b")
    c.kubectl("label", "configmap", "elsewhere", "-n", "default", "kubedrift-test=1")
    result = drift_cli(c, "--only", "kubernetes", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["drift"] is False
    assert [(u["kind"], u["namespace"], u["name"]) for u in data["unowned"]] == [("ConfigMap", "vox-t-northwind", "hand-made")]
    text = drift_cli(c, "--only", "kubernetes")
    assert "info: ConfigMap vox-t-northwind/hand-made is not managed here" in text.output
    # Never touched: still there, unchanged.
    assert c.get("configmap", "vox-t-northwind", "hand-made")["data"] == {"a": "b"}


def test_labelled_object_no_longer_declared_is_unexpected(fresh: Cluster) -> None:
    c = fresh
    c.kubectl("apply", "--server-side", "--field-manager", "pulumi-kubernetes", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "old-agent-config", "namespace": "vox-t-northwind",
                     "labels": {"app.kubernetes.io/managed-by": "voxplane", "app.kubernetes.io/part-of": "local",
                                "kubedrift-test": "1"},
                     "annotations": {"voxplane.io/source": "agents/old.yaml"}},
        "data": {"k": "v"}}))
    report = detect_now(c)
    assert names(report.unexpected) == ["ConfigMap vox-t-northwind/old-agent-config"]
    assert report.unexpected[0].source_file == "agents/old.yaml"
    assert "agents/old.yaml no longer declares it" in report.unexpected[0].reason
    assert drift_cli(c, "--only", "kubernetes").exit_code == 2


def test_secret_values_are_compared_by_hash_and_never_printed(fresh: Cluster) -> None:
    c = fresh
    import base64

    c.kubectl("patch", "secret", "support-secrets", "-n", "vox-t-northwind", "--type", "merge",
              "-p", json.dumps({"data": {"VOXPLANE_LLM_API_KEY": base64.b64encode(b"sk-stolen-and-replaced").decode()}}))
    for fmt in ("text", "json", "markdown"):
        result = drift_cli(c, "--only", "kubernetes", "--format", fmt)
        assert result.exit_code == 2, result.output
        assert "sk-stolen-and-replaced" not in result.output
        assert not any(value in result.output for value in c.env.values())
    report = detect_now(c)
    secret = changed(report, "Secret", "support-secrets", "data.VOXPLANE_LLM_API_KEY")
    assert (secret.declared, secret.live) == ("<secret>", "<secret> (a different value)")
    assert (secret.source.file, secret.source.field) == ("agents/support.yaml", "inference.llm.provider.api_key")
    # Without the values, keys are still compared and values listed as unchecked, not drift.
    c.apply()
    bare = {k: "" for k in c.env}
    result = drift_cli(c, "--only", "kubernetes", "--format", "json", env=bare)
    data = json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    assert {u["field"] for u in data["unchecked"]} >= {"data.VOXPLANE_LLM_API_KEY", "data.keys.yaml"}


def test_api_calls_are_constant_in_the_number_of_objects(fresh: Cluster) -> None:
    c = fresh
    api = c.api_client()
    count = counting(api)
    before = detect_now(c, api)
    calls_before = count()
    assert calls_before == before.api_calls
    extra = json.dumps({"apiVersion": "v1", "kind": "List", "items": [{
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": f"bulk-{i:04d}", "namespace": "vox-t-bellavista",
                     "labels": {"app.kubernetes.io/managed-by": "voxplane", "app.kubernetes.io/part-of": "local",
                                "kubedrift-test": "1"}},
        "data": {"i": str(i)}} for i in range(300)]})
    c.kubectl("apply", "--server-side", "--field-manager", "kubedrift-test", "-f", "-", stdin=extra)
    after = detect_now(c, api)
    assert len(after.unexpected) == 300
    assert count() - calls_before == calls_before  # the same number of calls with 300 more objects
    assert after.api_calls == before.api_calls
    # One owned list per kind, one metadata-only list per declared namespaced kind: no GET per object.
    assert before.api_calls < len(c.desired)


def test_context_option_and_unreachable_cluster_fail_in_one_line(fresh: Cluster) -> None:
    result = drift_cli(fresh, "--only", "kubernetes", "--context", "no-such-context")
    assert result.exit_code == 1
    assert "no-such-context" in result.output and "Traceback" not in result.output


def test_both_targets_one_report_one_exit_code(fresh: Cluster) -> None:
    """Default: Kubernetes and LiveKit together, against a real livekit-server on loopback."""
    c = fresh
    with livekit_with_redis(region=REGION, root=c.root) as lk:
        env = {**lk.env, "LIVEKIT_URL": lk.url, "VOXPLANE_SECRET_northwindTrunkPassword": "kubedrift-test-trunk"}
        environ = {"KUBECONFIG": str(c.kubeconfig), **c.env, **env}
        sync = CliRunner().invoke(main, ["livekit", "sync", REGION, "--root", str(c.root)], env=environ,
                                  catch_exceptions=False)
        assert sync.exit_code == 0, sync.output
        clean = drift_cli(c, "--format", "json", env=env)
        assert clean.exit_code == 0, clean.output
        data = json.loads(clean.stdout)
        assert set(data["targets"]) == {"kubernetes", "livekit"} and data["drift"] is False
        assert data["targets"]["kubernetes"]["target"] == "kubernetes"
        assert data["targets"]["livekit"]["target"] == "livekit"

        c.kubectl("patch", "scaledobject", "support", "-n", "vox-t-northwind", "--type", "merge",
                  "-p", json.dumps({"spec": {"minReplicaCount": 0}}))
        text = drift_cli(c, env=env)
        assert text.exit_code == 2, text.output
        assert "== kubernetes ==" in text.output and "== livekit ==" in text.output
        assert "scaling.min_workers" in text.output
        assert text.output.strip().splitlines()[-1] == "drift: region local: kubernetes drift, livekit no drift"
        md = drift_cli(c, "--format", "markdown", env=env)
        assert md.exit_code == 2
        assert "### Kubernetes drift — region `local`" in md.output and "### LiveKit drift — region `local`" in md.output

        # --only livekit keeps its own report and exit code.
        only = drift_cli(c, "--only", "livekit", "--format", "json", env=env)
        assert only.exit_code == 0 and json.loads(only.stdout)["target"] == "livekit"

    # A target that cannot be read makes the exit code 1; the other still reports.
    gone = drift_cli(c, "--format", "json", env={"LIVEKIT_URL": "http://127.0.0.1:9", "LIVEKIT_API_KEY": "k",
                                                  "LIVEKIT_API_SECRET": "s" * 32})
    assert gone.exit_code == 1
    data = json.loads(gone.stdout)
    assert data["error"] is True and "error" in data["targets"]["livekit"]
    assert data["targets"]["kubernetes"]["drift"] is True
    assert os.environ.get("KUBECONFIG") != str(c.kubeconfig)  # the tests never leak the kubeconfig
