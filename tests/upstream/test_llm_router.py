"""The LLM router the render puts in front of an LLM's replicas (voxplane/desired/llm_router.py),
held against the vllm-router release its image installs (voxplane/llm_router/requirements.txt),
run from a venv built from that lock alone.

- Every example region's rendered router arguments go through the router's own launcher (its
  parser and checks) and build the router; what the render meant is what it parsed.
- The router started as rendered (tests/support/llm_router.py lists the rewrites) in front of two
  real vLLM servers started as the region's LLM: its probes' paths and the PodMonitor's port
  answer; a call (the `x-session-id` key the glue sends) stays on one replica for all its turns,
  which vLLM's own request counters show; new calls go to the replica with fewer active calls;
  an ended call (`/finish_session`, as the glue ends it) no longer counts.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import voxplane.llm_router
from voxplane.desired.llm_router import METRICS_PORT_NAME, POLICY, SESSION_HEADER

from tests.support.llm_router import RouterProcess, rendered_router, router_python
from tests.support.vllm import START_SECONDS, VllmServer
from tests.support.wait import wait_until
from .conftest import HERE, REGIONS, rendered

pytestmark = pytest.mark.integration

SERVED_NAME = "meta-llama/Llama-3.2-3B-Instruct"
ROUTED = [r for r in REGIONS if any(o["kind"] == "Deployment" and o["metadata"]["name"] == "chat-router" for o in rendered(r))]


def test_the_regions_with_several_llm_replicas_have_a_router_and_local_has_none():
    assert ROUTED == ["eu-west", "us-east"]
    assert not any(o["metadata"]["name"].endswith("-router") for o in rendered("local"))


def test_the_image_installs_the_router_release_the_docs_name():
    lock = (Path(voxplane.llm_router.FOLDER) / "requirements.txt").read_text()
    assert re.search(rf"^vllm-router=={re.escape(voxplane.llm_router.VERSION)} \\$", lock, re.M)
    installed = subprocess.run([str(router_python()), "-c", "import importlib.metadata as m; print(m.version('vllm-router'))"],
                               capture_output=True, text=True, check=True).stdout.strip()
    assert installed == voxplane.llm_router.VERSION


@pytest.mark.parametrize("region", ROUTED)
def test_rendered_arguments_pass_the_routers_own_launcher(region: str):
    container = rendered_router(region)
    done = subprocess.run([str(router_python()), str(HERE / "router_cli.py"), *container["args"]],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    parsed = json.loads(done.stdout.strip().splitlines()[-1])
    [sts] = [o for o in rendered(region) if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "chat"]
    model_port = sts["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert parsed["policy"] == POLICY
    assert parsed["service_discovery"] is True
    assert parsed["selector"] == sts["spec"]["selector"]["matchLabels"]
    assert parsed["service_discovery_namespace"] == sts["metadata"]["namespace"]
    assert parsed["service_discovery_port"] == model_port
    assert parsed["port"] == ports["http"] == model_port
    assert parsed["prometheus_port"] == ports[METRICS_PORT_NAME] and parsed["prometheus_host"] == "0.0.0.0"


def test_the_router_refuses_what_the_render_must_not_produce():
    """The check can fail: a policy it does not have."""
    args = list(rendered_router("us-east")["args"])
    args[args.index("--policy") + 1] = "sticky_round_robin"
    done = subprocess.run([str(router_python()), str(HERE / "router_cli.py"), *args], capture_output=True, text=True)
    assert done.returncode == 2 and "invalid choice" in done.stderr


# --- the router in front of two real replicas ----------------------------------------------------------


@pytest.fixture(scope="module")
def second_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    server = VllmServer(tiny_model, tmp_path_factory.mktemp("vllm-b"))
    try:
        yield server.start().wait_ready()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def router(vllm_server: VllmServer, second_server: VllmServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RouterProcess]:
    proc = RouterProcess("us-east", [vllm_server.base_url, second_server.base_url], tmp_path_factory.mktemp("router"))
    try:
        yield proc.start().wait_ready()
    finally:
        proc.stop()


def _turn(router: RouterProcess, call: str, text: str) -> dict[str, Any]:
    body = json.dumps({"model": SERVED_NAME, "max_tokens": 4, "messages": [{"role": "user", "content": text}]}).encode()
    req = urllib.request.Request(f"{router.base_url}/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json", SESSION_HEADER: call})
    with urllib.request.urlopen(req, timeout=120) as r:
        reply: dict[str, Any] = json.loads(r.read())
    return reply


def _served(servers: list[VllmServer]) -> list[float]:
    return [s.metric("vllm:request_success_total") for s in servers]


def _replica_of(router: RouterProcess, servers: list[VllmServer], call: str, text: str) -> int:
    """Which server answered one turn of `call` (one request at a time: exactly one count moves)."""
    before = _served(servers)
    _turn(router, call, text)
    # vLLM counts a request as its output is processed, next to the reply: wait for the count.
    after = wait_until("the turn counted by a replica", lambda: a if sum(a := _served(servers)) > sum(before) else None,
                       timeout=10)
    moved = [i for i, (a, b) in enumerate(zip(before, after)) if b == a + 1]
    assert len(moved) == 1 and sum(after) == sum(before) + 1, (before, after)
    return moved[0]


@pytest.mark.timeout(2 * START_SECONDS + 300)
def test_probes_and_metrics_port_answer_as_rendered(router: RouterProcess):
    container = rendered_router("us-east")
    for probe in ("readinessProbe", "livenessProbe"):
        path = container[probe]["httpGet"]["path"]
        with urllib.request.urlopen(router.base_url + path, timeout=5) as r:
            assert r.status == 200, path
    # Before any request the router exports its workers' gauges (its request counters appear with
    # the first request): the rendered metrics port serves vllm-router's own metrics.
    names = {name for name, _, _ in router.metrics()}
    assert {"vllm_router_active_workers", "vllm_router_worker_health"} <= names, sorted(names)


@pytest.mark.timeout(2 * START_SECONDS + 300)
def test_a_call_stays_on_one_replica_and_new_calls_go_to_the_less_loaded(
        router: RouterProcess, vllm_server: VllmServer, second_server: VllmServer):
    """Four calls, three turns each, one request at a time: every turn of a call is served by the
    replica that served its first; the four split two and two (a new call goes to the replica
    with fewer active calls). Two calls of one replica end (/finish_session): the next two new
    calls both go there."""
    servers = [vllm_server, second_server]
    placed: dict[str, int] = {}
    for turn in range(3):
        for call in ("call-a", "call-b", "call-c", "call-d"):
            replica = _replica_of(router, servers, call, f"turn {turn} of {call}")
            assert placed.setdefault(call, replica) == replica, (call, turn, placed)
    assert sorted(placed.values()) == [0, 0, 1, 1], placed
    log = router.log()
    for call in placed:
        assert f"new session '{call}'" in log  # the key came from the header
    ended = [c for c, r in placed.items() if r == 0]
    for call in ended:
        assert router.finish_session(call)[0] == 200
    assert [_replica_of(router, servers, c, "hello") for c in ("call-e", "call-f")] == [0, 0]
    for call in ("call-a", "call-b", "call-c", "call-d", "call-e", "call-f"):
        router.finish_session(call)


@pytest.mark.timeout(2 * START_SECONDS + 300)
def test_a_streamed_reply_passes_through_the_router(router: RouterProcess):
    body = json.dumps({"model": SERVED_NAME, "max_tokens": 8, "stream": True,
                       "messages": [{"role": "user", "content": "Hello"}]}).encode()
    req = urllib.request.Request(f"{router.base_url}/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json", SESSION_HEADER: "call-stream"})
    with urllib.request.urlopen(req, timeout=120) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        events = [line for line in r.read().decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) >= 3, events
    assert router.finish_session("call-stream")[0] == 200
