"""Redis + livekit-server on loopback, the pair nine test modules and four benchmarks run: started
for real (never skipped: a server that cannot start fails the test with its reason)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxplane.dev.livekit import LiveKitServer
from voxplane.dev.redis import RedisServer
from voxplane.dev.region import region_config
from voxplane.livekit.client import LiveKitAdmin

from .repo import REPO

__all__ = ["DevLiveKit", "livekit_with_redis"]


@dataclass
class DevLiveKit:
    """A running livekit-server and the Redis it uses."""

    redis: RedisServer
    livekit: LiveKitServer

    @property
    def url(self) -> str:
        """The server's http:// URL (API calls)."""
        return self.livekit.http_url

    @property
    def env(self) -> dict[str, str]:
        """LIVEKIT_URL (ws://, as the SDKs take it), LIVEKIT_API_KEY and LIVEKIT_API_SECRET of the
        server's first key."""
        return {"LIVEKIT_URL": self.livekit.url, "LIVEKIT_API_KEY": self.livekit.api_key,
                "LIVEKIT_API_SECRET": self.livekit.api_secret}

    def client(self) -> LiveKitAdmin:
        return LiveKitAdmin(self.livekit.http_url, self.livekit.api_key, self.livekit.api_secret)


@contextlib.contextmanager
def livekit_with_redis(config: Mapping[str, Any] | None = None, *, region: str | None = None,
                       root: Path = REPO) -> Iterator[DevLiveKit]:
    """Redis + livekit-server, stopped afterwards. With `region`: the config voxplane renders for it
    from the manifests at `root` (addresses and ports moved to loopback, dev keys, the admin key
    first), so the server also proves it takes that config; else `config` (default: a minimal
    config with a random key)."""
    if region is not None:
        config = region_config(region, root)
    with RedisServer() as redis, LiveKitServer(config, redis=redis) as lk:
        yield DevLiveKit(redis, lk)
