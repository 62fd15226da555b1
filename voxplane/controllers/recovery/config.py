"""The recovery controller's configuration: the ConfigMap's `config.json`, written by the region's
render (voxplane/desired/recovery.py) and read by the controller. No secret is in it: the secret of
its LiveKit key is a file of the mounted Secret (`key_file`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

#: Config format version; the controller refuses a config it does not know.
CONFIG_VERSION = 1
#: Separator livekit-server puts after a dispatch rule's room prefix (protocol sip/sip.go), as the
#: gateway reads it (voxplane/gateway/scope.py: the same rule, kept in step by a test).
ROOM_SEPARATOR = "_"


@dataclass(frozen=True)
class TenantRooms:
    """What one tenant owns: its agents' LiveKit names and its rooms (the gateway's scope, as the
    region renders it). An agent is dispatched again only into a room of its own tenant."""

    name: str
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


@dataclass(frozen=True)
class Config:
    """Attributes:
        livekit_url: livekit-server's API (http://host:port): the controller reads rooms,
            participants and dispatches there and dispatches agents again.
        api_key: The controller's own LiveKit key (in livekit-server's key file): the server signs
            the webhooks it sends here with it (config `webhook.api_key`), and the controller signs
            its API calls with it, each token granting only that call's room.
        key_file: File holding that key's secret (the mounted Secret).
        tenants: Tenant name -> what it owns.
        max_attempts: Times one call's agent is dispatched again (each loss once); a program that
            dies on every call is not dispatched forever.
        listen_host, listen_port: The webhook listener (`POST /webhook`).
        metrics_port: Prometheus `/metrics`, `/healthz`, `/readyz`.
        request_timeout_seconds: Timeout of each call to livekit-server.
    """

    livekit_url: str
    api_key: str
    key_file: str
    tenants: Mapping[str, TenantRooms]
    max_attempts: int = 3
    listen_host: str = "0.0.0.0"
    listen_port: int = 8080
    metrics_port: int = 9104
    request_timeout_seconds: float = 5.0
    version: int = field(default=CONFIG_VERSION)

    def owner(self, room: str) -> Optional[TenantRooms]:
        """The tenant whose room `room` is (validation keeps it to one), or None."""
        return next((t for t in self.tenants.values() if t.owns_room(room)), None)

    def to_json(self) -> str:
        return json.dumps({
            "version": self.version,
            "livekit_url": self.livekit_url,
            "api_key": self.api_key,
            "key_file": self.key_file,
            "max_attempts": self.max_attempts,
            "listen_host": self.listen_host,
            "listen_port": self.listen_port,
            "metrics_port": self.metrics_port,
            "request_timeout_seconds": self.request_timeout_seconds,
            "tenants": {name: {"agents": sorted(t.agents), "room_prefixes": sorted(t.room_prefixes),
                               "rooms": sorted(t.rooms)} for name, t in sorted(self.tenants.items())},
        }, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Config":
        """The config, or ValueError naming what is wrong."""
        try:
            data: Any = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"config is not JSON: {e}") from e
        if not isinstance(data, dict):
            raise ValueError("config is not a JSON object")
        if data.get("version") != CONFIG_VERSION:
            raise ValueError(f"config version {data.get('version')!r} is not {CONFIG_VERSION}")
        try:
            tenants = {str(name): _tenant(str(name), t) for name, t in data["tenants"].items()}
            config = cls(
                livekit_url=_text(data, "livekit_url").rstrip("/"),
                api_key=_text(data, "api_key"),
                key_file=_text(data, "key_file"),
                tenants=tenants,
                max_attempts=int(data.get("max_attempts", 3)),
                listen_host=str(data.get("listen_host", "0.0.0.0")),
                listen_port=int(data.get("listen_port", 8080)),
                metrics_port=int(data.get("metrics_port", 9104)),
                request_timeout_seconds=float(data.get("request_timeout_seconds", 5.0)),
            )
        except KeyError as e:
            raise ValueError(f"config: missing {e}") from e
        except (TypeError, AttributeError) as e:
            raise ValueError(f"config: malformed ({e})") from e
        if not config.livekit_url.startswith(("http://", "https://")):
            raise ValueError(f"config: livekit_url {config.livekit_url!r} is not an http(s) URL")
        if config.max_attempts < 1 or config.request_timeout_seconds <= 0:
            raise ValueError("config: max_attempts must be at least 1, request_timeout_seconds positive")
        return config


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"config: {key} must be a non-empty string")
    return value


def _tenant(name: str, data: Any) -> TenantRooms:
    if not isinstance(data, dict):
        raise ValueError(f"config: tenants.{name} is not an object")
    return TenantRooms(
        name=name,
        agents=frozenset(str(a) for a in data.get("agents", ())),
        room_prefixes=frozenset(str(p) for p in data.get("room_prefixes", ())),
        rooms=frozenset(str(r) for r in data.get("rooms", ())),
    )
