"""Plain-JSON specs <-> LiveKit protobuf objects, field-by-field comparison, and conflict keys.

A *spec* is the plain dict `DesiredTrunk.spec()` / `DesiredRule.spec()` return (also the Pulumi
resource inputs). `live_spec()` reads a server object back into the same keys, plus `extra`: every
other field the server holds that voxplane never sets (e.g. `allowed_numbers`, `headers`,
`hide_phone_number`, `room_config.max_participants`). voxplane writes with the *replace* API, so
an extra field set out of band would be wiped by the next write; drift reports it first.

Secrets: `auth_password` and the PIN come back from the list API in plain text (measured on
livekit-server v1.13.5: `ListSIPInboundTrunk` returns `auth_password` as written, and
`ListSIPDispatchRule` the PIN). So secrets are compared directly, in constant time, against the
value the secret source gives; nothing derived from a secret is stored anywhere (rule metadata
and attributes reach every SIP participant, so a hash of a 4-digit PIN there would leak it).
Compared secrets are never part of a `FieldDiff`: only placeholders are.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from google.protobuf.json_format import MessageToDict
from livekit import api

from .desired import RULE_KIND, TRUNK_KIND

UNSET = "(unset)"
SECRET_FIELDS = frozenset({"auth_password", "pin"})

#: Spec keys compared per kind, in report order. `region` and `kind` are not LiveKit fields.
TRUNK_FIELDS = ("name", "metadata", "numbers", "allowed_addresses", "auth_username", "auth_password", "krisp_enabled")
RULE_FIELDS = ("name", "metadata", "attributes", "trunk_ids", "dispatch", "room_prefix", "room_name", "randomize", "pin",
               "agents")
#: Compared as sets: the order of numbers, CIDRs or trunk IDs changes no routing.
_UNORDERED = frozenset({"numbers", "allowed_addresses", "trunk_ids"})

_RULE_ONEOF = {"individual": "dispatch_rule_individual", "direct": "dispatch_rule_direct", "callee": "dispatch_rule_callee"}
_ONEOF_KIND = {v: k for k, v in _RULE_ONEOF.items()}


@dataclass(frozen=True)
class FieldDiff:
    """One field whose live value differs from the declared one. Secret fields carry placeholders."""

    field: str
    declared: Any
    live: Any


# --- spec -> protobuf ---------------------------------------------------------------------------


def trunk_info(spec: Mapping[str, Any]) -> api.SIPInboundTrunkInfo:
    """The full inbound trunk to create or replace with; every field voxplane does not declare
    is left at its default, so a replace also resets out-of-band extras."""
    return api.SIPInboundTrunkInfo(
        name=spec["name"],
        metadata=spec["metadata"],
        numbers=list(spec["numbers"]),
        allowed_addresses=list(spec["allowed_addresses"]),
        auth_username=spec.get("auth_username") or "",
        auth_password=_require_secret(spec, "auth_password"),
        krisp_enabled=bool(spec.get("krisp_enabled")),
    )


def rule_info(spec: Mapping[str, Any]) -> api.SIPDispatchRuleInfo:
    """The full dispatch rule to create or replace with (`trunk_ids` must be known by now)."""
    if not spec.get("trunk_ids"):
        # An empty trunk_ids matches every trunk in the deployment, i.e. every tenant's numbers.
        raise ValueError(f"dispatch rule {spec['name']!r}: trunk ID unknown; refusing to write a rule for all trunks")
    kind = spec["dispatch"]
    pin = _require_secret(spec, "pin")
    if kind == "direct":
        rule = api.SIPDispatchRule(dispatch_rule_direct=api.SIPDispatchRuleDirect(room_name=spec["room_name"], pin=pin))
    elif kind == "callee":
        rule = api.SIPDispatchRule(dispatch_rule_callee=api.SIPDispatchRuleCallee(
            room_prefix=spec["room_prefix"], pin=pin, randomize=bool(spec.get("randomize"))))
    elif kind == "individual":
        rule = api.SIPDispatchRule(dispatch_rule_individual=api.SIPDispatchRuleIndividual(room_prefix=spec["room_prefix"], pin=pin))
    else:
        raise ValueError(f"dispatch rule {spec['name']!r}: unknown dispatch kind {kind!r}")
    return api.SIPDispatchRuleInfo(
        name=spec["name"],
        metadata=spec["metadata"],
        attributes=dict(spec.get("attributes") or {}),
        trunk_ids=list(spec["trunk_ids"]),
        rule=rule,
        room_config=api.RoomConfiguration(agents=[api.RoomAgentDispatch(agent_name=a) for a in spec["agents"]]),
    )


def info_of(spec: Mapping[str, Any]) -> Any:
    return trunk_info(spec) if spec["kind"] == TRUNK_KIND else rule_info(spec)


def _require_secret(spec: Mapping[str, Any], key: str) -> str:
    value = spec.get(key)
    if value is None:
        raise ValueError(f"{spec['kind']} {spec['name']!r}: {key} is declared but its value is not available")
    return str(value)


# --- protobuf -> spec ---------------------------------------------------------------------------


def object_id(info: Any) -> str:
    return info.sip_trunk_id if isinstance(info, api.SIPInboundTrunkInfo) else info.sip_dispatch_rule_id


def kind_of(info: Any) -> str:
    return TRUNK_KIND if isinstance(info, api.SIPInboundTrunkInfo) else RULE_KIND


def live_spec(info: Any) -> dict[str, Any]:
    """A server object as a spec (same keys as the desired one) plus `extra`: {field path: value}
    for every non-default field voxplane does not manage."""
    data = MessageToDict(info, preserving_proto_field_name=True)
    for ignored in ("created_at", "updated_at"):
        data.pop(ignored, None)
    if isinstance(info, api.SIPInboundTrunkInfo):
        spec: dict[str, Any] = {
            "kind": TRUNK_KIND,
            "name": info.name,
            "metadata": info.metadata,
            "numbers": list(info.numbers),
            "allowed_addresses": list(info.allowed_addresses),
            "auth_username": info.auth_username,
            "auth_password": info.auth_password,
            "krisp_enabled": info.krisp_enabled,
        }
        rest = {k: v for k, v in data.items() if k not in spec and k != "sip_trunk_id"}
    else:
        which = info.rule.WhichOneof("rule") or ""
        inner = getattr(info.rule, which) if which else None
        agents = list(info.room_config.agents)
        spec = {
            "kind": RULE_KIND,
            "name": info.name,
            "metadata": info.metadata,
            "attributes": dict(info.attributes),
            "trunk_ids": list(info.trunk_ids),
            "dispatch": _ONEOF_KIND.get(which, which),
            "room_prefix": getattr(inner, "room_prefix", "") if inner is not None else "",
            "room_name": getattr(inner, "room_name", "") if inner is not None else "",
            # Only callee rules have `randomize`; individual's `no_randomness` stays an extra.
            "randomize": bool(getattr(inner, "randomize", False)) if which == "dispatch_rule_callee" else False,
            "pin": inner.pin if inner is not None else "",
            "agents": [a.agent_name for a in agents],
        }
        rest = {k: v for k, v in data.items() if k not in spec and k not in ("sip_dispatch_rule_id", "rule", "room_config")}
        # Inside the managed sub-messages, anything but the managed leaves is extra.
        rule_inner = dict((data.get("rule") or {}).get(which, {})) if which else {}
        for managed in ("room_prefix", "room_name", "pin"):
            rule_inner.pop(managed, None)
        if which == "dispatch_rule_callee":
            rule_inner.pop("randomize", None)
        if rule_inner:
            rest["rule"] = {which: rule_inner}
        room_config = dict(data.get("room_config") or {})
        room_config["agents"] = [
            {k: v for k, v in a.items() if k != "agent_name"} for a in room_config.get("agents", [])
        ]
        rest["room_config"] = room_config
    spec["extra"] = dict(_flatten(_prune(rest)))
    return spec


def _prune(value: Any) -> Any:
    """Drop empty dicts and lists (the server adds e.g. `media: {}` to rules it stores)."""
    if isinstance(value, dict):
        out = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in ({}, [], None)}
    if isinstance(value, list):
        out_list = [_prune(v) for v in value]
        return out_list if any(v not in ({}, [], None) for v in out_list) else []
    return value


def _flatten(value: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            if v not in ({}, [], None):
                yield from _flatten(v, f"{prefix}[{i}]")
    elif value not in ({}, [], None):
        yield prefix, value


# --- comparison ---------------------------------------------------------------------------------


def compare(
    desired: Mapping[str, Any],
    live: Mapping[str, Any],
    *,
    secret_labels: Mapping[str, str] | None = None,
    pending: Mapping[str, str] | None = None,
) -> tuple[list[FieldDiff], list[str]]:
    """(differences, unchecked fields) between a desired spec and a `live_spec`.

    `secret_labels` names each declared secret (e.g. "config:northwindTrunkPassword") for the
    placeholder; a desired secret of None (value unavailable) is reported as unchecked unless the
    live side is empty. `pending` gives a display value for desired fields not known yet (a rule's
    trunk ID before the trunk exists); such a field always counts as different.
    """
    secret_labels = secret_labels or {}
    pending = pending or {}
    fields = TRUNK_FIELDS if desired["kind"] == TRUNK_KIND else RULE_FIELDS
    diffs: list[FieldDiff] = []
    unchecked: list[str] = []
    for name in fields:
        want, have = desired.get(name), live.get(name)
        if name in SECRET_FIELDS:
            label = f"<secret {secret_labels[name]}>" if name in secret_labels else "<secret>"
            if want == "" or want is None and name not in secret_labels:
                if have:
                    diffs.append(FieldDiff(name, UNSET, "<secret>"))
            elif not have:
                diffs.append(FieldDiff(name, label, UNSET))
            elif want is None:
                unchecked.append(name)
            elif not hmac.compare_digest(str(want).encode(), str(have).encode()):
                diffs.append(FieldDiff(name, label, "<secret: differs>"))
            continue
        if name in pending:
            diffs.append(FieldDiff(name, pending[name], _show(have)))
            continue
        if _norm(name, want) != _norm(name, have):
            diffs.append(FieldDiff(name, _show(want), _show(have)))
    for path, value in sorted((live.get("extra") or {}).items()):
        diffs.append(FieldDiff(path, UNSET, value))
    return diffs, unchecked


def _norm(name: str, value: Any) -> Any:
    if name in _UNORDERED:
        return sorted(value or [])
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value if value is not None else ""


def _show(value: Any) -> Any:
    if value in ("", None, [], {}):
        return UNSET
    return list(value) if isinstance(value, tuple) else value


# --- conflict keys (mirror of the server's validation) -------------------------------------------


def normalize_number(num: str) -> str:
    """livekit protocol `NormalizeNumber`: strip " -()" from number-like strings, add "+"."""
    if not num:
        return ""
    allowed = set("+0123456789- ()")
    body = num[1:] if num.startswith("+") else num
    if not body or not set(num) <= allowed or "+" in body:
        return num
    for ch in " -()":
        num = num.replace(ch, "")
    return num if num.startswith("+") else "+" + num


def conflict_keys(spec: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> set[tuple[str, ...]]:
    """Keys two objects must not share, as the server checks them on create and replace:
    trunks by (called number, AllowedNumber) — protocol sip.go ValidateTrunksIter /
    validateTrunkInbound; rules by (trunk, PIN, inbound number, number) — ValidateDispatchRulesIter.
    `extra` is the live object's extra fields (an out-of-band `allowed_numbers` changes the key)."""
    extra = extra or {}
    if spec["kind"] == TRUNK_KIND:
        allowed = [normalize_number(a) for a in extra.get("allowed_numbers", [])] or [""]
        return {("trunk", normalize_number(n), a) for n in (spec["numbers"] or [""]) for a in allowed}
    inbound = [normalize_number(n) for n in extra.get("inbound_numbers", [])] or [""]
    called = [normalize_number(n) for n in extra.get("numbers", [])] or [""]
    pin = spec.get("pin") or ""
    return {
        ("rule", t, str(pin), i, n)
        for t in (spec.get("trunk_ids") or [""])
        for i in inbound
        for n in called
    }


def public_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A spec safe to print or store in plain text: secret values replaced by placeholders."""
    out = dict(spec)
    for key in SECRET_FIELDS & out.keys():
        if out[key]:
            out[key] = "<secret>"
    return out


def secret_label_map(refs: Mapping[str, Any]) -> dict[str, str]:
    return {k: ref.describe() for k, ref in refs.items()}
