"""Fixtures for the end-to-end call tests: Redis + livekit-server + livekit-sip on loopback, each
running the config voxplane renders for the `local` region (only addresses and ports moved), with
the region's SIP trunks and dispatch rules synced by the reconciler. Never skipped: a server that
cannot start, or a missing sipp, fails the test with its reason."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from voxplane.dev.servers import LiveKitServer, RedisServer, region_config
from voxplane.dev.sip import SipServer
from voxplane.livekit.client import LiveKitAdmin
from voxplane.livekit.reconcile import sync
from voxplane.livekit.secrets import StaticSecrets
from voxplane.loader import load

REPO = Path(__file__).resolve().parents[2]
#: The support agent's trunk password is `{config: northwindTrunkPassword}`: a test value.
SECRETS = StaticSecrets({"northwindTrunkPassword": "nw-trunk-password-e2e"})


@dataclass
class Platform:
    redis: RedisServer
    livekit: LiveKitServer
    sip: SipServer


@pytest.fixture
def platform() -> Iterator[Platform]:
    """The local region's LiveKit + SIP bridge, with its telephony agents synced."""
    if shutil.which("sipp") is None:
        pytest.fail("sipp not found on PATH: run `bash scripts/ensure-sip.sh` (Debian package sip-tester)")
    result = load((), REPO)
    assert not result.problems, "\n".join(map(str, result.problems))
    project = result.require_project()
    region, agents = project.regions["local"], project.agents_in("local")
    with RedisServer() as redis, LiveKitServer(region_config("local", REPO), redis=redis) as lk:
        assert lk.api_key == "vx-admin"  # the admin key comes first in the rendered keys
        with LiveKitAdmin(lk.http_url, lk.api_key, lk.api_secret) as client:
            synced = sync(region, agents, client, SECRETS)
        assert synced.plan.counts()["create"] == 2 * sum(1 for a in agents if a.telephony is not None)
        with SipServer(region, redis=redis, livekit=lk) as sip:
            yield Platform(redis, lk, sip)
