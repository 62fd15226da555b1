"""Routing against the real livekit-server v1.13.5 + Redis, asked as livekit-sip asks
(tools/routeprobe over the Redis bus), after `voxplane livekit sync` of each example region.

Never skipped: a server or probe that cannot start fails the test with its reason. The media path
through livekit-sip itself is the opt-in `make e2e` (tests/e2e).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
from livekit import api
from hypothesis import event, given, settings
from hypothesis import strategies as st

from voxplane.livekit.reconcile import sync
from voxplane.livekit.route import Call, Decision, RouteProbe, decide, ensure_probe_binary, expected_route
from voxplane.livekit.secrets import StaticSecrets
from voxplane.manifest.model import Agent, Region

from ..support.repo import copy_manifests
from ..support.servers import DevLiveKit, livekit_with_redis
from .conftest import TRUNK_PASSWORD, Tree

pytestmark = pytest.mark.integration

REGIONS = ("local", "us-east", "eu-west")
PIN = "4321"
SECRETS = StaticSecrets({"northwindTrunkPassword": TRUNK_PASSWORD, "bellavistaPin": PIN})
FOREIGN = "203.0.113.7"  # TEST-NET-3: in no allow-list
#: Numbers the example manifests declare in any region, so each region also sees the others'.
ALL_NUMBERS = ("+13125550142", "+13125550143", "+442079460123", "+16175550188")


@dataclass
class Routed(DevLiveKit):
    """A region synced onto its own livekit-server + Redis, and a probe on that Redis."""

    region: Region
    agents: tuple[Agent, ...]
    probe: RouteProbe

    def sync(self, tree: Tree) -> None:
        self.region, self.agents = tree.project(self.region.name)
        with self.client() as c:
            sync(self.region, self.agents, c, SECRETS)

    def route(self, to: str, address: str, caller: str = "+15550100199", **kw: Any) -> Decision:
        host = self.region.sip.public_host if self.region.sip else "localhost"
        return decide(self.probe, Call(to=to, from_=caller, address=address, to_host=host), **kw)


def start(tree: Tree, region: str) -> Iterator[Routed]:
    reg, agents = tree.project(region)
    with livekit_with_redis(region=region) as lk, RouteProbe(lk.redis.address) as probe:
        routed = Routed(lk.redis, lk.livekit, reg, agents, probe)
        routed.sync(tree)
        yield routed


@pytest.fixture(scope="module", params=REGIONS)
def synced(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routed]:
    """Each example region as the repository declares it (read only: tests must not edit it)."""
    tree = Tree(copy_manifests(tmp_path_factory.mktemp("repo")))
    yield from start(tree, request.param)


@pytest.fixture
def local(tree: Tree) -> Iterator[Routed]:
    """The local region on a fresh server, for tests that edit the manifests and sync again."""
    yield from start(tree, "local")


def hosts(cidr: str) -> list[str]:
    """First and last usable address of an allow-list entry."""
    net = ipaddress.ip_network(cidr, strict=False)
    if net.num_addresses <= 2:
        return [str(net.network_address)]
    return sorted({str(net.network_address + 1), str(net.broadcast_address - 1)})


def creds(agent: Agent) -> dict[str, str]:
    tel = agent.telephony
    assert tel is not None
    return {"username": tel.auth.username, "password": TRUNK_PASSWORD} if tel.auth else {}


def allowed_of(routed: Routed, agent: Agent) -> tuple[str, ...]:
    tel = agent.telephony
    assert tel is not None and routed.region.sip is not None
    return tel.allowed_addresses or routed.region.sip.carrier_addresses


def telephony_agents(routed: Routed) -> list[Agent]:
    return [a for a in routed.agents if a.telephony is not None]


def assert_room_of(d: Decision, agent: Agent) -> None:
    """The room LiveKit names from the prefix: `<prefix>_...`, one separator, never doubled."""
    tel = agent.telephony
    assert tel is not None and d.room is not None
    prefix = tel.dispatch.room_prefix
    assert prefix[-1:] not in ("-", "_")
    assert d.room.startswith(f"{prefix}_") and not d.room.startswith(f"{prefix}__"), d.room


# --- every declared number, every allowed address ------------------------------------------------


def test_every_declared_number_routes_to_its_own_agent_from_each_allowed_address(synced: Routed) -> None:
    seen = 0
    for agent in telephony_agents(synced):
        tel = agent.telephony
        assert tel is not None
        for number in tel.numbers:
            for cidr in allowed_of(synced, agent):
                for address in hosts(cidr):
                    d = synced.route(number, address, **creds(agent))
                    assert d.accepted, d.reason
                    assert d.agents == [agent.scoped_name]
                    assert d.trunk is not None and d.trunk["name"] == f"vx-{agent.tenant}-{agent.name}"
                    assert d.rule is not None
                    assert (d.rule["tenant"], d.rule["agent"], d.rule["region"]) == (agent.tenant, agent.name, synced.region.name)
                    assert_room_of(d, agent)
                    seen += 1
    assert seen >= 2


def test_foreign_addresses_and_unknown_numbers_are_refused_as_the_server_refuses_them(synced: Routed) -> None:
    """No trunk (auth answers `{}`), dispatch DROP: livekit-sip answers 404."""
    declared = {n for a in telephony_agents(synced) for n in a.telephony.numbers}  # type: ignore[union-attr]
    carrier = hosts(synced.region.sip.carrier_addresses[0])[0]  # type: ignore[union-attr]
    cases = [(n, FOREIGN) for n in sorted(declared)] + [("+19995550100", carrier)]
    # Another region's number from this region's carriers is unknown here too.
    cases += [(n, carrier) for n in ALL_NUMBERS if n not in declared]
    for number, address in cases:
        d = synced.route(number, address)
        assert not d.accepted and d.bridge == "404", (number, address, d.reason)
        assert d.trunk is None and d.room is None
        assert d.server["auth"] == {}
        assert d.server["dispatch"] == [{"result": "DROP"}]


def test_digest_credentials_are_the_bridges_check_not_the_servers(synced: Routed) -> None:
    """The server answers alike for right, wrong and no credentials (it returns the trunk's
    username and password to the bridge); only the bridge's check differs."""
    agents = [a for a in telephony_agents(synced) if a.telephony and a.telephony.auth]
    if synced.region.name == "eu-west":
        assert agents == []  # no trunk there demands credentials
        return
    (agent,) = agents
    number = agent.telephony.numbers[0]  # type: ignore[union-attr]
    address = hosts(allowed_of(synced, agent)[0])[0]
    right = synced.route(number, address, **creds(agent))
    wrong = synced.route(number, address, username="northwind-trunk", password="guess")
    none = synced.route(number, address)
    assert right.accepted and not wrong.accepted and not none.accepted
    assert (right.credentials["given"], wrong.credentials["given"], none.credentials["given"]) == ("match", "mismatch", "none")
    assert wrong.bridge == none.bridge == "digest-challenge"
    for d in (right, wrong, none):
        assert d.server["auth"]["username"] == "northwind-trunk"
        assert d.server["auth"]["password"] == "<redacted>"
        assert d.server["dispatch"][0]["result"] == "ACCEPT"
        assert d.agents == [agent.scoped_name]


# --- no call reaches another tenant -------------------------------------------------------------

caller_numbers = st.from_regex(r"\A\+[1-9][0-9]{7,13}\Z")
called_numbers = st.one_of(
    st.sampled_from(ALL_NUMBERS),
    st.sampled_from(ALL_NUMBERS).map(lambda n: n.lstrip("+")),  # LiveKit matches without "+"
    caller_numbers,
)
#: The example regions' carrier addresses (first and last host of each entry).
carrier_hosts = ("127.0.0.1", "192.76.120.10", "64.16.250.10", "185.246.41.1", "185.246.41.254")
addresses = st.one_of(st.sampled_from(carrier_hosts), st.ip_addresses(v=4).map(str))


@settings(max_examples=120, deadline=None)
@given(to=called_numbers, address=addresses, caller=caller_numbers)
def test_no_invite_dispatches_to_an_agent_of_another_tenant(synced: Routed, to: str, address: str, caller: str) -> None:
    """For any called number and source address, the server's dispatch answer is exactly what
    the manifests declare: the owning agent (its tenant's, and only it) when the trunk admits
    the address, else DROP."""
    d = synced.route(to, address, caller)
    exp = expected_route(synced.region, synced.agents, to, address)
    answer = d.server["dispatch"][-1]
    event(f"dispatch {answer.get('result')}")
    if answer.get("result") == "ACCEPT":
        assert exp is not None and exp.admits_address, (to, address, answer)
        assert d.agents == [exp.agent_name]
        attrs = answer["participant_attributes"]
        assert attrs["voxplane.io/tenant"] == exp.tenant and attrs["voxplane.io/agent"] == exp.agent
        tenants = {a.tenant for a in synced.agents if a.scoped_name in d.agents}
        assert tenants == {exp.tenant}
    else:
        assert answer == {"result": "DROP"}
        assert exp is None or not exp.admits_address, (to, address, exp)


# --- rooms per call -------------------------------------------------------------------------------


def concurrent_rooms(routed: Routed, number: str, address: str, callers: tuple[str, str]) -> list[str]:
    """Two INVITEs to one number at once; the dispatch rooms the server gives them."""
    host = routed.region.sip.public_host  # type: ignore[union-attr]
    answers = routed.probe.ask_many([("dispatch", Call(to=number, from_=c, address=address, to_host=host), {})
                                     for c in callers])
    assert all(a.ok and a.response.get("result") == "ACCEPT" for a in answers), answers
    return [str(a.response["room_name"]) for a in answers]


def test_concurrent_callers_to_one_number_never_share_a_room(synced: Routed) -> None:
    """Without `shared_room: true` every call gets its own room: individual rules by LiveKit's
    random suffix, callee rules (the scheduler) by `randomize`; also the same caller twice."""
    for agent in telephony_agents(synced):
        tel = agent.telephony
        assert tel is not None and not tel.dispatch.shared_room
        address = hosts(allowed_of(synced, agent)[0])[0]
        for number in tel.numbers:
            for callers in (("+15550100001", "+15550100002"), ("+15550100003", "+15550100003")):
                a, b = concurrent_rooms(synced, number, address, callers)
                assert a != b, (agent.name, number, callers, a)


def test_shared_room_is_shared_only_when_the_manifest_asks(local: Routed, tree: Tree) -> None:
    """callee + `shared_room: true`: one room per number (`<prefix>_<number>`); direct (which
    requires `shared_room: true`): everyone in `room_name`."""
    tree.edit("agents/scheduler.yaml", "    room_prefix: nw-sched\n", "    room_prefix: nw-sched\n    shared_room: true\n")
    tree.edit("agents/reservations.yaml", "    kind: individual\n    room_prefix: bv-call\n",
              "    kind: direct\n    room_name: bv-lobby\n    shared_room: true\n")
    local.sync(tree)
    sched = concurrent_rooms(local, "+442079460123", "127.0.0.1", ("+15550100001", "+15550100002"))
    assert sched == ["nw-sched_+442079460123"] * 2
    lobby = concurrent_rooms(local, "+13125550142", "127.0.0.1", ("+15550100001", "+15550100002"))
    assert lobby == ["bv-lobby"] * 2
    # Support stays individual: still a room per call.
    a, b = concurrent_rooms(local, "+16175550188", "192.76.120.10", ("+15550100001", "+15550100002"))
    assert a != b


# --- PINs -----------------------------------------------------------------------------------------


def test_wrong_or_missing_pin_is_refused_as_the_server_refuses_it(local: Routed, tree: Tree) -> None:
    tree.edit("agents/reservations.yaml", "    room_prefix: bv-call\n",
              "    room_prefix: bv-call\n    pin: { config: bellavistaPin }\n")
    local.sync(tree)
    asked = local.route("+13125550142", "127.0.0.1")
    assert not asked.accepted and asked.bridge == "pin-prompt" and asked.pin["required"]
    assert asked.server["dispatch"][0]["result"] == "REQUEST_PIN"
    right = local.route("+13125550142", "127.0.0.1", pin=PIN)
    assert right.accepted and right.agents == ["bellavista-reservations"]
    assert [a["result"] for a in right.server["dispatch"]] == ["REQUEST_PIN", "ACCEPT"]
    wrong = local.route("+13125550142", "127.0.0.1", pin="9999")
    assert not wrong.accepted and wrong.bridge == "drop" and wrong.room is None
    assert [a.get("result") for a in wrong.server["dispatch"]] == ["REQUEST_PIN", "DROP"]
    # A PIN-less rule is unaffected by a PIN the caller did not need to enter.
    other = local.route("+442079460123", "127.0.0.1", pin="9999")
    assert other.accepted and other.notes


# --- routing follows the manifests ----------------------------------------------------------------


def test_routing_follows_a_moved_number_and_a_removed_address(local: Routed, tree: Tree) -> None:
    before = local.route("+13125550143", "127.0.0.1")
    assert before.agents == ["bellavista-reservations"]
    assert local.route("+16175550188", "64.16.250.10", **{"username": "northwind-trunk", "password": TRUNK_PASSWORD}).accepted

    tree.edit("agents/reservations.yaml", '["+13125550142", "+13125550143"]', '["+13125550142"]')
    tree.edit("agents/scheduler.yaml", '["+442079460123"]', '["+442079460123", "+13125550143"]')
    tree.edit("agents/support.yaml", "[192.76.120.10/32, 64.16.250.10/32]", "[192.76.120.10/32]")
    local.sync(tree)

    moved = local.route("+13125550143", "127.0.0.1")
    assert moved.accepted and moved.agents == ["northwind-scheduler"]
    assert moved.rule is not None and moved.rule["tenant"] == "northwind"
    assert moved.room is not None and moved.room.startswith("nw-sched_+13125550143_")
    assert local.route("+13125550142", "127.0.0.1").agents == ["bellavista-reservations"]
    removed = local.route("+16175550188", "64.16.250.10", username="northwind-trunk", password=TRUNK_PASSWORD)
    assert not removed.accepted and removed.bridge == "404"
    kept = local.route("+16175550188", "192.76.120.10", username="northwind-trunk", password=TRUNK_PASSWORD)
    assert kept.accepted and kept.agents == ["northwind-support"]


def test_nothing_is_written_by_routing(synced: Routed) -> None:
    """Both questions are read-only: after many of them, no room exists and no object changed."""
    with synced.client() as c:
        before = sorted(x.SerializeToString(deterministic=True) for x in [*c.list_trunks(), *c.list_rules()])
    number = next(iter(telephony_agents(synced)[0].telephony.numbers))  # type: ignore[union-attr]
    for _ in range(20):
        synced.route(number, "127.0.0.1")
    with synced.client() as c:
        after = sorted(x.SerializeToString(deterministic=True) for x in [*c.list_trunks(), *c.list_rules()])
        rooms = c.call("ListRooms", lambda lk: lk.room.list_rooms(api.ListRoomsRequest()))
    assert before == after
    assert list(rooms.rooms) == []


# --- the command ----------------------------------------------------------------------------------


def test_route_command_json_and_exit_codes(local: Routed, cli: Callable[..., Any], tree: Tree) -> None:
    env = {"VOXPLANE_LIVEKIT_REDIS": local.probe.redis}
    root = str(tree.root)
    ok = cli("livekit", "route", "local", "--to", "+13125550142", "--format", "json", "--root", root, env=env)
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.stdout)
    assert data["accepted"] is True and data["agents"] == ["bellavista-reservations"]
    assert data["room"].startswith("bv-call_+15550100199_")
    assert data["trunk"]["name"] == "vx-bellavista-reservations" and data["rule"]["tenant"] == "bellavista"
    assert data["bridge"]["action"] == "join" and "livekit-sip" in data["bridge"]["source"]
    assert "livekit-server" in data["server"]["source"] and data["declared"]["agent"] == "reservations"
    for key in ("accepted", "reason", "trunk", "rule", "room", "agents"):
        assert key in data

    refused = cli("livekit", "route", "local", "--to", "+16175550188", "--root", root, env=env)
    assert refused.exit_code == 2 and refused.stdout.startswith("REFUSED: no trunk admits"), refused.output
    digest = cli("livekit", "route", "local", "--to", "+16175550188", "--address", "192.76.120.10", "--root", root, env=env)
    assert digest.exit_code == 2 and "demands digest credentials (user 'northwind-trunk')" in digest.stdout
    assert "checked by livekit-sip, not the server" in digest.stdout
    assert TRUNK_PASSWORD not in digest.stdout
    good = cli("livekit", "route", "local", "--to", "+16175550188", "--address", "192.76.120.10", "--username",
               "northwind-trunk", "--password", TRUNK_PASSWORD, "--format", "json", "--root", root, env=env)
    assert good.exit_code == 0 and TRUNK_PASSWORD not in good.stdout
    assert json.loads(good.stdout)["credentials"] == {"required": True, "username": "northwind-trunk", "given": "match"}

    port = cli("livekit", "route", "local", "--to", "+13125550142", "--address", "127.0.0.1:5060", "--root", root, env=env)
    assert port.exit_code == 1 and port.stderr.strip().splitlines() == [
        "error: --address '127.0.0.1:5060': not an IP address (livekit-sip sends the packet's source IP, without port)"]


def test_route_command_without_redis_is_one_line(cli: Callable[..., Any], tree: Tree, tmp_path: Path) -> None:
    env = {"VOXPLANE_LIVEKIT_REDIS": None, "VOXPLANE_CACHE": str(tmp_path)}  # no dev servers recorded there
    r = cli("livekit", "route", "local", "--to", "+13125550142", "--root", str(tree.root), env=env)
    assert r.exit_code == 1
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: no Redis address for livekit-server: pass --redis HOST:PORT")


def test_route_command_with_unreachable_redis_is_one_line(cli: Callable[..., Any], tree: Tree) -> None:
    from voxplane.dev.ports import free_port

    env = {"VOXPLANE_LIVEKIT_REDIS": f"127.0.0.1:{free_port()}"}
    r = cli("livekit", "route", "local", "--to", "+13125550142", "--root", str(tree.root), env=env)
    assert r.exit_code == 1
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: route probe failed to start: cannot reach Redis at 127.0.0.1:"), line


def test_route_command_finds_the_redis_of_the_running_dev_servers(local: Routed, cli: Callable[..., Any], tree: Tree,
                                                                  tmp_path: Path) -> None:
    """Without --redis or VOXPLANE_LIVEKIT_REDIS, the Redis recorded by `make livekit-up`
    (`voxplane dev servers`' state file) is used, but only while both recorded servers run: the same
    processes, by pid and create time, so a pid handed to another process since is not taken for them."""
    assert local.redis.record is not None and local.livekit.record is not None
    state = {"redis": {**local.redis.record.as_json(), "address": local.redis.address},
             "livekit": {**local.livekit.record.as_json(), "binary": "livekit-server"}}
    (tmp_path / "devservers.json").write_text(json.dumps(state))
    env = {"VOXPLANE_LIVEKIT_REDIS": None, "VOXPLANE_CACHE": str(tmp_path),
           "VOXPLANE_ROUTEPROBE_BIN": str(ensure_probe_binary())}
    r = cli("livekit", "route", "local", "--to", "+442079460123", "--root", str(tree.root), env=env)
    assert r.exit_code == 0 and r.stdout.startswith("ACCEPTED: trunk vx-northwind-scheduler"), r.output
    for stale_redis in ({"pid": 2**22 + 1},  # not running
                        {"started": state["redis"]["started"] - 1}):  # running, but not the process recorded
        (tmp_path / "devservers.json").write_text(json.dumps({**state, "redis": {**state["redis"], **stale_redis}}))
        stale = cli("livekit", "route", "local", "--to", "+442079460123", "--root", str(tree.root), env=env)
        assert stale.exit_code == 1 and "no Redis address" in stale.stderr, stale_redis
