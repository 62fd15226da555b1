"""The deletion-cost controller's decisions (voxplane/controllers/deletion_cost/decide.py): which
pods get a new cost and in what order (the budget that cuts the list is token-bucket's Limiter,
exercised in the integration test), and its config's round trip."""

from __future__ import annotations

import pytest

from voxplane.controllers.deletion_cost.config import Config, Pool
from voxplane.controllers.deletion_cost.decide import ANNOTATION, PodState, Write, writes

NS = "vox-t-acme"


def pod(name: str, cost: str | None = None, running: bool = True) -> PodState:
    return PodState(NS, name, cost, running)


def test_the_cost_follows_the_active_jobs_and_only_changes_are_written() -> None:
    pods = [pod("busy"), pod("idle"), pod("same", "2"), pod("was-busy", "3"), pod("drained", "1")]
    jobs = {(NS, "busy"): 4.0, (NS, "idle"): 0.0, (NS, "same"): 2.0, (NS, "was-busy"): 1.0, (NS, "drained"): 0.0}
    assert writes(pods, jobs) == [
        Write(NS, "busy", 4, None),       # a busy worker marked idle: first
        Write(NS, "was-busy", 1, "3"),    # then the largest correction
        Write(NS, "drained", 0, "1"),
    ]


def test_an_idle_pod_without_the_annotation_needs_no_write() -> None:
    """The ReplicaSet controller reads a missing cost as 0."""
    assert writes([pod("idle")], {(NS, "idle"): 0.0}) == []


def test_no_reading_keeps_the_cost_it_has() -> None:
    """A missed scrape must not make a busy worker look idle."""
    assert writes([pod("busy", "5"), pod("new")], {}) == []


def test_pods_that_do_not_run_are_left_alone() -> None:
    """Pending pods and pods being deleted: ranking them changes nothing the controller can help."""
    assert writes([pod("leaving", None, running=False)], {(NS, "leaving"): 3.0}) == []


def test_an_unreadable_cost_is_rewritten_and_values_are_whole_and_bounded() -> None:
    pods = [pod("junk", "lots"), pod("neg"), pod("huge"), pod("float")]
    jobs = {(NS, "junk"): 0.0, (NS, "neg"): -2.0, (NS, "huge"): 1e12, (NS, "float"): 2.6}
    assert writes(pods, jobs) == [Write(NS, "huge", 2**31 - 1, None), Write(NS, "float", 3, None),
                                  Write(NS, "junk", 0, "lots")]


def test_the_config_round_trips_and_refuses_what_it_does_not_know() -> None:
    config = Config("http://prometheus:9090", 'max by (namespace, pod) (x{job=~"a/b"})',
                    (Pool(NS, "support", {"app.kubernetes.io/name": "support", "app.kubernetes.io/part-of": "local"}),),
                    writes_per_second=2.0, burst=5)
    back = Config.from_json(config.to_json())
    assert back == config and back.namespaces == (NS,)
    assert back.pools[0].label_selector == "app.kubernetes.io/name=support,app.kubernetes.io/part-of=local"
    with pytest.raises(ValueError, match="version"):
        Config.from_json(config.to_json().replace('"version": 1', '"version": 2'))
    with pytest.raises(ValueError, match="prometheus_url"):
        Config.from_json('{"version": 1, "query": "x", "pools": []}')
    with pytest.raises(ValueError, match="burst"):
        Config.from_json(config.to_json().replace('"burst": 5', '"burst": 0'))
    assert ANNOTATION == "controller.kubernetes.io/pod-deletion-cost"
