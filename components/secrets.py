"""Resolve `SecretValue` markers from the builders into Pulumi secret Outputs."""

from __future__ import annotations

from typing import Sequence

import pulumi

from voxplane.desired.common import SecretValue
from voxplane.keys import ROOT_SECRET_CONFIG, derive_api_secret, keys_file


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
