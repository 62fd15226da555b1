"""A local Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok, with simulated nodes derived from a region manifest, and the autoscaling
stack beside it (Prometheus, KEDA's operator and metrics adapter: `autoscaling.py`).

The real API server validates and admits every object (CRDs and their CEL rules included), the
real scheduler places pods, and kwok plays the kubelet: nodes stay Ready and scheduled pods are
marked Running and Ready. Nothing inside a pod runs: no container, no probe, no network.

State lives in `$VOXPLANE_CACHE/dev/cluster/` (etcd data, keys, logs, kubeconfig) and survives
`down`: a later `up` brings the same cluster back, as `kind` or `minikube stop/start` do.
`down --purge` removes it. Every process binds 127.0.0.1 only.

    eval "$(voxplane dev cluster up --region local)"   # prints export KUBECONFIG=...
    voxplane dev cluster down
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import yaml

from . import autoscaling, deletion_cost, kwokstages, podrunner
from ..manifest.model import Agent, Region
from .nodes import LABEL_SIMULATED, node_objects, plan_pools
from .paths import SCRIPTS, cache_dir, cluster_dir, write_private
from .ports import LOOPBACK, Ports, port_free
from .process import ProcessRecord, launch, log_tail

#: The kubeconfig context (and cluster and user) name; the local stack pins it in Pulumi.local.yaml.
CONTEXT = "voxplane-local"
#: StorageClass every claim without one gets; kwok's volume stages bind claims of the listed classes.
DEFAULT_STORAGE_CLASS = "kwok-volume"
#: kwok's Stage objects standalone kwok needs (kwokctl's defaults): nodes, pods, volumes.
STAGES = ("node-initialize", "node-heartbeat-with-lease", "pod-ready", "pod-complete", "pod-delete",
          "pvc-provision", "pv-bind", "pvc-delete", "pv-delete")
#: Prewarmed job processes per worker the pod runner allows (VOXPLANE_IDLE_PROCESSES above it is
#: lowered, a listed rewrite): each is ~140 MB, and a 2-core machine runs several workers.
MAX_IDLE_PROCESSES = 2
_ENSURE_TOOLCHAIN = SCRIPTS / "ensure-toolchain.sh"
_FETCH_CRDS = SCRIPTS / "fetch-crds.sh"


class ClusterError(RuntimeError):
    """The control plane could not be built, started or configured; the message says why."""


def kubeconfig_path() -> Path:
    return cluster_dir() / "kubeconfig"


def toolchain_bin_dir(progress: Callable[[str], None] | None = None) -> Path:
    """The folder of plain-named toolchain binaries, building what is missing (minutes, cold)."""
    proc = subprocess.run(["bash", str(_ENSURE_TOOLCHAIN), "control-plane", "--print-bin-dir"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=None if progress else subprocess.PIPE,
                          text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or ["see the lines above"]
        raise ClusterError(f"building the control plane failed: {tail[0]}")
    return Path(proc.stdout.strip())


# --------------------------------------------------------------------------- processes


@dataclass
class _Component:
    name: str
    argv: list[str]
    ready_url: str
    needs_token: bool = False
    env: dict[str, str] | None = None


def _components(bins: Path, d: Path, ports: Ports, token: str) -> list[_Component]:
    kubeconfig = str(d / "kubeconfig")
    api = f"https://{LOOPBACK}:{ports.apiserver}"
    return [
        _Component("etcd", [
            str(bins / "etcd"), "--name", "voxplane-dev", "--data-dir", str(d / "etcd"),
            "--listen-client-urls", f"http://{LOOPBACK}:{ports.etcd_client}",
            "--advertise-client-urls", f"http://{LOOPBACK}:{ports.etcd_client}",
            "--listen-peer-urls", f"http://{LOOPBACK}:{ports.etcd_peer}",
            "--initial-advertise-peer-urls", f"http://{LOOPBACK}:{ports.etcd_peer}",
            "--initial-cluster", f"voxplane-dev=http://{LOOPBACK}:{ports.etcd_peer}",
            "--quota-backend-bytes", str(2 * 1024**3), "--log-level", "warn",
        ], f"http://{LOOPBACK}:{ports.etcd_client}/health"),
        _Component("kube-apiserver", [
            str(bins / "kube-apiserver"),
            "--etcd-servers", f"http://{LOOPBACK}:{ports.etcd_client}",
            "--bind-address", LOOPBACK, "--advertise-address", LOOPBACK,
            "--secure-port", str(ports.apiserver),
            # A loopback advertise address is refused by the endpoint reconciler.
            "--endpoint-reconciler-type", "none",
            "--cert-dir", str(d / "pki"),
            "--token-auth-file", str(d / "tokens.csv"),
            "--authorization-mode", "RBAC",
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(d / "pki" / "sa.pub"),
            "--service-account-signing-key-file", str(d / "pki" / "sa.key"),
            "--service-cluster-ip-range", "10.96.0.0/16",
            "--allow-privileged=true",
            *autoscaling.apiserver_flags(d),
        ], f"{api}/readyz", needs_token=True),
        _Component("kube-controller-manager", [
            str(bins / "kube-controller-manager"), "--kubeconfig", kubeconfig,
            "--bind-address", LOOPBACK, "--secure-port", "0", "--leader-elect=false",
            "--service-account-private-key-file", str(d / "pki" / "sa.key"),
            "--use-service-account-credentials=false",
            "--root-ca-file", str(d / "pki" / "apiserver.crt"),
            # The default client rate (20 QPS) makes a 200-replica rollout take 4x as long.
            "--kube-api-qps=200", "--kube-api-burst=400",
        ], ""),
        _Component("kube-scheduler", [
            str(bins / "kube-scheduler"), "--kubeconfig", kubeconfig,
            "--bind-address", LOOPBACK, "--secure-port", str(ports.scheduler), "--leader-elect=false",
            "--kube-api-qps=200", "--kube-api-burst=400",
        ], f"https://{LOOPBACK}:{ports.scheduler}/readyz"),
        _Component("kwok", [
            str(bins / "kwok"), "--kubeconfig", kubeconfig, "--config", str(d / "kwok.yaml"),
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-lease-duration-seconds", "40",
            "--server-address", f"{LOOPBACK}:{ports.kwok}",
        ], f"http://{LOOPBACK}:{ports.kwok}/healthz"),
    ]


def _get(url: str, token: str | None, timeout: float = 1.0) -> int:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # our own self-signed loopback certs; only liveness is asked
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (urllib.error.URLError, OSError):
        return 0


#: Children this process started, kept so they are reaped by `down` in the same process (tests)
#: instead of being reported as still running when garbage-collected.
_STARTED: dict[int, subprocess.Popen[bytes]] = {}


def _spawn(component: _Component, d: Path) -> ProcessRecord:
    # Detached: outlives `up`, never gets the terminal's Ctrl-C.
    env = {**os.environ, **component.env} if component.env is not None else None
    proc = launch(component.argv, log=d / "logs" / f"{component.name}.log", cwd=d, env=env, detached=True,
                  append=True)
    _STARTED[proc.pid] = proc
    return ProcessRecord.of(proc.pid)


def _wait_ready(component: _Component, record: ProcessRecord, d: Path, token: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not record.running:
            raise ClusterError(f"{component.name} exited during start; last lines of {d / 'logs' / (component.name + '.log')}:\n"
                               + log_tail(d / "logs" / f"{component.name}.log", 15))
        if not component.ready_url or _get(component.ready_url, token if component.needs_token else None) == 200:
            return
        if time.monotonic() > deadline:
            raise ClusterError(f"{component.name} not ready at {component.ready_url} within {timeout:.0f}s; see "
                               f"{d / 'logs' / (component.name + '.log')}")
        time.sleep(0.1)


# --------------------------------------------------------------------------- files


def _prepare_files(d: Path, ports: Ports, storage_classes: Sequence[str], agent_workers: bool) -> str:
    """Keys, token file, kubeconfig and kwok config; returns the admin token (kept across runs)."""
    (d / "pki").mkdir(parents=True, exist_ok=True)
    (d / "logs").mkdir(exist_ok=True)
    if not (d / "pki" / "sa.key").exists():
        for argv in (["openssl", "genrsa", "-out", str(d / "pki" / "sa.key"), "2048"],
                     ["openssl", "rsa", "-in", str(d / "pki" / "sa.key"), "-pubout", "-out", str(d / "pki" / "sa.pub")]):
            if subprocess.run(argv, capture_output=True).returncode != 0:
                raise ClusterError(f"{' '.join(argv[:2])} failed (is openssl installed?)")
    token_file = d / "tokens.csv"
    if token_file.exists():
        token = token_file.read_text().split(",", 1)[0]
    else:
        token = secrets.token_hex(24)
        write_private(token_file, f"{token},voxplane-admin,voxplane-admin,system:masters\n")
    write_private(d / "kubeconfig", yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": CONTEXT,
        "clusters": [{"name": CONTEXT, "cluster": {"server": f"https://{LOOPBACK}:{ports.apiserver}",
                                                   "certificate-authority": str(d / "pki" / "apiserver.crt")}}],
        "users": [{"name": CONTEXT, "user": {"token": token}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT}}],
    }, sort_keys=False))
    (d / "kwok.yaml").write_text(_kwok_config(storage_classes, agent_workers))
    try:
        autoscaling.prepare_files(d, ports.prometheus)
    except autoscaling.AutoscalingError as exc:
        raise ClusterError(str(exc)) from None
    return token


def _kwok_config(storage_classes: Sequence[str], agent_workers: bool) -> str:
    """A KwokConfiguration with every option spelled out (given a config, kwok applies no
    defaults), followed by the Stage objects, their volume selectors widened to our classes, and
    with `agent_workers` agent pods left to the pod runner (`kwokstages`)."""
    stages_dir = cache_dir() / "toolchain" / "kwok-stages"
    options = {
        "cidr": "10.0.0.0/16", "nodeIP": "10.0.0.1", "nodeName": "", "nodePort": 0,
        "manageAllNodes": False, "manageNodesWithAnnotationSelector": "kwok.x-k8s.io/node=fake",
        "enableDebuggingHandlers": False, "enableContentionProfiling": False, "enableProfilingHandler": False,
        "podPlayStageParallelism": 4, "nodePlayStageParallelism": 4, "nodeLeaseDurationSeconds": 40,
        "nodeLeaseParallelism": 4, "podsOnNodeSyncParallelism": 4,
        "enablePodsOnNodeSyncListPager": True, "enablePodsOnNodeSyncStreamWatch": True,
        "enableCRDs": [],
    }
    docs = [yaml.safe_dump({"apiVersion": "config.kwok.x-k8s.io/v1alpha1", "kind": "KwokConfiguration",
                            "metadata": {"name": "voxplane-dev"}, "options": options}, sort_keys=False)]
    classes = ", ".join(f"'{c}'" for c in storage_classes)
    try:
        texts = kwokstages.stages(stages_dir, STAGES, agent_workers=agent_workers)
    except FileNotFoundError as e:
        raise ClusterError(f"{e.args[0]} missing: run scripts/ensure-toolchain.sh control-plane") from None
    for text in texts:
        docs.append(text.replace(f"self.spec.storageClassName == '{DEFAULT_STORAGE_CLASS}'",
                                 f"self.spec.storageClassName in [{classes}]"))
    return "---\n".join(d if d.endswith("\n") else d + "\n" for d in docs)


# --------------------------------------------------------------------------- state


def _state_file() -> Path:
    return cluster_dir() / "state.json"


def _read_state() -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(_state_file().read_text())
        return data
    except (OSError, ValueError):
        return None


def running() -> dict[str, Any] | None:
    """The state of a cluster whose every process is alive, else None."""
    state = _read_state()
    if not state:
        return None
    procs = state.get("processes", {})
    if procs and all((r := ProcessRecord.from_json(p)) is not None and r.running for p in procs.values()):
        return state
    return None


def exports() -> str:
    return f"export KUBECONFIG={shlex.quote(str(kubeconfig_path()))}"


# --------------------------------------------------------------------------- up / down


def up(region: Region, agents: Sequence[Agent], progress: Callable[[str], None], *, agent_workers: bool = True,
       root: Path | None = None, max_idle_processes: int | None = MAX_IDLE_PROCESSES) -> dict[str, Any]:
    """Start (or reuse) the control plane and make its simulated nodes exactly the region's.

    `agent_workers`: agent pods run as real workers (the pod runner: `podrunner`), their programs
    from `root`'s agents/ (default: this checkout), `max_idle_processes` prewarmed job processes
    each at most (None: as rendered). Without it kwok marks every pod Ready and nothing runs."""
    d = cluster_dir()
    d.mkdir(parents=True, exist_ok=True)
    storage_classes = sorted({DEFAULT_STORAGE_CLASS} | ({region.kubernetes.storage_class} if region.kubernetes.storage_class else set()))
    workers = ({"root": str((root or SCRIPTS.parent).resolve()), "max_idle_processes": max_idle_processes,
                "region": region.name} if agent_workers else None)
    state = running()
    bins = toolchain_bin_dir(progress)
    kubectl = str(bins / "kubectl")
    prometheus_port = autoscaling.region_prometheus_port(region.kubernetes.prometheus_url)
    # A cluster started before the autoscaling stack existed is restarted with it, one whose
    # Prometheus is not where the region's ScaledObjects look for it, and one whose agent pods are
    # run otherwise (kwok's stages differ).
    if state is None or state.get("storage_classes") != storage_classes or \
            not set(autoscaling.PROCESS_NAMES) <= set(state.get("processes", {})) or \
            prometheus_port not in (None, state["ports"].get("prometheus")) or state.get("agent_workers") != workers:
        down(progress, quiet=True)
        previous = _read_state() or {}
        if prometheus_port is not None and not port_free(prometheus_port):
            raise ClusterError(f"port {prometheus_port} of region {region.name!r}'s kubernetes.prometheus_url "
                               f"({region.kubernetes.prometheus_url}) is in use: the dev Prometheus must listen there")
        ports = Ports.pick(previous.get("ports"), prometheus=prometheus_port)
        token = _prepare_files(d, ports, storage_classes, agent_workers)
        procs: dict[str, Any] = {}
        start = time.monotonic()

        def start_component(component: _Component) -> None:
            record = _spawn(component, d)
            procs[component.name] = {**record.as_json(), "binary": component.argv[0]}
            _write_state(d, ports, procs, storage_classes, region.name, workers)
            _wait_ready(component, record, d, token)
            progress(f"{component.name} ready (pid {record.pid})")

        try:
            for component in _components(bins, d, ports, token):
                start_component(component)
            progress(f"control plane up in {time.monotonic() - start:.1f}s at https://{LOOPBACK}:{ports.apiserver}")
            # KEDA's CRDs, RBAC and token before KEDA starts; the APIService is Available once
            # the aggregator reaches the adapter.
            start = time.monotonic()
            autoscaling.install(kubectl, d, ports.apiserver, ports.keda_adapter, _apply, progress)
            for spec in autoscaling.process_specs(bins, d, ports):
                start_component(_Component(spec.name, spec.argv, spec.ready_url, env=spec.env))
            autoscaling.wait_external_metrics_available(kubectl, d)
            progress(f"autoscaling up in {time.monotonic() - start:.1f}s: Prometheus at "
                     f"http://{LOOPBACK}:{ports.prometheus}, external metrics served by KEDA")
            if workers is not None:
                start_component(_pod_runner(d, workers))
        except (ClusterError, autoscaling.AutoscalingError) as exc:
            down(progress, quiet=True)
            raise ClusterError(str(exc)) from None
        state = _read_state() or {}
    _apply_cluster_objects(kubectl, storage_classes, progress)
    _sync_nodes(kubectl, region, agents, progress)
    state["region"] = region.name
    _write_state(d, Ports(**state["ports"]), state["processes"], storage_classes, region.name, workers)
    return state


def runner_dir() -> Path:
    """The pod runner's folder: workers.json, each worker's log and home."""
    return cluster_dir() / "podrunner"


def _pod_runner(d: Path, workers: dict[str, Any]) -> _Component:
    argv = [sys.executable, "-m", "voxplane.dev.podrunner", "--state", str(runner_dir()), "--root", workers["root"],
            "--kubeconfig", str(d / "kubeconfig"), "--targets", str(d / "prometheus" / "targets" / "podmonitors.json"),
            "--region", workers["region"]]
    if workers["max_idle_processes"] is not None:
        argv += ["--max-idle-processes", str(workers["max_idle_processes"])]
    return _Component("podrunner", argv, "")


def _write_state(d: Path, ports: Ports, procs: dict[str, Any], storage_classes: Sequence[str], region: str,
                 agent_workers: dict[str, Any] | None) -> None:
    write_private(d / "state.json", json.dumps({
        "ports": ports.__dict__, "processes": procs, "storage_classes": list(storage_classes),
        "region": region, "kubeconfig": str(d / "kubeconfig"), "agent_workers": agent_workers,
    }, indent=2))


def down(progress: Callable[[str], None], quiet: bool = False, purge: bool = False) -> None:
    """Stop every process `up` started (newest first); keep the data unless `purge`."""
    state = _read_state()
    stopped = []
    if state:
        for name, proc in reversed(list(state.get("processes", {}).items())):
            record = ProcessRecord.from_json(proc)
            if record is not None and record.stop(timeout=10.0):
                stopped.append(name)
            child = _STARTED.pop(proc.get("pid"), None)
            if child is not None:
                child.wait()
        # Workers a killed pod runner left behind (it stops its own when it can).
        for worker in podrunner.read_workers(runner_dir()).values():
            record = ProcessRecord.from_json(worker)
            if record is not None and record.pid and record.running:
                try:
                    os.killpg(record.pid, signal.SIGKILL)  # its session: the job processes too
                except (ProcessLookupError, PermissionError):
                    continue
                stopped.append(f"worker {worker.get('namespace')}/{worker.get('pod')}")
        controller = deletion_cost.leftover(runner_dir())
        if controller is not None and controller.stop(timeout=10.0):
            stopped.append("deletion-cost controller")
        state["processes"] = {}
        write_private(_state_file(), json.dumps(state, indent=2))
    if purge and cluster_dir().exists():
        shutil.rmtree(cluster_dir())
    if not quiet:
        progress(f"stopped {', '.join(stopped) if stopped else 'nothing (not running)'}" + ("; data removed" if purge else ""))


def kubectl(bins: Path, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig_path())}
    proc = subprocess.run([str(bins / "kubectl"), *args], input=stdin, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args[:3])}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    return proc


def _apply(kubectl_bin: str, docs: Iterable[str], what: str) -> None:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig_path())}
    text = "---\n".join(docs)
    for _ in range(30):  # right after start the API server may still be installing its built-in types
        proc = subprocess.run([kubectl_bin, "apply", "--server-side", "--force-conflicts", "--field-manager", "voxplane-dev",
                               "-f", "-"], input=text, capture_output=True, text=True, env=env)
        if proc.returncode == 0:
            return
        time.sleep(0.5)
    raise ClusterError(f"installing {what}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'kubectl failed'}")


def _apply_cluster_objects(kubectl_bin: str, storage_classes: Sequence[str], progress: Callable[[str], None]) -> None:
    """The CRDs voxplane renders against (KEDA, Karpenter, prometheus-operator) and the storage classes."""
    crd_dir = cache_dir() / "crds"
    if not crd_dir.is_dir() or not any(crd_dir.glob("*.yaml")):
        if subprocess.run(["bash", str(_FETCH_CRDS)], stdin=subprocess.DEVNULL).returncode != 0:
            raise ClusterError("scripts/fetch-crds.sh failed")
    crds = [p.read_text() for p in sorted(crd_dir.glob("*.yaml"))]
    _apply(kubectl_bin, crds, "CRDs")
    classes = []
    for name in storage_classes:
        classes.append(yaml.safe_dump({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name, "labels": {LABEL_SIMULATED: "true"},
                         "annotations": {"storageclass.kubernetes.io/is-default-class": str(name == DEFAULT_STORAGE_CLASS).lower()}},
            "provisioner": "kwok.x-k8s.io/volume", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
        }))
    _apply(kubectl_bin, classes, "storage classes")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig_path())}
    subprocess.run([kubectl_bin, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"],
                   capture_output=True, env=env)
    progress(f"{len(crds)} CRDs and {len(classes)} storage classes installed")


def _sync_nodes(kubectl_bin: str, region: Region, agents: Sequence[Agent], progress: Callable[[str], None]) -> None:
    """Create the region's simulated nodes and delete simulated nodes it does not declare."""
    env = {**os.environ, "KUBECONFIG": str(kubeconfig_path())}
    wanted = node_objects(region, agents)
    names = {n["metadata"]["name"] for n in wanted}
    listed = subprocess.run([kubectl_bin, "get", "nodes", "-l", f"{LABEL_SIMULATED}=true", "-o", "name"],
                            capture_output=True, text=True, env=env)
    stale = [n for n in listed.stdout.split() if n.split("/", 1)[-1] not in names]
    if stale:
        subprocess.run([kubectl_bin, "delete", "--wait=false", *stale], capture_output=True, env=env)
    _apply(kubectl_bin, [yaml.safe_dump({k: v for k, v in n.items() if k != "status"}) for n in wanted], "nodes")
    # kubectl apply drops status; capacity goes through the status subresource.
    for node in wanted:
        patch = json.dumps({"status": node["status"]})
        proc = subprocess.run([kubectl_bin, "patch", "node", node["metadata"]["name"], "--subresource=status",
                               "--type=merge", "-p", patch], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise ClusterError(f"setting capacity of node {node['metadata']['name']}: {proc.stderr.strip()}")
    pools = plan_pools(region, agents)
    progress(f"{len(wanted)} simulated nodes for region {region.name!r}: "
             + ", ".join(f"{p.name} x{p.count}" for p in pools)
             + (f"; removed {len(stale)} of another region" if stale else ""))


def main_progress(line: str) -> None:
    print(f"dev cluster: {line}", file=sys.stderr)
