"""A real vLLM server (the CPU build of the release the examples pin, scripts/ensure-vllm-venv.sh)
serving a tiny Llama made offline (tiny_model.py), started with exactly the container command,
arguments and environment the render gives a region's LLM, as the rendered uid 10001, which has
no account here either (no passwd entry), as in the vLLM image.

Rewritten, and only these, because this machine is not the pod (`Launch.rewrites` records each
one; tests/upstream/test_vllm_server.py holds the running process's own argv and environment
against the render):
- the model, the positional argument: the rendered Hugging Face id becomes the tiny Llama's
  folder; --served-model-name keeps the id, so requests name the model as agents do;
- --port's value: a free port (the rendered one is checked by test_vllm_parser.py), so several
  servers share this host as replicas share none;
- the pod's volumes: HF_HOME and XDG_CACHE_HOME under the server's folder instead of /models,
  HOME likewise instead of /tmp;
- added for the CPU build: VLLM_CPU_KVCACHE_SPACE (GiB of KV cache; the GPU build sizes it from
  --gpu-memory-utilization), VLLM_HOST_IP=127.0.0.1 (its internal queue binds an interface's
  address otherwise), HF_HUB_OFFLINE=1 (nothing is downloaded here), PATH;
- the process keeps the capability to read files it does not own (CAP_DAC_READ_SEARCH): the
  venv lives under /root, which uid 10001 cannot enter. It changes no file access the server
  makes to its own folders, nor the account lookup.

Starting takes about a minute on a busy 2-core machine and ~3.4 GB; the heavy runs go one at a
time (`flock /tmp/vox-heavy.lock`). Nothing skips: a venv that cannot be built or a server that
does not come up fails the test with the reason and the server's last log lines.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from voxplane.dev.ports import free_port
from voxplane.deploy.render import render

from .repo import REPO
from .tiny_model import TINY_PROFILE

__all__ = ["REGION", "MODEL", "UID", "START_SECONDS", "TINY_PROFILE", "KV_CACHE_GIB", "Launch", "VllmServer",
           "TINY_SCRIPT", "get", "launch", "make_tiny_model", "rendered_container", "rendered_objects", "scrape", "vllm_python"]

#: The region and model whose rendered LLM container the servers run.
REGION, MODEL = "local", "chat"
#: The rendered pod's uid (voxplane.desired.inference: run_as_user's default).
UID = 10001
#: Start budget: model load on a busy 2-core machine takes about a minute; several at once longer.
START_SECONDS = 600
#: VLLM_CPU_KVCACHE_SPACE, GiB: the CPU build's KV cache (2,097,152 tokens of the tiny model).
KV_CACHE_GIB = 1
TINY_SCRIPT = Path(__file__).resolve().parent / "tiny_model.py"
ENSURE = REPO / "scripts" / "ensure-vllm-venv.sh"


@functools.lru_cache(maxsize=None)
def vllm_python() -> Path:
    """The interpreter of the vLLM (CPU build) venv, built by scripts/ensure-vllm-venv.sh (cached)."""
    done = subprocess.run(["bash", str(ENSURE), "--print-path"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        pytest.fail(f"scripts/{ENSURE.name} failed: {done.stderr.strip()[-2000:]}")
    return Path(done.stdout.strip()) / "bin" / "python"


def make_tiny_model(folder: Path) -> Path:
    """The tiny Llama in `folder/model` (made by the vLLM venv's interpreter), readable by any uid."""
    model = folder / "model"
    subprocess.run([str(vllm_python()), str(TINY_SCRIPT), "tiny", str(model)], check=True)
    for path in [folder, model, *model.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return model


@functools.lru_cache(maxsize=None)
def _rendered(region: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(region, REPO).kubernetes)


def rendered_objects(region: str = REGION) -> tuple[dict[str, Any], ...]:
    return _rendered(region)


def rendered_container(region: str = REGION, model: str = MODEL) -> dict[str, Any]:
    """The vLLM container of the model's rendered StatefulSet."""
    sts = next(o for o in _rendered(region) if o["kind"] == "StatefulSet" and o["metadata"]["name"] == model)
    container: dict[str, Any] = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["vllm", "serve"], container["command"]
    return container


@dataclass(frozen=True)
class Launch:
    """How one server is started: `args` after `vllm serve`, the whole `env`, and each rewrite of
    the render (`what` -> (rendered, here))."""

    args: list[str]
    env: dict[str, str]
    rewrites: dict[str, tuple[str, str]]


#: The pod's paths and where they are here, relative to the server's folder.
MOVED_PATHS = {"/models": "models", "/tmp": "home"}
#: Variables the CPU build needs that the GPU image does not (beside PATH, which an image sets).
CPU_ENV = {"VLLM_HOST_IP": "127.0.0.1", "HF_HUB_OFFLINE": "1"}


def launch(container: dict[str, Any], model_dir: Path, work: Path, port: int, *,
           kv_cache_gib: int = KV_CACHE_GIB, without_env: tuple[str, ...] = ()) -> Launch:
    """The rendered container's `vllm serve` arguments and environment with the listed rewrites
    (module docstring); `without_env` drops rendered variables (a test of why one is there)."""
    rewrites: dict[str, tuple[str, str]] = {}
    args = list(container["args"])
    rewrites["model (positional)"] = (args[0], str(model_dir))
    args[0] = str(model_dir)
    i = args.index("--port")
    rewrites["--port"] = (args[i + 1], str(port))
    args[i + 1] = str(port)
    env: dict[str, str] = {}
    for item in container["env"]:
        if item["name"] in without_env:
            continue
        value = str(item["value"])
        for pod_path, here in MOVED_PATHS.items():
            if value == pod_path or value.startswith(pod_path + "/"):
                moved = str(work / here) + value[len(pod_path):]
                rewrites[f"env {item['name']}"] = (value, moved)
                value = moved
        env[item["name"]] = value
    added = {"PATH": "/usr/bin:/bin", "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib), **CPU_ENV}
    for name, value in added.items():
        assert name not in env, f"the render sets {name}: a rewrite would hide it"
        rewrites[f"env {name}"] = ("(unset)", value)
    env.update(added)
    return Launch(args, env, rewrites)


def get(url: str, timeout: float = 5) -> tuple[int, str]:
    """(status, body) of GET `url`; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")
LABEL = re.compile(r'(?P<k>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<v>(?:[^"\\]|\\.)*)"')


def scrape(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample of a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m and not line.startswith("#"):
            labels = {lm["k"]: lm["v"] for lm in LABEL.finditer(m["labels"] or "")}
            out.append((m["name"], labels, float(m["value"])))
    return out


@dataclass
class VllmServer:
    """One `vllm serve` process started as the render starts the region's LLM (see `launch`)."""

    model_dir: Path
    work: Path
    region: str = REGION
    model: str = MODEL
    kv_cache_gib: int = KV_CACHE_GIB
    without_env: tuple[str, ...] = ()
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    launched: Launch | None = None
    #: Every answer of /health while it started: (monotonic time, status or error name).
    health_seen: list[tuple[float, Any]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.work / "vllm.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> VllmServer:
        self.port = self.port or free_port()
        for folder in MOVED_PATHS.values():
            (self.work / folder).mkdir(parents=True, exist_ok=True)
            os.chown(self.work / folder, UID, UID)
        self.work.chmod(0o755)
        self.launched = launch(rendered_container(self.region, self.model), self.model_dir, self.work, self.port,
                               kv_cache_gib=self.kv_cache_gib, without_env=self.without_env)
        as_uid = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups",
                  "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
        vllm = vllm_python().parent / "vllm"  # the console script: the image's `vllm serve`
        # Output to a file, not a pipe nobody reads while it runs (a full pipe would stall it);
        # its own session, so stopping it stops its engine process too.
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen([*as_uid, str(vllm), "serve", *self.launched.args], env=self.launched.env,
                                         cwd=self.work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = START_SECONDS) -> VllmServer:
        """Until /health answers 200 (recording every answer before it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                pytest.fail(f"vLLM exited with {self.proc.returncode if self.proc else '?'}:\n{self.stop()[-3000:]}")
            try:
                status, _ = get(f"{self.base_url}/health", timeout=2)
                self.health_seen.append((time.monotonic(), status))
                if status == 200:
                    return self
            except (OSError, urllib.error.URLError) as e:
                self.health_seen.append((time.monotonic(), type(e).__name__))
            time.sleep(1)
        pytest.fail(f"vLLM did not answer /health within {timeout:.0f} s:\n{self.stop()[-3000:]}")

    def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        status, text = get(f"{self.base_url}/metrics")
        assert status == 200, text[:500]
        return scrape(text)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of `name`'s samples whose labels include `labels`."""
        return sum(v for n, lab, v in self.metrics() if n == name and all(lab.get(k) == x for k, x in labels.items()))

    def stop(self, sig: int = signal.SIGTERM) -> str:
        """Stop the server (SIGTERM: vLLM shuts its engine down too; SIGKILL for its whole
        session) and return its output."""
        if self.proc is not None and self.proc.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc is not None:
            try:  # an engine process left behind by a crash
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return self.log()

    def __enter__(self) -> VllmServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
