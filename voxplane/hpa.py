"""The HorizontalPodAutoscaler's arithmetic for an agent pool's metric, and what it means for a pool
whose workers refuse calls at `sessions_per_worker`.

KEDA hands the HPA one External metric per ScaledObject trigger, with an AverageValue target
(kube-controller-manager v1.34.4, pkg/controller/podautoscaler/replica_calculator.go,
GetExternalPerPodMetricReplicas):

    ratio   = usage / (target × current replicas)
    desired = current                  while 1 − tolerance ≤ ratio ≤ 1 + tolerance
            = ceil(usage / target)     otherwise

`usage` is the sum of the metric's values (the prometheus scaler returns one: the query's value)
and `target` the trigger's `threshold`, both in milli-units as KEDA v2.21.0 converts them
(pkg/scalers/scaler.go, quantityFromFloat64: `%.3f`, then MilliValue). The tolerance is the
controller's `--horizontal-pod-autoscaler-tolerance`, 0.1 by default
(pkg/controller/podautoscaler/config/v1alpha1/defaults.go); a per-HPA tolerance in `behavior`
needs the HPAConfigurableTolerance gate, alpha and off in v1.34. The controller then bounds the
result by min/max replicas and the behavior's policies (not modelled here).

Two consequences for a pool of workers that each refuse calls at `sessions_per_worker` (spw):
- with target = spw, usage never exceeds spw × current, so the ratio never exceeds 1: the pool
  never scales up, and every call beyond its present capacity is refused;
- a target must sit below spw / 1.1 for a full pool to scale at all, and lower still for the
  scale-up to start while sessions are free (`spare_when_scaling_up`).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal

#: kube-controller-manager's default `--horizontal-pod-autoscaler-tolerance`.
TOLERANCE = 0.1


def milli(value: Decimal | int) -> int:
    """A metric value or target in milli-units, as KEDA passes it to the HPA (three decimals)."""
    return int(Decimal(value).quantize(Decimal("0.001"), rounding=ROUND_HALF_EVEN) * 1000)


def desired_replicas(usage_milli: int, target_milli: int, current: int, tolerance: float = TOLERANCE) -> int:
    """The replicas the HPA asks for (before min/max and behavior) for an External AverageValue
    metric: GetExternalPerPodMetricReplicas, float arithmetic as the controller does it."""
    if current < 1 or target_milli < 1:
        raise ValueError(f"the HPA computes from at least one replica and a positive target, got {current}, {target_milli}")
    ratio = float(usage_milli) / (float(target_milli) * float(current))
    if (1.0 - tolerance) <= ratio <= (1.0 + tolerance):
        return current
    return math.ceil(float(usage_milli) / float(target_milli))


def scale_up_starts_at(target_milli: int, workers: int, tolerance: float = TOLERANCE) -> int:
    """The fewest active sessions on `workers` workers at which the HPA asks for more workers."""
    # Just below the analytic bound (ratio > 1 + tolerance), then step: the ratio grows with usage.
    sessions = max(0, math.floor((1.0 + tolerance) * target_milli * workers / 1000) - 2)
    while desired_replicas(sessions * 1000, target_milli, workers, tolerance) <= workers:
        sessions += 1
    return sessions


def spare_when_scaling_up(sessions_per_worker: int, target: Decimal, workers: int) -> int:
    """Sessions still free on `workers` workers when the HPA starts adding one: what calls that
    arrive during the scale-up can take. 0 or less: it starts only once every worker is full (or,
    below 0, never: the workers refuse the calls that would start it)."""
    return workers * sessions_per_worker - scale_up_starts_at(milli(target), workers)


def sizes_without_spare(sessions_per_worker: int, target: Decimal, min_workers: int, max_workers: int) -> list[int]:
    """Pool sizes from which a scale-up (up to max_workers) would start with no session free."""
    return [n for n in range(min_workers, max_workers) if spare_when_scaling_up(sessions_per_worker, target, n) < 1]
