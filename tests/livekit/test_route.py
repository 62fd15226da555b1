"""`voxplane livekit route` without a server: the probe binary's provenance and failures, the
manifest side of a route, and livekit-sip's handling of answers the real server seldom gives
(errors, REJECT, the legacy result). The real server's answers: test_route_integration.py."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import pytest

from voxplane.livekit import route as rt

from ..support.repo import REPO
from .conftest import Tree

PROBE = REPO / "tools" / "routeprobe"


def test_probe_pins_livekit_server_v1_13_5_module_versions() -> None:
    """The probe speaks livekit-server v1.13.5's wire format: its go.mod pins the same protocol,
    psrpc and go-redis versions as that release's go.mod, and go.sum is committed."""
    requires = dict(re.findall(r"^\s+(\S+) (v\S+)", (PROBE / "go.mod").read_text(), re.M))
    assert requires["github.com/livekit/protocol"] == "v1.50.5-0.20260728075222-28e604c046c6"
    assert requires["github.com/livekit/psrpc"] == "v0.7.2"
    assert requires["github.com/redis/go-redis/v9"] == "v9.21.0"
    sums = (PROBE / "go.sum").read_text()
    for module, version in requires.items():
        assert f"{module} {version}/go.mod h1:" in sums, module


def test_missing_explicit_probe_binary_fails_with_the_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(rt.PROBE_BIN_ENV, str(tmp_path / "nope"))
    with pytest.raises(rt.RouteError, match="VOXPLANE_ROUTEPROBE_BIN=.*nope: not an executable file"):
        rt.ensure_probe_binary()


def test_probe_that_cannot_be_built_fails_with_the_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No cached binary and no Go: the build script's one-line reason reaches the caller (a test
    that needs the probe fails with it; nothing is skipped)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "cat", "sha256sum", "cut", "dirname", "mkdir", "mktemp", "rm", "mv", "flock", "basename"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    monkeypatch.delenv(rt.PROBE_BIN_ENV, raising=False)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("VOXPLANE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(rt.RouteError, match="go not found on PATH; needed to build tools/routeprobe"):
        rt.ensure_probe_binary()


def test_source_address_must_be_an_ip_without_port() -> None:
    assert rt.check_address("192.76.120.10") == "192.76.120.10"
    with pytest.raises(rt.RouteError, match="without port"):
        rt.check_address("127.0.0.1:5060")
    with pytest.raises(rt.RouteError, match="not an IP address"):
        rt.check_address("carrier.example.com")


def test_redis_address_comes_from_option_env_or_running_dev_servers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VOXPLANE_CACHE", str(tmp_path))  # no dev servers recorded here
    monkeypatch.delenv(rt.REDIS_ENV, raising=False)
    assert rt.redis_address("10.0.0.5:6379") == ("10.0.0.5:6379", "--redis")
    with pytest.raises(rt.RouteError, match="no Redis address.*--redis HOST:PORT.*VOXPLANE_LIVEKIT_REDIS.*livekit-up"):
        rt.redis_address(None)
    monkeypatch.setenv(rt.REDIS_ENV, "127.0.0.1:7000")
    assert rt.redis_address(None) == ("127.0.0.1:7000", rt.REDIS_ENV)


def test_expected_route_follows_numbers_and_allow_lists(tree: Tree) -> None:
    region, agents = tree.project("local")
    res = rt.expected_route(region, agents, "+13125550143", "127.0.0.1")
    assert res is not None and (res.tenant, res.agent_name, res.admits_address) == ("bellavista", "bellavista-reservations", True)
    # LiveKit normalises numbers: no "+" still matches.
    assert rt.expected_route(region, agents, "13125550143", "127.0.0.1") == res
    support = rt.expected_route(region, agents, "+16175550188", "127.0.0.1")
    assert support is not None and not support.admits_address and support.needs_digest
    assert rt.expected_route(region, agents, "+16175550188", "64.16.250.10") is not None
    assert rt.expected_route(region, agents, "+19995550100", "127.0.0.1") is None
    assert rt.default_address(region) == "127.0.0.1"
    us_east, _ = tree.project("us-east")
    assert rt.default_address(us_east) == "192.76.120.10"


class Recorded(rt.RouteProbe):
    """Answers from a script instead of a server: only for answers the real server does not
    give on demand (its errors, REJECT, the legacy result)."""

    def __init__(self, auth: rt.Answer, dispatch: Sequence[rt.Answer]):
        super().__init__("unused:0")
        self.auth = auth
        self.dispatch = list(dispatch)
        self.asked: list[tuple[str, Mapping[str, Any]]] = []

    def ask_many(self, requests: Sequence[tuple[str, rt.Call, Mapping[str, Any]]]) -> list[rt.Answer]:
        out = []
        for method, _, extra in requests:
            self.asked.append((method, dict(extra)))
            out.append(self.auth if method == "auth" else self.dispatch.pop(0))
        return out


TRUNK = rt.Answer(True, 1.0, {"sip_trunk_id": "ST_1", "provider_info": {"name": "vx-t-a"}})
ACCEPT = rt.Answer(True, 1.0, {"result": "ACCEPT", "room_name": "r_+1_x", "sip_dispatch_rule_id": "SDR_1",
                               "room_config": {"agents": [{"agent_name": "t-a"}]}})


@pytest.mark.parametrize("auth,dispatch,bridge", [
    (rt.Answer(False, 1.0, error="no response from servers", code="unavailable"), [ACCEPT], "503"),
    (rt.Answer(True, 1.0, {"drop": True}), [ACCEPT], "drop"),
    (rt.Answer(True, 1.0, {}), [rt.Answer(True, 1.0, {"result": "DROP"})], "404"),
    (TRUNK, [rt.Answer(False, 1.0, error="boom", code="internal")], "503"),
    (TRUNK, [rt.Answer(True, 1.0, {"result": "REJECT"})], "404"),
    (TRUNK, [rt.Answer(True, 1.0, {"result": "DROP"})], "drop"),
    (TRUNK, [rt.Answer(True, 1.0, {"request_pin": True, "sip_dispatch_rule_id": "SDR_1"})], "pin-prompt"),
    (TRUNK, [rt.Answer(True, 1.0, {k: v for k, v in ACCEPT.response.items() if k != "result"})], "join"),
])
def test_bridge_handling_of_each_answer(auth: rt.Answer, dispatch: list[rt.Answer], bridge: str) -> None:
    """livekit-sip's documented handling: auth error 503, drop, no trunk 404; dispatch error
    503, REJECT 404, DROP silent, REQUEST_PIN prompts, ACCEPT (also the legacy 0) joins."""
    d = rt.decide(Recorded(auth, dispatch), rt.Call(to="+15550100001"))
    assert d.bridge == bridge
    assert d.accepted is (bridge == "join")
    assert d.reason


def test_pin_is_sent_only_after_the_server_asks_for_it() -> None:
    prompt = rt.Answer(True, 1.0, {"result": "REQUEST_PIN", "request_pin": True, "sip_dispatch_rule_id": "SDR_1"})
    probe = Recorded(TRUNK, [prompt, ACCEPT])
    d = rt.decide(probe, rt.Call(to="+15550100001"), pin="1234")
    assert d.accepted and d.pin == {"required": True, "given": True}
    assert [extra.get("pin", "") for m, extra in probe.asked if m == "dispatch"] == ["", "1234"]
    assert [extra.get("trunk_id") for m, extra in probe.asked if m == "dispatch"] == ["ST_1", "ST_1"]


def test_trunk_password_never_appears_in_the_output() -> None:
    auth = rt.Answer(True, 1.0, {"sip_trunk_id": "ST_1", "username": "u", "password": "s3cret-trunk-pw"})
    for given in ({}, {"username": "u", "password": "wrong"}, {"username": "u", "password": "s3cret-trunk-pw"}):
        d = rt.decide(Recorded(auth, [ACCEPT]), rt.Call(to="+15550100001"), **given)
        assert "s3cret-trunk-pw" not in repr(d.as_dict()) + "\n".join(rt.text_lines(d, "x"))
    assert d.accepted and d.credentials == {"required": True, "username": "u", "given": "match"}


def test_probe_binary_env_is_honoured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "routeprobe"
    fake.write_text("#!/bin/sh\n")
    os.chmod(fake, 0o755)
    monkeypatch.setenv(rt.PROBE_BIN_ENV, str(fake))
    assert rt.ensure_probe_binary() == fake
