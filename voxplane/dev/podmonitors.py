"""Prometheus scrape targets from the PodMonitors a stack deployed, derived as prometheus-operator
derives its scrape configuration (pkg/prometheus/promcfg.go, `generatePodMonitorConfig`), so the
series carry the labels the ScaledObjects' queries select on, and a PodMonitor that names a port
the pod does not have, or selects no pod, scrapes nothing here as it scrapes nothing in a cluster:

- pods: in the PodMonitor's namespace (or its `namespaceSelector`: `any`, `matchNames`), matching
  its `selector` (`matchLabels`, `matchExpressions`), with an IP, not Succeeded or Failed (the
  operator's `filterRunning`);
- per `podMetricsEndpoints` entry: the pod's container ports whose *name* is the entry's `port`
  (or whose number is its `portNumber`), one target each;
- target labels: `job` = `<namespace>/<podmonitor>` (or the pod's `jobLabel` label's value),
  `namespace`, `pod`, `container`, `endpoint` (the port's name), `instance` = `<pod IP>:<port>`,
  the `podTargetLabels` copied from the pod; `__metrics_path__`, `__scheme__`, the entry's
  `interval` and `scrapeTimeout` as `__scrape_interval__`/`__scrape_timeout__`, `params`.

What differs, because the pods are not where their IPs say: a target's address is the loopback
address standing in for that pod port (the pod runner's worker, or a registered stand-in); a pod
port nothing stands in for is left out and named in `Targets.unreachable`.

Pure: PodMonitors, pods and the address lookup in; Prometheus file-SD target groups out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

__all__ = ["Targets", "matches", "scrape_targets"]

Address = Callable[[str, str, int], Optional[str]]


@dataclass
class Targets:
    groups: list[dict[str, Any]] = field(default_factory=list)
    #: `ns/pod:port (podmonitor ns/name)` of targets nothing on this machine plays
    unreachable: list[str] = field(default_factory=list)


def matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector against `labels` (an empty selector selects everything)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), list(expr.get("values") or [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _namespaces(monitor: Mapping[str, Any]) -> Optional[set[str]]:
    """The namespaces a PodMonitor looks in; None: every namespace."""
    own = str(monitor["metadata"]["namespace"])
    ns_sel = (monitor.get("spec") or {}).get("namespaceSelector") or {}
    if ns_sel.get("any"):
        return None
    names = ns_sel.get("matchNames") or []
    return set(names) if names else {own}


def scrape_targets(monitors: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]], address: Address) -> Targets:
    """Target groups for every (PodMonitor endpoint, pod, matching port); `address(ns, pod, port)`
    is the loopback `host:port` standing in for a pod's container port, or None."""
    out = Targets()
    for monitor in sorted(monitors, key=lambda m: (m["metadata"]["namespace"], m["metadata"]["name"])):
        meta, spec = monitor["metadata"], monitor.get("spec") or {}
        where = _namespaces(monitor)
        for pod in pods:
            pmeta, pstatus = pod["metadata"], pod.get("status") or {}
            namespace = str(pmeta["namespace"])
            labels = pmeta.get("labels") or {}
            if where is not None and namespace not in where:
                continue
            if not matches(spec.get("selector"), labels):
                continue
            if not pstatus.get("podIP") or pstatus.get("phase") in ("Succeeded", "Failed"):
                continue
            job = labels.get(spec["jobLabel"]) if spec.get("jobLabel") else None
            job = job or f"{meta['namespace']}/{meta['name']}"
            for endpoint in spec.get("podMetricsEndpoints") or []:
                for container in (pod.get("spec") or {}).get("containers") or []:
                    for port in container.get("ports") or []:
                        if "port" in endpoint and port.get("name") != endpoint["port"]:
                            continue
                        if "portNumber" in endpoint and int(port.get("containerPort", 0)) != int(endpoint["portNumber"]):
                            continue
                        if "port" not in endpoint and "portNumber" not in endpoint:
                            continue
                        number = int(port["containerPort"])
                        here = address(namespace, str(pmeta["name"]), number)
                        if here is None:
                            out.unreachable.append(f"{namespace}/{pmeta['name']}:{number} "
                                                   f"(podmonitor {meta['namespace']}/{meta['name']})")
                            continue
                        target_labels = {
                            "job": job, "namespace": namespace, "pod": str(pmeta["name"]),
                            "container": str(container["name"]), "endpoint": str(port.get("name") or number),
                            "instance": f"{pstatus['podIP']}:{number}",
                            "__metrics_path__": str(endpoint.get("path") or "/metrics"),
                            "__scheme__": str(endpoint.get("scheme") or "http"),
                        }
                        if endpoint.get("interval"):
                            target_labels["__scrape_interval__"] = str(endpoint["interval"])
                        if endpoint.get("scrapeTimeout"):
                            target_labels["__scrape_timeout__"] = str(endpoint["scrapeTimeout"])
                        for name, values in (endpoint.get("params") or {}).items():
                            if values:
                                target_labels[f"__param_{name}"] = str(values[0])
                        for label in spec.get("podTargetLabels") or []:
                            if label in labels:
                                target_labels[_sanitize(label)] = labels[label]
                        out.groups.append({"targets": [here], "labels": target_labels})
    return out


def _sanitize(label: str) -> str:
    """A Kubernetes label name as a Prometheus label name (what the operator's relabelling does)."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in label)
