"""LiveKit API keys of a region, derived from one root secret so no per-tenant secret is stored.

Each key's secret is HMAC-SHA256(root, "<region>/<key>"): stable across runs, different per region
and tenant, rotated all at once by changing the root (`pulumi config set --secret livekitRootSecret`).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Iterable

#: Stack config key holding the root secret.
ROOT_SECRET_CONFIG = "livekitRootSecret"


def derive_api_secret(root: str, region: str, key: str) -> str:
    """The API secret of LiveKit key `key` in `region` (64 hex characters; LiveKit wants >= 32)."""
    if not root:
        raise ValueError(f"{ROOT_SECRET_CONFIG} is empty; set it with `pulumi config set --secret {ROOT_SECRET_CONFIG}`")
    return hmac.new(root.encode(), f"{region}/{key}".encode(), hashlib.sha256).hexdigest()


def keys_file(root: str, region: str, keys: Iterable[str]) -> str:
    """livekit-server `key_file` content: one `key: secret` line per key."""
    return "".join(f"{key}: {derive_api_secret(root, region, key)}\n" for key in sorted(keys))
