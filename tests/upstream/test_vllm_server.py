"""The real vLLM server, started as the render starts the local region's LLM: the rendered command,
arguments and environment, as the rendered uid 10001, which has no account here either (no passwd
entry), as in the vLLM image. tests/support/vllm.py lists the rewrites this machine forces; the
first test holds the running process's own argv and environment against the render and them.

Then what the rest of the render says about the server: the probes' path answers, the PodMonitor
scrapes a port and path that serve the metric the ScaledObject's query names, and that query,
evaluated by Prometheus' own engine (tools/promqleval) over what the server really exported under
load, with the target labels prometheus-operator adds, reads the server's own queue.
"""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.repo import REPO
from tests.support.vllm import (
    MODEL,
    REGION,
    START_SECONDS,
    UID,
    VllmServer,
    get,
    rendered_container,
    rendered_objects,
    scrape,
)

# Real servers and the tools `make servers` builds (vLLM's venv, promqleval).
pytestmark = pytest.mark.integration

SERVED_NAME = "meta-llama/Llama-3.2-3B-Instruct"
#: Rewrites tests/support/vllm.py may make, and nothing else (its docstring says why each).
ALLOWED_REWRITES = {"model (positional)", "--port", "env HF_HOME", "env XDG_CACHE_HOME", "env HOME", "env PATH",
                    "env VLLM_CPU_KVCACHE_SPACE", "env VLLM_HOST_IP", "env HF_HUB_OFFLINE"}


def _rendered(kind: str) -> dict[str, Any]:
    return next(o for o in rendered_objects(REGION) if o["kind"] == kind and o["metadata"]["name"] == MODEL)


def _proc_file(pid: int, name: str) -> list[str]:
    return Path(f"/proc/{pid}/{name}").read_bytes().rstrip(b"\0").decode().split("\0")


def test_the_uid_has_no_account_here_as_in_the_image():
    with pytest.raises(KeyError):
        import pwd

        pwd.getpwuid(UID)


@pytest.mark.timeout(START_SECONDS + 300)
def test_the_running_server_is_the_rendered_command_but_for_the_listed_rewrites(vllm_server: VllmServer):
    """What the kernel says the process runs (its argv, environment and uid), against the render:
    the same command and arguments in the same order, every rendered variable, and a difference
    only where a listed rewrite says so."""
    assert vllm_server.proc is not None and vllm_server.launched is not None
    container = rendered_container()
    pid = vllm_server.proc.pid
    argv = _proc_file(pid, "cmdline")
    # The console script runs under its venv's interpreter: [python, .../bin/vllm, serve, ...].
    assert Path(argv[1]).name == "vllm" and argv[2:3] == container["command"][1:]
    served = argv[3:]
    rendered = list(container["args"])
    assert len(served) == len(rendered), (served, rendered)
    rewrites = vllm_server.launched.rewrites
    assert set(rewrites) <= ALLOWED_REWRITES, set(rewrites) - ALLOWED_REWRITES
    changed = {i: (a, b) for i, (a, b) in enumerate(zip(rendered, served)) if a != b}
    port_at = rendered.index("--port") + 1
    assert changed == {0: rewrites["model (positional)"], port_at: rewrites["--port"]}, changed

    environ = dict(item.split("=", 1) for item in _proc_file(pid, "environ"))
    want = {e["name"]: str(e["value"]) for e in container["env"]}
    for name, value in want.items():
        assert environ[name] == rewrites.get(f"env {name}", (value, value))[1], name
    extra = {name for name in environ if name not in want}
    assert extra == {w[len("env "):] for w, (before, _) in rewrites.items() if w.startswith("env ") and before == "(unset)"}
    status = Path(f"/proc/{pid}/status").read_text()
    assert f"Uid:\t{UID}\t{UID}" in status


@pytest.mark.timeout(START_SECONDS + 300)
def test_without_user_vllm_dies_loading_the_model_as_a_uid_without_account(tiny_model, tmp_path):
    """Why the render sets USER: without it (nor LOGNAME) torch's getpass.getuser() looks the uid
    up in the passwd database, and the server exits before it ever answers."""
    server = VllmServer(tiny_model, tmp_path, without_env=("USER",)).start()
    assert server.proc is not None
    try:
        server.proc.wait(timeout=START_SECONDS)
    finally:
        output = server.stop()
    assert server.proc.returncode != 0, output[-3000:]
    assert "getpwuid(): uid not found" in output, output[-3000:]


@pytest.mark.timeout(START_SECONDS + 300)
def test_started_as_rendered_it_serves_the_model_under_its_rendered_name(vllm_server: VllmServer):
    """Ready (/health 200) means serving: the first request after it is answered by the model."""
    seen = vllm_server.health_seen
    assert seen[-1][1] == 200
    assert all(status != 200 for _, status in seen[:-1])
    body = json.dumps({"model": SERVED_NAME, "max_tokens": 4, "messages": [{"role": "user", "content": "Hello"}]}).encode()
    request = urllib.request.Request(f"{vllm_server.base_url}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as r:
        reply = json.loads(r.read())
    assert reply["model"] == SERVED_NAME
    assert reply["choices"][0]["message"]["role"] == "assistant"


@pytest.mark.timeout(START_SECONDS + 300)
def test_the_probes_path_and_the_podmonitors_port_and_path_serve(vllm_server: VllmServer):
    """The probes' path answers on the port they name, and the PodMonitor's port is the
    container's API port, whose /metrics has the metric the ScaledObject queries."""
    container = rendered_container()
    [port] = container["ports"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == port["name"]
        assert get(vllm_server.base_url + container[probe]["httpGet"]["path"])[0] == 200
    [endpoint] = _rendered("PodMonitor")["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == port["name"]
    status, metrics = get(vllm_server.base_url + endpoint["path"])
    assert status == 200
    names = {name for name, _, _ in scrape(metrics)}
    assert _queue_metric() in names, sorted(names)


def _queue_metric() -> str:
    query = _rendered("ScaledObject")["spec"]["triggers"][0]["metadata"]["query"]
    return query.split("(", 1)[1].split("{", 1)[0]


# --- the autoscaler's query over what the server exported under load ---------------------------------

#: More concurrent requests than the engine runs at once (its max_num_seqs on this CPU build:
#: 128), each long enough that the excess waits in its queue while the test scrapes.
IN_FLIGHT = 150
MAX_TOKENS = 800
SCRAPE_INTERVAL = 15  # the PodMonitor's interval


def _promqleval() -> Path:
    proc = subprocess.run(["bash", str(REPO / "scripts/ensure-tool.sh"), "promqleval", "--print-path"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        pytest.fail(f"cannot build tools/promqleval: {proc.stderr[-2000:]}")
    return Path(proc.stdout.strip())


def _target_labels() -> dict[str, str]:
    """The labels prometheus-operator gives every series it scrapes through the PodMonitor
    (namespace and job: voxplane.desired.inference.pod_monitor_job)."""
    monitor = _rendered("PodMonitor")
    ns = monitor["metadata"]["namespace"]
    return {"namespace": ns, "job": f"{ns}/{monitor['metadata']['name']}", "pod": f"{MODEL}-0",
            "instance": "10.0.0.7:8000", "container": "server", "endpoint": monitor["spec"]["podMetricsEndpoints"][0]["port"]}


@pytest.mark.timeout(START_SECONDS + 600)
def test_the_scaledobjects_query_reads_the_servers_own_queue_under_load(vllm_server: VllmServer):
    """150 streams at once: the engine runs 128 and queues the rest. Two scrapes a PodMonitor
    interval apart become the series Prometheus would hold; the rendered query, evaluated there
    by Prometheus' engine, equals the queue vLLM itself reported at each scrape, is above 0, and
    KEDA's AverageValue arithmetic on it asks for more replicas than one."""
    trigger = _rendered("ScaledObject")["spec"]["triggers"][0]
    assert trigger["metricType"] == "AverageValue"
    query, threshold = trigger["metadata"]["query"], float(trigger["metadata"]["threshold"])
    name = _queue_metric()
    stop = threading.Event()
    errors: list[BaseException] = []

    def one() -> None:
        body = json.dumps({"model": SERVED_NAME, "max_tokens": MAX_TOKENS, "ignore_eos": True, "stream": True,
                           "messages": [{"role": "user", "content": "Tell me about the weather."}]}).encode()
        req = urllib.request.Request(f"{vllm_server.base_url}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=600) as r:
                while not stop.is_set() and r.readline():
                    pass
        except Exception as e:  # noqa: BLE001 - reported below
            if not stop.is_set():
                errors.append(e)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(IN_FLIGHT)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 300
        while vllm_server.metric("vllm:num_requests_running") + vllm_server.metric(name) < IN_FLIGHT:
            assert time.monotonic() < deadline, "the requests never all reached the engine"
            assert not errors, errors[:3]
            time.sleep(0.5)
        scrapes = []
        for i in range(2):
            samples = vllm_server.metrics()
            scrapes.append((i * SCRAPE_INTERVAL, samples))
            if i == 0:
                time.sleep(1)  # scrape times are the series' own; the wall clock between them is not
    finally:
        stop.set()
    assert not errors, errors[:3]

    target = _target_labels()
    series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for t, samples in scrapes:
        for metric, labels, value in samples:
            full = {"__name__": metric, **labels, **target}
            key = tuple(sorted(full.items()))
            series.setdefault(key, {"labels": full, "samples": []})["samples"].append([t, value])
    payload = {"series": list(series.values()), "queries": [{"expr": query, "time": t} for t, _ in scrapes]}
    done = subprocess.run([str(_promqleval())], input=json.dumps(payload), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    for (t, samples), answer in zip(scrapes, answers):
        assert not answer.get("error"), answer
        [result] = answer["result"]
        waiting = sum(v for n, _, v in samples if n == name)
        running = sum(v for n, _, v in samples if n == "vllm:num_requests_running")
        assert result["value"] == waiting > 0, (t, result, waiting, running)
        assert running + waiting == IN_FLIGHT
        print(f"\nscrape at {t}s: running {running:.0f}, waiting {waiting:.0f}; query = {result['value']:.0f}, "
              f"KEDA asks for {math.ceil(result['value'] / threshold)} replicas (threshold {threshold:.0f})")
        assert math.ceil(result["value"] / threshold) > 1
    for t in threads:
        t.join(timeout=120)


@pytest.mark.timeout(START_SECONDS + 300)
def test_every_queue_metric_validate_accepts_is_a_gauge_this_release_exports(vllm_server: VllmServer):
    """voxplane/manifest/servers.py lists the gauges a vLLM model may scale on (`queue_metric`; validate
    refuses any other): each is a gauge on the running release's /metrics, and the metrics path
    is the one the PodMonitor scrapes."""
    from voxplane.manifest.servers import SERVERS

    vllm = SERVERS["vllm"]
    assert vllm.metrics_path is not None and vllm.queue_metrics
    status, metrics = get(vllm_server.base_url + vllm.metrics_path)
    assert status == 200
    gauges = {line.split()[2] for line in metrics.splitlines() if line.startswith("# TYPE ") and line.endswith(" gauge")}
    assert set(vllm.queue_metrics) <= gauges, sorted(g for g in gauges if g.startswith("vllm:"))
