"""voxplane/hpa.py is the HPA controller's arithmetic for an External AverageValue metric, as
kube-controller-manager v1.34.4 computes it (pkg/controller/podautoscaler/replica_calculator.go)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from voxplane import hpa


@pytest.mark.parametrize("usage, target, current, expected", [
    # Upstream's own cases (replica_calculator_test.go, v1.34.4), per-pod External targets:
    (8600, 2150, 3, 4),   # TestReplicaCalcScaleUpPerPodCMExternal
    (8600, 2867, 5, 3),   # TestReplicaCalcScaleDownPerPodCMExternal
    (8600, 2900, 3, 3),   # TestReplicaCalcTolerancePerPodCMExternal: 8600/8700 is within 10%
])
def test_the_upstream_cases(usage: int, target: int, current: int, expected: int) -> None:
    assert hpa.desired_replicas(usage, target, current) == expected


def test_the_tolerance_is_inclusive_both_ways() -> None:
    """ratio 1.1 and 0.9 exactly keep the current replicas (isWithin uses <=)."""
    assert hpa.desired_replicas(11_000, 1000, 10) == 10
    assert hpa.desired_replicas(9_000, 1000, 10) == 10
    assert hpa.desired_replicas(11_001, 1000, 10) == 12
    assert hpa.desired_replicas(8_999, 1000, 10) == 9


def test_keda_passes_three_decimals() -> None:
    assert hpa.milli(Decimal("5.6")) == 5600
    assert hpa.milli(Decimal("2.25")) == 2250
    assert hpa.milli(7) == 7000


def test_a_target_of_what_a_worker_carries_never_scales_up() -> None:
    """The render before target_utilization: target = sessions_per_worker, and workers refuse calls
    beyond it, so no reachable load asks for another worker."""
    for spw in (1, 8, 10, 12, 200):
        for workers in (1, 2, 3, 10, 40):
            full = workers * spw
            assert hpa.desired_replicas(full * 1000, spw * 1000, workers) == workers
            assert hpa.scale_up_starts_at(spw * 1000, workers) > full
            assert hpa.spare_when_scaling_up(spw, Decimal(spw), workers) < 0


def test_a_target_below_what_a_worker_carries_scales_up_with_sessions_free() -> None:
    # 10 sessions per worker at 70%: target 7; one worker asks for a second at 8 (8/7 > 1.1).
    assert hpa.scale_up_starts_at(7000, 1) == 8
    assert hpa.desired_replicas(8000, 7000, 1) == 2 and hpa.desired_replicas(7000, 7000, 1) == 1
    assert hpa.spare_when_scaling_up(10, Decimal(7), 1) == 2
    # The spare grows with the pool: 23% of its sessions (1 - 1.1 × 0.7) less rounding.
    assert hpa.spare_when_scaling_up(10, Decimal(7), 40) == 91
    # Small workers: a one-session worker fills before the HPA asks for more, until 5 workers.
    assert hpa.sizes_without_spare(1, Decimal("0.7"), 1, 10) == [1, 2, 3, 4]
