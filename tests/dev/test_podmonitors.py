"""Scrape targets from PodMonitors, as prometheus-operator derives them (voxplane/dev/podmonitors.py):
the labels the ScaledObjects' queries select on come from here, so the rendered PodMonitor of an
agent pool must give `job="<ns>/<pool>"` and `namespace` for its pods' `metrics` port, and a
PodMonitor naming another port or selecting other labels gives nothing."""

from __future__ import annotations

import copy
import functools
from typing import Any

from voxplane.dev.podmonitors import matches, scrape_targets
from voxplane.deploy.render import render

from ..support.repo import REPO


@functools.lru_cache(maxsize=None)
def rendered() -> list[dict[str, Any]]:
    return render("local", REPO).kubernetes


def one(kind: str, name: str) -> dict[str, Any]:
    return copy.deepcopy(next(o for o in rendered() if o["kind"] == kind and o["metadata"]["name"] == name))


def pod_of(deployment: dict[str, Any], name: str, ip: str, phase: str = "Running") -> dict[str, Any]:
    template = deployment["spec"]["template"]
    return {"metadata": {**template["metadata"], "name": name, "namespace": deployment["metadata"]["namespace"]},
            "spec": template["spec"], "status": {"podIP": ip, "phase": phase}}


def address(ns: str, pod: str, port: int) -> str | None:
    return {("vox-t-bellavista", "reservations-a", 9100): "127.0.0.1:40001",
            ("vox-t-bellavista", "reservations-b", 9100): "127.0.0.1:40002"}.get((ns, pod, port))


def test_the_agent_pools_podmonitor_gives_the_labels_its_scaledobject_selects_on() -> None:
    monitor = one("PodMonitor", "reservations")
    deployment = one("Deployment", "reservations")
    pods = [pod_of(deployment, "reservations-a", "10.0.0.5"), pod_of(deployment, "reservations-b", "10.0.0.6"),
            pod_of(deployment, "reservations-c", "10.0.0.7", phase="Succeeded")]
    targets = scrape_targets([monitor], pods, address)
    assert targets.unreachable == []
    assert targets.groups == [
        {"targets": ["127.0.0.1:40001"], "labels": {
            "job": "vox-t-bellavista/reservations", "namespace": "vox-t-bellavista", "pod": "reservations-a",
            "container": "agent", "endpoint": "metrics", "instance": "10.0.0.5:9100", "__metrics_path__": "/metrics",
            "__scheme__": "http", "__scrape_interval__": "5s"}},
        {"targets": ["127.0.0.1:40002"], "labels": {
            "job": "vox-t-bellavista/reservations", "namespace": "vox-t-bellavista", "pod": "reservations-b",
            "container": "agent", "endpoint": "metrics", "instance": "10.0.0.6:9100", "__metrics_path__": "/metrics",
            "__scheme__": "http", "__scrape_interval__": "5s"}},
    ]
    # The ScaledObject's query selects exactly those labels.
    query = one("ScaledObject", "reservations")["spec"]["triggers"][0]["metadata"]["query"]
    assert 'namespace="vox-t-bellavista"' in query and 'job="vox-t-bellavista/reservations"' in query


def test_a_wrong_port_or_selector_scrapes_nothing() -> None:
    deployment = one("Deployment", "reservations")
    pods = [pod_of(deployment, "reservations-a", "10.0.0.5")]
    wrong_port = one("PodMonitor", "reservations")
    wrong_port["spec"]["podMetricsEndpoints"][0]["port"] = "prometheus"
    wrong_selector = one("PodMonitor", "reservations")
    wrong_selector["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "reservation"
    other_namespace = one("PodMonitor", "reservations")
    other_namespace["metadata"]["namespace"] = "vox-t-northwind"
    for monitor in (wrong_port, wrong_selector, other_namespace):
        assert scrape_targets([monitor], pods, address).groups == []


def test_a_pod_port_nothing_plays_is_named_not_scraped() -> None:
    monitor = one("PodMonitor", "chat")
    sts = one("StatefulSet", "chat")
    targets = scrape_targets([monitor], [pod_of(sts, "chat-0", "10.0.0.9")], address)
    assert targets.groups == [] and targets.unreachable == ["vox-inference/chat-0:8000 (podmonitor vox-inference/chat)"]


def test_label_selectors_follow_kubernetes() -> None:
    labels = {"a": "1", "b": "2"}
    assert matches({"matchLabels": {"a": "1"}}, labels)
    assert not matches({"matchLabels": {"a": "2"}}, labels)
    assert matches({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "3"]}]}, labels)
    assert not matches({"matchExpressions": [{"key": "b", "operator": "NotIn", "values": ["2"]}]}, labels)
    assert matches({"matchExpressions": [{"key": "c", "operator": "NotIn", "values": ["2"]}]}, labels)
    assert matches({"matchExpressions": [{"key": "c", "operator": "DoesNotExist"}]}, labels)
    assert not matches({"matchExpressions": [{"key": "c", "operator": "Exists"}]}, labels)
    assert matches({}, labels)
