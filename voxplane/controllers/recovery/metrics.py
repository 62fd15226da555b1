"""The recovery controller's Prometheus metrics (its own registry, served on the metrics port's
`/metrics`).

- `voxplane_recovery_dispatched_total{tenant}`: lost agents dispatched again.
- `voxplane_recovery_recovered_total{tenant}`: calls that had their agent again (the new agent joined).
- `voxplane_recovery_seconds{tenant}` (histogram): from livekit-server reporting the agent gone to
  the new agent in the room (livekit-server itself reports a killed agent gone only after its ICE
  timeouts, ~20 s: README "Lost agents").
- `voxplane_recovery_refused_total{reason}`: agents that left a room and were not dispatched
  again, by reason (`ended`, `removed`, `room_gone`, `caller_gone`, `agent_present`, `duplicate`,
  `attempts`, `no_dispatch`, `foreign_room`, `foreign_agent`, `replaced`, `migrated`,
  `server_shutdown`, `livekit_refused`).
- `voxplane_recovery_webhooks_total{outcome}`: webhook requests: `accepted`, `unauthenticated`
  (no or a forged signature, refused with 401), `malformed` (400), `too_large` (413), `failed`
  (livekit-server did not answer the controller: 503, so livekit-server sends the event again),
  `job_not_listed` (the lost agent's job is not on the room's dispatch yet: 503 likewise).
- `voxplane_recovery_livekit_errors_total{call}`: calls to livekit-server that failed.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram

# A `_created` sample beside every counter doubles the series for nothing this controller's readers use.
prometheus_client.disable_created_metrics()

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
#: Seconds; livekit-server's own detection (~20 s) is outside, so most land in the first buckets.
BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._dispatched = Counter("voxplane_recovery_dispatched", "Lost agents dispatched again.", ["tenant"],
                                   registry=r)
        self._recovered = Counter("voxplane_recovery_recovered", "Calls whose agent was lost and that had an agent "
                                  "again (the new agent joined).", ["tenant"], registry=r)
        self._seconds = Histogram("voxplane_recovery_seconds", "From livekit-server reporting the agent gone to the "
                                  "new agent in the room.", ["tenant"], buckets=BUCKETS, registry=r)
        self._refused = Counter("voxplane_recovery_refused", "Agents that left a room and were not dispatched again, "
                                "by reason.", ["reason"], registry=r)
        self._webhooks = Counter("voxplane_recovery_webhooks", "Webhook requests by outcome.", ["outcome"], registry=r)
        self._errors = Counter("voxplane_recovery_livekit_errors", "Calls to livekit-server that failed.", ["call"],
                               registry=r)

    def dispatched(self, tenant: str) -> None:
        self._dispatched.labels(tenant).inc()

    def recovered(self, tenant: str, seconds: float) -> None:
        self._recovered.labels(tenant).inc()
        self._seconds.labels(tenant).observe(seconds)

    def refused(self, reason: str) -> None:
        self._refused.labels(reason).inc()

    def webhook(self, outcome: str) -> None:
        self._webhooks.labels(outcome).inc()

    def livekit_error(self, call: str) -> None:
        self._errors.labels(call).inc()

    def render(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)
