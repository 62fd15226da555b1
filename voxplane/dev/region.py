"""A region's config for the dev servers: the livekit-server config, the gateway's and the
recovery controller's configs it renders, with dev API keys whose secrets derive from the region's
dev root secret (a random value kept under the cache, `voxplane.dev.stack.dev_root_secret`), exactly
as the stack derives them from `livekitRootSecret`: the dev stack's keys match these servers, and no
production secret is involved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..keys import derive_api_secret
from .ports import LOOPBACK
from .stack import dev_root_secret

if TYPE_CHECKING:
    from ..model import Project, Region

__all__ = ["load_region", "region_config", "region_gateway", "region_recovery"]


def load_region(name: str, root: Path) -> tuple[Project, Region]:
    """The valid project at `root` and its region `name`; ValueError naming the first problems, or
    the regions there are."""
    from ..loader import load

    result = load((), root)
    if result.problems or result.project is None:
        raise ValueError("; ".join(str(p) for p in result.problems[:3]) or "invalid manifests")
    region = result.project.regions.get(name)
    if region is None:
        raise ValueError(f"no region {name!r} (regions: {', '.join(sorted(result.project.regions))})")
    return result.project, region


def region_config(name: str, root: Path) -> dict[str, Any]:
    """The livekit-server config voxplane renders for region `name`, with dev API keys.

    The admin key (the one `voxplane livekit sync` uses) comes first, then the gateway's: the
    platform's keys only, as in the cluster (tenant keys are the gateway's, see `region_gateway`).
    Raises ValueError with the manifest problems when the manifests are invalid.
    """
    from ..desired.common import ADMIN_KEY, platform_api_keys
    from ..desired.livekit_config import server_config

    _, region = load_region(name, root)
    config = server_config(region, redis_address=f"{LOOPBACK}:6379")  # replaced by the real address
    names = [ADMIN_KEY] + [k for k in platform_api_keys() if k != ADMIN_KEY]
    root_secret = dev_root_secret(name)
    config["keys"] = {key: derive_api_secret(root_secret, name, key) for key in names}
    return config


def region_gateway(name: str, root: Path, *, upstream: str) -> tuple[str, dict[str, str]]:
    """The gateway config region `name` renders (its ConfigMap's config.json) with addresses moved
    to loopback and `upstream` (livekit-server's http:// URL), plus the keys its Secret holds, their
    secrets derived from the region's dev root secret. `GatewayServer` fills in ports and folder."""
    from ..desired.gateway import CONFIG_FILE, build_gateway

    project, region = load_region(name, root)
    objects = build_gateway(region, project.agents_in(name), image="")
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
    from ..desired.recovery import CONFIG_FILE, build_recovery

    project, region = load_region(name, root)
    objects = build_recovery(region, project.agents_in(name), image="")
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"][CONFIG_FILE]
    return config, derive_api_secret(dev_root_secret(name), name, RECOVERY_KEY)
