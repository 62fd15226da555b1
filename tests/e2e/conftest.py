"""Fixtures for the end-to-end call tests: Redis + livekit-server + livekit-sip on loopback, each
running the config voxplane renders for the `local` region (only addresses and ports moved), with
the region's SIP trunks and dispatch rules synced by the reconciler; and, for the calls an agent
answers, the example agent programs as real livekit-agents workers with the environment their
rendered Deployments give them (tests/agents/conftest.py's workers, reused as they are).

Never skipped: a missing livekit-sip binary, a missing sipp or a server that cannot start fails
the test with its reason.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from voxplane.dev.paths import cache_dir
from voxplane.dev.sip import BINARY_ENV, SipServer
from voxplane.livekit.reconcile import sync
from voxplane.livekit.secrets import StaticSecrets
from voxplane.manifest.loader import load

from ..support.repo import REPO
from ..support.servers import DevLiveKit, livekit_with_redis
from ..agents.conftest import Worker, launch_worker

ENSURE_SIP = REPO / "scripts" / "ensure-sip.sh"
#: The support agent's trunk password is `{config: northwindTrunkPassword}`: a test value.
SECRETS = StaticSecrets({"northwindTrunkPassword": "nw-trunk-password-e2e"})


@dataclass
class Platform(DevLiveKit):
    sip: SipServer


def livekit_sip_binary() -> Path:
    """`$VOXPLANE_LIVEKIT_SIP_BIN`, else the build scripts/ensure-sip.sh cached; else the test
    fails saying how to get one (the Go module proxy serves no version of livekit-sip)."""
    given = os.environ.get(BINARY_ENV, "").strip()
    if given:
        path = Path(given)
        if not (path.is_file() and os.access(path, os.X_OK)):
            pytest.fail(f"{BINARY_ENV}={given} is not an executable file")
        return path
    default = re.search(r'^readonly DEFAULT_SIP_VERSION="([^"]+)"', ENSURE_SIP.read_text(), re.M)
    version = os.environ.get("VOXPLANE_LIVEKIT_SIP_VERSION") or (default.group(1) if default else "?")
    cached = cache_dir() / "bin" / f"livekit-sip-{version}"
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    pytest.fail(
        f"no livekit-sip binary: {BINARY_ENV} is not set and {cached} does not exist. livekit-sip is not served by "
        f"the Go module proxy, so it cannot be built here: build it from source (git clone "
        f"https://github.com/livekit/sip; git checkout {version}; go build -o livekit-sip ./cmd/livekit-sip, with "
        f"libopus, libopusfile and libsoxr development files) and run `VOXPLANE_LIVEKIT_SIP_BIN=$PWD/livekit-sip "
        f"make e2e`"
    )


@pytest.fixture
def platform() -> Iterator[Platform]:
    """The local region's LiveKit + SIP bridge, with its telephony agents synced."""
    binary = livekit_sip_binary()
    if shutil.which("sipp") is None:
        pytest.fail("sipp not found on PATH: run `bash scripts/ensure-sip.sh` (Debian package sip-tester)")
    result = load((), REPO)
    assert not result.problems, "\n".join(map(str, result.problems))
    project = result.require_project()
    region, agents = project.regions["local"], project.agents_in("local")
    with livekit_with_redis(region="local") as lk:
        assert lk.livekit.api_key == "vx-admin"  # the admin key comes first in the rendered keys
        with lk.client() as client:
            synced = sync(region, agents, client, SECRETS)
        assert synced.plan.counts()["create"] == 2 * sum(1 for a in agents if a.telephony is not None)
        with SipServer(region, redis=lk.redis, livekit=lk.livekit, binary=binary) as sip:
            yield Platform(lk.redis, lk.livekit, sip)


@pytest.fixture
def agent_workers(platform: Platform, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """`agent_workers(name, inference=...)` starts the agent program `name` as a real worker against
    this platform's livekit-server, with its rendered environment (tests/agents/conftest.py's
    `launch_worker`: only LiveKit's address, the two ports and the model servers moved to
    loopback); stopped with its job processes at the end."""
    started: list[Worker] = []

    def start(name: str, inference: dict[str, str] | None = None) -> Worker:
        # launch_worker reads only the server's URL and keys from `platform` (its `.livekit`).
        w = launch_worker(name, platform, Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp_path)),  # type: ignore[arg-type]
                          inference)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()
