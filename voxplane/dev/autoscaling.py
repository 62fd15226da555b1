"""The dev cluster's autoscaling stack: Prometheus, KEDA's operator and KEDA's metrics adapter, run
as plain processes on 127.0.0.1 and wired to the control plane as they are in a cluster.

- Prometheus (Debian's 2.42 package) scrapes what `write_scrape_target` lists: file-based service
  discovery, one JSON file of target groups per source, picked up without a restart.
- KEDA's operator reconciles ScaledObjects into `keda-hpa-<name>` HPAs and answers metric queries
  over its mutual-TLS gRPC service; KEDA's adapter serves `external.metrics.k8s.io` from them.
  Both authenticate as KEDA's ServiceAccount `keda/keda-operator` (a token from the TokenRequest
  API, as a pod's projected token), and what that account may do is exactly the RBAC of KEDA's own
  manifests (`config/rbac`, `config/metrics-server`), applied as they ship.
- The API server's aggregation layer reaches the adapter: front-proxy flags on kube-apiserver (their
  own CA, as kubeadm makes them), and the APIService `v1beta1.external.metrics.k8s.io` on a Service of
  `type: ExternalName` with `externalName: localhost`. Endpoints refuse loopback addresses, but with
  aggregator routing off (the default) the aggregator dials an ExternalName Service by its name, and
  checks the adapter's certificate for `keda-metrics-apiserver.keda.svc` against the APIService's
  `caBundle`.
- The controller manager's HPA controller then reads those metrics and scales the workloads.

Keys and certificates are made once with openssl, beside the cluster's others, and kept across
restarts. The binaries come from `scripts/ensure-toolchain.sh control-plane`, KEDA's manifests from
its module (`$VOXPLANE_CACHE/toolchain/keda`).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from .paths import cache_dir, cluster_dir, write_private
from .ports import LOOPBACK, Ports

#: Where KEDA's manifests expect it, and the names its RBAC and APIService refer to.
KEDA_NAMESPACE = "keda"
KEDA_SERVICE_ACCOUNT = "keda-operator"
ADAPTER_SERVICE = "keda-metrics-apiserver"
OPERATOR_SERVICE = "keda-operator"
EXTERNAL_METRICS_APISERVICE = "v1beta1.external.metrics.k8s.io"
#: The common name kube-apiserver's proxy client certificate carries; the adapter accepts
#: forwarded identities only from a certificate of the front-proxy CA with this name.
FRONT_PROXY_CLIENT = "front-proxy-client"
#: The dev Prometheus scrapes (and evaluates) this often: a scale-up waits for at most one scrape.
SCRAPE_INTERVAL = "5s"
#: How long the ServiceAccount token KEDA runs with is valid (minted at every `up`).
TOKEN_DURATION = "8760h"

PROCESS_NAMES = ("prometheus", "keda-operator", "keda-adapter")


class AutoscalingError(RuntimeError):
    """The autoscaling stack could not be prepared or installed; the message says why."""


def prometheus_url(state: Mapping[str, Any]) -> str:
    """The dev Prometheus' address, from the cluster's state."""
    return f"http://{LOOPBACK}:{state['ports']['prometheus']}"


def region_prometheus_port(prometheus_url: str) -> int | None:
    """The port of a region's `prometheus_url` when it is this machine's loopback (the ScaledObjects
    the region renders send KEDA there, so the dev Prometheus must listen on it), else None."""
    from urllib.parse import urlsplit

    url = urlsplit(prometheus_url)
    if url.hostname not in (LOOPBACK, "localhost"):
        return None
    return url.port or (443 if url.scheme == "https" else 80)


def keda_manifests_dir() -> Path:
    return cache_dir() / "toolchain" / "keda"


# --------------------------------------------------------------------------- files


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise AutoscalingError(f"openssl {args[0]} failed: {last}")


def _make_ca(key: Path, crt: Path, subject: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
             "-days", "3650", "-subj", f"/CN={subject}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    key.chmod(0o600)


def _make_leaf(ca_key: Path, ca_crt: Path, key: Path, crt: Path, subject: str, *, usages: str,
               dns: Sequence[str] = (), ips: Sequence[str] = ()) -> None:
    csr = crt.with_suffix(".csr")
    ext = crt.with_suffix(".ext")
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={subject}")
    key.chmod(0o600)
    lines = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
             f"extendedKeyUsage={usages}"]
    names = [f"DNS:{n}" for n in dns] + [f"IP:{i}" for i in ips]
    if names:
        lines.append("subjectAltName=" + ",".join(names))
    ext.write_text("\n".join(lines) + "\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(crt), "-days", "3650", "-sha256", "-extfile", str(ext))
    csr.unlink()
    ext.unlink()


def keda_cert_dir(d: Path) -> Path:
    """`ca.crt`, `tls.crt`, `tls.key`: what KEDA's operator and adapter read from `--cert-dir`."""
    return d / "pki" / "keda"


def prepare_files(d: Path, prometheus_port: int) -> None:
    """The front-proxy CA and client certificate, KEDA's CA and certificate, and Prometheus' config
    and folders. Certificates are made once; the config is rewritten (its port may change)."""
    pki = d / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    if not (pki / "front-proxy-client.crt").exists():
        _make_ca(pki / "front-proxy-ca.key", pki / "front-proxy-ca.crt", "voxplane-dev-front-proxy-ca")
        _make_leaf(pki / "front-proxy-ca.key", pki / "front-proxy-ca.crt", pki / "front-proxy-client.key",
                   pki / "front-proxy-client.crt", FRONT_PROXY_CLIENT, usages="clientAuth")
    certs = keda_cert_dir(d)
    if not (certs / "tls.crt").exists():
        certs.mkdir(parents=True, exist_ok=True)
        # One certificate for both ends of the operator-adapter gRPC (mutual TLS, dialled at
        # 127.0.0.1) and for the adapter's API (dialled by the aggregator as <svc>.<ns>.svc).
        _make_ca(pki / "keda-ca.key", certs / "ca.crt", "voxplane-dev-keda-ca")
        _make_leaf(pki / "keda-ca.key", certs / "ca.crt", certs / "tls.key", certs / "tls.crt", "keda",
                   usages="serverAuth,clientAuth", ips=[LOOPBACK],
                   dns=[f"{svc}.{KEDA_NAMESPACE}.svc{suffix}" for svc in (ADAPTER_SERVICE, OPERATOR_SERVICE)
                        for suffix in ("", ".cluster.local")] + ["localhost"])
    (d / "keda" / "ca").mkdir(parents=True, exist_ok=True)
    prom = d / "prometheus"
    for sub in ("data", "targets"):
        (prom / sub).mkdir(parents=True, exist_ok=True)
    (prom / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [{
            "job_name": "dev-targets",
            # Target groups may set their own `job` and any other target labels.
            "file_sd_configs": [{"files": [str(prom / "targets" / "*.json")], "refresh_interval": "30s"}],
        }],
    }, sort_keys=False))


def apiserver_flags(d: Path) -> list[str]:
    """kube-apiserver's aggregation-layer flags (kubernetes.io, "Configure the Aggregation Layer")."""
    pki = d / "pki"
    return [
        "--requestheader-client-ca-file", str(pki / "front-proxy-ca.crt"),
        "--requestheader-allowed-names", FRONT_PROXY_CLIENT,
        "--requestheader-username-headers", "X-Remote-User",
        "--requestheader-group-headers", "X-Remote-Group",
        "--requestheader-extra-headers-prefix", "X-Remote-Extra-",
        "--proxy-client-cert-file", str(pki / "front-proxy-client.crt"),
        "--proxy-client-key-file", str(pki / "front-proxy-client.key"),
    ]


# --------------------------------------------------------------------------- scrape targets


def targets_dir() -> Path:
    return cluster_dir() / "prometheus" / "targets"


def write_scrape_target(name: str, addresses: Sequence[str], labels: Mapping[str, str] | None = None) -> Path:
    """Have the dev Prometheus scrape `addresses` (`host:port`, path /metrics) with `labels` on
    every series, until `remove_scrape_target(name)`. Written by rename: Prometheus never reads
    half a file."""
    folder = targets_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    tmp = folder / f".{name}.json.tmp"
    tmp.write_text(json.dumps([{"targets": list(addresses), "labels": dict(labels or {})}], indent=2))
    os.replace(tmp, path)
    return path


def remove_scrape_target(name: str) -> None:
    (targets_dir() / f"{name}.json").unlink(missing_ok=True)


# --------------------------------------------------------------------------- processes


@dataclass
class ProcessSpec:
    name: str
    argv: list[str]
    ready_url: str
    env: dict[str, str] = field(default_factory=dict)


def process_specs(bins: Path, d: Path, ports: Ports) -> list[ProcessSpec]:
    """Prometheus, KEDA's operator and KEDA's adapter, in start order."""
    certs = keda_cert_dir(d)
    kubeconfig = str(d / "keda" / "kubeconfig")
    keda_env = {
        "KUBECONFIG": kubeconfig,
        # pkg/util/watch.go: must be set, empty means every namespace.
        "WATCH_NAMESPACE": "",
        # Where the operator keeps cluster-scoped objects' secrets (its Role in config/rbac is there).
        "KEDA_CLUSTER_OBJECT_NAMESPACE": KEDA_NAMESPACE,
        "POD_NAMESPACE": KEDA_NAMESPACE,
    }
    return [
        ProcessSpec("prometheus", ready_url=f"http://{LOOPBACK}:{ports.prometheus}/-/ready", argv=[
            str(bins / "prometheus"),
            "--config.file", str(d / "prometheus" / "prometheus.yml"),
            "--storage.tsdb.path", str(d / "prometheus" / "data"),
            "--storage.tsdb.retention.time", "2d",
            "--web.listen-address", f"{LOOPBACK}:{ports.prometheus}",
            # POST /-/reload: a rewritten scrape configuration without a restart.
            "--web.enable-lifecycle",
            "--log.level", "warn",
        ]),
        # Its defaults bind every interface on 8080 (metrics) and 8081 (health: the agents' port).
        ProcessSpec("keda-operator", env=keda_env, ready_url=f"http://{LOOPBACK}:{ports.keda_health}/readyz", argv=[
            str(bins / "keda-operator"),
            "--metrics-bind-address", f"{LOOPBACK}:{ports.keda_metrics}",
            "--health-probe-bind-address", f"{LOOPBACK}:{ports.keda_health}",
            "--metrics-service-bind-address", f"{LOOPBACK}:{ports.keda_grpc}",
            "--cert-dir", str(certs),
            # Extra CAs for scalers' TLS; the default is a container path.
            "--ca-dir", str(d / "keda" / "ca"),
            "--leader-elect=false",
        ]),
        # As config/metrics-server/deployment.yaml runs it, plus what a pod gets from its
        # ServiceAccount: the three kubeconfigs, and the operator's address.
        ProcessSpec("keda-adapter", env=keda_env, ready_url=f"https://{LOOPBACK}:{ports.keda_adapter}/readyz", argv=[
            str(bins / "keda-adapter"),
            "--bind-address", LOOPBACK, "--secure-port", str(ports.keda_adapter),
            "--tls-cert-file", str(certs / "tls.crt"), "--tls-private-key-file", str(certs / "tls.key"),
            "--client-ca-file", str(certs / "ca.crt"),
            "--cert-dir", str(certs),
            "--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig,
            "--lister-kubeconfig", kubeconfig,
            "--metrics-service-address", f"{LOOPBACK}:{ports.keda_grpc}",
            # Its own /metrics listener takes a port only and binds every interface (cmd/adapter
            # RunMetricsServer, ":<port>"): a free port instead of 8080.
            "--port", str(ports.keda_adapter_metrics),
        ]),
    ]


# --------------------------------------------------------------------------- cluster objects


def _load_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def keda_objects(d: Path, adapter_port: int) -> list[dict[str, Any]]:
    """KEDA's namespace, ServiceAccount, CRDs and RBAC as its manifests ship them, its metrics
    Service made an ExternalName for localhost, and its APIService with our CA bundle."""
    src = keda_manifests_dir()
    if not (src / "crd").is_dir():
        raise AutoscalingError(f"{src} missing: run scripts/ensure-toolchain.sh control-plane")
    docs: list[dict[str, Any]] = []
    for rel in ("general/namespace.yaml", "service_account/service_account.yaml"):
        docs += _load_docs(src / rel)
    for crd in sorted((src / "crd").glob("*.yaml")):
        docs += _load_docs(crd)
    for rel in ("rbac/role.yaml", "rbac/role_binding.yaml", "rbac/aggregate_cluster_roles.yaml",
                "metrics-server/role.yaml", "metrics-server/role_binding.yaml"):
        docs += _load_docs(src / rel)
    service = _load_docs(src / "metrics-server" / "service.yaml")[0]
    service["spec"] = {"type": "ExternalName", "externalName": "localhost",
                       "ports": [{"name": "https", "port": adapter_port, "protocol": "TCP"}]}
    docs.append(service)
    apiservice = _load_docs(src / "metrics-server" / "api_service.yaml")[0]
    ca = (keda_cert_dir(d) / "ca.crt").read_bytes()
    apiservice["spec"]["service"]["port"] = adapter_port
    apiservice["spec"]["caBundle"] = base64.b64encode(ca).decode()
    apiservice["spec"].pop("insecureSkipTLSVerify", None)
    docs.append(apiservice)
    return docs


def write_keda_kubeconfig(d: Path, api_port: int, token: str) -> None:
    (d / "keda").mkdir(parents=True, exist_ok=True)
    write_private(d / "keda" / "kubeconfig", yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "keda",
        "clusters": [{"name": "dev", "cluster": {"server": f"https://{LOOPBACK}:{api_port}",
                                                 "certificate-authority": str(d / "pki" / "apiserver.crt")}}],
        "users": [{"name": KEDA_SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": "keda", "context": {"cluster": "dev", "user": KEDA_SERVICE_ACCOUNT}}],
    }, sort_keys=False))


def install(kubectl_bin: str, d: Path, api_port: int, adapter_port: int, apply: Callable[[str, list[str], str], None],
            progress: Callable[[str], None]) -> None:
    """Apply KEDA's objects and give KEDA a ServiceAccount token (before its processes start)."""
    docs = keda_objects(d, adapter_port)
    crds = [doc for doc in docs if doc["kind"] == "CustomResourceDefinition"]
    rest = [doc for doc in docs if doc["kind"] != "CustomResourceDefinition"]
    apply(kubectl_bin, [yaml.safe_dump(doc) for doc in crds + rest], "KEDA's objects")
    env = {**os.environ, "KUBECONFIG": str(d / "kubeconfig")}
    proc = subprocess.run([kubectl_bin, "wait", "--for=condition=Established", "--timeout=60s",
                           *[f"crd/{c['metadata']['name']}" for c in crds]], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise AutoscalingError(f"KEDA's CRDs not established: {proc.stderr.strip()}")
    proc = subprocess.run([kubectl_bin, "create", "token", KEDA_SERVICE_ACCOUNT, "-n", KEDA_NAMESPACE,
                           f"--duration={TOKEN_DURATION}"], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise AutoscalingError(f"a token for ServiceAccount {KEDA_NAMESPACE}/{KEDA_SERVICE_ACCOUNT}: {proc.stderr.strip()}")
    write_keda_kubeconfig(d, api_port, proc.stdout.strip())
    progress(f"KEDA's {len(crds)} CRDs, RBAC and APIService {EXTERNAL_METRICS_APISERVICE} installed")


def wait_external_metrics_available(kubectl_bin: str, d: Path, timeout: float = 60.0) -> None:
    """Until the aggregator reports the APIService Available (it reached the adapter over TLS)."""
    env = {**os.environ, "KUBECONFIG": str(d / "kubeconfig")}
    deadline = time.monotonic() + timeout
    message = ""
    while time.monotonic() < deadline:
        proc = subprocess.run([kubectl_bin, "get", "apiservice", EXTERNAL_METRICS_APISERVICE, "-o", "json"],
                              capture_output=True, text=True, env=env)
        if proc.returncode == 0:
            conditions = json.loads(proc.stdout).get("status", {}).get("conditions", [])
            available: dict[str, Any] = next((c for c in conditions if c.get("type") == "Available"), {})
            if available.get("status") == "True":
                return
            message = available.get("message", "")
        time.sleep(0.5)
    raise AutoscalingError(f"APIService {EXTERNAL_METRICS_APISERVICE} not Available within {timeout:.0f}s: {message}")
