"""sync and drift against a real livekit-server v1.13.5 + Redis started by each test.

Never skipped: a server that cannot start fails the test with its log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from livekit import api

from voxplane.livekit.client import LiveKitAdmin, LiveKitError
from voxplane.livekit.desired import parse_owner
from voxplane.drift.livekit import detect, to_dict
from voxplane.livekit.reconcile import ApplyFailed, read_live, sync
from voxplane.livekit.secrets import StaticSecrets

from ..support.repo import REPO
from ..support.servers import DevLiveKit
from .conftest import TRUNK_PASSWORD, Tree, generated_tree

pytestmark = pytest.mark.integration

SECRETS = StaticSecrets({"northwindTrunkPassword": TRUNK_PASSWORD})


def state(livekit_local: DevLiveKit) -> dict[str, Any]:
    """Everything on the server, by name and kind, as plain data (IDs included)."""
    with livekit_local.client() as c:
        trunks = {t.name: t for t in c.list_trunks()}
        rules = {r.name: r for r in c.list_rules()}
    return {"trunks": trunks, "rules": rules}


def snapshot(livekit_local: DevLiveKit) -> list[str]:
    """A byte-exact picture of the server's objects, to prove nothing changed."""
    with livekit_local.client() as c:
        return sorted(t.SerializeToString(deterministic=True).hex() for t in c.list_trunks()) + sorted(
            r.SerializeToString(deterministic=True).hex() for r in c.list_rules())


def do_sync(tree: Tree, livekit_local: DevLiveKit, region: str = "local") -> Any:
    reg, agents = tree.project(region)
    with livekit_local.client() as c:
        result = sync(reg, agents, c, SECRETS)
        result.calls = dict(c.calls)  # type: ignore[attr-defined]
    return result


def test_sync_from_empty_creates_trunk_and_rule_per_agent(tree: Tree, livekit_local: DevLiveKit) -> None:
    """An empty server gets one trunk and one rule per telephony agent, each rule on its own trunk."""
    result = do_sync(tree, livekit_local)
    assert result.plan.counts() == {"create": 6, "update": 0, "delete": 0}
    s = state(livekit_local)
    assert sorted(s["trunks"]) == sorted(s["rules"]) == [
        "vx-bellavista-reservations", "vx-northwind-scheduler", "vx-northwind-support"]
    support = s["trunks"]["vx-northwind-support"]
    assert list(support.numbers) == ["+16175550188"]
    assert list(support.allowed_addresses) == ["192.76.120.10/32", "64.16.250.10/32"]
    assert (support.auth_username, support.auth_password) == ("northwind-trunk", TRUNK_PASSWORD)
    assert s["trunks"]["vx-bellavista-reservations"].krisp_enabled is False  # refused on self-hosted SIP
    for name, rule in s["rules"].items():
        assert list(rule.trunk_ids) == [s["trunks"][name].sip_trunk_id]
        assert [a.agent_name for a in rule.room_config.agents] == [name.removeprefix("vx-")]
        assert json.loads(rule.metadata)["managed-by"] == "voxplane"
        assert rule.attributes["voxplane.io/agent"] in name
    assert s["rules"]["vx-northwind-scheduler"].rule.dispatch_rule_callee.room_prefix == "nw-sched"


def test_second_sync_is_a_no_op_with_two_reads_and_no_writes(tree: Tree, livekit_local: DevLiveKit) -> None:
    """Sync converges: the next run plans nothing and only lists (one call per kind)."""
    do_sync(tree, livekit_local)
    before = snapshot(livekit_local)
    again = do_sync(tree, livekit_local)
    assert again.plan.steps == [] and again.applied == []
    assert again.calls == {"ListSIPInboundTrunk": 1, "ListSIPDispatchRule": 1}
    assert snapshot(livekit_local) == before


def test_manifest_edit_updates_in_place_keeping_ids(tree: Tree, livekit_local: DevLiveKit) -> None:
    """Changed number, room prefix and allowed addresses are replaced in place; IDs stay."""
    do_sync(tree, livekit_local)
    before = state(livekit_local)
    tree.edit("agents/support.yaml", '"+16175550188"', '"+16175550199"')
    tree.edit("agents/support.yaml", "room_prefix: nw-support", "room_prefix: nw-help")
    tree.edit("agents/support.yaml", "[192.76.120.10/32, 64.16.250.10/32]", "[192.76.120.11/32]")
    result = do_sync(tree, livekit_local)
    assert [(s.action, s.kind) for s in result.plan.steps] == [("update", "SIPInboundTrunk"), ("update", "SIPDispatchRule")]
    assert {c.field for c in result.plan.steps[0].changes} == {"numbers", "allowed_addresses"}
    after = state(livekit_local)
    t, r = after["trunks"]["vx-northwind-support"], after["rules"]["vx-northwind-support"]
    assert t.sip_trunk_id == before["trunks"]["vx-northwind-support"].sip_trunk_id
    assert r.sip_dispatch_rule_id == before["rules"]["vx-northwind-support"].sip_dispatch_rule_id
    assert list(t.numbers) == ["+16175550199"] and list(t.allowed_addresses) == ["192.76.120.11/32"]
    assert r.rule.dispatch_rule_individual.room_prefix == "nw-help"
    assert t.auth_password == TRUNK_PASSWORD  # a replace writes the whole object, secrets included


def test_removed_agent_deletes_only_its_objects(tree: Tree, livekit_local: DevLiveKit) -> None:
    """Removing a manifest deletes exactly that agent's trunk and rule; the rest keep their IDs."""
    do_sync(tree, livekit_local)
    with livekit_local.client() as c:
        c.create_trunk(api.SIPInboundTrunkInfo(name="hand-made", numbers=["+19995550000"]))
    before = state(livekit_local)
    tree.remove("agents/scheduler.yaml")
    result = do_sync(tree, livekit_local)
    assert [(s.action, s.kind, s.name) for s in result.plan.steps] == [
        ("delete", "SIPInboundTrunk", "vx-northwind-scheduler"), ("delete", "SIPDispatchRule", "vx-northwind-scheduler")]
    after = state(livekit_local)
    assert sorted(after["trunks"]) == ["hand-made", "vx-bellavista-reservations", "vx-northwind-support"]
    assert sorted(after["rules"]) == ["vx-bellavista-reservations", "vx-northwind-support"]
    for kind in ("trunks", "rules"):
        for name, obj in after[kind].items():
            assert obj.SerializeToString(deterministic=True) == before[kind][name].SerializeToString(deterministic=True)


def test_out_of_band_changes_are_drift_then_sync_repairs_owned_only(tree: Tree, livekit_local: DevLiveKit) -> None:
    """Modified rule, deleted trunk, added unowned trunk: drift names each owner file; sync fixes ours."""
    do_sync(tree, livekit_local)
    s = state(livekit_local)
    with livekit_local.client() as c:
        r = s["rules"]["vx-northwind-support"]
        r.rule.dispatch_rule_individual.room_prefix = "hijacked-"
        c.update_rule(r.sip_dispatch_rule_id, r)
        c.delete_trunk(s["trunks"]["vx-bellavista-reservations"].sip_trunk_id)
        c.create_trunk(api.SIPInboundTrunkInfo(name="hand-made", numbers=["+19995550000"]))
    reg, agents = tree.project()
    with livekit_local.client() as c:
        report = to_dict(detect(reg, agents, c, SECRETS))
    assert report["drift"] is True
    changed = {(x["name"], x["field"]): x for x in report["changed"]}
    prefix = changed[("vx-northwind-support", "room_prefix")]
    assert (prefix["declared"], prefix["live"]) == ("nw-support", "hijacked-")
    assert prefix["source"]["file"] == "agents/support.yaml" and prefix["source"]["field"] == "telephony.dispatch.room_prefix"
    lines = (tree.root / "agents/support.yaml").read_text().splitlines()
    assert "nw-support" in lines[prefix["source"]["line"] - 1]
    # The rule whose trunk vanished points at a dead ID.
    assert ("vx-bellavista-reservations", "trunk_ids") in changed
    assert [(m["kind"], m["name"], m["source"]["file"]) for m in report["missing"]] == [
        ("SIPInboundTrunk", "vx-bellavista-reservations", "agents/reservations.yaml")]
    assert [(u["name"], u["reason"]) for u in report["unowned"]] == [("hand-made", "no voxplane ownership in metadata")]

    result = do_sync(tree, livekit_local)
    assert result.plan.counts() == {"create": 1, "update": 2, "delete": 0}
    after = state(livekit_local)
    assert after["rules"]["vx-northwind-support"].rule.dispatch_rule_individual.room_prefix == "nw-support"
    assert list(after["rules"]["vx-bellavista-reservations"].trunk_ids) == [after["trunks"]["vx-bellavista-reservations"].sip_trunk_id]
    assert after["trunks"]["hand-made"].SerializeToString() == s["trunks"].get("hand-made", after["trunks"]["hand-made"]).SerializeToString()
    with livekit_local.client() as c:
        clean = detect(reg, agents, c, SECRETS)
    assert not clean.drift and [u.name for u in clean.unowned] == ["hand-made"]


def test_two_tenants_moving_and_swapping_numbers_pass_server_conflict_checks(tree: Tree, livekit_local: DevLiveKit) -> None:
    """A number moving across tenants, and two numbers swapping, apply without conflicts; every
    rule keeps routing only its own trunk to its own tenant's agent."""
    do_sync(tree, livekit_local)
    # Move: reservations (bellavista) gives +13125550143 to support (northwind).
    tree.edit("agents/reservations.yaml", '["+13125550142", "+13125550143"]', '["+13125550142"]')
    tree.edit("agents/support.yaml", '["+16175550188"]', '["+16175550188", "+13125550143"]')
    moved = do_sync(tree, livekit_local)
    assert [s.action for s in moved.plan.steps] == ["update", "update"]
    # Swap: reservations and scheduler trade their only numbers (a cycle).
    tree.edit("agents/reservations.yaml", '["+13125550142"]', '["+442079460123"]')
    tree.edit("agents/scheduler.yaml", '["+442079460123"]', '["+13125550142"]')
    swapped = do_sync(tree, livekit_local)
    assert [s.action for s in swapped.plan.steps] == ["release", "update", "update"]
    s = state(livekit_local)
    assert list(s["trunks"]["vx-bellavista-reservations"].numbers) == ["+442079460123"]
    assert list(s["trunks"]["vx-northwind-scheduler"].numbers) == ["+13125550142"]
    assert sorted(s["trunks"]["vx-northwind-support"].numbers) == ["+13125550143", "+16175550188"]
    for name, rule in s["rules"].items():
        tenant = json.loads(rule.metadata)["tenant"]
        assert list(rule.trunk_ids) == [s["trunks"][name].sip_trunk_id]
        assert json.loads(s["trunks"][name].metadata)["tenant"] == tenant
        assert all(a.agent_name.startswith(f"{tenant}-") for a in rule.room_config.agents)
    assert do_sync(tree, livekit_local).plan.steps == []


class FailingAdmin(LiveKitAdmin):
    """Raises like an unreachable server once `fail_after` writes have been made."""

    def __init__(self, *args: Any, fail_after: int, **kw: Any):
        super().__init__(*args, **kw)
        self.fail_after = fail_after

    def call(self, method: str, fn: Callable[[Any], Any]) -> Any:
        if not method.startswith("List") and self.write_calls >= self.fail_after:
            raise LiveKitError(f"injected failure before {method}", "unavailable")
        return super().call(method, fn)


@pytest.mark.parametrize("fail_after", [1, 2, 4])
def test_interrupted_sync_converges_on_next_run(tree: Tree, livekit_local: DevLiveKit, fail_after: int) -> None:
    """A sync that dies after N writes leaves owned objects that the next run finds and completes."""
    do_sync(tree, livekit_local)
    tree.edit("agents/support.yaml", "room_prefix: nw-support", "room_prefix: nw-help")
    tree.remove("agents/scheduler.yaml")
    tree.write("agents/extra.yaml", (tree.root / "agents/reservations.yaml").read_text()
               .replace("name: reservations", "name: extra").replace('"+13125550142", "+13125550143"', '"+13125550177"')
               .replace("build: agents/reservations", "image: example/extra:1.0.0")
               .replace("max_workers: 25", "max_workers: 2"))  # within bellavista's quota beside reservations
    reg, agents = tree.project()
    with FailingAdmin(livekit_local.url, livekit_local.livekit.api_key, livekit_local.livekit.api_secret, fail_after=fail_after) as c:
        with pytest.raises(ApplyFailed) as err:
            sync(reg, agents, c, SECRETS)
    assert f"{fail_after} of 5 changes applied" in str(err.value)
    result = do_sync(tree, livekit_local)
    assert len(result.applied) == 5 - fail_after
    with livekit_local.client() as c:
        assert not detect(reg, agents, c, SECRETS).drift
        owners = [parse_owner(o.metadata)[0] for o in c.list_trunks() + c.list_rules()]
    assert len(owners) == len(set(owners)) == 6  # no duplicates


def test_sync_killed_mid_run_converges(tmp_path: Path, livekit_local: DevLiveKit) -> None:
    """SIGKILL of the sync process half way; the next run finishes without duplicates."""
    tree = generated_tree(tmp_path / "gen", 150)
    env = {**os.environ, **livekit_local.env}
    with subprocess.Popen([sys.executable, "-m", "voxplane.cli", "livekit", "sync", "local", "--root", str(tree.root)],
                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:  # plan lines first, then one line per change made
            if line.startswith("created SIPInboundTrunk vx-northwind-gen0005"):
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    with livekit_local.client() as c:
        partial = len(c.list_trunks()) + len(c.list_rules())
    assert 0 < partial < 300
    reg, agents = tree.project()
    with livekit_local.client() as c:
        result = sync(reg, agents, c, SECRETS)
        assert len(result.applied) == 300 - partial
        assert not detect(reg, agents, c, SECRETS).drift
        assert len(c.list_trunks()) == len(c.list_rules()) == 150


def test_list_calls_do_not_grow_with_object_count(tmp_path: Path, livekit_local: DevLiveKit) -> None:
    """Reading the live state is one call per kind whether 2 or 240 objects exist (server returns all)."""
    tree = generated_tree(tmp_path / "gen", 120)
    reg, agents = tree.project()
    with livekit_local.client() as c:
        sync(reg, agents, c, SECRETS)
    with livekit_local.client() as c:
        live = read_live(c)
        assert (len(live.trunks), len(live.rules)) == (120, 120)
        assert dict(c.calls) == {"ListSIPInboundTrunk": 1, "ListSIPDispatchRule": 1}


def test_unowned_number_holder_blocks_sync_before_any_write(tree: Tree, livekit_local: DevLiveKit) -> None:
    """A declared number held by a hand-made trunk: sync refuses and changes nothing."""
    with livekit_local.client() as c:
        c.create_trunk(api.SIPInboundTrunkInfo(name="hand-made", numbers=["+16175550188"]))
    before = snapshot(livekit_local)
    reg, agents = tree.project()
    from voxplane.livekit.reconcile import PlanBlocked

    with livekit_local.client() as c, pytest.raises(PlanBlocked) as err:
        sync(reg, agents, c, SECRETS)
    assert "+16175550188" in str(err.value) and "hand-made" in str(err.value)
    assert snapshot(livekit_local) == before
