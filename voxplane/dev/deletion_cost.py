"""The deletion-cost controller's pod, run by the pod runner as a kubelet would run it: once the
region's `pod-deletion-cost` Deployment has a pod on a simulated node, its container runs here as a
process (`python -m voxplane.controllers.deletion_cost run`) with

- the config the render wrote (its ConfigMap's `config.json`, as the pod mounts it), the one
  change being the metrics port: a free loopback port instead of the container's (listed in the
  runner's log), so several clusters and the workers' ports never clash;
- the credentials the pod gets: a token of the pod's own ServiceAccount (TokenRequest, bound to
  the pod, as the kubelet projects it), no other credential, so the rendered RBAC and admission
  policy are what it meets;
- its metrics port published as the pod's, so the PodMonitor the region deploys is scraped.

The process stops (SIGTERM) when the pod is deleted or its ConfigMap changes (a new rollout makes
a new pod anyway), and is started again while the pod stays. The controller runs with voxplane's own
interpreter (its requirements are voxplane's dependencies); its image is built and run by
`tests/images`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import yaml

from ..desired.deletion_cost import NAME
from .kubeclient import KubeClient, KubeError
from .paths import write_private
from .ports import LOOPBACK, free_port
from .process import ProcessRecord

__all__ = ["DeletionCostPod", "SELECTOR", "leftover"]

#: The controller's pods (desired/deletion_cost.py labels them with its name).
SELECTOR = f"app.kubernetes.io/name={NAME}"
#: The config file inside the ConfigMap (desired/deletion_cost.py mounts it at /etc/voxplane).
CONFIG_KEY = "config.json"
#: The running controller's pid and start time, for `voxplane dev cluster down` after a killed runner.
PROCESS_FILE = "process.json"
#: Seconds a requested token lives; the process is restarted with a fresh one before it expires.
TOKEN_SECONDS = 3600


@dataclass
class _Running:
    uid: str
    namespace: str
    pod: str
    container_port: int
    port: int
    config: str
    proc: subprocess.Popen[bytes]
    started: float
    log: Any = field(repr=False)


class DeletionCostPod:
    """Keeps the controller's process in step with its pod (see the module docstring).
    `emit(event, **fields)` is the runner's log; `tick(pods, simulated, now)` is called on each of
    the runner's rounds with every pod it listed."""

    def __init__(self, kube: KubeClient, kubeconfig: Path, state: Path, emit: Callable[..., None]):
        self.kube = kube
        self.kubeconfig = kubeconfig
        self.state = state / "deletion-cost"
        self.emit = emit
        self.running: Optional[_Running] = None

    def address(self, namespace: str, pod: str, port: int) -> Optional[str]:
        """The loopback address standing in for the controller pod's `port`, while it runs."""
        r = self.running
        if r is not None and (r.namespace, r.pod, r.container_port) == (namespace, pod, port) and r.proc.poll() is None:
            return f"{LOOPBACK}:{r.port}"
        return None

    def tick(self, pods: list[dict[str, Any]], simulated: set[str], now: float) -> None:
        placed = [p for p in pods if (p.get("spec") or {}).get("nodeName") in simulated
                  and not p["metadata"].get("deletionTimestamp")]
        pod = placed[0] if placed else None
        r = self.running
        if r is not None:
            stale = (pod is None or pod["metadata"]["uid"] != r.uid or now - r.started > TOKEN_SECONDS * 0.8
                     or r.proc.poll() is not None)
            if not stale and pod is not None:
                stale = self._config(pod) not in (None, r.config)
            if stale:
                self.stop()
        if self.running is None and pod is not None:
            self._start(pod, now)

    def stop(self) -> None:
        r, self.running = self.running, None
        if r is None:
            return
        if r.proc.poll() is None:
            r.proc.send_signal(signal.SIGTERM)
            try:
                r.proc.wait(20)
            except subprocess.TimeoutExpired:
                r.proc.kill()
                r.proc.wait()
        r.log.close()
        (self.state / PROCESS_FILE).unlink(missing_ok=True)
        self.emit("deletion-cost-stopped", pod=f"{r.namespace}/{r.pod}", exit_code=r.proc.returncode)

    # -- starting ---------------------------------------------------------------------------------

    def _config(self, pod: Mapping[str, Any]) -> Optional[str]:
        """The pod's mounted config.json (None while its ConfigMap is missing)."""
        ns = pod["metadata"]["namespace"]
        names = [v["configMap"]["name"] for v in pod["spec"].get("volumes") or [] if v.get("configMap")]
        for name in names:
            cm = self.kube.get(f"/api/v1/namespaces/{ns}/configmaps/{name}")
            if cm is not None and CONFIG_KEY in (cm.get("data") or {}):
                return str(cm["data"][CONFIG_KEY])
        return None

    def _token_kubeconfig(self, pod: Mapping[str, Any]) -> Path:
        """A kubeconfig holding a token of the pod's ServiceAccount, bound to the pod."""
        meta, account = pod["metadata"], pod["spec"].get("serviceAccountName") or "default"
        answer = self.kube.request("POST", f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token",
                                   body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                         "spec": {"expirationSeconds": TOKEN_SECONDS, "boundObjectRef": {
                                             "apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                                             "uid": meta["uid"]}}})
        if answer is None:
            raise KubeError(f"ServiceAccount {meta['namespace']}/{account} not found", 404)
        admin = yaml.safe_load(self.kubeconfig.read_text())
        path = self.state / "kubeconfig"
        write_private(path, yaml.safe_dump({  # it holds a token
            "apiVersion": "v1", "kind": "Config", "current-context": "pod",
            "clusters": [{"name": "dev", "cluster": admin["clusters"][0]["cluster"]}],
            "users": [{"name": account, "user": {"token": answer["status"]["token"]}}],
            "contexts": [{"name": "pod", "context": {"cluster": "dev", "user": account}}]}))
        return path

    def _start(self, pod: Mapping[str, Any], now: float) -> None:
        meta = pod["metadata"]
        where = f"{meta['namespace']}/{meta['name']}"
        try:
            text = self._config(pod)
            if text is None:
                return  # the ConfigMap comes with the same `pulumi up`
            kubeconfig = self._token_kubeconfig(pod)
        except KubeError as e:
            self.emit("deletion-cost-waiting", pod=where, error=str(e))
            return
        config = json.loads(text)
        container_port = int(config["metrics_port"])
        port = free_port()
        config_path = self.state / CONFIG_KEY
        config_path.write_text(json.dumps({**config, "metrics_port": port}, indent=2, sort_keys=True) + "\n")
        log = (self.state / "controller.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "voxplane.controllers.deletion_cost", "run", "--config", str(config_path),
             "--kubeconfig", str(kubeconfig), "--listen-host", LOOPBACK],
            cwd=self.state, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.state)})
        (self.state / PROCESS_FILE).write_text(json.dumps(ProcessRecord.of(proc.pid).as_json()))
        self.running = _Running(meta["uid"], meta["namespace"], meta["name"], container_port, port, text, proc, now, log)
        self.emit("deletion-cost-started", pod=where, pid=proc.pid, rewrites=[
            {"field": "metrics_port", "pod": container_port, "here": port, "why": "a free loopback port"}])


def leftover(runner_state: Path) -> Optional[ProcessRecord]:
    """The controller process a killed pod runner left running under `runner_state`, if any."""
    try:
        record = ProcessRecord.from_json(json.loads((runner_state / "deletion-cost" / PROCESS_FILE).read_text()))
    except (OSError, ValueError):
        return None
    return record if record is not None and record.running else None
