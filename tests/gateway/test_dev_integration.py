"""Local use (issue #9, item 4): `voxplane dev servers up --region` starts the gateway next to the dev
server and prints VOXPLANE_LIVEKIT_TENANT_URL; `voxplane dev credentials` prints a
dev region's tenant key, which works there and not at the server. Runs in a private cache and dev
state (the livekit-server binary linked in), so a developer's own dev servers are left alone."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from livekit.protocol import room as room_pb

from voxplane.dev.livekit import ensure_livekit_binary
from voxplane.cli.dev import tenant_credentials

from ..support.repo import REPO
from ._lk import token, twirp

pytestmark = pytest.mark.integration


def _exports(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("export "):
            for pair in shlex.split(line[len("export "):]):
                key, _, value = pair.partition("=")
                out[key] = value
    return out


def test_up_runs_the_gateway_and_tenant_credentials_work_only_there(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "bin").mkdir(parents=True)
    binary = ensure_livekit_binary()
    os.symlink(binary, cache / "bin" / binary.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
    env.update(VOXPLANE_CACHE=str(cache), VOXPLANE_DEV_STATE=str(tmp_path / "dev"))

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *argv], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)

    up = run("-m", "voxplane.cli", "dev", "servers", "up", "--region", "local", "--root", str(REPO))
    try:
        assert up.returncode == 0, up.stderr
        server = _exports(up.stdout)
        assert server["VOXPLANE_LIVEKIT_TENANT_URL"].startswith("ws://127.0.0.1:")
        assert server["LIVEKIT_API_KEY"] == "vx-admin"
        assert _exports(run("-m", "voxplane.cli", "dev", "servers", "env").stdout) == server

        creds = run("-m", "voxplane.cli", "dev", "credentials", "local", "northwind")
        assert creds.returncode == 0, creds.stderr
        tenant = _exports(creds.stdout)
        assert tenant["LIVEKIT_API_KEY"] == "vxt-northwind" and len(tenant["LIVEKIT_API_SECRET"]) == 64
        tok = token(tenant["LIVEKIT_API_KEY"], tenant["LIVEKIT_API_SECRET"], video={"roomList": True})

        def http(url: str) -> str:
            return "http" + url[len("ws"):]

        gateway_status, _ = asyncio.run(twirp(http(server["VOXPLANE_LIVEKIT_TENANT_URL"]), "RoomService", "ListRooms",
                                              room_pb.ListRoomsRequest(), tok))
        server_status, _ = asyncio.run(twirp(http(server["LIVEKIT_URL"]), "RoomService", "ListRooms",
                                             room_pb.ListRoomsRequest(), tok))
        assert (gateway_status, server_status) == (200, 401)
    finally:
        down = run("-m", "voxplane.cli", "dev", "servers", "down")
        assert down.returncode == 0, down.stderr
    assert run("-m", "voxplane.cli", "dev", "servers", "env").returncode == 1


def test_credentials_refuse_a_region_that_is_not_dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXPLANE_DEV_STATE", str(tmp_path))
    result = CliRunner().invoke(tenant_credentials, ["us-east", "northwind", "--root", str(REPO)])
    assert result.exit_code == 1
    assert "region 'us-east' is not a dev region" in result.output and "LIVEKIT_API_SECRET" not in result.output
    result = CliRunner().invoke(tenant_credentials, ["local", "nobody", "--root", str(REPO)])
    assert result.exit_code == 1 and "has no tenant 'nobody'" in result.output
