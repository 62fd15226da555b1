"""The dev cluster's kubelet for agent pods: every pod labelled `voxplane.io/agent` that the
scheduler placed on a simulated node runs as a real livekit-agents worker process here, with
exactly that pod's environment, and the pod's status says what the process does.

For each such pod (one thread each, as the kubelet has one worker per pod):

- **Start.** Once kwok has given the pod its IPs (`kwokstages`), the container's environment and
  command are resolved from the live Pod and its Secrets and ConfigMaps as the kubelet resolves
  them (`podenv`), moved to this machine (`rewrites`: every change listed), and the program
  `agents/<agent>/` runs with the agents' venv Python (scripts/ensure-agents-venv.sh). A missing
  Secret leaves the container waiting in `CreateContainerConfigError`, as a kubelet does.
- **Probes.** The container's startup, readiness and liveness probes run against the worker's own
  ports with the pod's periods and thresholds: `Ready` and `ContainersReady` follow the readiness
  probe (the worker's `/ready`: registered with LiveKit and not draining), so a rollout with
  `maxUnavailable: 0` waits for registration; a failed liveness or startup probe restarts it.
- **Crashes.** A worker that exits is started again after the kubelet's back-off (10 s doubling
  to 5 min), `restartCount` counting, `CrashLoopBackOff` meanwhile.
- **Deletion.** A deleted pod stays Terminating while its worker drains: SIGTERM, then SIGKILL
  once the pod's grace period has passed; when the worker has exited, its remaining job processes
  are killed (the container's cgroup), the pod gets its terminal phase and is deleted with no
  grace, exactly that pod (uid precondition), as the kubelet finishes a deletion.
- **Scraping.** Every few seconds, Prometheus' scrape targets are derived from the PodMonitors as
  prometheus-operator derives them (`podmonitors`), each worker's metrics port at its loopback
  port, and written where the dev Prometheus reads them (file service discovery).

- **The deletion-cost controller.** The region's `pod-deletion-cost` pod runs here too, with its
  rendered config and a token of its own ServiceAccount (`deletion_cost`), so idle workers go first
  in the dev cluster as in a region.

What it records: `workers.json` in its folder (each worker's pod, pid, ports and rewrites:
`voxplane dev cluster workers`), a JSON line per event on its stdout (the cluster's
`logs/podrunner.log`), each worker's output in `logs/<namespace>_<pod>.log`.

Run by `voxplane dev cluster up` (unless `--no-agent-workers`):
    python -m voxplane.dev.podrunner --state DIR --root REPO --kubeconfig FILE --targets FILE
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from ..desired.common import LABEL_AGENT
from . import agentsecrets
from .deletion_cost import DeletionCostPod, SELECTOR as DELETION_COST_SELECTOR
from .kubeclient import KubeClient, KubeError
from .podenv import EnvError, container_run
from .podmonitors import scrape_targets
from .ports import LOOPBACK, free_port
from .process import ProcessRecord
from .rewrites import Launch, image_env, rewrite
from . import standins

__all__ = ["PodRunner", "main", "read_workers"]

#: How often the pod list is read (a new pod waits at most this long for its worker).
LIST_INTERVAL = 0.5
#: How often scrape targets are derived again (Prometheus' file discovery reads them at once).
TARGETS_INTERVAL = 2.0
#: How often the agents' existing Secrets are checked for (dev values, `agentsecrets`).
SECRETS_INTERVAL = 5.0
#: The kubelet's crash back-off: 10 s, doubling, at most 5 min.
BACKOFF_START, BACKOFF_MAX = 10.0, 300.0
#: Where the agents' programs and the platform glue are, under the repository root.
AGENTS_DIR, GLUE_DIR = "agents", "agents/_platform"
_ENSURE_VENV = Path(__file__).resolve().parents[2] / "scripts" / "ensure-agents-venv.sh"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"t": round(time.time(), 3), "event": event, **fields}), flush=True)


# --------------------------------------------------------------------------- probes


@dataclass
class Prober:
    """One probe of a container, as the kubelet runs it (pkg/kubelet/prober)."""

    kind: str
    spec: Mapping[str, Any]
    ports: Mapping[int, int]
    named: Mapping[str, int]
    started_at: float
    last_run: float = 0.0
    successes: int = 0
    failures: int = 0
    #: the latest verdict after the thresholds: True, False, None (none yet)
    result: Optional[bool] = None

    @property
    def period(self) -> float:
        return float(self.spec.get("periodSeconds") or 10)

    def due(self, now: float) -> bool:
        if now < self.started_at + float(self.spec.get("initialDelaySeconds") or 0):
            return False
        return self.last_run == 0.0 or now - self.last_run >= self.period

    def _port(self, raw: Any) -> Optional[int]:
        number = self.named.get(raw) if isinstance(raw, str) and not raw.isdigit() else int(raw)
        return self.ports.get(number) if number is not None else None

    def check(self) -> bool:
        timeout = float(self.spec.get("timeoutSeconds") or 1)
        if "httpGet" in self.spec:
            get = self.spec["httpGet"]
            port = self._port(get.get("port"))
            if port is None:
                return False
            url = f"{str(get.get('scheme') or 'HTTP').lower()}://{LOOPBACK}:{port}{get.get('path') or '/'}"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    return 200 <= int(response.status) < 400
            except urllib.error.HTTPError as e:
                return 200 <= int(e.code) < 400
            except (urllib.error.URLError, OSError):
                return False
        if "tcpSocket" in self.spec:
            port = self._port(self.spec["tcpSocket"].get("port"))
            if port is None:
                return False
            try:
                with socket.create_connection((LOOPBACK, port), timeout=timeout):
                    return True
            except OSError:
                return False
        return True  # exec and grpc probes are not run here: counted as passing

    def run(self, now: float) -> Optional[bool]:
        """Probe once; the verdict once a threshold is crossed (None: unchanged)."""
        self.last_run = now
        ok = self.check()
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            threshold = int(self.spec.get("successThreshold") or 1)
            if self.successes >= threshold and self.result is not True:
                self.result = True
                return True
        else:
            self.failures, self.successes = self.failures + 1, 0
            threshold = int(self.spec.get("failureThreshold") or 3)
            if self.failures >= threshold and self.result is not False:
                self.result = False
                return False
        return None


# --------------------------------------------------------------------------- one pod


@dataclass
class WorkerRecord:
    """What `workers.json` says about one pod's worker."""

    namespace: str
    pod: str
    uid: str
    agent: str
    state: str = "waiting"
    message: str = ""
    pid: int = 0
    started: float = 0.0
    restarts: int = 0
    ports: dict[str, int] = field(default_factory=dict)
    rewrites: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    log: str = ""
    ready: bool = False

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class PodWorker(threading.Thread):
    """The lifecycle of one agent pod's worker (see the module docstring)."""

    def __init__(self, runner: "PodRunner", pod: Mapping[str, Any]):
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.runner = runner
        self.pod: Mapping[str, Any] = pod
        self.gone = threading.Event()
        self.record = WorkerRecord(meta["namespace"], meta["name"], meta["uid"], (meta.get("labels") or {})[LABEL_AGENT])
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self._log: Any = None
        self._tmp: Optional[Path] = None
        self._started_at = ""
        #: why the worker was sent SIGTERM ("delete": the pod's deletion; "liveness": a restart)
        self._stopping_for = ""
        self._kill_after = 0.0

    # -- status -------------------------------------------------------------------------------

    @property
    def deleting(self) -> bool:
        return bool(self.pod["metadata"].get("deletionTimestamp"))

    def _container(self) -> Mapping[str, Any]:
        return self.pod["spec"]["containers"][0]

    def _patch(self, status: Mapping[str, Any]) -> None:
        try:
            self.runner.kube.patch_status(self.record.namespace, self.record.pod, status)
        except KubeError as e:
            if e.status not in (404, 409):
                _emit("status-error", pod=self._where(), error=str(e))

    def _where(self) -> str:
        return f"{self.record.namespace}/{self.record.pod}"

    def _container_status(self, state: Mapping[str, Any], *, ready: bool = False, started: bool = False,
                          last: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
        c = self._container()
        out: dict[str, Any] = {"name": c["name"], "image": c.get("image", ""), "imageID": "",
                               "ready": ready, "started": started, "restartCount": self.record.restarts,
                               "state": dict(state)}
        if self.proc is not None:
            out["containerID"] = f"voxplane-dev://{self.proc.pid}"
        if last:
            out["lastState"] = dict(last)
        return out

    def _set_ready(self, ready: bool, started: bool) -> None:
        self.record.ready = ready
        # workers.json says it before the pod does: whoever sees the pod Ready finds its worker ready.
        self.runner.write_workers()
        reason = {} if ready else {"reason": "ContainersNotReady"}
        now = _now()
        assert self.proc is not None
        self._patch({
            "conditions": [{"type": t, "status": "True" if ready else "False", "lastTransitionTime": now, **reason}
                           for t in ("Ready", "ContainersReady")],
            "containerStatuses": [self._container_status({"running": {"startedAt": self._started_at}},
                                                         ready=ready, started=started)],
        })
        _emit("ready" if ready else "not-ready", pod=self._where())

    def _waiting(self, reason: str, message: str, last: Optional[Mapping[str, Any]] = None) -> None:
        was_ready, self.record.ready = self.record.ready, False
        if (self.record.state, self.record.message) != (reason, message):
            _emit("waiting", pod=self._where(), reason=reason, message=message)
            self.runner.changed()
        self.record.state, self.record.message = reason, message
        status: dict[str, Any] = {"containerStatuses": [
            self._container_status({"waiting": {"reason": reason, "message": message}}, last=last)]}
        if was_ready:
            # A container no longer running makes the pod unready (a kubelet's ContainersNotReady):
            # its Deployment counts it unavailable and its Services stop sending to it.
            now = _now()
            status["conditions"] = [{"type": t, "status": "False", "lastTransitionTime": now,
                                     "reason": "ContainersNotReady"} for t in ("Ready", "ContainersReady")]
            _emit("not-ready", pod=self._where())
        self._patch(status)

    # -- the lifecycle ------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._lifecycle()
        except Exception as e:  # a bug here must not take the other pods' workers down
            _emit("runner-error", pod=self._where(), error=f"{type(e).__name__}: {e}")
            self._kill()
        finally:
            self._cleanup()

    def _sleep(self, seconds: float) -> bool:
        """Wait; False when the pod is gone or the runner stops (then stop at once)."""
        return not (self.gone.wait(seconds) or self.runner.stopping.is_set())

    def _lifecycle(self) -> None:
        # kwok gives the pod its IPs first (the node's part); a pod deleted before that has nothing to drain.
        while not (self.pod.get("status") or {}).get("podIP"):
            if self.deleting:
                self._finish(None)
                return
            if not self._sleep(0.2):
                return
        backoff = BACKOFF_START
        last: Optional[Mapping[str, Any]] = None
        while True:
            if self.deleting:
                self._finish(None)
                return
            launch = self._prepare()
            if launch is None:
                if not self._sleep(2.0):
                    return
                continue
            exit_code = self._run_once(launch)
            if exit_code is None:  # finished (pod deleted) or stopping
                return
            last = {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                                   "startedAt": self._started_at, "finishedAt": _now()}}
            self.record.restarts += 1
            self._waiting("CrashLoopBackOff", f"back-off {backoff:.0f}s restarting failed container", last)
            _emit("crashed", pod=self._where(), exit_code=exit_code, backoff=backoff, log=self.record.log)
            deadline = time.monotonic() + backoff
            while time.monotonic() < deadline:
                if self.deleting:
                    self._finish(None)
                    return
                if not self._sleep(0.2):
                    return
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _prepare(self) -> Optional[Launch]:
        """The launch of this pod's container here; None (with the pod's status saying why) when
        it cannot be made yet."""
        agent = self.record.agent
        program = self.runner.root / AGENTS_DIR / agent
        if not (program / "agent.py").is_file():
            self._waiting("RunContainerError", f"no program for agent {agent!r} in {program}")
            return None
        try:
            run = container_run(self.pod, self._container(), secret=self.runner.secret, config_map=self.runner.config_map)
        except EnvError as e:
            self._waiting("CreateContainerConfigError", str(e))
            return None
        except KubeError as e:
            self._waiting("CreateContainerConfigError", f"reading the pod's Secrets and ConfigMaps: {e}")
            return None
        python = self.runner.python_for(program, lambda: self._waiting("ContainerCreating",
                                                                        "building the agents' venv (scripts/ensure-agents-venv.sh)"))
        if python is None:
            self._waiting("ImagePullBackOff", "scripts/ensure-agents-venv.sh failed: see the pod runner's log")
            return None
        workdir = self.runner.state / "pods" / f"{self.record.namespace}_{self.record.pod}"
        (workdir / "home").mkdir(parents=True, exist_ok=True)
        # multiprocessing's forkserver binds a Unix socket under TMPDIR (108 bytes at most).
        self._tmp = self._tmp or Path(tempfile.mkdtemp(prefix="vxw-", dir="/tmp"))
        glue = self.runner.root / GLUE_DIR
        try:
            launch = rewrite(run, pod=self.pod, container=self._container(), standins=standins.read(),
                             free_port=free_port, python=python, program=program, glue=glue, workdir=workdir,
                             tmpdir=self._tmp, image=image_env([glue / "Dockerfile", program / "Dockerfile"]),
                             max_idle_processes=self.runner.max_idle_processes)
        except ValueError as e:
            self._waiting("RunContainerError", str(e))
            return None
        return launch

    def _run_once(self, launch: Launch) -> Optional[int]:
        """Run the worker until it exits (its exit code) or the pod's deletion has finished (None)."""
        program = self.runner.root / AGENTS_DIR / self.record.agent
        log_path = self.runner.state / "logs" / f"{self.record.namespace}_{self.record.pod}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(launch.argv, cwd=program, env=launch.env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        started = time.monotonic()
        self._started_at = _now()
        r = self.record
        r.state, r.message, r.pid, r.log, r.ready = "running", "", self.proc.pid, str(log_path), False
        r.started = ProcessRecord.of(self.proc.pid).started
        r.ports = {str(k): v for k, v in launch.ports.items()}
        r.rewrites, r.notes = [c.as_dict() for c in launch.rewrites], list(launch.notes)
        self.runner.changed()
        _emit("started", pod=self._where(), pid=self.proc.pid, restarts=r.restarts, ports=r.ports,
              rewrites=r.rewrites, notes=r.notes, log=str(log_path))
        self._patch({"phase": "Running", "containerStatuses": [
            self._container_status({"running": {"startedAt": self._started_at}})]})

        container = self._container()
        named = {str(p["name"]): int(p["containerPort"]) for p in container.get("ports") or [] if p.get("name")}
        probers = {kind: Prober(kind, container[key], launch.ports, named, started)
                   for kind, key in (("startup", "startupProbe"), ("readiness", "readinessProbe"), ("liveness", "livenessProbe"))
                   if container.get(key)}
        has_startup = "startup" in probers
        started_ok = not has_startup
        if not probers.get("readiness"):
            self._set_ready(True, started_ok)
        self._stopping_for = ""
        while True:
            code = self.proc.poll()
            if code is not None:
                if self.deleting:
                    self._finish(code)
                    return None
                self._kill()
                return code
            if self.gone.is_set() or self.runner.stopping.is_set():
                self._kill()
                return None
            now = time.monotonic()
            if self.deleting and self._stopping_for != "delete":
                self._stopping_for = "delete"
                grace = int(self.pod["metadata"].get("deletionGracePeriodSeconds") or 0)
                r.state = "draining"
                self.runner.changed()
                _emit("terminating", pod=self._where(), grace_seconds=grace)
                self._signal(signal.SIGTERM)
                self._kill_after = now + grace
            if self._stopping_for and now >= self._kill_after:
                _emit("grace-period-over", pod=self._where())
                self._kill()
                self.proc.wait()
                continue
            if not started_ok:
                prober = probers["startup"]
                if prober.due(now):
                    verdict = prober.run(now)
                    if verdict:
                        started_ok = True
                        self._patch({"containerStatuses": [self._container_status(
                            {"running": {"startedAt": self._started_at}}, started=True, ready=r.ready)]})
                    elif verdict is False and not self._stopping_for:
                        _emit("startup-probe-failed", pod=self._where())
                        self._signal(signal.SIGKILL)
            else:
                readiness = probers.get("readiness")
                if readiness is not None and readiness.due(now):
                    verdict = readiness.run(now)
                    if verdict is not None:
                        self._set_ready(verdict, True)
                liveness = probers.get("liveness")
                if liveness is not None and not self._stopping_for and liveness.due(now):
                    if liveness.run(now) is False:
                        _emit("liveness-probe-failed", pod=self._where())
                        self._signal(signal.SIGTERM)
                        self._stopping_for = "liveness"  # restarted once it exits or its grace period is over
                        self._kill_after = now + int(self.pod["spec"].get("terminationGracePeriodSeconds") or 30)
            time.sleep(0.1)

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)  # the container's main process
            except ProcessLookupError:
                pass

    def _kill(self) -> None:
        """The container is gone: every process of it (its session: job processes too)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def _finish(self, exit_code: Optional[int]) -> None:
        """The deletion is done on this node: terminal status, then the pod is deleted."""
        self._kill()
        phase = "Succeeded" if exit_code == 0 else "Failed"
        if exit_code is not None:
            self._patch({"phase": phase, "conditions": [
                {"type": t, "status": "False", "reason": "PodCompleted", "lastTransitionTime": _now()}
                for t in ("Ready", "ContainersReady")],
                "containerStatuses": [self._container_status({"terminated": {
                    "exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                    "startedAt": self._started_at, "finishedAt": _now()}})]})
        meta = self.pod["metadata"]
        try:
            self.runner.kube.delete_pod_now(meta["namespace"], meta["name"], meta["uid"])
        except KubeError as e:
            if e.status not in (404, 409):
                _emit("delete-error", pod=self._where(), error=str(e))
        self.record.state = "deleted"
        _emit("deleted", pod=self._where(), exit_code=exit_code)

    def _cleanup(self) -> None:
        if self._log is not None:
            self._log.close()
        if self._tmp is not None:
            subprocess.run(["rm", "-rf", str(self._tmp)], check=False)
        self.runner.changed()


# --------------------------------------------------------------------------- the runner


class PodRunner:
    def __init__(self, *, state: Path, root: Path, kubeconfig: Path, targets: Path,
                 max_idle_processes: Optional[int], region: Optional[str] = None):
        self.state = state
        self.root = root.resolve()
        self.region = region
        self.targets = targets
        self.max_idle_processes = max_idle_processes
        self.kube = KubeClient(kubeconfig)
        self.stopping = threading.Event()
        self.workers: dict[str, PodWorker] = {}
        self._pythons: dict[Path, Optional[Path]] = {}
        self._python_lock = threading.Lock()
        self._dirty = threading.Event()
        self._workers_file = threading.Lock()
        #: the region's deletion-cost controller: a platform pod the runner also runs (dev/deletion_cost.py)
        self.deletion_cost = DeletionCostPod(self.kube, kubeconfig, state, _emit)

    # lookups the pod workers use
    def secret(self, namespace: str, name: str) -> Optional[dict[str, str]]:
        obj = self.kube.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
        if obj is None:
            return None
        return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (obj.get("data") or {}).items()}

    def config_map(self, namespace: str, name: str) -> Optional[dict[str, str]]:
        obj = self.kube.get(f"/api/v1/namespaces/{namespace}/configmaps/{name}")
        return None if obj is None else {str(k): str(v) for k, v in (obj.get("data") or {}).items()}

    def python_for(self, program: Path, building: Callable[[], None]) -> Optional[Path]:
        """The agents' venv Python for `program` (built once: scripts/ensure-agents-venv.sh)."""
        with self._python_lock:
            if program not in self._pythons:
                building()
                proc = subprocess.run(["bash", str(_ENSURE_VENV), "--print-path", str(program)], capture_output=True,
                                      text=True, stdin=subprocess.DEVNULL)
                python = Path(proc.stdout.strip()) / "bin" / "python" if proc.returncode == 0 else None
                if python is None or not python.is_file():
                    _emit("venv-error", program=str(program), stderr=proc.stderr[-2000:])
                    python = None
                self._pythons[program] = python
            return self._pythons[program]

    def changed(self) -> None:
        self._dirty.set()

    # the loop
    def run(self) -> None:
        _emit("runner-started", root=str(self.root), max_idle_processes=self.max_idle_processes)
        simulated: set[str] = set()
        nodes_read = 0.0
        targets_written = 0.0
        secrets_checked = 0.0
        project = self._project()
        while not self.stopping.is_set():
            now = time.monotonic()
            try:
                if now - nodes_read > 10:
                    simulated = {n["metadata"]["name"] for n in self.kube.items(
                        "/api/v1/nodes", label_selector="voxplane.io/simulated-node=true")}
                    nodes_read = now
                pods = self.kube.items("/api/v1/pods", label_selector=LABEL_AGENT)
                self.deletion_cost.tick(self.kube.items("/api/v1/pods", label_selector=DELETION_COST_SELECTOR),
                                        simulated, now)
            except KubeError as e:
                _emit("list-error", error=str(e))
                self.stopping.wait(2.0)
                continue
            seen = set()
            for pod in pods:
                uid = pod["metadata"]["uid"]
                if (pod.get("spec") or {}).get("nodeName") not in simulated:
                    continue
                seen.add(uid)
                worker = self.workers.get(uid)
                if worker is None:
                    worker = self.workers[uid] = PodWorker(self, pod)
                    worker.start()
                    self.changed()
                else:
                    worker.pod = pod
            for uid, worker in list(self.workers.items()):
                if uid not in seen:
                    worker.gone.set()  # deleted by someone else (a forced deletion): the container goes
                if not worker.is_alive():
                    del self.workers[uid]
                    self.changed()
            if project is not None and now - secrets_checked > SECRETS_INTERVAL:
                secrets_checked = now
                try:
                    for made in agentsecrets.ensure(self.kube, *project):
                        _emit("dev-secret", secret=made)
                except KubeError as e:
                    _emit("dev-secret-error", error=str(e))
            if now - targets_written > TARGETS_INTERVAL:
                self._write_targets()
                targets_written = now
            if self._dirty.is_set():
                self._dirty.clear()
                self.write_workers()
            self.stopping.wait(LIST_INTERVAL)
        self._shutdown()

    def _project(self) -> Optional[tuple[Any, Any]]:
        """The region and its agents, for their existing Secrets' dev values (`agentsecrets`)."""
        if self.region is None:
            return None
        from ..manifest.loader import load

        result = load((), self.root)
        if result.project is None or self.region not in result.project.regions:
            _emit("manifests-error", region=self.region, problems=[str(p) for p in result.problems[:5]])
            return None
        return result.project.regions[self.region], result.project.agents_in(self.region)

    def _address(self, namespace: str, pod: str, port: int) -> Optional[str]:
        for worker in self.workers.values():
            r = worker.record
            if r.namespace == namespace and r.pod == pod and str(port) in r.ports and r.state in ("running", "draining"):
                return f"{LOOPBACK}:{r.ports[str(port)]}"
        return self.deletion_cost.address(namespace, pod, port) or standins.read().pod_port(namespace, pod, port)

    def _write_targets(self) -> None:
        try:
            monitors = self.kube.items("/apis/monitoring.coreos.com/v1/podmonitors")
            pods = self.kube.items("/api/v1/pods")
        except KubeError as e:
            _emit("targets-error", error=str(e))
            return
        targets = scrape_targets(monitors, pods, self._address)
        self.targets.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.targets.with_name(f".{self.targets.name}.tmp")
        tmp.write_text(json.dumps(targets.groups, indent=2))
        os.replace(tmp, self.targets)  # Prometheus never reads half a file

    def write_workers(self) -> None:
        """workers.json, now (the main loop and the pods' threads both write it)."""
        with self._workers_file:
            data = {uid: w.record.as_json() for uid, w in sorted(list(self.workers.items()), key=lambda i: i[1].name)}
            path = self.state / "workers.json"
            tmp = path.with_name(".workers.json.tmp")
            tmp.write_text(json.dumps(data, indent=2))
            os.replace(tmp, path)

    def _shutdown(self) -> None:
        """The node goes away with the cluster: each pod's thread kills its worker on `stopping`."""
        self.deletion_cost.stop()
        for worker in self.workers.values():
            worker.join(15)
        self.workers.clear()
        self.write_workers()
        _emit("runner-stopped")


def read_workers(state: Path) -> dict[str, Any]:
    """`workers.json` of the runner whose folder is `state` ({} when there is none)."""
    try:
        data: dict[str, Any] = json.loads((state / "workers.json").read_text())
        return data
    except (OSError, ValueError):
        return {}


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m voxplane.dev.podrunner", description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", type=Path, required=True, help="The runner's folder (workers.json, logs/, pods/).")
    parser.add_argument("--root", type=Path, required=True, help="Repository root holding agents/<name>/.")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--targets", type=Path, required=True, help="Prometheus file-SD file to write.")
    parser.add_argument("--max-idle-processes", type=int, default=None,
                        help="Lower VOXPLANE_IDLE_PROCESSES above this (a listed rewrite).")
    parser.add_argument("--region", default=None, help="The cluster's region: dev values for its agents' existing Secrets.")
    args = parser.parse_args(argv)
    args.state.mkdir(parents=True, exist_ok=True)
    runner = PodRunner(state=args.state, root=args.root, kubeconfig=args.kubeconfig, targets=args.targets,
                       max_idle_processes=args.max_idle_processes, region=args.region)

    def stop(_sig: int, _frame: Any) -> None:
        runner.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    runner.run()
    sys.exit(0)


if __name__ == "__main__":
    main()
