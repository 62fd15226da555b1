"""Per-tenant limits (issue #19): token-bucket rates for room joins, API calls and worker
registrations, and a cap on a tenant's open WebSockets, so that one tenant's flood reaches neither
livekit-server nor the other tenants' calls.

A tenant over a limit gets what livekit-server answers when a resource is exhausted (psrpc
`ResourceExhausted`, which the server maps to Twirp `resource_exhausted` and HTTP 429):

- Twirp API calls: HTTP 429 with Twirp's error body `{"code": "resource_exhausted", "msg": ...}`;
- WebSocket upgrades (`/rtc` joins, `/agent` registrations) and `/rtc/validate`: HTTP 429 with
  the reason as plain text, the way the server's own HandleError refuses an upgrade (LiveKit SDKs
  call /rtc/validate after a failed upgrade and report that text);
- every answer carries `Retry-After` (seconds until the bucket holds a token again).

Each gateway replica keeps its own buckets and counts (nothing shared on the request path, as
Envoy's local rate limit does): a tenant whose connections spread over N replicas can reach up to
N times a rate. Buckets start full, so a restarted replica admits a burst at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping

import token_bucket

RateName = Literal["joins", "api_calls", "worker_registrations"]
#: The rated limits, in the order the manifest and the config list them.
RATES: tuple[RateName, ...] = ("joins", "api_calls", "worker_registrations")
#: What each limit counts, for messages.
WHAT: dict[str, str] = {
    "joins": "room joins",
    "api_calls": "API calls",
    "worker_registrations": "worker registrations",
    "connections": "open connections",
}


@dataclass(frozen=True)
class Rate:
    """A token bucket: `burst` tokens at most, refilled at `per_second`."""

    per_second: float
    burst: int

    def as_dict(self) -> dict[str, Any]:
        return {"per_second": self.per_second, "burst": self.burst}


@dataclass(frozen=True)
class TenantLimits:
    """One tenant's limits at one gateway replica."""

    joins: Rate
    api_calls: Rate
    worker_registrations: Rate
    #: Open WebSockets at once (participants' and agents' signalling, workers' registrations).
    connections: int

    def rate(self, name: RateName) -> Rate:
        rate: Rate = getattr(self, name)
        return rate

    def as_dict(self) -> dict[str, Any]:
        return {**{name: self.rate(name).as_dict() for name in RATES}, "connections": self.connections}

    @classmethod
    def from_dict(cls, tenant: str, data: Any) -> "TenantLimits":
        """Parse and check the config's `limits` of `tenant`; ValueError naming the field."""
        where = f"tenants.{tenant}.limits"
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: expected an object")
        unknown = sorted(set(data) - {*RATES, "connections"})
        if unknown:
            raise ValueError(f"{where}: unknown field {unknown[0]!r}")
        rates: dict[str, Rate] = {}
        for name in RATES:
            raw = data.get(name)
            if not isinstance(raw, Mapping):
                raise ValueError(f"{where}.{name}: expected an object with per_second and burst")
            per_second, burst = raw.get("per_second"), raw.get("burst")
            if isinstance(per_second, bool) or not isinstance(per_second, (int, float)) or not per_second > 0:
                raise ValueError(f"{where}.{name}.per_second: expected a number above 0, got {per_second!r}")
            if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
                raise ValueError(f"{where}.{name}.burst: expected an integer of at least 1, got {burst!r}")
            rates[name] = Rate(float(per_second), burst)
        connections = data.get("connections")
        if isinstance(connections, bool) or not isinstance(connections, int) or connections < 1:
            raise ValueError(f"{where}.connections: expected an integer of at least 1, got {connections!r}")
        return cls(rates["joins"], rates["api_calls"], rates["worker_registrations"], connections)


class Limited(Exception):
    """A request over one of its tenant's limits: answered 429 `resource_exhausted`."""

    code = "resource_exhausted"
    status = 429

    def __init__(self, tenant: str, limit: str, message: str, retry_after: int):
        super().__init__(message)
        self.tenant = tenant
        self.limit = limit
        self.message = message
        self.retry_after = retry_after


class Limits:
    """Every tenant's buckets and open-connection count at this replica. Single-threaded (the
    gateway's event loop): a check and its update happen without a suspension point between."""

    def __init__(self, limits: Mapping[str, TenantLimits]):
        self._limits = dict(limits)
        self._storage = token_bucket.MemoryStorage()
        self._buckets = {
            (tenant, name): token_bucket.Limiter(tl.rate(name).per_second, tl.rate(name).burst, self._storage)
            for tenant, tl in self._limits.items() for name in RATES
        }
        self._open: dict[str, int] = {tenant: 0 for tenant in self._limits}

    def take(self, tenant: str, name: RateName) -> None:
        """Spend one of `tenant`'s `name` tokens; raises `Limited` when the bucket is empty."""
        if not self._buckets[(tenant, name)].consume(self._key(tenant, name)):
            raise self._over_rate(tenant, name)

    def check(self, tenant: str, name: RateName) -> None:
        """Raise `Limited` when `take` would, without spending a token (`/rtc/validate`)."""
        rate = self._limits[tenant].rate(name)
        self._storage.replenish(self._key(tenant, name), rate.per_second, rate.burst)
        if self._storage.get_token_count(self._key(tenant, name)) < 1:
            raise self._over_rate(tenant, name)

    def open(self, tenant: str) -> None:
        """Count one more open connection of `tenant`; raises `Limited` at its cap (`close` it later)."""
        cap = self._limits[tenant].connections
        if self._open[tenant] >= cap:
            raise Limited(tenant, "connections",
                          f"tenant {tenant!r} has {cap} open connections, its limit at this gateway", 1)
        self._open[tenant] += 1

    def close(self, tenant: str) -> None:
        self._open[tenant] -= 1

    def connections(self, tenant: str) -> int:
        return self._open[tenant]

    @staticmethod
    def _key(tenant: str, name: str) -> str:
        return f"{tenant}/{name}"

    def _over_rate(self, tenant: str, name: RateName) -> Limited:
        rate = self._limits[tenant].rate(name)
        missing = 1 - self._storage.get_token_count(self._key(tenant, name))
        retry_after = max(1, math.ceil(missing / rate.per_second))
        return Limited(tenant, name,
                       f"tenant {tenant!r} is over its limit of {WHAT[name]} ({rate.per_second:g} per second, "
                       f"burst {rate.burst}); retry in {retry_after} s", retry_after)
