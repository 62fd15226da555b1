"""The real vLLM server, started as the render starts it: the rendered command, arguments and
environment, as the rendered uid 10001, which has no account here either (no passwd entry), as in
the vLLM image.

Rewritten, and only these, because this machine is not the pod:
- the model: the rendered Hugging Face id becomes a tiny Llama made offline (tiny_model.py);
  --served-model-name keeps the id, so requests name the model as agents do;
- --port: a free port (the rendered one is checked by test_vllm_parser.py);
- the pod's volumes: HF_HOME and XDG_CACHE_HOME under the test's folder instead of /models, HOME
  likewise instead of /tmp;
- added for the CPU build: VLLM_CPU_KVCACHE_SPACE=1 (GiB of KV cache; the GPU build sizes it from
  --gpu-memory-utilization), VLLM_HOST_IP=127.0.0.1 (its internal queue binds an interface's
  address otherwise), HF_HUB_OFFLINE=1 (nothing is downloaded here);
- the process keeps the capability to read files it does not own (CAP_DAC_READ_SEARCH): the
  venv lives under /root, which uid 10001 cannot enter. It changes no file access the server
  makes to its own folders, nor the account lookup that these tests are about.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from .conftest import HERE, rendered

# Real servers and the tools `make servers` builds (vLLM's venv, lkconfig, redis-server).
pytestmark = pytest.mark.integration

REGION, MODEL = "local", "chat"
UID = 10001
#: Start budget: model load on a busy 2-core machine takes about a minute.
START_SECONDS = 600


def _container() -> dict[str, Any]:
    sts = next(o for o in rendered(REGION) if o["kind"] == "StatefulSet" and o["metadata"]["name"] == MODEL)
    return sts["spec"]["template"]["spec"]["containers"][0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def tiny_model(vllm_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "model"
    subprocess.run([str(vllm_python), str(HERE / "tiny_model.py"), "tiny", str(folder)], check=True)
    for path in [folder.parent, folder, *folder.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


def _env(work: Path, *, without: tuple[str, ...] = ()) -> dict[str, str]:
    """The rendered environment with the pod's paths moved under `work`, plus the CPU build's."""
    moved = {"/models": str(work / "models"), "/tmp": str(work / "home")}
    env: dict[str, str] = {}
    for item in _container()["env"]:
        if item["name"] in without:
            continue
        value = item["value"]
        for pod_path, here in moved.items():
            if value == pod_path or value.startswith(pod_path + "/"):
                value = here + value[len(pod_path):]
        env[item["name"]] = value
    env.update({"PATH": "/usr/bin:/bin", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_HOST_IP": "127.0.0.1",
                "HF_HUB_OFFLINE": "1"})
    return env


def _start(vllm_python: Path, model: Path, work: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`vllm serve` with the rendered arguments (model and port rewritten), as uid 10001."""
    for folder in ("models", "home"):
        (work / folder).mkdir(parents=True, exist_ok=True)
        os.chown(work / folder, UID, UID)
    work.chmod(0o755)
    container = _container()
    assert container["command"] == ["vllm", "serve"]
    args = [str(model), *container["args"][1:]]
    args[args.index("--port") + 1] = str(port)
    as_uid = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups",
              "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    vllm = vllm_python.parent / "vllm"  # the console script: the image's `vllm serve`
    # Output to a file, not a pipe nobody reads while it runs (a full pipe would stall the server).
    with (work / "vllm.log").open("wb") as log:
        return subprocess.Popen([*as_uid, str(vllm), "serve", *args], env=env, cwd=work, stdout=log,
                                stderr=subprocess.STDOUT)


def _get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _stop(proc: subprocess.Popen[bytes], work: Path) -> str:
    """Stop the server (SIGTERM: vLLM shuts down its engine too) and return its output."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return (work / "vllm.log").read_text(errors="replace")


def test_the_uid_has_no_account_here_as_in_the_image():
    with pytest.raises(KeyError):
        import pwd

        pwd.getpwuid(UID)


@pytest.mark.timeout(START_SECONDS + 300)
def test_without_user_vllm_dies_loading_the_model_as_a_uid_without_account(vllm_python, tiny_model, tmp_path):
    """Why the render sets USER: without it (nor LOGNAME) torch's getpass.getuser() looks the uid
    up in the passwd database, and the server exits before it ever answers."""
    proc = _start(vllm_python, tiny_model, tmp_path, _free_port(), _env(tmp_path, without=("USER",)))
    try:
        proc.wait(timeout=START_SECONDS)
    finally:
        output = _stop(proc, tmp_path)
    assert proc.returncode != 0, output[-3000:]
    assert "getpwuid(): uid not found" in output, output[-3000:]


@pytest.fixture(scope="module")
def server(vllm_python: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[tuple[float, Any]]]]:
    """The server started as rendered, and every answer of /health while it started."""
    work = tmp_path_factory.mktemp("vllm")
    port = _free_port()
    proc = _start(vllm_python, tiny_model, work, port, _env(work))
    base = f"http://127.0.0.1:{port}"
    seen: list[tuple[float, Any]] = []
    deadline = time.monotonic() + START_SECONDS
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"vLLM exited with {proc.returncode}:\n{_stop(proc, work)[-3000:]}")
            try:
                status, _ = _get(f"{base}/health", timeout=2)
                seen.append((time.monotonic(), status))
                if status == 200:
                    break
            except (OSError, urllib.error.URLError) as e:
                seen.append((time.monotonic(), type(e).__name__))
            time.sleep(1)
        else:
            pytest.fail(f"vLLM did not answer /health within {START_SECONDS} s:\n{_stop(proc, work)[-3000:]}")
        yield base, seen
    finally:
        _stop(proc, work)


@pytest.mark.timeout(START_SECONDS + 300)
def test_started_as_rendered_it_serves_the_model_under_its_rendered_name(server):
    """Ready (/health 200) means serving: the first request after it is answered by the model."""
    base, seen = server
    assert seen[-1][1] == 200
    assert all(status != 200 for _, status in seen[:-1])
    body = json.dumps({"model": "meta-llama/Llama-3.2-3B-Instruct", "max_tokens": 4,
                       "messages": [{"role": "user", "content": "Hello"}]}).encode()
    request = urllib.request.Request(f"{base}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as r:
        reply = json.loads(r.read())
    assert reply["model"] == "meta-llama/Llama-3.2-3B-Instruct"
    assert reply["choices"][0]["message"]["role"] == "assistant"


@pytest.mark.timeout(START_SECONDS + 300)
def test_the_probes_path_and_the_autoscaler_metric_exist(server):
    """The probes' path answers and the metric the ScaledObject queries is on /metrics, the path
    the PodMonitor scrapes, on the API port."""
    base, _ = server
    sts = next(o for o in rendered(REGION) if o["kind"] == "StatefulSet" and o["metadata"]["name"] == MODEL)
    container = sts["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert _get(base + container[probe]["httpGet"]["path"])[0] == 200
    monitor = next(o for o in rendered(REGION) if o["kind"] == "PodMonitor" and o["metadata"]["name"] == MODEL)
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == container["ports"][0]["name"]
    status, metrics = _get(base + endpoint["path"])
    assert status == 200
    scaled = next(o for o in rendered(REGION) if o["kind"] == "ScaledObject" and o["metadata"]["name"] == MODEL)
    query = scaled["spec"]["triggers"][0]["metadata"]["query"]
    name = query.split("(", 1)[1].split("{", 1)[0]
    assert name == "vllm:num_requests_waiting"
    assert any(line.startswith(name + "{") for line in metrics.splitlines()), metrics[:2000]


@pytest.mark.timeout(START_SECONDS + 300)
def test_every_queue_metric_validate_accepts_is_a_gauge_this_release_exports(server):
    """voxplane/manifest/servers.py lists the gauges a vLLM model may scale on (`queue_metric`; validate
    refuses any other): each is a gauge on the running release's /metrics, and the metrics path
    is the one the PodMonitor scrapes."""
    from voxplane.manifest.servers import SERVERS

    base, _ = server
    vllm = SERVERS["vllm"]
    assert vllm.metrics_path is not None and vllm.queue_metrics
    status, metrics = _get(base + vllm.metrics_path)
    assert status == 200
    gauges = {line.split()[2] for line in metrics.splitlines() if line.startswith("# TYPE ") and line.endswith(" gauge")}
    assert set(vllm.queue_metrics) <= gauges, sorted(g for g in gauges if g.startswith("vllm:"))
