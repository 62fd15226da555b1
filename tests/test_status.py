"""`voxplane status` without servers: what the autoscaler state is taken to be from the objects
KEDA and the HPA controller write, how rooms are attributed to agents (never across tenants),
the drift line, the JSON shape, the exit codes, and the --watch loop's frames. The same command
against a real control plane, LiveKit server, worker and callers: tests/engine/test_status.py."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from livekit import api

from voxplane.cli import term
from voxplane.cli import main
from voxplane.livekit.desired import ownership_metadata, Owner
from voxplane.manifest.loader import load
from voxplane.cli import status_view as view
from voxplane.dev.ports import free_port
from voxplane.status.kube import Autoscaler, Workload, autoscaler_state
from voxplane.status.report import DriftSummary, RegionStatus, assemble
from voxplane.status.rooms import AgentKey, LiveRoom, RoomRoute, agent_names, attribute, routes

from .support.repo import REPO


BELLA = AgentKey("bellavista", "reservations")
SUPPORT = AgentKey("northwind", "support")
SCHED = AgentKey("northwind", "scheduler")


def project() -> Any:
    return load((), REPO).require_project()


def local() -> tuple[Any, tuple[Any, ...]]:
    p = project()
    return p.regions["local"], p.agents_in("local")


# --- the autoscaler, as the cluster describes it ------------------------------------------------


def scaled_object(name: str = "support", lo: int | None = 2, hi: int | None = 40, status: dict | None = None,
                  annotations: dict | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}}
    if lo is not None:
        spec["minReplicaCount"] = lo
    if hi is not None:
        spec["maxReplicaCount"] = hi
    obj: dict[str, Any] = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                           "metadata": {"name": name, "namespace": "vox-t-northwind", "annotations": annotations or {}},
                           "spec": spec}
    if status is not None:
        obj["status"] = status
    return obj


def keda_status(ready: str = "True", active: str = "True", fallback: str = "False", **extra: Any) -> dict[str, Any]:
    """What KEDA 2.x writes once it has reconciled a ScaledObject."""
    return {"hpaName": "keda-hpa-support", "scaleTargetKind": "apps/v1.Deployment", "originalReplicaCount": 2,
            "externalMetricNames": ["s0-prometheus"],
            "conditions": [
                {"type": "Ready", "status": ready, "reason": "ScaledObjectReady" if ready == "True" else "ScaledObjectCheckFailed",
                 "message": "ScaledObject is defined correctly and is ready for scaling" if ready == "True"
                 else "Target resource doesn't exist"},
                {"type": "Active", "status": active, "reason": "ScalerActive" if active == "True" else "ScalerNotActive",
                 "message": "Scaling is performed because triggers are active" if active == "True"
                 else "Scaling is not performed because triggers are not active"},
                {"type": "Fallback", "status": fallback, "reason": "NoFallbackFound", "message": "No fallbacks are active"},
            ], **extra}


def hpa(current: int | None, desired: int | None, scaling: str = "True", reason: str = "ValidMetricFound",
        message: str = "the HPA was able to successfully calculate a replica count") -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": [
        {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"},
        {"type": "ScalingActive", "status": scaling, "reason": reason, "message": message},
    ]}
    if current is not None:
        status["currentReplicas"] = current
    if desired is not None:
        status["desiredReplicas"] = desired
    return {"metadata": {"name": "keda-hpa-support", "namespace": "vox-t-northwind"}, "status": status}


def test_a_scaled_object_nothing_reconciled_is_no_autoscaler_running_with_no_target():
    a = autoscaler_state(scaled_object(), None)
    assert (a.state, a.target, a.current, a.hpa, a.min, a.max) == ("not-running", None, None, None, 2, 40)
    assert a.cell() == "no autoscaler running"
    assert "no KEDA operator" in a.reason and "keda-hpa-support" in a.reason


def test_the_target_is_the_hpas_desired_replicas():
    a = autoscaler_state(scaled_object(status=keda_status()), hpa(current=3, desired=5))
    assert (a.state, a.target, a.current, a.hpa) == ("running", 5, 3, "keda-hpa-support")
    assert a.cell() == "target 5, now 3"
    assert autoscaler_state(scaled_object(status=keda_status()), hpa(4, 4)).cell() == "target 4"


def test_the_hpa_is_found_by_the_name_keda_recorded():
    so = scaled_object(status={**keda_status(), "hpaName": "custom-hpa"})
    assert autoscaler_state(so, hpa(2, 2)).hpa == "custom-hpa"
    from voxplane.status.kube import hpa_name

    assert hpa_name(so) == "custom-hpa" and hpa_name(scaled_object()) == "keda-hpa-support"


def test_an_hpa_whose_metrics_fail_is_not_scaling_and_says_why():
    """What the local control plane's HPA controller writes for KEDA's HPA without KEDA's metrics
    server (seen on the dev cluster): the target it last set, and ScalingActive False."""
    a = autoscaler_state(scaled_object(), hpa(2, 2, "False", "FailedGetExternalMetric",
                                              "unable to fetch metrics from external metrics API"))
    assert (a.state, a.target) == ("not-scaling", 2)
    assert a.cell() == "target 2 (not scaling)"
    assert "FailedGetExternalMetric" in a.reason


def test_keda_not_ready_paused_fallback_and_idle():
    not_ready = autoscaler_state(scaled_object(status=keda_status(ready="False")), None)
    assert not_ready.state == "not-ready" and "Target resource doesn't exist" in not_ready.reason
    assert not_ready.target is None

    paused = autoscaler_state(scaled_object(annotations={"autoscaling.keda.sh/paused-replicas": "3"},
                                            status=keda_status()), hpa(2, 2))
    assert (paused.state, paused.target, paused.cell()) == ("paused", 3, "paused at 3")
    paused_here = autoscaler_state(scaled_object(annotations={"autoscaling.keda.sh/paused": "true"}), None)
    assert (paused_here.state, paused_here.target) == ("paused", None)

    fallback = autoscaler_state(scaled_object(status=keda_status(fallback="True")), hpa(4, 6))
    assert (fallback.state, fallback.target, fallback.cell()) == ("fallback", 6, "target 6, now 4 (fallback)")

    # min 0 and no active trigger: KEDA keeps it at 0 (the HPA, min 1, does not say so).
    idle = autoscaler_state(scaled_object(lo=0, status=keda_status(active="False")), hpa(1, 1))
    assert (idle.state, idle.target) == ("idle", 0)
    # min 1 and inactive: the HPA's target stands.
    assert autoscaler_state(scaled_object(lo=1, status=keda_status(active="False")), hpa(1, 1)).target == 1


def test_keda_defaults_apply_when_the_bounds_are_unset():
    a = autoscaler_state(scaled_object(lo=None, hi=None), None)
    assert (a.min, a.max, a.bounds) == (0, 100, "KEDA 0..100")


def test_keda_ready_without_its_hpa_is_said():
    a = autoscaler_state(scaled_object(status=keda_status()), None)
    assert a.state == "no-hpa" and a.target is None and "keda-hpa-support" in a.reason


# --- rooms to agents ----------------------------------------------------------------------------


def room_routes() -> list[RoomRoute]:
    region, agents = local()
    return routes("local", agents, [])


def attributed(name: str, dispatched: tuple[str, ...] | None = ()) -> tuple[list[AgentKey], str]:
    _, agents = local()
    room = LiveRoom(name, dispatched=dispatched)
    attribute(room, agent_names(agents), room_routes())
    return room.agents, room.by


def test_a_rooms_dispatch_decides_its_agent_whatever_its_name():
    assert attributed("bv-call_+15550100199_x", ("bellavista-reservations",)) == ([BELLA], "dispatch")
    # bellavista's room prefix, northwind's agent dispatched: northwind's room, never bellavista's.
    assert attributed("bv-call_+15550100199_y", ("northwind-support",)) == ([SUPPORT], "dispatch")
    # a dispatch of an agent that is not the region's: nobody's here, even with a matching name.
    assert attributed("bv-call_+15550100199_z", ("someone-else",)) == ([], "")


def test_without_a_named_dispatch_the_rule_naming_attributes():
    # LiveKit's automatic dispatch has an empty agent name: it names no agent.
    assert attributed("bv-call_+15550100199_x", ("",)) == ([BELLA], "room name")
    assert attributed("nw-sched_+442079460123_Ab", ()) == ([SCHED], "room name")
    assert attributed("nw-support_+15550100199_Q", None) == ([SUPPORT], "room name")  # ListDispatch failed
    # a prefix is followed by "_" in every room the server names: "bv-callback" is not bv-call's.
    assert attributed("bv-callback_1", ()) == ([], "")
    assert attributed("lobby", ()) == ([], "")


def test_the_same_prefix_on_two_tenants_attributes_to_neither():
    a = RoomRoute(AgentKey("t1", "a"), "individual", prefix="call")
    b = RoomRoute(AgentKey("t2", "b"), "callee", prefix="call")
    longer = RoomRoute(AgentKey("t3", "c"), "individual", prefix="call_vip")
    room = LiveRoom("call_+1555_x")
    attribute(room, {}, [a, b])
    assert room.agents == []
    room = LiveRoom("call_vip_+1555_x")
    attribute(room, {}, [a, b, longer])
    assert room.agents == [AgentKey("t3", "c")]  # the longest prefix wins
    direct = RoomRoute(AgentKey("t4", "d"), "direct", room="front-desk")
    for name, want in (("front-desk", [AgentKey("t4", "d")]), ("front-desk_2", [])):
        room = LiveRoom(name)
        attribute(room, {}, [direct])
        assert room.agents == want


def test_two_agents_under_one_livekit_name_are_ambiguous():
    room = LiveRoom("x", dispatched=("a-b-c",))
    attribute(room, {"a-b-c": [AgentKey("a-b", "c"), AgentKey("a", "b-c")]}, [])
    assert room.agents == []


def test_routes_come_from_the_live_rules_the_region_owns_then_the_manifests():
    region, agents = local()
    owner = Owner("local", "bellavista", "reservations", "rule")
    live = api.SIPDispatchRuleInfo(
        name="vx-bellavista-reservations", metadata=ownership_metadata(owner, "agents/reservations.yaml"),
        rule=api.SIPDispatchRule(dispatch_rule_individual=api.SIPDispatchRuleIndividual(room_prefix="bv-live")))
    other_region = api.SIPDispatchRuleInfo(
        name="x", metadata=ownership_metadata(Owner("us-east", "northwind", "support", "rule"), None),
        rule=api.SIPDispatchRule(dispatch_rule_individual=api.SIPDispatchRuleIndividual(room_prefix="nw-evil")))
    unowned = api.SIPDispatchRuleInfo(
        name="y", rule=api.SIPDispatchRule(dispatch_rule_direct=api.SIPDispatchRuleDirect(room_name="z")))
    got = {(r.key, r.dispatch, r.prefix, r.room) for r in routes("local", agents, [live, other_region, unowned])}
    assert got == {
        (BELLA, "individual", "bv-live", ""),  # the server's rule, not the manifest's bv-call
        (SCHED, "callee", "nw-sched", ""),
        (SUPPORT, "individual", "nw-support", ""),
    }


# --- assembling, the drift line, JSON --------------------------------------------------------------


def workload(ns: str, name: str, component: str, labels: dict[str, str], desired: int = 1, ready: int = 1,
             scaler: Autoscaler | None = None) -> Workload:
    w = Workload(ns, "Deployment" if component != "inference" else "StatefulSet", name, component, desired, ready,
                 labels={"app.kubernetes.io/component": component, "app.kubernetes.io/instance": name, **labels},
                 nodes=["n-0", "n-0"][:ready])
    if scaler is not None:
        w.autoscaler = scaler
    return w


def sample_status() -> RegionStatus:
    region, agents = local()
    workloads = [
        workload("vox-t-bellavista", "reservations", "agent",
                 {"voxplane.io/agent": "reservations", "voxplane.io/tenant": "bellavista"}, 2, 2,
                 autoscaler_state(scaled_object("reservations", 1, 25), None)),
        workload("vox-t-northwind", "old", "agent", {"voxplane.io/agent": "old", "voxplane.io/tenant": "northwind"}),
        workload("vox-inference", "chat", "inference", {}),
        workload("vox-system", "livekit", "sfu", {}),
    ]
    rooms = [LiveRoom("bv-call_+1_a", 2, 1, 1, ("bellavista-reservations",)),
             LiveRoom("bv-call_+1_b", 1, 1, 0, ("northwind-support",)),
             LiveRoom("lobby", 1, 0, 0, ())]
    for r in rooms:
        attribute(r, agent_names(agents), room_routes())
    st = RegionStatus("local", "2026-01-31T12:00:00Z", kube_server="https://k", kube_context="ctx",
                      livekit_url="http://lk", drift=DriftSummary(0, 1))
    return assemble(st, region, agents, workloads, rooms)


def test_running_autoscalers_are_said_with_their_targets():
    """Where KEDA runs (the dev cluster does), status says which autoscalers run and what they want."""
    st = sample_status()
    running = autoscaler_state(scaled_object("support", 2, 40, keda_status()), hpa(2, 3))
    st.agents[0].workload.autoscaler = running  # type: ignore[union-attr]
    lines = view.plain(view.frame(st)).splitlines()
    row = next(ln for ln in lines if ln.startswith("bellavista/reservations"))
    assert row.split()[5:8] == ["target", "3,", "now"]
    assert ("autoscalers running: 1 (target replicas: support 3): KEDA keeps each ScaledObject's keda-hpa-* HPA, "
            "the HPA controller sets the replicas") in lines
    assert not any(ln.startswith("no autoscaler running") for ln in lines)


def test_assemble_joins_manifests_cluster_and_rooms():
    st = sample_status()
    rows = {(a.tenant, a.agent): a for a in st.agents}
    assert set(rows) == {("bellavista", "reservations"), ("northwind", "scheduler"), ("northwind", "support"),
                         ("northwind", "old")}
    assert rows[("northwind", "old")].declared is False
    bella = rows[("bellavista", "reservations")]
    assert bella.workload is not None and (bella.workload.desired, bella.workload.ready) == (2, 2)
    assert bella.activity is not None and bella.activity.as_dict() == {
        "rooms": 1, "participants": 2, "sip_calls": 1, "agent_participants": 1}
    assert rows[("northwind", "support")].activity.rooms == 1  # the room named like bellavista's
    assert rows[("northwind", "support")].workload is None  # declared, not deployed
    assert [r.name for r in st.other_rooms] == ["lobby"]
    assert [m.model for m in st.models] == ["chat", "kokoro", "whisper"]
    assert [w.name for w in st.platform] == ["livekit"]


def test_the_json_shape_is_stable():
    doc = json.loads(json.dumps(sample_status().as_dict()))
    assert list(doc) == ["region", "read_at", "kubernetes", "livekit", "agents", "models", "platform",
                         "other_rooms", "livekit_objects", "drift", "errors"]
    assert doc["kubernetes"] == {"server": "https://k", "context": "ctx", "error": None}
    assert doc["livekit"] == {"url": "http://lk", "error": None, "rooms": 3, "participants": 4, "sip_calls": 2}
    bella = next(a for a in doc["agents"] if a["agent"] == "reservations")
    assert list(bella) == ["tenant", "agent", "livekit_agent", "namespace", "declared", "workload", "autoscaler",
                           "activity"]
    assert bella["livekit_agent"] == "bellavista-reservations"
    assert list(bella["workload"]) == ["namespace", "kind", "name", "component", "desired", "ready", "nodes"]
    assert list(bella["autoscaler"]) == ["state", "kind", "name", "min", "max", "target", "current", "hpa", "reason"]
    assert bella["autoscaler"]["state"] == "not-running" and bella["autoscaler"]["target"] is None
    assert bella["activity"] == {"rooms": 1, "participants": 2, "sip_calls": 1, "agent_participants": 1,
                                 "room_names": ["bv-call_+1_a"]}
    assert doc["other_rooms"] == [{"room": "lobby", "participants": 1, "sip_calls": 0, "agent_participants": 0,
                                   "dispatched_agents": []}]
    assert doc["drift"] == {"kubernetes": 0, "livekit": 1, "errors": {},
                            "summary": "drift: 0 kubernetes, 1 livekit (voxplane drift local for details)"}
    assert doc["errors"] == []
    chat = doc["models"][0]
    assert list(chat) == ["model", "kind", "namespace", "declared", "workload", "autoscaler", "gpu_check"]
    assert chat["autoscaler"] is None  # no ScaledObject found for it
    assert chat["gpu_check"] == []  # a workload whose pods report no preflight
    assert next(m for m in doc["models"] if m["model"] == "kokoro")["gpu_check"] is None  # not deployed


def test_the_drift_line():
    assert DriftSummary(0, 0).line("local") == "drift: 0 kubernetes, 0 livekit"
    assert DriftSummary(0, 1).line("us-east") == "drift: 0 kubernetes, 1 livekit (voxplane drift us-east for details)"
    assert DriftSummary(None, 0, {"kubernetes": "x"}).line("eu-west") == \
        "drift: kubernetes not compared, 0 livekit (voxplane drift eu-west for details)"


def test_the_text_frame():
    text = view.plain(view.frame(sample_status()))
    lines = text.splitlines()
    assert lines[0] == "region local  ·  read 2026-01-31T12:00:00Z  ·  cluster https://k (context ctx)  ·  livekit http://lk"
    row = next(ln for ln in lines if ln.startswith("bellavista/reservations"))
    assert row.split() == ["bellavista/reservations", "vox-t-bellavista", "2/2", "KEDA", "1..25", "no", "autoscaler",
                           "running", "1", "2", "1", "n-0(2)"]
    assert next(ln for ln in lines if ln.startswith("northwind/support")).split()[2:4] == ["not", "deployed"]
    assert any(ln.startswith("northwind/old (not in manifests)") for ln in lines)
    assert any(ln.startswith("lobby ") for ln in lines)
    assert "rooms: 3 active, 4 participants, 2 SIP calls (2 attributed to the region's agents, 1 other)" in lines
    assert any(ln.startswith("no autoscaler running: ScaledObject reservations has no status") for ln in lines)
    assert lines[-1] == "drift: 0 kubernetes, 1 livekit (voxplane drift local for details)"


# --- the command -----------------------------------------------------------------------------------


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubeconfig and a LiveKit URL that point at closed ports on loopback."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:{free_port()}", insecure-skip-tls-verify: true}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: voxplane-local, context: {{cluster: c, user: u}}}}]
current-context: voxplane-local
""")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("LIVEKIT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("LIVEKIT_API_KEY", "k")
    monkeypatch.setenv("LIVEKIT_API_SECRET", "s" * 32)
    return kubeconfig


def test_unreachable_servers_still_print_the_declared_rows_and_exit_1(nowhere: Path):
    result = CliRunner().invoke(main, ["status", "local", "--root", str(REPO), "--format", "json"],
                                catch_exceptions=False)
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["kubernetes"]["error"].startswith("reading the cluster at https://127.0.0.1:")
    assert "cannot reach LiveKit" in doc["livekit"]["error"]
    assert {a["agent"] for a in doc["agents"]} == {"reservations", "scheduler", "support"}
    assert all(a["workload"] is None and a["activity"] is None for a in doc["agents"])
    assert doc["drift"]["kubernetes"] is None and doc["drift"]["livekit"] is None
    assert doc["drift"]["summary"] == "drift: kubernetes not compared, livekit not compared (voxplane drift local for details)"
    assert [e.split(":")[0] for e in doc["errors"]] == ["kubernetes", "livekit"]
    assert "error: kubernetes: reading the cluster" in result.stderr


def test_text_output_says_what_was_not_read(nowhere: Path):
    result = CliRunner().invoke(main, ["status", "local", "--root", str(REPO)], catch_exceptions=False)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert any(ln.startswith("not read: kubernetes: reading the cluster") for ln in lines)
    assert any(ln.startswith("not read: livekit: cannot reach LiveKit") for ln in lines)
    assert next(ln for ln in lines if ln.startswith("bellavista/reservations")).split()[2:4] == ["not", "deployed"]


def test_usage_and_input_errors(run_cli):
    result = CliRunner().invoke(main, ["status", "local", "--interval", "1"])
    assert result.exit_code == 2 and "--interval needs --watch" in result.output
    result = CliRunner().invoke(main, ["status", "local", "--watch", "--interval", "0"])
    assert result.exit_code == 2
    result = CliRunner().invoke(main, ["status", "nowhere", "--root", str(REPO)])
    assert result.exit_code == 1 and "no region 'nowhere'" in result.stderr


# --- the watch loop --------------------------------------------------------------------------------


def frames_until_interrupt(fmt: str, monkeypatch: pytest.MonkeyPatch, n: int = 2) -> str:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    term.configure()
    readings = []

    def read() -> RegionStatus:
        st = sample_status()
        st.read_at = f"2026-01-31T12:00:0{len(readings)}Z"
        readings.append(st)
        return st

    def sleep(_: float) -> None:
        if len(readings) >= n:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        view.watch(read, 0.5, fmt, sleep=sleep)
    return out.getvalue()


def test_watch_to_a_pipe_prints_each_frame_after_the_last(monkeypatch: pytest.MonkeyPatch):
    text = frames_until_interrupt("text", monkeypatch)
    heads = [ln for ln in text.splitlines() if ln.startswith("region local")]
    assert [h.split("  ·  ")[1] for h in heads] == ["read 2026-01-31T12:00:00Z", "read 2026-01-31T12:00:01Z"]
    assert text.count("drift: 0 kubernetes, 1 livekit") == 2


def test_watch_as_json_is_one_object_a_line(monkeypatch: pytest.MonkeyPatch):
    lines = frames_until_interrupt("json", monkeypatch, n=3).splitlines()
    assert [json.loads(ln)["read_at"] for ln in lines] == [f"2026-01-31T12:00:0{i}Z" for i in range(3)]


# --- the GPU preflight, as the model pods' init containers report it -----------------------------

OK_LINE = "gpu preflight: ok: 1 x NVIDIA-L4 (22.5 GiB), MIG off, driver 570.124.06, CUDA 12.8"
FAILED_LINE = ("gpu preflight of model chat: failed: GPU 0 is NVIDIA-L4, node group h100 declares "
               "NVIDIA-H100-80GB-HBM3 (gpu_product) (NVML: 1 x NVIDIA-L4 (22.5 GiB), MIG off, driver 570.124.06, CUDA 12.8)")


def model_pod(name: str, status: dict[str, Any] | None, *, init: bool = True) -> dict[str, Any]:
    """A model pod as the API returns it: the rendered init container, and the status given."""
    spec: dict[str, Any] = {"nodeName": "gpu-0", "containers": [{"name": "server"}]}
    if init:
        spec["initContainers"] = [{"name": "gpu-preflight"}]
    pod: dict[str, Any] = {"metadata": {"name": name}, "spec": spec, "status": {}}
    if status is not None:
        pod["status"]["initContainerStatuses"] = [{"name": "gpu-preflight", **status}]
    return pod


def verdict(ok: bool, line: str) -> str:
    return json.dumps({"ok": ok, "line": line, "problems": [], "driver": "570.124.06", "cuda": "12.8",
                       "gpus": [{"name": "NVIDIA L4", "memory_mib": 23034, "mig": False, "uuid": "GPU-1"}]})


@pytest.mark.parametrize("status,state,line", [
    ({"state": {"terminated": {"exitCode": 0, "message": verdict(True, OK_LINE)}}}, "ok", OK_LINE),
    ({"state": {"terminated": {"exitCode": 1, "message": verdict(False, FAILED_LINE)}}}, "failed", FAILED_LINE),
    # Restarted after failing: the last run's verdict, not "waiting".
    ({"state": {"waiting": {"reason": "CrashLoopBackOff"}},
      "lastState": {"terminated": {"exitCode": 1, "message": verdict(False, FAILED_LINE)}}}, "failed", FAILED_LINE),
    # A crash leaves the log's tail (FallbackToLogsOnError), not JSON.
    ({"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "message": "loading\nKilled"}}}, "failed",
     "exit 137: Killed"),
    # kwok marks init containers Completed without running them: no verdict, never "ok".
    ({"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}, "no-report", "exited 0 without a report"),
    ({"state": {"running": {"startedAt": "2026-01-31T12:00:00Z"}}}, "running", "checking"),
    ({"state": {"waiting": {"reason": "PodInitializing"}}}, "waiting", "PodInitializing"),
    (None, "not-run", "not started"),
])
def test_the_preflight_state_of_a_pod_is_what_its_init_container_reports(status, state, line):
    from voxplane.status.preflight import preflight_of

    result = preflight_of(model_pod("chat-0", status))
    assert result is not None and (result.pod, result.node, result.state, result.line) == ("chat-0", "gpu-0", state, line)
    if state == "ok":
        assert (result.driver, result.cuda, result.gpus[0]["memory_mib"]) == ("570.124.06", "12.8", 23034)


def test_a_pod_without_the_preflight_has_none():
    from voxplane.status.preflight import preflight_of

    assert preflight_of(model_pod("x-0", None, init=False)) is None


def test_the_models_gpu_check_cell_and_the_lines_under_the_tables():
    from voxplane.status.preflight import preflight_of

    st = sample_status()
    chat = next(m for m in st.models if m.model == "chat")
    assert chat.workload is not None
    chat.workload.preflight = [r for r in (
        preflight_of(model_pod("chat-0", {"state": {"terminated": {"exitCode": 0, "message": verdict(True, OK_LINE)}}})),
        preflight_of(model_pod("chat-1", {"state": {"terminated": {"exitCode": 0, "message": verdict(True, OK_LINE)}}})),
        preflight_of(model_pod("chat-2", {"state": {"terminated": {"exitCode": 1, "message": verdict(False, FAILED_LINE)}}})),
    ) if r is not None]
    lines = view.plain(view.frame(st)).splitlines()
    header = next(ln for ln in lines if ln.startswith("model "))
    assert header.split() == ["model", "kind", "namespace", "ready", "autoscaler", "target", "gpu", "check", "nodes"]
    row = next(ln for ln in lines if ln.startswith("chat "))
    assert "1 failed, 2 ok" in row
    assert f"gpu check chat (2 pods): {OK_LINE}" in lines
    assert f"gpu check chat (chat-2): {FAILED_LINE}" in lines
    doc = st.as_dict()
    assert [r["state"] for r in next(m for m in doc["models"] if m["model"] == "chat")["gpu_check"]] == ["ok", "ok", "failed"]
