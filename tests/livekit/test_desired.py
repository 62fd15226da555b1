"""desired_objects: pure model -> trunk + rule per telephony agent (no server)."""

from __future__ import annotations

import json

from voxplane.livekit.desired import (
    RULE_KIND,
    TRUNK_KIND,
    DesiredRule,
    DesiredTrunk,
    Owner,
    desired_objects,
    parse_owner,
)
from voxplane.manifest.model import SecretRef

from .conftest import Tree


def _by(objs: list, kind: str, agent: str):  # type: ignore[no-untyped-def]
    return next(o for o in objs if o.kind == kind and o.owner.agent == agent)


def test_one_trunk_and_one_rule_per_telephony_agent_in_region(tree: Tree) -> None:
    """Every agent with telephony in the region gets exactly a trunk and a rule; others none."""
    region, agents = tree.project("local")
    objs = desired_objects(region, agents)
    assert [(o.kind, o.name) for o in objs] == [
        (TRUNK_KIND, "vx-bellavista-reservations"), (RULE_KIND, "vx-bellavista-reservations"),
        (TRUNK_KIND, "vx-northwind-scheduler"), (RULE_KIND, "vx-northwind-scheduler"),
        (TRUNK_KIND, "vx-northwind-support"), (RULE_KIND, "vx-northwind-support"),
    ]
    us_region, us_agents = tree.project("us-east")
    # scheduler is not deployed to us-east.
    assert {o.owner.agent for o in desired_objects(us_region, us_agents)} == {"reservations", "support"}


def test_rule_routes_only_its_own_trunk_to_the_tenant_scoped_agent(tree: Tree) -> None:
    """Tenant isolation: a rule lists exactly its trunk and dispatches `<tenant>-<agent>`."""
    region, agents = tree.project()
    objs = desired_objects(region, agents)
    rule = _by(objs, RULE_KIND, "support")
    assert isinstance(rule, DesiredRule)
    assert rule.trunk == Owner("local", "northwind", "support", "trunk")
    spec = rule.spec("ST_abc")
    assert spec["trunk_ids"] == ["ST_abc"]
    assert spec["agents"] == ["northwind-support"]
    assert spec["dispatch"] == "individual" and spec["room_prefix"] == "nw-support"
    # Before the trunk exists the ID is unknown (None), never [] (which means "all trunks").
    assert rule.spec(None)["trunk_ids"] is None


def test_allowed_addresses_fall_back_to_region_carriers(tree: Tree) -> None:
    """Empty telephony.allowed_addresses means the region's sip.carrier_addresses."""
    region, agents = tree.project()
    objs = desired_objects(region, agents)
    reservations = _by(objs, TRUNK_KIND, "reservations")
    support = _by(objs, TRUNK_KIND, "support")
    assert reservations.allowed_addresses == ("127.0.0.1/32",)
    assert str(reservations.origin("allowed_addresses")).startswith("regions/local.yaml:")
    assert reservations.origin("allowed_addresses").field == "sip.carrier_addresses"
    assert support.allowed_addresses == ("192.76.120.10/32", "64.16.250.10/32")
    assert support.origin("allowed_addresses").field == "telephony.allowed_addresses"


def test_trunk_fields_krisp_auth_reference_not_value(tree: Tree) -> None:
    """krisp_enabled is false (validate refuses noise_cancellation on self-hosted SIP); the digest password
    stays a reference in the model."""
    region, agents = tree.project()
    objs = desired_objects(region, agents)
    support = _by(objs, TRUNK_KIND, "support")
    assert isinstance(support, DesiredTrunk)
    assert support.auth_username == "northwind-trunk"
    assert support.auth_password == SecretRef(config="northwindTrunkPassword")
    assert support.secret_refs() == {"auth_password": SecretRef(config="northwindTrunkPassword")}
    assert support.spec()["auth_password"] is None  # unknown until resolved, never invented
    assert support.spec({"auth_password": "pw"})["auth_password"] == "pw"
    assert _by(objs, TRUNK_KIND, "reservations").krisp_enabled is False
    assert support.krisp_enabled is False
    assert _by(objs, TRUNK_KIND, "reservations").spec()["auth_password"] == ""


def test_ownership_metadata_and_attributes(tree: Tree) -> None:
    """Metadata is JSON naming region/tenant/agent/role/source; rules also carry voxplane.io/* attributes."""
    region, agents = tree.project()
    rule = _by(desired_objects(region, agents), RULE_KIND, "scheduler")
    meta = json.loads(rule.metadata)
    assert meta == {"managed-by": "voxplane", "region": "local", "tenant": "northwind", "agent": "scheduler",
                    "role": "rule", "source": "agents/scheduler.yaml"}
    assert parse_owner(rule.metadata) == (Owner("local", "northwind", "scheduler", "rule"), "agents/scheduler.yaml")
    assert rule.attributes["voxplane.io/tenant"] == "northwind"
    assert rule.attributes["voxplane.io/managed-by"] == "voxplane"
    assert rule.dispatch == "callee"


def test_parse_owner_rejects_foreign_metadata() -> None:
    """Only metadata with managed-by voxplane and a full key counts as owned."""
    assert parse_owner("") == (None, None)
    assert parse_owner("not json") == (None, None)
    assert parse_owner('{"region":"local","tenant":"a","agent":"b","role":"trunk"}') == (None, None)
    assert parse_owner('{"managed-by":"voxplane","region":"local","tenant":"a","agent":"b","role":"x"}') == (None, None)


def test_origins_point_at_manifest_lines(tree: Tree) -> None:
    """Each property knows its manifest file:line and field (for drift messages)."""
    region, agents = tree.project()
    objs = desired_objects(region, agents)
    trunk = _by(objs, TRUNK_KIND, "support")
    lines = (tree.root / "agents/support.yaml").read_text().splitlines()
    o = trunk.origin("numbers")
    assert (o.file, o.field) == ("agents/support.yaml", "telephony.numbers")
    assert "+16175550188" in lines[o.line - 1]
    rule = _by(objs, RULE_KIND, "support")
    p = rule.origin("room_prefix")
    assert "nw-support" in lines[p.line - 1]
    # A field voxplane never sets falls back to the telephony block.
    assert rule.origin("hide_phone_number").field == "telephony"


def test_direct_dispatch_uses_room_name_and_pin_reference(tree: Tree) -> None:
    """direct: room_name, no prefix; the PIN is a reference resolved only when writing."""
    tree.edit("agents/reservations.yaml", "    kind: individual\n    room_prefix: bv-call\n",
              "    kind: direct\n    room_name: bv-lobby\n    shared_room: true\n    pin: { config: bellavistaPin }\n")
    region, agents = tree.project()
    rule = _by(desired_objects(region, agents), RULE_KIND, "reservations")
    assert isinstance(rule, DesiredRule)
    spec = rule.spec("ST_x", {"pin": "4321"})
    assert (spec["dispatch"], spec["room_name"], spec["room_prefix"], spec["pin"]) == ("direct", "bv-lobby", "", "4321")
    assert rule.secret_refs() == {"pin": SecretRef(config="bellavistaPin")}


def test_callee_rooms_are_per_call_unless_the_manifest_shares_them(tree: Tree) -> None:
    """`shared_room: false` (the default) writes callee rules with LiveKit's `randomize`; the
    field reads back from the server's object as the same spec key, never as an extra."""
    from voxplane.livekit.objects import live_spec, rule_info

    region, agents = tree.project()
    objs = desired_objects(region, agents)
    sched = _by(objs, RULE_KIND, "scheduler")
    assert isinstance(sched, DesiredRule) and (sched.dispatch, sched.randomize) == ("callee", True)
    assert sched.origin("randomize").field == "telephony.dispatch.shared_room"
    info = rule_info(sched.spec("ST_x"))
    assert info.rule.dispatch_rule_callee.randomize is True
    back = live_spec(info)
    assert back["randomize"] is True and back["extra"] == {}
    # individual rules never set it: LiveKit's random suffix is their default.
    assert not any(o.randomize for o in objs if isinstance(o, DesiredRule) and o.dispatch == "individual")

    tree.edit("agents/scheduler.yaml", "    room_prefix: nw-sched\n", "    room_prefix: nw-sched\n    shared_room: true\n")
    region, agents = tree.project()
    shared = _by(desired_objects(region, agents), RULE_KIND, "scheduler")
    assert shared.randomize is False and shared.spec("ST_x")["randomize"] is False
