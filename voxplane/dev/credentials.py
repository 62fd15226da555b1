"""A dev region's tenant credentials: `export LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=...`.

Only for dev regions: the region's stack pins the dev cluster's kube context and its root secret
is the dev value kept under the cache (`voxplane.dev.stack.dev_root_secret`). A region deployed
for real has its `livekitRootSecret` in stack config, which this never reads.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ..desired.common import tenant_api_key
from ..livekit.keys import ROOT_SECRET_CONFIG, derive_api_secret


class NotDev(ValueError):
    """The region is not a dev region; the message says why."""


def dev_tenant_credentials(root: Path, region_name: str, tenant: str) -> tuple[str, str]:
    """(API key, secret) of `tenant` in dev region `region_name`; raises NotDev, ValueError (no such
    tenant), or what `loader.load_region` raises (`ManifestError`, `UnknownRegion`)."""
    from ..manifest.crosscheck import stack_config
    from ..manifest.loader import load_region
    from .cluster import CONTEXT
    from .stack import dev_root_secret

    region = load_region(root, region_name).region
    if tenant not in region.tenants:
        raise ValueError(f"region {region_name!r} has no tenant {tenant!r} (tenants: {', '.join(sorted(region.tenants))})")
    config = stack_config(root, region_name)
    context = config.get("kubeContext")
    if context != CONTEXT:
        raise NotDev(f"region {region_name!r} is not a dev region: its stack targets kube context {context!r}, "
                     f"not {CONTEXT!r}; its keys derive from a real {ROOT_SECRET_CONFIG}, which this never reads")
    if ROOT_SECRET_CONFIG in config:
        raise NotDev(f"region {region_name!r} sets {ROOT_SECRET_CONFIG} in Pulumi.{region_name}.yaml: not a dev value")
    secret_root = dev_root_secret(region_name)
    if not secret_root.startswith("dev-"):
        raise NotDev(f"the cached {ROOT_SECRET_CONFIG} of region {region_name!r} is not a dev value")
    key = tenant_api_key(tenant)
    return key, derive_api_secret(secret_root, region_name, key)


def exports(key: str, secret: str) -> str:
    return f"export LIVEKIT_API_KEY={shlex.quote(key)} LIVEKIT_API_SECRET={shlex.quote(secret)}"
