"""Fixtures for the gateway tests: the `local` region's livekit-server (platform keys only) with
Redis, and the gateway running as its own process with the config `local` renders (addresses
moved to loopback). The gateway runs as its image runs it: the package copied as the Dockerfile
lays it out (under an empty `voxplane` package) and an interpreter with only the image's locked
requirements (scripts/ensure-image-venv.sh voxplane/gateway), so every test here is a test of what ships.
Servers never skip: one that cannot start fails the test with its reason."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from voxplane.desired.common import ADMIN_KEY, tenant_api_key
from voxplane.dev.stack import dev_root_secret
from voxplane.dev.gateway import GatewayServer
from voxplane.dev.region import region_gateway
from voxplane.livekit.keys import derive_api_secret

from ..support.repo import REPO
from ..support.servers import DevLiveKit, livekit_with_redis
from ._image import gateway_image_python, stage_image_context

REGION = "local"
#: Tenant A is the attacker in these tests, B the victim.
A, B = "northwind", "bellavista"
A_AGENT, B_AGENT = "northwind-support", "bellavista-reservations"
#: A room of each, by their dispatch rules' prefixes (nw-support_..., bv-call_...).
A_ROOM, B_ROOM = "nw-support_+15550001_a", "bv-call_+15550002_b"


@dataclass(frozen=True)
class Creds:
    key: str
    secret: str


@dataclass
class Stack(DevLiveKit):
    gateway: GatewayServer

    @property
    def server_url(self) -> str:
        return self.livekit.http_url

    @property
    def gateway_url(self) -> str:
        return self.gateway.http_url

    @property
    def admin(self) -> Creds:
        return Creds(ADMIN_KEY, derive_api_secret(dev_root_secret(REGION), REGION, ADMIN_KEY))

    def tenant(self, name: str) -> Creds:
        key = tenant_api_key(name)
        return Creds(key, derive_api_secret(dev_root_secret(REGION), REGION, key))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis + livekit-server with the `local` config, and the gateway with the `local` render,
    run as its image runs it."""
    python = gateway_image_python()
    context = stage_image_context(tmp_path_factory.mktemp("gateway-image") / "opt-voxplane")
    with livekit_with_redis(region=REGION) as lk:
        assert lk.livekit.api_key == ADMIN_KEY
        config, keys = region_gateway(REGION, REPO, upstream=lk.url)
        with GatewayServer(config, keys, python=python, pythonpath=context) as gw:
            yield Stack(lk.redis, lk.livekit, gw)
