"""What to write: the pure part of the controller (no I/O, no clock of its own).

A pod's cost is written only when it differs from its worker's active jobs, and only for pods that
run and are not being deleted. A pod without a reading (Prometheus has no sample for it: just
started, or a scrape was missed) keeps what it has: a busy worker must never read as idle because
a sample is missing. A pod without the annotation counts as 0 for the ReplicaSet controller, so an
idle pod without one needs no write.

When the write budget runs out, the writes that matter most go first: a busy worker still marked
idle (the ReplicaSet could remove it now), then the largest corrections; the rest wait for the next
round, when the difference is still there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

#: The annotation the ReplicaSet controller ranks pods by when it scales down (lowest goes first).
ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
#: The annotation holds an int32.
MAX_COST = 2**31 - 1


@dataclass(frozen=True)
class PodState:
    """An agent pod as listed: its annotation as found (None: absent) and whether it runs."""

    namespace: str
    name: str
    cost: Optional[str]
    running: bool


@dataclass(frozen=True)
class Write:
    namespace: str
    name: str
    cost: int
    was: Optional[str]

    @property
    def protects(self) -> bool:
        """A busy worker that reads as idle now."""
        return self.cost > 0 and (parse_cost(self.was) or 0) == 0


def parse_cost(text: Optional[str]) -> Optional[int]:
    """The annotation's number; None when absent or not a number (then it is rewritten)."""
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def writes(pods: Iterable[PodState], jobs: Mapping[tuple[str, str], float]) -> list[Write]:
    """The patches that make each running pod's cost its worker's active jobs, most urgent first."""
    out = []
    for pod in pods:
        reading = jobs.get((pod.namespace, pod.name))
        if not pod.running or reading is None:
            continue
        want = min(MAX_COST, max(0, round(reading)))
        have = parse_cost(pod.cost)
        if (pod.cost is None and want == 0) or have == want:
            continue
        out.append(Write(pod.namespace, pod.name, want, pod.cost))
    return sorted(out, key=lambda w: (not w.protects, -abs(w.cost - (parse_cost(w.was) or 0)), w.namespace, w.name))
