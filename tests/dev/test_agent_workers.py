"""Agent pods as real workers (voxplane/dev/podrunner.py) and calls on demand (voxplane/dev/calls.py),
with real parts only: the `local` region applied to the dev cluster (its agents cut to the
reservations pool, two sessions a worker), each placed agent pod run by the pod runner as a real
livekit-agents worker registering at the region's gateway in front of a real livekit-server,
Prometheus scraping what the deployed PodMonitor says, calls routed by the server's own dispatch
rules and joined by real rtc callers publishing audio. The models are tests/agents' stand-in
(fixed replies, silence): no test here judges a conversation, and a call must last as long as
its caller stays.

What this protects: the worker gets exactly its pod's environment (and every change to it is
listed), the pod's Ready follows the worker's registration and drain, a deleted pod stays
Terminating while its worker finishes its call and goes once it has exited, a rollout waits for
the new worker to register, the PodMonitor's labels reach the series the ScaledObject queries
(and a wrong port reaches nothing), a pool with no call yet reads 0, `voxplane dev cluster wait`
waits for a crashed worker to register again, and `voxplane dev calls` counts what the callers and
the server saw.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from voxplane.dev.calls import CallRun
from voxplane.dev.kubeclient import KubeClient
from voxplane.dev.workloads import unsettled

from ..support.gauges import GaugeTarget
from ..support.motion import Motion, call_run, condition, motion_with_stand_in_models, only_agents, set_scaling
from ..support.wait import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

NS = "vox-t-bellavista"
POOL = "reservations"
SELECTOR = "app.kubernetes.io/name=reservations"
NUMBER = "+13125550142"
SESSIONS = 2


def edit(root: Path) -> None:
    only_agents(root, {POOL})
    # Two sessions per worker: `validate` asks for headroom that starts a scale-up while one is free.
    set_scaling(root, POOL, min_workers=1, max_workers=3, sessions_per_worker=SESSIONS, target_utilization=45,
                scale_down_window=0)


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Motion]:
    with motion_with_stand_in_models(tmp_path_factory.mktemp("motion"), edit=edit) as m:
        yield m


def ready_pods(m: Motion) -> list[dict[str, Any]]:
    return m.ready_pods(NS, SELECTOR)


def worker_of(m: Motion, pod: str) -> dict[str, Any]:
    return m.worker_of(pod)


def worker_state(m: Motion, pod: str) -> dict[str, Any]:
    return m.worker_state(pod)


def settled_at_one_pod(m: Motion) -> list[dict[str, Any]]:
    """Until the pool is one Ready pod and no other (an earlier test's call may still have the HPA
    at two workers): that pod, in a list."""
    return wait_until("the pool at one Ready pod and no other", lambda: (lambda r: r if len(r) == 1 and len(
        m.pods(NS, SELECTOR)) == 1 else None)(ready_pods(m)), timeout=300, interval=1)


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def runner_events(m: Motion, event: str, pod: str) -> list[dict[str, Any]]:
    log = m.state / "cluster" / "logs" / "podrunner.log"
    out = []
    for line in log.read_text().splitlines():
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        if e.get("event") == event and e.get("pod") == f"{NS}/{pod}":
            out.append(e)
    return out


@pytest.fixture
def calls(region: Motion, tmp_path: Path) -> Iterator[CallRun]:
    with call_run(region, NUMBER, tmp_path) as run:
        yield run


def test_an_agent_pod_runs_as_a_worker_with_exactly_its_pods_environment(region: Motion) -> None:
    (pod,) = wait_until("the reservations pod Ready", lambda: ready_pods(region), timeout=300, interval=1)
    name = pod["metadata"]["name"]
    w = worker_of(region, name)
    assert w["state"] == "running" and w["ready"]
    environ = dict(item.split("=", 1) for item in Path(f"/proc/{w['pid']}/environ").read_text().split("\0") if "=" in item)
    container = pod["spec"]["containers"][0]
    rewritten = {r["variable"]: r for r in w["rewrites"]}
    secret = json.loads(region.kubectl("get", "secret", "-n", NS, "livekit-api", "-o", "json").stdout)["data"]
    import base64

    for item in container["env"]:
        var = item["name"]
        if var in rewritten:
            assert environ[var] == rewritten[var]["here"], var
        elif "value" in item:
            assert environ[var] == item["value"], var
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            if ref["name"] == "livekit-api":
                assert environ[var] == base64.b64decode(secret[ref["key"]]).decode(), var
            else:  # bellavista-booking: an existing Secret the dev cluster gave a dev value
                made = json.loads(region.kubectl("get", "secret", "-n", NS, ref["name"], "-o", "json").stdout)
                assert made["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "voxplane-dev"
                assert environ[var] == base64.b64decode(made["data"][ref["key"]]).decode(), var
    # Only addresses, ports and what the image sets were changed, each listed with its reason.
    assert set(rewritten) == {"LIVEKIT_URL", "VOXPLANE_STT_BASE_URL", "VOXPLANE_TTS_BASE_URL", "VOXPLANE_LLM_BASE_URL",
                              "VOXPLANE_HEALTH_PORT", "VOXPLANE_METRICS_PORT", "PYTHONPATH", "PATH", "HOME", "TMPDIR",
                              "HOSTNAME", "HF_HUB_OFFLINE", "(command)"}
    assert rewritten["LIVEKIT_URL"]["here"] == f"ws://127.0.0.1:{region.gateway.port}"
    assert all(r["why"] for r in w["rewrites"])
    # Values from Secrets are in the worker's environment, never in what is listed or logged.
    listed = subprocess.run([sys.executable, "-m", "voxplane.cli", "dev", "cluster", "workers", "--format", "json"],
                            capture_output=True, text=True, env={**os.environ, "VOXPLANE_DEV_STATE": str(region.state)})
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["workers"][0]["rewrites"] == w["rewrites"]
    runner_log = (region.state / "cluster" / "logs" / "podrunner.log").read_text()
    for var in ("LIVEKIT_API_SECRET", "BOOKING_API_TOKEN"):
        assert environ[var] not in listed.stdout and environ[var] not in runner_log
    # The worker registered under the rendered agent name, through the gateway.
    state = worker_state(region, name)
    assert state["registered"] and state["agent_name"] == "bellavista-reservations"
    assert state["sessions_per_worker"] == SESSIONS and state["prewarmed_target"] == SESSIONS


def test_a_pool_with_no_call_yet_reads_0_from_its_workers_own_series(region: Motion) -> None:
    (pod,) = wait_until("the reservations pod Ready", lambda: ready_pods(region), timeout=300, interval=1)
    selector = f'lk_agents_active_job_count{{namespace="{NS}",job="{NS}/{POOL}"}}'
    series = wait_until("the worker's series in Prometheus", lambda: region.query(selector), timeout=60, interval=1)
    assert [(s["metric"]["pod"], s["metric"]["container"], s["metric"]["endpoint"], s["value"][1]) for s in series] == \
        [(pod["metadata"]["name"], "agent", "metrics", "0")]


def test_a_podmonitor_naming_another_port_scrapes_nothing(region: Motion) -> None:
    def targets() -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{region.prometheus_url}/api/v1/targets?state=active", timeout=10) as r:
            return [t for t in json.load(r)["data"]["activeTargets"] if t["labels"].get("job") == f"{NS}/{POOL}"]

    wait_until("the pool's scrape target", targets, timeout=60, interval=1)
    patch = json.dumps([{"op": "replace", "path": "/spec/podMetricsEndpoints/0/port", "value": "prometheus"}])
    region.kubectl("patch", "podmonitor", POOL, "-n", NS, "--type=json", "-p", patch)
    try:
        wait_until("the pool's target gone", lambda: not targets(), timeout=60, interval=1)
    finally:
        region.apply()
    wait_until("the pool's target back", targets, timeout=60, interval=1)


def test_a_deleted_pod_stays_terminating_while_its_worker_finishes_its_call(region: Motion, calls: CallRun) -> None:
    (pod,) = wait_until("the reservations pod Ready", lambda: ready_pods(region), timeout=300, interval=1)
    name = pod["metadata"]["name"]
    calls.count = 1
    call = calls.place(0)
    with calls._admin() as admin:
        wait_until("the call answered", lambda: (calls.step(admin), call.state == "answered")[1], timeout=60, interval=0.2)
        assert worker_state(region, name)["active_jobs"] == 1

        region.kubectl("delete", "pod", "-n", NS, name, "--wait=false")

        def draining() -> dict[str, Any] | None:
            p = region.get("pod", NS, name)
            return p if p and condition(p, "Ready") == "False" else None

        # The worker drains: /ready says so, and the pod, still there, is no longer Ready.
        terminating = wait_until("the deleted pod not Ready while draining", draining, timeout=60, interval=0.5)
        assert terminating["metadata"]["deletionTimestamp"]
        assert worker_state(region, name)["draining"]
        # A replacement is placed; its worker registers.
        wait_until("the replacement Ready", lambda: [p for p in ready_pods(region) if p["metadata"]["name"] != name],
                   timeout=300, interval=1)
        # The call goes on on the draining worker; its pod stays.
        calls.step(admin)
        assert call.state == "answered", call
        assert region.get("pod", NS, name) is not None
        assert worker_state(region, name)["active_jobs"] == 1

        calls.end(0)
        calls.step(admin)
        wait_until("the drained pod removed", lambda: region.get("pod", NS, name) is None, timeout=60, interval=0.5)
        calls.step(admin)
    assert call.state == "answered"  # never dropped
    (deleted,) = runner_events(region, "deleted", name)
    assert deleted["exit_code"] == 0
    (terminating_event,) = runner_events(region, "terminating", name)
    assert terminating_event["grace_seconds"] == pod["spec"]["terminationGracePeriodSeconds"]


def test_a_rollout_removes_the_old_worker_only_once_the_new_one_is_registered(region: Motion) -> None:
    (old,) = settled_at_one_pod(region)
    region.kubectl("set", "env", f"deployment/{POOL}", "-n", NS, "ROLLOUT_MARK=1")
    try:
        (new,) = wait_until("the new pod Ready", lambda: [p for p in ready_pods(region)
                                                           if p["metadata"]["name"] != old["metadata"]["name"]],
                            timeout=300, interval=1)
        wait_until("the old pod gone", lambda: region.get("pod", NS, old["metadata"]["name"]) is None, timeout=120, interval=1)
        (deleting,) = runner_events(region, "terminating", old["metadata"]["name"])
        ready_at = next(c for c in new["status"]["conditions"] if c["type"] == "Ready")["lastTransitionTime"]
        # The old pod was deleted (its worker sent SIGTERM) only after the new worker was Ready.
        assert stamp(ready_at) <= deleting["t"]
        assert worker_state(region, new["metadata"]["name"])["registered"]
    finally:
        # The rendered template again (another rollout). Not by applying: server-side apply leaves
        # a field another manager added (kubectl's) where it is.
        region.kubectl("set", "env", f"deployment/{POOL}", "-n", NS, "ROLLOUT_MARK-")
    wait_until("the rendered pool back", lambda: (lambda r: len(r) == 1 and len(region.pods(NS, SELECTOR)) == 1)(
        ready_pods(region)), timeout=300, interval=1)


def test_a_pod_naming_a_missing_secret_waits_and_the_pool_keeps_serving(region: Motion) -> None:
    wait_until("a reservations pod Ready", lambda: ready_pods(region), timeout=300, interval=1)
    patch = json.dumps([{"op": "add", "path": "/spec/template/spec/containers/0/env/-",
                         "value": {"name": "EXTRA", "valueFrom": {"secretKeyRef": {"name": "nobody-made-this", "key": "k"}}}}])
    region.kubectl("patch", f"deployment/{POOL}", "-n", NS, "--type=json", "-p", patch)
    try:
        def stuck() -> str | None:
            for p in region.pods(NS, SELECTOR):
                for s in (p.get("status") or {}).get("containerStatuses") or []:
                    waiting = s.get("state", {}).get("waiting") or {}
                    if waiting.get("reason") == "CreateContainerConfigError":
                        return str(waiting.get("message"))
            return None

        message = wait_until("the new pod waiting on its Secret", stuck, timeout=120, interval=1)
        assert message == 'secret "nobody-made-this" not found'
        assert len(ready_pods(region)) == 1  # maxUnavailable 0: the old worker stays
    finally:
        region.kubectl("set", "env", f"deployment/{POOL}", "-n", NS, "EXTRA-")  # kubectl's field: see above
    wait_until("the rendered pool back", lambda: (lambda r: len(r) == 1 and len(region.pods(NS, SELECTOR)) == 1)(
        ready_pods(region)), timeout=300, interval=1)


def test_dev_cluster_wait_returns_once_a_crashed_worker_registered_again(region: Motion) -> None:
    """What `make demo` waits for before its `pulumi up --refresh` (voxplane/dev/workloads.py): the
    applied region's workloads all read settled; a worker that dies unsettles its Deployment until
    the pod runner has restarted it and it registered again, and `voxplane dev cluster wait`
    returns only then."""
    (pod,) = settled_at_one_pod(region)
    name = pod["metadata"]["name"]
    client = KubeClient(region.kubeconfig)
    try:
        assert unsettled(client) == {}
        before = worker_of(region, name)
        os.killpg(before["pid"], signal.SIGKILL)
        why = wait_until("the pool's Deployment unsettled", lambda: unsettled(client).get(f"Deployment {NS}/{POOL}"),
                         timeout=60, interval=0.2)
        assert why == "0/1 available"
        waited = subprocess.run([sys.executable, "-m", "voxplane.cli", "dev", "cluster", "wait", "--timeout", "180"],
                                capture_output=True, text=True, timeout=240,
                                env={**os.environ, "VOXPLANE_DEV_STATE": str(region.state)})
        assert waited.returncode == 0, waited.stderr
        assert f"Deployment {NS}/{POOL}" in waited.stderr and "1 workload(s) settled" in waited.stderr
        assert unsettled(client) == {}
        w = worker_of(region, name)
        assert w["ready"] and w["restarts"] == before["restarts"] + 1 and worker_state(region, name)["registered"]
    finally:
        client.close()


def dev_calls(region: Motion, *args: str) -> subprocess.CompletedProcess[str]:
    lk = region.lk.livekit
    env = {**os.environ, "VOXPLANE_DEV_STATE": str(region.state), "LIVEKIT_URL": lk.http_url,
           "LIVEKIT_API_KEY": lk.api_key, "LIVEKIT_API_SECRET": lk.api_secret,
           "VOXPLANE_LIVEKIT_REDIS": region.lk.redis.address}
    return subprocess.run([sys.executable, "-m", "voxplane.cli", "dev", "calls", "local", "--root", str(region.root),
                           *args, "--format", "json"], capture_output=True, text=True, env=env, timeout=600)


def test_dev_calls_places_calls_through_the_routing_and_counts_them_each_second(region: Motion) -> None:
    wait_until("a reservations pod Ready", lambda: ready_pods(region), timeout=300, interval=1)
    proc = dev_calls(region, "--to", NUMBER, "--concurrent", str(SESSIONS), "--duration", "8")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    *seconds, final = lines
    assert [s["t"] for s in seconds] == list(range(1, len(seconds) + 1))
    assert all(s["placed"] == SESSIONS for s in seconds)
    assert any(s["in_call"] == SESSIONS for s in seconds)
    assert final["summary"]["answered"] == SESSIONS and final["summary"]["refused"] == 0
    rooms = {c["room"] for c in final["calls"]}
    assert len(rooms) == SESSIONS and all(r.startswith("bv-call_+1555") for r in rooms)  # the rule: prefix_caller_random


def test_dev_calls_to_a_number_no_rule_accepts_are_refused_and_it_exits_non_zero(region: Motion) -> None:
    proc = dev_calls(region, "--to", "+15550000000", "--concurrent", "1", "--duration", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    final = json.loads(proc.stdout.splitlines()[-1])
    assert final["summary"]["refused"] == 1 and final["calls"][0]["state"] == "refused"
    assert "livekit-sip" in final["calls"][0]["reason"]


def test_the_chat_models_scaledobject_reads_vllms_waiting_requests(region: Motion) -> None:
    """The rendered chat ScaledObject's query, evaluated by the dev Prometheus over what the chat
    PodMonitor scrapes (a stand-in serving vLLM's metric names on the pod's `http` port) and
    served by KEDA to the HPA controller: 7 waiting requests against a target of 5 a replica asks
    for 2 replicas, held at the model's maximum of 1."""
    from voxplane.dev import standins

    model = region.region.models["chat"]
    # vLLM's name and labels (tests/upstream/test_vllm_server.py checks the real server serves them).
    stand_in = GaugeTarget("vllm:num_requests_waiting", 7, labels={"engine": "0", "model_name": model.model_id})
    standins.publish_pod_port("vox-inference", "chat-0", model.port, stand_in.address)
    try:
        query = 'vllm:num_requests_waiting{namespace="vox-inference",job="vox-inference/chat"}'
        series = wait_until("vLLM's gauge in Prometheus", lambda: [s for s in region.query(query) if s["value"][1] == "7"],
                            timeout=90, interval=1)
        assert series[0]["metric"]["pod"] == "chat-0" and series[0]["metric"]["model_name"] == model.model_id

        def hpa_sees_it() -> dict[str, Any] | None:
            hpa = region.get("hpa", "vox-inference", "keda-hpa-chat")
            metrics = ((hpa or {}).get("status") or {}).get("currentMetrics") or []
            return hpa if metrics and metrics[0]["external"]["current"].get("averageValue") == "7" else None

        hpa = wait_until("the HPA reading 7 through KEDA", hpa_sees_it, timeout=120, interval=1)
        limited = next(c for c in hpa["status"]["conditions"] if c["type"] == "ScalingLimited")
        assert (limited["status"], limited["reason"]) == ("True", "TooManyReplicas")
        assert hpa["status"]["desiredReplicas"] == 1
    finally:
        standins.withdraw(stand_in.address)
        stand_in.close()
