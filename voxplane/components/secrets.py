"""Resolve `SecretValue` markers from the builders into Pulumi secret Outputs."""

from __future__ import annotations

import hashlib
import hmac
from typing import Sequence

import pulumi

from voxplane.desired.common import SecretFingerprint, SecretValue
from voxplane.livekit.keys import ROOT_SECRET_CONFIG, derive_api_secret, keys_file

#: The purpose a fingerprint is keyed under. Derived secrets are HMAC(root, "<region>/<key>") and a
#: region name has no ':', so no fingerprint input is ever a derived secret's input.
FINGERPRINT_PURPOSE = "voxplane:secret-fingerprint:v1"
#: Hex characters kept: 64 bits, enough that a rotation always changes it, too few to be a secret.
FINGERPRINT_LENGTH = 16


def fingerprint(root: str, region: str, values: Sequence[str]) -> str:
    """HMAC-SHA256 under the root secret of the purpose, the region and `values` (length-prefixed,
    so no two lists give the same input), truncated: one-way, reveals nothing of the values."""
    message = f"{FINGERPRINT_PURPOSE}\0{region}\0" + "".join(f"{len(v)}:{v}\0" for v in values)
    return hmac.new(root.encode(), message.encode(), hashlib.sha256).hexdigest()[:FINGERPRINT_LENGTH]


class SecretResolver:
    """Reads stack config secrets and derives LiveKit keys; every value stays a Pulumi secret."""

    def __init__(self, region: str, api_keys: Sequence[str], config: pulumi.Config | None = None):
        self.region = region
        self.api_keys = tuple(api_keys)
        self.config = config or pulumi.Config("voxplane")
        self._root: pulumi.Output[str] | None = None

    @property
    def root(self) -> pulumi.Output[str]:
        if self._root is None:
            self._root = self.config.require_secret(ROOT_SECRET_CONFIG)
        return self._root

    def resolve(self, value: SecretValue) -> pulumi.Output[str]:
        if value.kind == "config":
            return self.config.require_secret(value.name)
        if value.kind == "derived":
            # Not a LiveKit key, but derived the same way: HMAC(root, "<region>/<name>").
            return pulumi.Output.secret(self.root.apply(lambda root: derive_api_secret(root, self.region, value.name)))
        if value.kind == "livekit-secret":
            return pulumi.Output.secret(self.root.apply(lambda root: derive_api_secret(root, self.region, value.name)))
        if value.kind == "livekit-keys":
            return pulumi.Output.secret(self.root.apply(lambda root: keys_file(root, self.region, self.api_keys)))
        raise ValueError(f"unknown secret kind {value.kind!r}")

    def fingerprint(self, marker: SecretFingerprint) -> pulumi.Output[str]:
        """The marker's fingerprint as a plain (not secret) Output: it is keyed and one-way, and
        an annotation Pulumi showed as [secret] would hide every rollout's reason."""
        values = [self.resolve(source) for source in marker.sources]
        combined = pulumi.Output.all(self.root, *values).apply(
            lambda resolved: fingerprint(resolved[0], self.region, [str(v) for v in resolved[1:]])
        )
        return pulumi.Output.unsecret(combined)
