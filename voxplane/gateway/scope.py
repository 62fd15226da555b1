"""What each tenant owns in LiveKit, and the gateway's config file.

A tenant owns:

- its agents' LiveKit names, `<tenant>-<agent>` (`Agent.scoped_name`): only its workers register
  under them and only it dispatches them;
- the rooms its dispatch rules create or join: `<room_prefix>_...` for `individual` and `callee`
  rules (livekit-server names generated rooms `<prefix>_<number>[_<random>]`, protocol
  sip/sip.go), the `room_name` of `direct` rules;
- rooms `<tenant>_...`, for rooms it creates itself (web calls, tests).

Ownership must be unambiguous: no room name may belong to two tenants. `conflicts()` finds the
prefixes and names that would allow it; validation reports them (voxplane/crosscheck.py) and the
gateway refuses to start on such a config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

from .limits import TenantLimits
#: Separator livekit-server puts after a dispatch rule's room prefix.
ROOM_SEPARATOR = "_"
#: Config format version; the gateway refuses a config it does not know (2: per-tenant `limits`).
CONFIG_VERSION = 2


@dataclass(frozen=True)
class TenantScope:
    """One tenant's LiveKit scope. `api_key` is the tenant's own key (the server never knows it)."""

    name: str
    api_key: str
    agents: frozenset[str]
    room_prefixes: frozenset[str]
    rooms: frozenset[str] = frozenset()

    def owns_room(self, room: str) -> bool:
        """True when `room` is one of this tenant's rooms. The empty name is nobody's."""
        if not room:
            return False
        if room in self.rooms:
            return True
        return any(room.startswith(p + ROOM_SEPARATOR) and len(room) > len(p) + 1 for p in self.room_prefixes)

    def owns_agent(self, agent_name: str) -> bool:
        return agent_name in self.agents

    def as_dict(self) -> dict[str, Any]:
        return {
            "api_key": self.api_key,
            "agents": sorted(self.agents),
            "room_prefixes": sorted(self.room_prefixes),
            "rooms": sorted(self.rooms),
        }

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> "TenantScope":
        return cls(
            name=name,
            api_key=str(data["api_key"]),
            agents=frozenset(str(a) for a in data.get("agents", ())),
            room_prefixes=frozenset(str(p) for p in data.get("room_prefixes", ())),
            rooms=frozenset(str(r) for r in data.get("rooms", ())),
        )


@dataclass(frozen=True)
class GatewayConfig:
    """The gateway's whole config (the ConfigMap's `config.json`); no secret is in it.

    Attributes:
        upstream: livekit-server's base URL (http://host:port); WebSockets use ws:// on it.
        platform_key: The API key the gateway signs forwarded requests with (the server knows it).
        keys_dir: Folder with one file per API key name holding its secret (the mounted Secret).
        listen_host, listen_port: The API and signalling listener.
        metrics_port: Prometheus `/metrics`, `/healthz`, `/readyz`.
        tenants: Tenant name -> scope.
        limits: Tenant name -> its limits at each replica (`limits.TenantLimits`); every tenant
            has them.
    """

    upstream: str
    platform_key: str
    keys_dir: str
    tenants: Mapping[str, TenantScope]
    listen_host: str = "0.0.0.0"
    listen_port: int = 8080
    metrics_port: int = 9102
    token_ttl_seconds: int = 300
    limits: Mapping[str, TenantLimits] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if set(self.limits) != set(self.tenants):
            odd = sorted(set(self.limits) ^ set(self.tenants))[0]
            which = "has no limits" if odd in self.tenants else "has limits but is no tenant"
            raise ValueError(f"gateway config: {odd!r} {which}")

    def to_json(self) -> str:
        data = {
            "version": CONFIG_VERSION,
            "upstream": self.upstream,
            "platform_key": self.platform_key,
            "keys_dir": self.keys_dir,
            "listen_host": self.listen_host,
            "listen_port": self.listen_port,
            "metrics_port": self.metrics_port,
            "token_ttl_seconds": self.token_ttl_seconds,
            "tenants": {name: {**self.tenants[name].as_dict(), "limits": self.limits[name].as_dict()}
                        for name in sorted(self.tenants)},
        }
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "GatewayConfig":
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != CONFIG_VERSION:
            raise ValueError(f"gateway config: expected an object with \"version\": {CONFIG_VERSION}")
        raw_tenants = data.get("tenants") or {}
        tenants = {str(n): TenantScope.from_dict(str(n), t) for n, t in raw_tenants.items()}
        try:
            limits = {str(n): TenantLimits.from_dict(str(n), t.get("limits")) for n, t in raw_tenants.items()}
        except ValueError as e:
            raise ValueError(f"gateway config: {e}") from e
        config = cls(
            upstream=str(data["upstream"]).rstrip("/"),
            platform_key=str(data["platform_key"]),
            keys_dir=str(data["keys_dir"]),
            tenants=tenants,
            listen_host=str(data.get("listen_host", "0.0.0.0")),
            listen_port=int(data.get("listen_port", 8080)),
            metrics_port=int(data.get("metrics_port", 9102)),
            token_ttl_seconds=int(data.get("token_ttl_seconds", 300)),
            limits=limits,
        )
        problems = conflicts(config.tenants.values())
        if problems:
            raise ValueError("gateway config: " + "; ".join(problems))
        keys = [t.api_key for t in tenants.values()]
        if config.platform_key in keys or len(set(keys)) != len(keys):
            raise ValueError("gateway config: every tenant needs its own API key, distinct from the platform key")
        return config

    def with_addresses(self, *, upstream: str, listen_host: str, listen_port: int, metrics_port: int,
                       keys_dir: str) -> "GatewayConfig":
        """The same scopes with other addresses (loopback runs of the rendered config)."""
        return GatewayConfig(upstream=upstream.rstrip("/"), platform_key=self.platform_key, keys_dir=keys_dir,
                             tenants=self.tenants, listen_host=listen_host, listen_port=listen_port,
                             metrics_port=metrics_port, token_ttl_seconds=self.token_ttl_seconds,
                             limits=self.limits)

    def room_owner(self, room: str) -> Optional[TenantScope]:
        """The tenant whose room `room` is (`conflicts` keeps it to one), or None."""
        return next((t for t in self.tenants.values() if t.owns_room(room)), None)


def conflicts(scopes: Iterable[TenantScope]) -> list[str]:
    """Pairs of claims by two tenants that some room name satisfies both of, as sentences."""
    claims: list[tuple[str, str, str]] = []  # (tenant, kind, value)
    for s in scopes:
        claims += [(s.name, "prefix", p) for p in sorted(s.room_prefixes)]
        claims += [(s.name, "room", r) for r in sorted(s.rooms)]
    out: list[str] = []
    for i, (t1, k1, v1) in enumerate(claims):
        for t2, k2, v2 in claims[i + 1:]:
            if t1 != t2 and _overlap(k1, v1, k2, v2):
                out.append(f"{_describe(k1, v1)} of tenant {t1!r} and {_describe(k2, v2)} of tenant {t2!r} "
                           f"can name the same room")
    return out


def _describe(kind: str, value: str) -> str:
    return f"room prefix {value!r}" if kind == "prefix" else f"room {value!r}"


def _overlap(k1: str, v1: str, k2: str, v2: str) -> bool:
    if k1 == "room" and k2 == "room":
        return v1 == v2
    if k1 == "prefix" and k2 == "prefix":
        a, b = v1 + ROOM_SEPARATOR, v2 + ROOM_SEPARATOR
        return a.startswith(b) or b.startswith(a)
    room, prefix = (v1, v2) if k1 == "room" else (v2, v1)
    return room.startswith(prefix + ROOM_SEPARATOR)
