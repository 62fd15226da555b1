"""Real Redis + livekit-server on loopback (voxplane.dev: `redis`, `livekit`, `voxplane dev servers`), exercised through livekit-api.

These tests never skip: if the servers cannot be built or started, they fail with the reason
(the build script's or the server's own output).
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from livekit import api

from voxplane.dev.livekit import LiveKitServer, ensure_livekit_binary, loopback_config
from voxplane.dev.process import ServerStartError
from voxplane.dev.redis import RedisServer
from voxplane.dev.region import region_config as dev_region_config

from ..support.repo import REPO
from ..support.servers import DevLiveKit

API_KEY = "vox-local"
API_SECRET = "local-only-secret-0123456789abcdefghij"  # livekit wants >= 32 characters


def region_config() -> dict[str, Any]:
    """Shaped like the livekit-server config voxplane renders for its `local` region, cluster
    addresses and all; LiveKitServer must rewrite only those."""
    return {
        "port": 7880,
        "bind_addresses": ["0.0.0.0"],
        "region": "local",
        "keys": {API_KEY: API_SECRET},
        "redis": {"address": "redis.vox-system.svc.cluster.local:6379", "password": "in-cluster"},
        "rtc": {
            "tcp_port": 7881,
            "port_range_start": 50000,
            "port_range_end": 60000,
            "use_external_ip": True,
        },
        "room": {"empty_timeout": 300, "departure_timeout": 20},
        "logging": {"level": "info"},
        "prometheus": {"port": 6789},
        "turn": {"enabled": True, "domain": "turn.local.example", "tls_port": 5349},
        "webhook": {"api_key": API_KEY, "urls": ["http://agent-recovery.vox-system.svc.cluster.local:8080/webhook"],
                    "filter_params": {"include_events": ["participant_left"]}},
    }


@pytest.fixture(scope="session")
def livekit_binary() -> Path:
    # Builds livekit-server on first use (a minute or two); raises, never skips, on failure.
    return ensure_livekit_binary()


async def _sip_trunk_round_trip(lk: LiveKitServer) -> None:
    client = api.LiveKitAPI(url=lk.http_url, api_key=lk.api_key, api_secret=lk.api_secret)
    try:
        created = await client.sip.create_inbound_trunk(
            api.CreateSIPInboundTrunkRequest(
                trunk=api.SIPInboundTrunkInfo(name="vox-test-inbound", numbers=["+15550100"])
            )
        )
        assert created.sip_trunk_id.startswith("ST_")

        listed = await client.sip.list_inbound_trunk(api.ListSIPInboundTrunkRequest())
        found = {t.sip_trunk_id: t for t in listed.items}
        assert created.sip_trunk_id in found
        assert found[created.sip_trunk_id].name == "vox-test-inbound"
        assert list(found[created.sip_trunk_id].numbers) == ["+15550100"]

        await client.sip.delete_trunk(api.DeleteSIPTrunkRequest(sip_trunk_id=created.sip_trunk_id))
        listed = await client.sip.list_inbound_trunk(api.ListSIPInboundTrunkRequest())
        assert created.sip_trunk_id not in {t.sip_trunk_id for t in listed.items}
    finally:
        await client.aclose()


@pytest.mark.integration
def test_sip_inbound_trunk_create_list_delete(redis_server: RedisServer, livekit_binary: Path) -> None:
    with LiveKitServer(region_config(), redis=redis_server, binary=livekit_binary) as lk:
        # Keys come from the config, and the written config (it holds them) is private.
        assert (lk.api_key, lk.api_secret) == (API_KEY, API_SECRET)
        assert stat.S_IMODE(os.stat(lk.config_path).st_mode) == 0o600
        assert lk.url == f"ws://127.0.0.1:{lk.port}"

        asyncio.run(_sip_trunk_round_trip(lk))

        # Prometheus was configured, so it is served too, on its own loopback port.
        assert lk.prometheus_port is not None
        metrics = f"http://127.0.0.1:{lk.prometheus_port}/metrics"
        with urllib.request.urlopen(metrics, timeout=5) as r:
            assert r.status == 200


@pytest.mark.integration
def test_sip_api_needs_redis(livekit_binary: Path) -> None:
    """Without Redis livekit-server runs single-node and refuses the SIP API."""

    async def create_trunk(lk: LiveKitServer) -> None:
        client = api.LiveKitAPI(url=lk.http_url, api_key=lk.api_key, api_secret=lk.api_secret)
        try:
            trunk = api.SIPInboundTrunkInfo(name="x", numbers=["+15550101"])
            await client.sip.create_inbound_trunk(api.CreateSIPInboundTrunkRequest(trunk=trunk))
        finally:
            await client.aclose()

    with (
        LiveKitServer(region_config(), redis=None, binary=livekit_binary) as lk,
        pytest.raises(api.TwirpError, match="redis required"),
    ):
        asyncio.run(create_trunk(lk))


@pytest.mark.integration
@pytest.mark.parametrize(
    ("change", "server_says"),
    [
        # Strict parsing: a typo in a rendered config must fail here, as it would in the cluster.
        ({"not_a_livekit_key": True}, "field not_a_livekit_key not found"),
        ({"room": {"empty_timeout": "five minutes"}}, "cannot unmarshal"),
        ({"keys": {}}, "one of key-file or keys must be provided"),
    ],
    ids=["unknown-top-level-key", "wrong-type", "no-keys"],
)
def test_bad_config_raises_with_server_message(
    redis_server: RedisServer, livekit_binary: Path, change: dict[str, Any], server_says: str
) -> None:
    config = {**region_config(), **change}
    lk = LiveKitServer(config, redis=redis_server, binary=livekit_binary)
    with pytest.raises(ServerStartError, match=server_says):
        lk.start()
    assert not lk.running


def test_loopback_config_changes_only_addresses_and_ports() -> None:
    original = region_config()
    cfg = loopback_config(
        original,
        port=1,
        rtc_tcp_port=2,
        rtc_udp_port=3,
        redis_address="127.0.0.1:4",
        prometheus_port=5,
    )
    assert cfg["port"] == 1 and cfg["bind_addresses"] == ["127.0.0.1"]
    assert cfg["rtc"] == {
        "tcp_port": 2,
        "udp_port": 3,  # the port range is gone: it would take precedence over udp_port
        "use_external_ip": False,
        "node_ip": "127.0.0.1",
        "enable_loopback_candidate": True,
        "ips": {"includes": ["127.0.0.1/8"]},
    }
    assert cfg["redis"] == {"address": "127.0.0.1:4"}
    assert cfg["prometheus"] == {"port": 5}
    assert cfg["turn"] == {"enabled": False}
    for key in ("region", "keys", "room", "logging"):
        assert cfg[key] == original[key]
    # The webhook keeps its key and events; its URL (a cluster name) is dropped, or moved to loopback.
    assert cfg["webhook"] == {**original["webhook"], "urls": []}
    assert loopback_config(original, port=1, rtc_tcp_port=2, rtc_udp_port=3, redis_address=None,
                           webhook_urls=["http://127.0.0.1:9/webhook"])["webhook"]["urls"] == ["http://127.0.0.1:9/webhook"]
    assert original == region_config()  # the input is not modified


@pytest.mark.integration
def test_cli_up_prints_exports_and_down_stops(tmp_path: Path, livekit_binary: Path) -> None:
    cache = tmp_path / "cache"
    # Reuse the build: ensure-servers.sh finds it as cached in the new cache dir.
    (cache / "bin").mkdir(parents=True)
    (cache / "bin" / livekit_binary.name).symlink_to(livekit_binary)
    config_file = tmp_path / "livekit.json"
    config_file.write_text(json.dumps(region_config()))
    env = {**os.environ, "VOXPLANE_CACHE": str(cache)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "voxplane.cli", "dev", "servers", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    up = cli("up", "--config", str(config_file))
    try:
        assert up.returncode == 0, up.stderr
        words = shlex.split(up.stdout)
        assert words[0] == "export" and len(words) == 4, up.stdout
        exported = dict(w.split("=", 1) for w in words[1:])
        assert exported["LIVEKIT_API_KEY"] == API_KEY
        assert exported["LIVEKIT_API_SECRET"] == API_SECRET
        http_url = exported["LIVEKIT_URL"].replace("ws://", "http://", 1)
        with urllib.request.urlopen(http_url + "/", timeout=5) as r:
            assert r.read() == b"OK"
        assert stat.S_IMODE(os.stat(cache / "devservers.json").st_mode) == 0o600
    finally:
        down = cli("down")
    assert down.returncode == 0, down.stderr
    assert not (cache / "devservers.json").exists()
    with pytest.raises(OSError):
        urllib.request.urlopen(http_url + "/", timeout=2)


@pytest.mark.integration
def test_the_rendered_local_region_config_runs(livekit_local: DevLiveKit) -> None:
    """`make livekit-up` runs exactly what voxplane renders for the local region (keys added, addresses
    moved to loopback): the real server accepts it and answers the SIP API with the admin key."""
    config = dev_region_config("local", REPO)
    assert config["region"] == "local" and config["rtc"]["port_range_start"] == 50000
    assert livekit_local.livekit.config["region"] == "local" and livekit_local.livekit.api_key == "vx-admin"
    asyncio.run(_sip_trunk_round_trip(livekit_local.livekit))
