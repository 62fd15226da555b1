"""Fixtures for the worker tests: the example agent programs run as real livekit-agents workers
against a real livekit-server + Redis on loopback, each with exactly the environment its rendered
Deployment gives it.

- Python: the venv scripts/ensure-agents-venv.sh builds from the platform base image's
  requirements (agents/_platform/requirements.txt: livekit-agents at the version the glue pins)
  and then the agent's own requirements.txt, as the two images install them; `HF_HUB_OFFLINE=1`
  (Silero's VAD ships in its wheel, nothing is downloaded at run time).
- Environment: the container env of the agent's Deployment in the render of region `local`
  (`voxplane.deploy.render.render("local", REPO).kubernetes`), with only these rewrites, each recorded
  in `Worker.rewrites` and checked by the tests: `LIVEKIT_URL` → the dev server; each
  `VOXPLANE_<ROLE>_BASE_URL` → for the LLM, a real vLLM started as the region's LLM is rendered
  (tests/support/vllm.py: the tiny Llama, the rewrites listed there), for STT and TTS a local
  stand-in (tests/agents/standin.py: no speech weights can be had here), where the test needs a
  working model, else a closed port on 127.0.0.1 (an unreachable model server: the in-cluster names
  would send DNS queries off the machine, the external provider's endpoint real requests); the two
  ports (`VOXPLANE_HEALTH_PORT`, `VOXPLANE_METRICS_PORT`) → free ports, so several workers share
  one host as they share none in a cluster. Secret references get values from the test
  (`LIVEKIT_API_KEY/SECRET`: the dev server's key). The process gets nothing else from the test's
  environment but what the image sets (PATH, HOME, PYTHONUNBUFFERED, PYTHONDONTWRITEBYTECODE, and
  PYTHONPATH: the base image's `/opt/voxplane` is the glue's folder agents/_platform here).
- Callers: tests/agents/caller.py, a real rtc participant in the agents' venv.

Nothing here skips: a venv that cannot be built, a server that cannot start or a worker that does
not register fails the test with the reason and the worker's last log lines.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from livekit import api

from voxplane.deploy import agent_base
from voxplane.dev.ports import free_port, free_ports
from voxplane.livekit.reconcile import sync
from voxplane.livekit.route import Call, Decision, RouteProbe, decide
from voxplane.livekit.secrets import StaticSecrets
from voxplane.manifest.loader import load
from voxplane.deploy.render import render

from ..support.repo import REPO
from ..support.servers import DevLiveKit, livekit_with_redis
from ..support.vllm import VllmServer
from ..support.wait import wait_until

ENSURE = REPO / "scripts" / "ensure-agents-venv.sh"
CALLER = Path(__file__).resolve().parent / "caller.py"
#: The platform glue's folder (voxplane.deploy.agent_base.FOLDER): the base image's PYTHONPATH.
GLUE_DIR = REPO / agent_base.FOLDER
REGION = "local"
ROLES = ("STT", "TTS", "LLM")
#: The support agent's trunk password is `{config: northwindTrunkPassword}`: a test value.
SECRETS = StaticSecrets({"northwindTrunkPassword": "nw-trunk-password-agents"})
#: Values the test gives the agents' own secret references (none reaches anything real).
AGENT_SECRETS = {
    ("bellavista-booking", "token"): "test-booking-token",
    ("scheduler-secrets", "FHIR_CLIENT_SECRET"): "test-fhir-secret",
    ("support-secrets", "VOXPLANE_LLM_API_KEY"): "test-llm-key",
}
#: What the image's Dockerfile sets (ENV) or a container always has.
IMAGE_ENV = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "PIP_NO_CACHE_DIR": "1",
             "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


# --- the agents' Python ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def agents_python(folder: Path) -> Path:
    """The venv Python for the agent in `folder` (built from its requirements.txt, cached)."""
    proc = subprocess.run(["bash", str(ENSURE), "--print-path", str(folder)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        pytest.fail(f"cannot build the agents' venv ({ENSURE.name} exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    python = Path(proc.stdout.strip()) / "bin" / "python"
    if not python.is_file():
        pytest.fail(f"{ENSURE.name} printed {proc.stdout.strip()!r}: no bin/python there")
    return python


# --- what the render gives each agent --------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    name: str
    tenant: str
    agent_name: str
    namespace: str
    folder: Path
    command: list[str]
    env: list[dict[str, Any]]
    sessions_per_worker: int

    def value(self, var: str) -> str:
        (entry,) = [e for e in self.env if e["name"] == var]
        return str(entry["value"])


@functools.lru_cache(maxsize=None)
def rendered_agents() -> dict[str, Rendered]:
    result = load((), REPO)
    assert not result.problems, "\n".join(map(str, result.problems))
    agents = {a.name: a for a in result.require_project().agents_in(REGION)}
    out = {}
    for obj in render(REGION, REPO).kubernetes:
        labels = obj["metadata"].get("labels", {})
        if obj["kind"] != "Deployment" or "voxplane.io/agent" not in labels:
            continue
        agent = agents[labels["voxplane.io/agent"]]
        (container,) = obj["spec"]["template"]["spec"]["containers"]
        folder = REPO / "agents" / agent.name
        assert (folder / "agent.py").is_file(), f"no program for {agent.name} in {folder}"
        out[agent.name] = Rendered(agent.name, agent.tenant, agent.scoped_name, obj["metadata"]["namespace"], folder,
                                   list(container["command"]), list(container["env"]), agent.scaling.sessions_per_worker)
    assert set(out) == {"reservations", "scheduler", "support"}, sorted(out)
    return out


# --- the platform: Redis, livekit-server, the synced SIP objects, the routing decision --------------


@dataclass
class Platform(DevLiveKit):
    probe: RouteProbe
    region: Any
    agents: tuple[Any, ...]

    def route(self, to: str, address: str = "127.0.0.1", caller: str = "+15550100199", **kw: Any) -> Decision:
        host = self.region.sip.public_host if self.region.sip else "localhost"
        return decide(self.probe, Call(to=to, from_=caller, address=address, to_host=host), **kw)

    def create_room_as_routed(self, d: Decision, rename: dict[str, str] | None = None) -> api.Room:
        """The room the decision names, with the rule's room configuration (as livekit-sip has the
        server create it for the call): its agent dispatches and the other settings it carries.
        `rename` maps an agent name of the decision to the one dispatched instead (a benchmark's
        second worker registered under another name)."""
        assert d.accepted and d.room, d.reason
        config = d.server["dispatch"][-1].get("room_config") or {}
        rename = rename or {}
        agents = [api.RoomAgentDispatch(agent_name=a["agent_name"], metadata=a.get("metadata", ""))
                  for a in config.get("agents", [])]
        assert [a.agent_name for a in agents] == d.agents
        for a in agents:
            a.agent_name = rename.get(a.agent_name, a.agent_name)
        extra = {k: config[k] for k in ("empty_timeout", "departure_timeout", "max_participants", "metadata")
                 if config.get(k)}
        req = api.CreateRoomRequest(name=d.room, agents=agents, **extra)
        with self.client() as c:
            return c.call("CreateRoom", lambda lk: lk.room.create_room(req))

    def delete_room(self, room: str) -> None:
        with self.client() as c:
            c.call("DeleteRoom", lambda lk: lk.room.delete_room(api.DeleteRoomRequest(room=room)))

    def participants(self, room: str) -> list[api.ParticipantInfo]:
        with self.client() as c:
            resp = c.call("ListParticipants", lambda lk: lk.room.list_participants(api.ListParticipantsRequest(room=room)))
        return list(resp.participants)

    def rooms(self) -> list[str]:
        with self.client() as c:
            return [r.name for r in c.call("ListRooms", lambda lk: lk.room.list_rooms(api.ListRoomsRequest())).rooms]

    def token(self, room: str, identity: str) -> str:
        return (api.AccessToken(self.livekit.api_key, self.livekit.api_secret).with_identity(identity)
                .with_grants(api.VideoGrants(room_join=True, room=room)).to_jwt())


def start_platform() -> Iterator[Platform]:
    result = load((), REPO)
    assert not result.problems, "\n".join(map(str, result.problems))
    project = result.require_project()
    region, agents = project.regions[REGION], project.agents_in(REGION)
    with livekit_with_redis(region=REGION) as lk, RouteProbe(lk.redis.address) as probe:
        with lk.client() as client:
            sync(region, agents, client, SECRETS)  # what `voxplane livekit sync local` does
        yield Platform(lk.redis, lk.livekit, probe, region, agents)


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    yield from start_platform()


# --- the LLM: a real vLLM ---------------------------------------------------------------------------


@pytest.fixture
def llm(vllm_server: VllmServer) -> VllmServer:
    """The vLLM the calls' agents talk to: the session's, started as the local region's LLM is
    rendered (tests/conftest.py); a test that stops its LLM starts its own."""
    return vllm_server


def inference(speech: Any, llm: VllmServer | str) -> dict[str, str]:
    """The roles' base URLs: STT and TTS at the speech stand-in, the LLM at a real vLLM (or a
    router's URL in front of it)."""
    return {"STT": speech.base_url, "TTS": speech.base_url,
            "LLM": f"{llm.base_url}/v1" if isinstance(llm, VllmServer) else llm}


# --- workers ---------------------------------------------------------------------------------------


def unreachable_url() -> str:
    """A model server that is not there: a closed port on loopback (connection refused)."""
    return f"http://127.0.0.1:{free_port()}/v1"


@dataclass
class Worker:
    """One agent program as a worker process with its rendered environment."""

    agent: Rendered
    env: dict[str, str]
    rewrites: dict[str, tuple[str, str]]
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    _log: Any = None

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.env['VOXPLANE_HEALTH_PORT']}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "worker.log"

    def start(self) -> Worker:
        python = agents_python(self.agent.folder)
        argv = [str(python) if a == "python" else a for a in self.agent.command]
        assert argv[1:] == ["agent.py", "start"], argv
        self._log = self.log_path.open("wb")
        self.started_at = time.time()
        self.proc = subprocess.Popen(argv, cwd=self.agent.folder, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(ln if len(ln) < 600 else ln[:600] + " ..." for ln in self.log().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, str] | None:
        """(status, body) of GET on the health port, None when nothing answers."""
        try:
            with urllib.request.urlopen(self.health_url + path, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return None

    def status(self, path: str) -> int | None:
        answer = self.get(path)
        return answer[0] if answer else None

    def state(self) -> dict[str, Any] | None:
        answer = self.get("/worker")
        return json.loads(answer[1]) if answer and answer[0] == 200 else None

    def metric(self, name: str = "lk_agents_active_job_count") -> float | None:
        """The sum of `name`'s samples on the metrics port; None when it has no sample."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.env['VOXPLANE_METRICS_PORT']}/metrics", timeout=2) as r:
                text = r.read().decode()
        except (urllib.error.URLError, ConnectionError, OSError):
            return None
        values = [float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)]
        return sum(values) if values else None

    def wait(self, what: str, check: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
        """`check()`'s first true value; the test fails when the worker exits first or `timeout` passes."""
        return wait_until(f"{what} of the {self.agent.name} worker", check, timeout=timeout, interval=interval,
                          unless=lambda: None if self.alive() else
                          f"{self.agent.name} worker exited ({self.proc.returncode if self.proc else '?'})",
                          details=lambda: f"its log:\n{self.log_tail()}")

    def wait_registered(self, timeout: float = 90) -> dict[str, Any]:
        state = self.wait("registration (/ready 200)", lambda: self.status("/ready") == 200 and self.state(), timeout)
        # The rendered name, unless the test overrode it (then recorded in `rewrites`).
        assert state["registered"] and state["agent_name"] == self.env["LIVEKIT_AGENT_NAME"], state
        return state

    def terminate(self) -> None:
        """SIGTERM, as the kubelet sends it: the worker drains."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.agent.name} worker still running {timeout:.0f}s later; its log:\n{self.log_tail()}")

    def stop(self) -> None:
        """Gone for good, job processes included (its own process group)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        elif self.proc is not None:
            try:  # the worker is gone; its job processes may not be
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.env["TMPDIR"], ignore_errors=True)


def launch_worker(name: str, platform: Platform, workdir: Path, inference: dict[str, str] | None = None,
                  env: dict[str, str] | None = None) -> Worker:
    """One more worker of agent `name`; `inference` maps a role to a base URL (roles not given
    get an unreachable one); `env` overrides rendered variables (recorded in `rewrites`)."""
    agent = rendered_agents()[name]
    workdir.mkdir(parents=True, exist_ok=True)
    resolved, rewrites = worker_env(agent, platform, inference or {}, workdir)
    for key, value in (env or {}).items():
        rewrites[key] = (resolved.get(key, "(unset)"), value)
        resolved[key] = value
    return Worker(agent, resolved, rewrites, workdir).start()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """`workers(name, platform, inference=..., env=...)` starts one more worker (`launch_worker`)."""
    started: list[Worker] = []

    def start(name: str, platform: Platform, inference: dict[str, str] | None = None,
              env: dict[str, str] | None = None) -> Worker:
        w = launch_worker(name, platform, Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp_path)), inference, env)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def worker_env(agent: Rendered, platform: Platform, inference: dict[str, str], workdir: Path
               ) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """The container env of the rendered Deployment, resolved and rewritten for loopback."""
    secrets = {**AGENT_SECRETS, ("livekit-api", "LIVEKIT_API_KEY"): platform.livekit.api_key,
               ("livekit-api", "LIVEKIT_API_SECRET"): platform.livekit.api_secret}
    env: dict[str, str] = {}
    for entry in agent.env:
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            key = (ref["name"], ref["key"])
            assert key in secrets, f"{agent.name}: the test gives no value for Secret {key[0]} key {key[1]}"
            env[entry["name"]] = secrets[key]
    health, metrics = free_ports(2)
    rewrites = {"LIVEKIT_URL": platform.livekit.url, "VOXPLANE_HEALTH_PORT": str(health),
                "VOXPLANE_METRICS_PORT": str(metrics)}
    for role in ROLES:
        if f"VOXPLANE_{role}_BASE_URL" in env:
            rewrites[f"VOXPLANE_{role}_BASE_URL"] = inference.get(role) or unreachable_url()
    changes = {}
    for key, value in rewrites.items():
        assert key in env, f"{agent.name}: the rendered Deployment sets no {key}"
        changes[key] = (env[key], value)
        env[key] = value
    home = workdir / "home"
    home.mkdir()
    # multiprocessing's forkserver binds a Unix socket under TMPDIR (108 bytes at most): a short one.
    tmp = Path(tempfile.mkdtemp(prefix="vxa-", dir="/tmp"))
    python = agents_python(agent.folder)
    env.update(IMAGE_ENV)
    env.update({"PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(tmp),
                "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(GLUE_DIR)})
    return env, changes


# --- callers ---------------------------------------------------------------------------------------


@dataclass
class Caller:
    """A real participant in a room (tests/agents/caller.py), with the events it reported."""

    proc: subprocess.Popen[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    _queue: "queue.Queue[dict[str, Any]]" = field(default_factory=queue.Queue)
    stderr: Path | None = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self._queue.put(json.loads(line))
            except json.JSONDecodeError:
                self._queue.put({"event": "noise", "line": line})

    def wait_for(self, what: str, match: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        for e in self.events:
            if match(e):
                return e
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                e = self._queue.get(timeout=max(0.01, min(0.2, deadline - time.monotonic())))
            except queue.Empty:
                if self.proc.poll() is not None and self._queue.empty():
                    break
                continue
            self.events.append(e)
            if match(e):
                return e
        err = self.stderr.read_text(errors="replace")[-2000:] if self.stderr and self.stderr.exists() else ""
        pytest.fail(f"caller: no {what} within {timeout:.0f}s; events: {self.events}\n{err}")

    def drain_events(self) -> list[dict[str, Any]]:
        while True:
            try:
                self.events.append(self._queue.get_nowait())
            except queue.Empty:
                return self.events

    def agent_joined(self, timeout: float = 30) -> dict[str, Any]:
        return self.wait_for("agent participant", lambda e: e["event"] == "participant_connected" and e["kind"] == "AGENT",
                             timeout)

    def join(self, token: str) -> None:
        """Send a `ready_caller` into the room `token` grants (returns at once; wait for `connected`)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(token + "\n")
        self.proc.stdin.flush()

    def say(self, text: str) -> None:
        """Send `text` to the room as the caller's chat message (topic lk.chat): a user turn."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("say " + text + "\n")
        self.proc.stdin.flush()

    def leave(self) -> float:
        """Hang up; returns when (time.time()) the caller had left."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("leave\n")
        self.proc.stdin.flush()
        return float(self.wait_for("hang-up", lambda e: e["event"] == "left", 10)["t"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


def _start_caller(url: str, token: str, identity: str, logdir: Path) -> Caller:
    python = agents_python(rendered_agents()["reservations"].folder)
    stderr = logdir / f"caller-{identity}-{time.monotonic_ns()}.log"
    with stderr.open("w") as err:
        proc = subprocess.Popen([str(python), str(CALLER), url, token],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                env={"PATH": "/usr/bin:/bin", "HOME": str(logdir)})
    c = Caller(proc, stderr=stderr)
    threading.Thread(target=c._read, daemon=True).start()
    return c


def join_caller(platform: Platform, room: str, identity: str, logdir: Path, *, url: str | None = None,
                token: str | None = None) -> Caller:
    """A caller (tests/agents/caller.py) connected to `room`: at livekit-server with a platform
    token, or at `url` (a gateway) with `token` (a tenant's)."""
    c = _start_caller(url or platform.livekit.url, token or platform.token(room, identity), identity, logdir)
    c.wait_for("connection", lambda e: e["event"] == "connected", 30)
    return c


def ready_caller(platform: Platform, identity: str, logdir: Path) -> Caller:
    """A caller process started and imported, not yet in a room: `Caller.join(token)` sends it
    in (no interpreter start-up inside a measurement)."""
    c = _start_caller(platform.livekit.url, "-", identity, logdir)
    c.wait_for("readiness", lambda e: e["event"] == "ready", 30)
    return c


@pytest.fixture
def callers(tmp_path: Path) -> Iterator[Callable[..., Caller]]:
    started: list[Caller] = []

    def join(platform: Platform, room: str, identity: str = "caller") -> Caller:
        c = join_caller(platform, room, identity, tmp_path)
        started.append(c)
        return c

    yield join
    for c in started:
        c.close()


__all__ = ["Caller", "Platform", "Rendered", "Worker", "agents_python", "inference", "join_caller", "launch_worker",
           "ready_caller", "rendered_agents", "start_platform", "unreachable_url"]
