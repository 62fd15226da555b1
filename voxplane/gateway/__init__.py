"""The authorizing gateway in front of livekit-server (issue #9: tenant isolation that holds
against a tenant's own code).

livekit-server scopes nothing per API key (its auth checks a token's grants, never which key signed it): any key it knows can list,
join and administer every room, register as any agent and manage SIP. So tenants never hold a key
the server knows. Each tenant gets its own key, derived from the region's root secret and known
only to the gateway; the gateway checks every token and request against the tenant's scope
(`scope.TenantScope`: its agents, its rooms) and forwards what passes with a token it mints for
that request with the platform key (`policy`), within the tenant's limits (`limits`: rates of
joins, API calls and worker registrations, open connections; issue #19). `server.Gateway` is the
process, `metrics` its Prometheus metrics; `python -m voxplane.gateway serve --config FILE` runs it.
"""

from .policy import Denied, KeyRing, Principal, authenticate
from .scope import GatewayConfig, TenantScope, conflicts

__all__ = ["Denied", "GatewayConfig", "KeyRing", "Principal", "TenantScope", "authenticate", "conflicts"]
