"""Desired LiveKit SIP objects of a region: one inbound trunk and one dispatch rule per telephony agent.

Pure: model in, frozen dataclasses out; no I/O, no secrets (secret fields hold a `SecretRef`, the
reconciler resolves it only when it writes).

Why the shape:
- OSS livekit-server scopes nothing per API key: trunks and rules are global to the deployment
  (reference/livekit.md §1.7). Tenant isolation is ours to build: names carry the tenant, every
  rule lists exactly its own trunk in `trunk_ids` (an empty list would match every trunk, i.e.
  every tenant's numbers), and the agent dispatched is the tenant-scoped `Agent.scoped_name`.
- Identity is the ownership key (region, tenant, agent, role) written into each object's
  `metadata` (and, for rules, `attributes`), because IDs are server-generated (`ST_…`, `SDR_…`)
  and names are free-form and not unique. Objects without it are never touched.
- Rule metadata and attributes are copied into the SIP participant's metadata/attributes on every
  call (protocol sip/sip.go EvaluateDispatchRules: `ParticipantMetadata: rule.GetMetadata()`), so
  they hold ownership only, never anything derived from a secret.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Mapping, Optional, Sequence, Union

from ..manifest.model import Agent, Region, SecretRef, Source

MANAGED_BY = "voxplane"
#: Attribute prefix on dispatch rules (and so on the SIP participants they create).
ATTRIBUTE_PREFIX = "voxplane.io/"

Kind = Literal["SIPInboundTrunk", "SIPDispatchRule"]
TRUNK_KIND: Final = "SIPInboundTrunk"
RULE_KIND: Final = "SIPDispatchRule"
Role = Literal["trunk", "rule"]
ROLE_OF_KIND: dict[str, Role] = {TRUNK_KIND: "trunk", RULE_KIND: "rule"}
KIND_OF_ROLE: dict[str, Kind] = {"trunk": TRUNK_KIND, "rule": RULE_KIND}


@dataclass(frozen=True, order=True)
class Owner:
    """The ownership key of a LiveKit object voxplane manages: one per (region, tenant, agent, role)."""

    region: str
    tenant: str
    agent: str
    role: Role

    @property
    def kind(self) -> Kind:
        return KIND_OF_ROLE[self.role]

    def as_dict(self) -> dict[str, str]:
        return {"region": self.region, "tenant": self.tenant, "agent": self.agent, "role": self.role}

    def __str__(self) -> str:
        return f"{self.region}/{self.tenant}/{self.agent}/{self.role}"


def object_name(tenant: str, agent: str) -> str:
    """LiveKit object name: `vx-<tenant>-<agent>` (trunk and rule share it; their kinds differ)."""
    return f"vx-{tenant}-{agent}"


def ownership_metadata(owner: Owner, source: Optional[str]) -> str:
    """The `metadata` JSON voxplane writes: compact, sorted keys, so it compares byte for byte."""
    data: dict[str, str] = {"managed-by": MANAGED_BY, **owner.as_dict()}
    if source:
        data["source"] = source
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def parse_owner(metadata: str) -> tuple[Optional[Owner], Optional[str]]:
    """(owner, source file) from an object's metadata, or (None, None) when voxplane does not own it."""
    try:
        data = json.loads(metadata) if metadata else None
    except ValueError:
        return None, None
    if not isinstance(data, dict) or data.get("managed-by") != MANAGED_BY:
        return None, None
    parts = [data.get(k) for k in ("region", "tenant", "agent", "role")]
    if not all(isinstance(p, str) and p for p in parts) or parts[3] not in KIND_OF_ROLE:
        return None, None
    source = data.get("source")
    return Owner(*parts), (source if isinstance(source, str) else None)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Origin:
    """Where a property's declared value comes from: manifest file, line, column and field path."""

    file: str
    line: int
    column: int
    field: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column} ({self.field})"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "column": self.column, "field": self.field}


def _origin(source: Optional[Source], path: tuple[str | int, ...]) -> Origin:
    dotted = ".".join(str(p) for p in path) or "(root)"
    if source is None:
        return Origin("?", 0, 0, dotted)
    file, line, col = source.locate(*path).rsplit(":", 2)
    return Origin(file, int(line), int(col), dotted)


@dataclass(frozen=True)
class DesiredTrunk:
    """An inbound trunk: accepts calls to `numbers` from `allowed_addresses` (digest auth optional)."""

    owner: Owner
    name: str
    numbers: tuple[str, ...]
    allowed_addresses: tuple[str, ...]
    krisp_enabled: bool
    auth_username: str = ""
    auth_password: Optional[SecretRef] = None
    source: Optional[str] = None
    #: spec property -> manifest origin; see `origin()`.
    origins: Mapping[str, Origin] = field(default_factory=dict, compare=False, repr=False)

    kind: Kind = field(default=TRUNK_KIND, init=False)

    @property
    def metadata(self) -> str:
        return ownership_metadata(self.owner, self.source)

    def secret_refs(self) -> dict[str, SecretRef]:
        """Spec property -> reference, for every secret this object needs."""
        return {"auth_password": self.auth_password} if self.auth_password is not None else {}

    def spec(self, secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Plain-JSON desired state (the Pulumi resource inputs, and what the reconciler writes).

        `secrets` maps "auth_password" to its value; a missing or None value is left None
        (unknown), never invented."""
        secrets = secrets or {}
        return {
            "kind": self.kind,
            "region": self.owner.region,
            "name": self.name,
            "metadata": self.metadata,
            "numbers": list(self.numbers),
            "allowed_addresses": list(self.allowed_addresses),
            "auth_username": self.auth_username,
            "auth_password": secrets.get("auth_password") if self.auth_password is not None else "",
            "krisp_enabled": self.krisp_enabled,
        }

    def origin(self, prop: str) -> Origin:
        """The manifest field a spec property (or a drifted LiveKit field) comes from."""
        return _lookup(self.origins, prop)


@dataclass(frozen=True)
class DesiredRule:
    """A dispatch rule: calls on `trunk`'s numbers go to rooms that dispatch `agent_name`."""

    owner: Owner
    name: str
    trunk: Owner
    dispatch: Literal["individual", "direct", "callee"]
    agent_name: str
    room_prefix: str = ""
    room_name: str = ""
    #: callee only: a random suffix per call, so concurrent callers of a number never share a
    #: room (`SIPDispatchRuleCallee.randomize`; the manifest's `shared_room: false`).
    randomize: bool = False
    pin: Optional[SecretRef] = None
    source: Optional[str] = None
    origins: Mapping[str, Origin] = field(default_factory=dict, compare=False, repr=False)

    kind: Kind = field(default=RULE_KIND, init=False)

    @property
    def metadata(self) -> str:
        return ownership_metadata(self.owner, self.source)

    @property
    def attributes(self) -> dict[str, str]:
        """Ownership as attributes too: SIP participants carry them, so agents and webhooks see
        which tenant and agent a call belongs to."""
        out = {f"{ATTRIBUTE_PREFIX}managed-by": MANAGED_BY}
        out.update({f"{ATTRIBUTE_PREFIX}{k}": v for k, v in self.owner.as_dict().items()})
        if self.source:
            out[f"{ATTRIBUTE_PREFIX}source"] = self.source
        return out

    def secret_refs(self) -> dict[str, SecretRef]:
        return {"pin": self.pin} if self.pin is not None else {}

    def spec(
        self, trunk_id: Optional[str] = None, secrets: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Plain-JSON desired state; `trunk_id` is the live ID of `trunk` (None while unknown)."""
        secrets = secrets or {}
        return {
            "kind": self.kind,
            "region": self.owner.region,
            "name": self.name,
            "metadata": self.metadata,
            "attributes": self.attributes,
            # Exactly this agent's trunk: an empty list would match every trunk in the deployment.
            "trunk_ids": [trunk_id] if trunk_id is not None else None,
            "dispatch": self.dispatch,
            "room_prefix": self.room_prefix,
            "room_name": self.room_name,
            "randomize": self.randomize,
            "pin": secrets.get("pin") if self.pin is not None else "",
            "agents": [self.agent_name],
        }

    def origin(self, prop: str) -> Origin:
        return _lookup(self.origins, prop)


Desired = Union[DesiredTrunk, DesiredRule]


def _lookup(origins: Mapping[str, Origin], prop: str) -> Origin:
    # Longest known prefix: "rule.dispatch_rule_individual.no_randomness" -> "rule", then "*".
    probe = prop
    while probe:
        if probe in origins:
            return origins[probe]
        cut = max(probe.rfind("."), probe.rfind("["))
        probe = probe[:cut] if cut > 0 else ""
    return origins["*"]


def desired_objects(region: Region, agents: Sequence[Agent]) -> list[Desired]:
    """Trunk + rule per agent with telephony in `region`, sorted by (tenant, agent), trunk first."""
    out: list[Desired] = []
    for agent in sorted(agents, key=lambda a: (a.tenant, a.name)):
        if agent.telephony is None or region.name not in agent.regions:
            continue
        out.extend(_agent_objects(region, agent))
    return out


def _agent_objects(region: Region, agent: Agent) -> tuple[DesiredTrunk, DesiredRule]:
    tel = agent.telephony
    assert tel is not None
    src = agent.source
    file = src.file if src else None
    name = object_name(agent.tenant, agent.name)
    trunk_owner = Owner(region.name, agent.tenant, agent.name, "trunk")
    rule_owner = Owner(region.name, agent.tenant, agent.name, "rule")

    # Empty per-agent list means "the region's carrier allow-list" (agent.schema.json).
    if tel.allowed_addresses:
        allowed = tel.allowed_addresses
        allowed_origin = _origin(src, ("telephony", "allowed_addresses"))
    else:
        allowed = region.sip.carrier_addresses if region.sip else ()
        allowed_origin = _origin(region.source, ("sip", "carrier_addresses"))

    whole = _origin(src, ("telephony",))
    trunk = DesiredTrunk(
        owner=trunk_owner,
        name=name,
        numbers=tel.numbers,
        allowed_addresses=tuple(allowed),
        krisp_enabled=tel.noise_cancellation,
        auth_username=tel.auth.username if tel.auth else "",
        auth_password=tel.auth.password if tel.auth else None,
        source=file,
        origins={
            "*": whole,
            "name": _origin(src, ("name",)),
            "metadata": whole,
            "numbers": _origin(src, ("telephony", "numbers")),
            "allowed_addresses": allowed_origin,
            "auth_username": _origin(src, ("telephony", "auth", "username")),
            "auth_password": _origin(src, ("telephony", "auth", "password")),
            "krisp_enabled": _origin(src, ("telephony", "noise_cancellation")),
        },
    )

    d = tel.dispatch
    rule = DesiredRule(
        owner=rule_owner,
        name=name,
        trunk=trunk_owner,
        dispatch=d.kind,
        agent_name=agent.scoped_name,
        # direct joins one fixed room; individual/callee generate rooms from the prefix.
        room_prefix=d.room_prefix if d.kind != "direct" else "",
        room_name=(d.room_name or "") if d.kind == "direct" else "",
        # individual rooms always get LiveKit's random suffix (voxplane never sets
        # no_randomness); callee ones only when the manifest does not ask for a shared room.
        randomize=d.kind == "callee" and not d.shared_room,
        pin=d.pin,
        source=file,
        origins={
            "*": whole,
            "name": _origin(src, ("name",)),
            "metadata": whole,
            "attributes": whole,
            "trunk_ids": whole,
            "dispatch": _origin(src, ("telephony", "dispatch", "kind")),
            "room_prefix": _origin(src, ("telephony", "dispatch", "room_prefix")),
            "room_name": _origin(src, ("telephony", "dispatch", "room_name")),
            "randomize": _origin(src, ("telephony", "dispatch", "shared_room")),
            "pin": _origin(src, ("telephony", "dispatch", "pin")),
            "agents": _origin(src, ("name",)),
            "rule": _origin(src, ("telephony", "dispatch")),
            "room_config": _origin(src, ("name",)),
        },
    )
    return trunk, rule
