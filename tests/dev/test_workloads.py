"""What counts as a settled workload (voxplane/dev/workloads.py), read as `kubectl rollout status`
reads a Deployment. Against the real control plane: tests/dev/test_agent_workers.py."""

from __future__ import annotations

from typing import Any

import pytest

from voxplane.dev.workloads import _deployment_lag, _statefulset_lag


def deployment(replicas: int = 2, generation: int = 3, observed: int = 3, available_condition: str = "True",
               **status: int) -> dict[str, Any]:
    """A Deployment of `replicas`, rolled out unless `status` says otherwise (its counts by name)."""
    counts = {"replicas": replicas, "updatedReplicas": replicas, "availableReplicas": replicas, **status}
    return {"metadata": {"name": "support", "namespace": "vox-t-northwind", "generation": generation},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, **counts,
                       "conditions": [{"type": "Available", "status": available_condition}]}}


def test_a_rolled_out_deployment_is_settled() -> None:
    assert _deployment_lag(deployment()) is None


@pytest.mark.parametrize("d, why", [
    (deployment(observed=2), "its controller has not seen the latest spec"),
    (deployment(updatedReplicas=1), "1/2 updated"),
    (deployment(replicas=2) | {"status": deployment(replicas=3, updatedReplicas=2)["status"]},
     "1 old replicas still running"),
    (deployment(availableReplicas=0), "0/2 available"),
    (deployment(available_condition="False"), "its Available condition is not True"),
])
def test_a_deployment_still_moving_says_why(d: dict[str, Any], why: str) -> None:
    assert _deployment_lag(d) == why


def test_a_statefulset_is_settled_when_all_its_replicas_are_ready() -> None:
    s = {"metadata": {"name": "livekit-redis", "namespace": "vox-system"}, "spec": {"replicas": 1}}
    assert _statefulset_lag({**s, "status": {"readyReplicas": 1}}) is None
    assert _statefulset_lag({**s, "status": {}}) == "0/1 ready"
