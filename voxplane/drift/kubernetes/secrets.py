"""Declared Secret payloads of a region, as sha256 digests, for drift to compare with the cluster.

`voxplane render` redacts every secret value, so the payloads come from the same `build_region` the
components register (voxplane/desired/region.py), whose secret values are `SecretValue` markers. A marker is
resolved the way components/secrets.py resolves it, from values the caller has:

- `{config: KEY}` (stack config secrets: provider keys, HF tokens, a Redis password) from
  `VOXPLANE_SECRET_<KEY>` (as `voxplane livekit sync` reads them);
- keys and passwords derived from the region's root secret (LiveKit API secrets, the keys file,
  the in-cluster Redis password) from `VOXPLANE_SECRET_livekitRootSecret`.

A value that cannot be resolved leaves its key compared by presence only (reported as unchecked).
Only digests leave this module; values live in memory while they are hashed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

from ...desired.common import K8sObject, SecretValue
from ...desired.region import build_region
from ...desired.sfu import api_key_names
from ...livekit.keys import ROOT_SECRET_CONFIG, derive_api_secret, keys_file
from ...livekit.secrets import ENV_PREFIX
from ...manifest.model import Agent, Region
from .compare import digest

#: Looks up a stack config secret by key; None when it is not available.
ConfigLookup = Callable[[str], Optional[str]]


def env_lookup(environ: Optional[Mapping[str, str]] = None) -> ConfigLookup:
    env = os.environ if environ is None else environ

    def lookup(key: str) -> Optional[str]:
        return env.get(f"{ENV_PREFIX}{key}") or None

    return lookup


def no_lookup(key: str) -> Optional[str]:
    return None


@dataclass
class SecretPayload:
    """One declared Secret: digests of the values known here, reasons for the others."""

    digests: dict[str, str] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)


def secret_objects(region: Region, agents: Sequence[Agent]) -> list[K8sObject]:
    """Every Secret the region declares (`build_region`; values as `SecretValue` markers)."""
    return [o for o in build_region(region, agents, image="").all() if o.get("kind") == "Secret"]


def resolve(value: Any, region: Region, lookup: ConfigLookup) -> tuple[Optional[str], str]:
    """(value, "") or (None, why it is not available)."""
    if not isinstance(value, SecretValue):
        return str(value), ""
    if value.kind == "config":
        got = lookup(value.name)
        return (got, "") if got else (None, f"set {ENV_PREFIX}{value.name} to compare its value")
    root = lookup(ROOT_SECRET_CONFIG)
    if not root:
        return None, f"derived from the root secret; set {ENV_PREFIX}{ROOT_SECRET_CONFIG} to compare its value"
    if value.kind in ("derived", "livekit-secret"):
        return derive_api_secret(root, region.name, value.name), ""
    if value.kind == "livekit-keys":
        return keys_file(root, region.name, api_key_names(region)), ""
    return None, f"unknown secret kind {value.kind!r}"


def declared_payloads(region: Region, agents: Sequence[Agent], lookup: ConfigLookup) -> dict[tuple[str, str], SecretPayload]:
    """(namespace, name) -> the payload's digests, for every Secret the region declares."""
    out: dict[tuple[str, str], SecretPayload] = {}
    for obj in secret_objects(region, agents):
        meta = obj["metadata"]
        payload = SecretPayload()
        data = {**(obj.get("data") or {}), **(obj.get("stringData") or {})}
        for key, value in data.items():
            resolved, why = resolve(value, region, lookup)
            if resolved is None:
                payload.unknown[key] = why
            else:
                payload.digests[key] = digest(resolved.encode())
        out[(meta.get("namespace", ""), meta["name"])] = payload
    return out


def resolved_string_data(obj: Mapping[str, Any], region: Region, agents: Sequence[Agent],
                         lookup: ConfigLookup) -> dict[str, str]:
    """A declared Secret's payload with its values resolved (what `pulumi up` would write); tests
    and dev tooling apply it. Raises `KeyError` for a value that cannot be resolved."""
    meta = obj["metadata"]
    for declared in secret_objects(region, agents):
        if (declared["metadata"].get("namespace", ""), declared["metadata"]["name"]) == (meta.get("namespace", ""), meta["name"]):
            out: dict[str, str] = {}
            for key, value in (declared.get("stringData") or {}).items():
                resolved, why = resolve(value, region, lookup)
                if resolved is None:
                    raise KeyError(f"{meta['name']}.{key}: {why}")
                out[key] = resolved
            return out
    raise KeyError(f"no declared Secret {meta.get('namespace')}/{meta['name']}")
