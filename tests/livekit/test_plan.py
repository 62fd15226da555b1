"""make_plan: comparison and ordering, pure (live state built from protobuf objects, no server)."""

from __future__ import annotations

from livekit import api

from voxplane.livekit.commands import plan_lines
from voxplane.livekit.desired import RULE_KIND, TRUNK_KIND, DesiredRule, DesiredTrunk, Owner, ownership_metadata
from voxplane.livekit.objects import compare, live_spec, normalize_number
from voxplane.livekit.reconcile import LiveObject, LiveState, make_plan, placeholder_number
from voxplane.manifest.model import SecretRef


def trunk(agent: str, numbers: list[str], tenant: str = "acme", password: SecretRef | None = None) -> DesiredTrunk:
    return DesiredTrunk(Owner("r1", tenant, agent, "trunk"), f"vx-{tenant}-{agent}", tuple(numbers), ("10.0.0.1/32",),
                        False, "u" if password else "", password, f"agents/{agent}.yaml")


def rule(agent: str, tenant: str = "acme") -> DesiredRule:
    return DesiredRule(Owner("r1", tenant, agent, "rule"), f"vx-{tenant}-{agent}", Owner("r1", tenant, agent, "trunk"),
                       "individual", f"{tenant}-{agent}", room_prefix="c-", source=f"agents/{agent}.yaml")


def live_trunk(tid: str, d: DesiredTrunk | None = None, *, numbers: list[str] | None = None,
               metadata: str | None = None, password: str = "") -> LiveObject:
    info = api.SIPInboundTrunkInfo(
        sip_trunk_id=tid, name=d.name if d else "other", numbers=numbers if numbers is not None else list(d.numbers if d else []),
        allowed_addresses=list(d.allowed_addresses) if d else [], auth_username=d.auth_username if d else "",
        auth_password=password, metadata=metadata if metadata is not None else (d.metadata if d else ""))
    return LiveObject.of(info)


def live_rule(rid: str, d: DesiredRule, trunk_id: str) -> LiveObject:
    return LiveObject.of(api.SIPDispatchRuleInfo(
        sip_dispatch_rule_id=rid, name=d.name, metadata=d.metadata, attributes=d.attributes, trunk_ids=[trunk_id],
        rule=api.SIPDispatchRule(dispatch_rule_individual=api.SIPDispatchRuleIndividual(room_prefix=d.room_prefix)),
        room_config=api.RoomConfiguration(agents=[api.RoomAgentDispatch(agent_name=d.agent_name)])))


def steps(plan) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    return [(s.action, s.kind, s.owner.agent) for s in plan.steps]


def test_in_sync_plan_is_empty() -> None:
    """Live objects equal to the declaration: no steps."""
    ta, ra = trunk("a", ["+15550001"]), rule("a")
    live = LiveState([live_trunk("ST_a", ta)], [live_rule("SDR_a", ra, "ST_a")])
    plan = make_plan("r1", [ta, ra], live)
    assert plan.steps == [] and plan.empty
    assert sorted(plan.in_sync) == [ra.owner, ta.owner]


def test_number_moving_between_tenants_frees_before_claiming() -> None:
    """The server rejects two trunks with one number: the trunk giving it up is updated first."""
    ta, tb = trunk("a", ["+15550002"], "acme"), trunk("b", ["+15550001"], "globex")
    live = LiveState([live_trunk("ST_a", ta, numbers=["+15550001"])], [])
    plan = make_plan("r1", [ta, tb, rule("a"), rule("b", "globex")], live)
    order = steps(plan)
    assert order.index(("update", TRUNK_KIND, "a")) < order.index(("create", TRUNK_KIND, "b"))
    # Rules come after every trunk write; the new rule waits for its trunk's ID.
    assert [s[1] for s in order] == [TRUNK_KIND, TRUNK_KIND, RULE_KIND, RULE_KIND]
    assert not plan.blockers


def test_number_swap_is_broken_with_a_release_step() -> None:
    """Two trunks swapping numbers is a cycle: one first takes a placeholder, then finishes."""
    ta, tb = trunk("a", ["+15550002"]), trunk("b", ["+15550001"])
    live = LiveState([live_trunk("ST_a", ta, numbers=["+15550001"]), live_trunk("ST_b", tb, numbers=["+15550002"])], [])
    plan = make_plan("r1", [ta, tb], live)
    assert steps(plan) == [("release", TRUNK_KIND, "a"), ("update", TRUNK_KIND, "b"), ("update", TRUNK_KIND, "a")]
    assert plan.steps[0].spec is not None
    assert plan.steps[0].spec["numbers"] == [placeholder_number(ta.owner)]
    assert placeholder_number(ta.owner).startswith("+0")  # no E.164 country code starts with 0


def test_unowned_trunk_holding_a_number_blocks_the_whole_plan() -> None:
    """A number held by an object voxplane does not own is a blocker, reported with its ID."""
    ta = trunk("a", ["+15550001"])
    live = LiveState([live_trunk("ST_x", None, numbers=["+1 555-0001"], metadata="")], [])
    plan = make_plan("r1", [ta, rule("a")], live)
    assert len(plan.blockers) == 1
    assert "ST_x" in plan.blockers[0] and "+15550001" in plan.blockers[0] and "not managed by voxplane" in plan.blockers[0]
    assert not plan.empty
    assert [u.id for u in plan.unowned] == ["ST_x"]


def test_removed_agent_deletes_trunk_then_rule_and_nothing_else() -> None:
    """Only owned, undeclared objects are deleted; the trunk goes before its rule."""
    ta, ra, tb, rb = trunk("a", ["+15550001"]), rule("a"), trunk("b", ["+15550002"]), rule("b")
    foreign = live_trunk("ST_f", None, numbers=["+15559999"], metadata='{"note":"hand made"}')
    other_region = live_trunk("ST_o", None, numbers=["+15558888"],
                              metadata=ownership_metadata(Owner("r2", "acme", "b", "trunk"), "agents/b.yaml"))
    live = LiveState([live_trunk("ST_a", ta), live_trunk("ST_b", tb), foreign, other_region],
                     [live_rule("SDR_a", ra, "ST_a"), live_rule("SDR_b", rb, "ST_b")])
    plan = make_plan("r1", [ta, ra], live)
    assert [(s.action, s.id) for s in plan.steps] == [("delete", "ST_b"), ("delete", "SDR_b")]
    assert {u.id: u.reason for u in plan.unowned} == {
        "ST_f": "no voxplane ownership in metadata", "ST_o": "owned by voxplane region 'r2'"}
    assert plan.unexpected[0].reason == "agents/b.yaml no longer declares it"


def test_duplicate_owned_object_is_deleted_and_rule_keeps_its_trunk() -> None:
    """Two objects with one ownership key: the one the rule points at is kept, the other deleted."""
    ta, ra = trunk("a", ["+15550001"]), rule("a")
    live = LiveState([live_trunk("ST_1", ta, numbers=["+15550003"]), live_trunk("ST_2", ta)],
                     [live_rule("SDR_a", ra, "ST_2")])
    plan = make_plan("r1", [ta, ra], live)
    assert [(s.action, s.id) for s in plan.steps] == [("delete", "ST_1")]
    assert plan.trunk_ids[ta.owner] == "ST_2"


def test_secret_compared_but_never_shown() -> None:
    """A changed password is drift; plan lines and diffs carry placeholders, not values."""
    ref = SecretRef(config="pw")
    ta = trunk("a", ["+15550001"], password=ref)
    live = LiveState([live_trunk("ST_a", ta, password="live-secret-value")], [])
    plan = make_plan("r1", [ta], live, {ta.owner: {"auth_password": "declared-secret-value"}})
    assert [c.field for c in plan.changed[0].diffs] == ["auth_password"]
    text = "\n".join(plan_lines(plan)) + repr(plan.changed) + repr(plan.steps)
    assert "live-secret-value" not in text and "declared-secret-value" not in text
    assert "<secret config:pw>" in text and "<secret: differs>" in text
    # Same secret: no drift. Unknown secret: unchecked, not drift.
    assert make_plan("r1", [ta], live, {ta.owner: {"auth_password": "live-secret-value"}}).empty
    unknown = make_plan("r1", [ta], live, {ta.owner: {"auth_password": None}})
    assert unknown.empty and [u.field for u in unknown.unchecked] == ["auth_password"]


def test_extra_fields_set_out_of_band_are_drift() -> None:
    """A field voxplane never sets (here allowed_numbers) is reported: a replace would wipe it."""
    ta = trunk("a", ["+15550001"])
    info = api.SIPInboundTrunkInfo(sip_trunk_id="ST_a", name=ta.name, metadata=ta.metadata, numbers=["+15550001"],
                                   allowed_addresses=["10.0.0.1/32"], allowed_numbers=["+1999"])
    diffs, _ = compare(ta.spec(), live_spec(info))
    assert [(d.field, d.declared, d.live) for d in diffs] == [("allowed_numbers", "(unset)", ["+1999"])]


def test_normalize_number_matches_server() -> None:
    """Conflict keys use the server's number normalization (protocol NormalizeNumber)."""
    assert normalize_number("+1 (555) 000-1") == "+15550001"
    assert normalize_number("15550001") == "+15550001"
    assert normalize_number("sip-user") == "sip-user"
