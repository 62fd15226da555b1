"""The gateway's Prometheus metrics (its own registry, served on the metrics port's `/metrics`).

- `voxplane_gateway_requests_total{route,tenant,outcome}`: API calls and WebSocket sessions;
  outcome `forwarded`, `denied`, `limited`, `upstream_<status>`, `upstream_error`.
- `voxplane_gateway_denied_total{route,tenant,reason}`: refused by the tenant policy.
- `voxplane_gateway_limited_total{route,tenant,limit}`: refused because the tenant was over a
  limit (`joins`, `api_calls`, `worker_registrations`, `connections`), answered 429.
- `voxplane_gateway_websockets{route,tenant}`: open proxied WebSockets (what `connections` caps).
- `voxplane_gateway_upstream_seconds{route}`: time livekit-server took to answer API calls.
- `voxplane_gateway_agents_gone_total{tenant}`: agents whose signalling connection ended without a
  close frame and was not resumed: the gateway told livekit-server they left (`server.py`).
- `voxplane_gateway_forward_seconds{route,tenant}` (histogram): from the gateway's handler taking a
  request it forwards to the answer it passes on: an API call's response, a WebSocket upgrade
  accepted by livekit-server. Per tenant, so a tenant slowed by another's load shows as its own.

`route` is `twirp`, `rtc` or `agent`; `tenant` the tenant's name, `""` when the caller is unknown,
`(server-issued)` for a server-issued token outside every tenant's rooms.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary

# A `_created` sample beside every counter doubles the series for nothing this gateway's readers use.
prometheus_client.disable_created_metrics()

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST

#: Forwarding time buckets (s): loopback answers take a few ms, a join across a busy region tens.
FORWARD_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The gateway's counters and gauges, in a registry of their own (one per `Gateway`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = Counter("voxplane_gateway_requests", "Requests and WebSocket sessions by route, tenant and "
                                 "outcome.", ["route", "tenant", "outcome"], registry=r)
        self._denied = Counter("voxplane_gateway_denied", "Requests and messages the tenant policy refused, by reason.",
                               ["route", "tenant", "reason"], registry=r)
        self._limited = Counter("voxplane_gateway_limited", "Requests and WebSocket upgrades refused with 429 "
                                "resource_exhausted because the tenant was over a limit.",
                                ["route", "tenant", "limit"], registry=r)
        self._websockets = Gauge("voxplane_gateway_websockets", "Open proxied WebSockets.", ["route", "tenant"],
                                 registry=r)
        self._upstream = Summary("voxplane_gateway_upstream_seconds", "Time livekit-server took to answer API calls.",
                                 ["route"], registry=r)
        self._agents_gone = Counter("voxplane_gateway_agents_gone", "Agents whose signalling connection ended "
                                    "without a close frame and was not resumed, reported to livekit-server as left.",
                                    ["tenant"], registry=r)
        self._forward = Histogram("voxplane_gateway_forward_seconds", "Time from taking a request to passing on "
                                  "livekit-server's answer (an API call's response, a WebSocket upgrade accepted).",
                                  ["route", "tenant"], buckets=FORWARD_BUCKETS, registry=r)

    def agent_gone(self, tenant: str) -> None:
        self._agents_gone.labels(tenant).inc()

    def request(self, route: str, tenant: str, outcome: str) -> None:
        self._requests.labels(route, tenant, outcome).inc()

    def forwarded(self, route: str, tenant: str, seconds: float) -> None:
        """A request forwarded and answered: counted, and its time observed."""
        self._forward.labels(route, tenant).observe(seconds)
        self.request(route, tenant, "forwarded")

    def deny(self, route: str, tenant: str, reason: str) -> None:
        self._denied.labels(route, tenant, reason).inc()
        self.request(route, tenant, "denied")

    def limit(self, route: str, tenant: str, limit: str) -> None:
        self._limited.labels(route, tenant, limit).inc()
        self.request(route, tenant, "limited")

    def opened(self, route: str, tenant: str) -> None:
        self._websockets.labels(route, tenant).inc()

    def closed(self, route: str, tenant: str) -> None:
        self._websockets.labels(route, tenant).dec()

    def upstream(self, route: str, seconds: float) -> None:
        self._upstream.labels(route).observe(seconds)

    def render(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)
