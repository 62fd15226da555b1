"""Where the reconciler gets secret values (digest password, PIN) from.

A `SecretSource` turns a manifest `SecretRef` into its value, or says why it cannot. Values live
only in memory while an object is written or compared; nothing here logs or prints them.

Sources:
- `EnvSecrets` (the CLI): a stack-config reference `{config: KEY}` is read from the environment
  variable `VOXPLANE_SECRET_<KEY>`, KEY spelled exactly as in the manifest (case-sensitive), e.g.
  `VOXPLANE_SECRET_northwindTrunkPassword`. A reference to an existing Kubernetes Secret
  (`{secret: NAME, key: KEY}`) cannot be read outside the cluster; it is reported as unavailable.
- `StaticSecrets`: a mapping from reference to value (tests; the Pulumi provider receives values
  already resolved by the engine and never uses a source).
"""

from __future__ import annotations

import os
from typing import Mapping, Optional, Protocol

from ..manifest.model import SecretRef

ENV_PREFIX = "VOXPLANE_SECRET_"


class SecretUnavailable(Exception):
    """A secret the reconciler needs has no value here; the message says how to provide it."""


class SecretSource(Protocol):
    def resolve(self, ref: SecretRef) -> str:
        """The secret's value; raises `SecretUnavailable` with a one-line hint."""
        ...


def env_name(ref: SecretRef) -> Optional[str]:
    """The environment variable `EnvSecrets` reads for `ref` (None for Kubernetes Secret refs)."""
    return f"{ENV_PREFIX}{ref.config}" if ref.config else None


class EnvSecrets:
    """Secrets from `VOXPLANE_SECRET_<configKey>` environment variables."""

    def __init__(self, environ: Optional[Mapping[str, str]] = None):
        self._environ = os.environ if environ is None else environ

    def resolve(self, ref: SecretRef) -> str:
        name = env_name(ref)
        if name is None:
            raise SecretUnavailable(
                f"{ref.describe()} is a Kubernetes Secret, which cannot be read outside the cluster; "
                "reference a stack config secret ({config: KEY}) and set VOXPLANE_SECRET_<KEY>"
            )
        value = self._environ.get(name)
        if not value:
            raise SecretUnavailable(f"{ref.describe()}: set environment variable {name}")
        return value


class StaticSecrets:
    """Secrets from a mapping keyed by `SecretRef` (or by config key string)."""

    def __init__(self, values: Mapping[SecretRef | str, str]):
        self._values = dict(values)

    def resolve(self, ref: SecretRef) -> str:
        for key in (ref, ref.config):
            if key is not None and key in self._values:
                return self._values[key]
        raise SecretUnavailable(f"{ref.describe()}: no value given")


class NoSecrets:
    """Knows no secret: drift then compares everything except secret values."""

    def resolve(self, ref: SecretRef) -> str:
        raise SecretUnavailable(f"{ref.describe()}: no secret source")
