"""A region's config for the dev servers: the livekit-server config, the gateway's and the
recovery controller's configs it renders, with dev API keys whose secrets derive from the region's
dev root secret (a random value kept under the cache, `voxplane.dev.stack.dev_root_secret`), exactly
as the stack derives them from `livekitRootSecret`: the dev stack's keys match these servers, and no
production secret is involved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..livekit.keys import derive_api_secret
from ..manifest.loader import load_region
from .ports import LOOPBACK
from .stack import dev_root_secret

__all__ = ["region_config", "region_gateway", "region_recovery"]


def region_config(name: str, root: Path) -> dict[str, Any]:
    """The livekit-server config voxplane renders for region `name`, with dev API keys.

    The admin key (the one `voxplane livekit sync` uses) comes first, then the gateway's: the
    platform's keys only, as in the cluster (tenant keys are the gateway's, see `region_gateway`).
    `ManifestError` when the manifests are invalid, `UnknownRegion` when none is called `name`.
    """
    from ..desired.common import ADMIN_KEY, platform_api_keys
    from ..desired.livekit_config import server_config

    region = load_region(root, name).region
    config = server_config(region, redis_address=f"{LOOPBACK}:6379")  # replaced by the real address
    names = [ADMIN_KEY] + [k for k in platform_api_keys() if k != ADMIN_KEY]
    root_secret = dev_root_secret(name)
    config["keys"] = {key: derive_api_secret(root_secret, name, key) for key in names}
    return config


def region_gateway(name: str, root: Path, *, upstream: str) -> tuple[str, dict[str, str]]:
    """The gateway config region `name` renders (its ConfigMap's config.json) with addresses moved
    to loopback and `upstream` (livekit-server's http:// URL), plus the keys its Secret holds, their
    secrets derived from the region's dev root secret. `GatewayServer` fills in ports and folder."""
    from ..desired.gateway import CONFIG_FILE
    from ..desired.region import build_region

    loaded = load_region(root, name)
    objects = build_region(loaded.region, loaded.agents, image="").gateway
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"][CONFIG_FILE]
    key_names = next(o for o in objects if o["kind"] == "Secret")["stringData"]
    root_secret = dev_root_secret(name)
    keys = {k: derive_api_secret(root_secret, name, k) for k in key_names}
    data = json.loads(config)
    data["upstream"] = upstream
    return json.dumps(data, indent=2, sort_keys=True) + "\n", keys


def region_recovery(name: str, root: Path) -> tuple[str, str]:
    """The recovery controller's config region `name` renders (its ConfigMap's config.json) and the
    secret of its key, derived from the region's dev root secret. `RecoveryServer` fills in
    livekit-server's URL, its ports and its key file."""
    from ..desired.common import RECOVERY_KEY
    from ..desired.recovery import CONFIG_FILE
    from ..desired.region import build_region

    loaded = load_region(root, name)
    objects = build_region(loaded.region, loaded.agents, image="").recovery
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"][CONFIG_FILE]
    return config, derive_api_secret(dev_root_secret(name), name, RECOVERY_KEY)
