"""`voxplane livekit sync` and `voxplane drift --only livekit` end to end against a real server."""

from __future__ import annotations

import json
from typing import Callable

import pytest
from click.testing import Result
from livekit import api

from ..support.servers import DevLiveKit, livekit_with_redis
from .conftest import SECRET_ENV, Tree
from .test_sync_integration import snapshot

pytestmark = pytest.mark.integration

Cli = Callable[..., Result]


def sync(cli: Cli, tree: Tree, livekit_local: DevLiveKit, *extra: str, env: dict[str, str] | None = None) -> Result:
    return cli("livekit", "sync", "local", "--root", str(tree.root), *extra, env={**livekit_local.env, **SECRET_ENV, **(env or {})})


def one_error_line(result: Result) -> str:
    """The command failed with exit 1 and exactly one stderr line, no traceback."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_cli_sync_prints_plan_and_changes_then_converges(cli: Cli, tree: Tree, livekit_local: DevLiveKit) -> None:
    """sync (ws:// URL from LIVEKIT_URL) prints the plan and each change; a re-run has nothing to do."""
    first = sync(cli, tree, livekit_local)
    assert first.exit_code == 0, first.output
    assert "+ create SIPInboundTrunk vx-northwind-support" in first.stdout
    assert first.stdout.count("\ncreated ") + first.stdout.startswith("created ") == 6
    assert "applying 6 changes" in first.stderr
    assert "nw-trunk-password" not in first.output  # the secret never printed
    second = sync(cli, tree, livekit_local)
    assert second.exit_code == 0 and "plan: nothing to do (6 objects in sync)" in second.stdout


def test_cli_dry_run_changes_nothing_and_needs_no_secrets(cli: Cli, tree: Tree, livekit_local: DevLiveKit) -> None:
    """--dry-run prints the plan, writes nothing, and lists secrets it could not compare."""
    before = snapshot(livekit_local)
    result = cli("livekit", "sync", "local", "--dry-run", "--root", str(tree.root), env=livekit_local.env)
    assert result.exit_code == 0, result.output
    assert "plan: 6 to create, 0 to update, 0 to delete" in result.stdout
    assert snapshot(livekit_local) == before == []


def test_cli_sync_without_secret_fails_naming_manifest_field(cli: Cli, tree: Tree, livekit_local: DevLiveKit) -> None:
    """A missing secret env var: the manifest line and variable name, exit 1, nothing changed."""
    result = cli("livekit", "sync", "local", "--root", str(tree.root), env=livekit_local.env)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].startswith("agents/support.yaml:")
    assert "VOXPLANE_SECRET_northwindTrunkPassword" in result.stderr
    assert snapshot(livekit_local) == []


def test_cli_drift_exit_codes_and_formats(cli: Cli, tree: Tree, livekit_local: DevLiveKit) -> None:
    """drift: 0 when clean, 2 after an out-of-band change, in text, json and markdown."""
    assert sync(cli, tree, livekit_local).exit_code == 0
    args = ("drift", "local", "--only", "livekit", "--root", str(tree.root))
    clean = cli(*args, env={**livekit_local.env, **SECRET_ENV})
    assert clean.exit_code == 0, clean.output
    assert clean.stdout.startswith("no drift: region local")

    with livekit_local.client() as c:
        rule = next(r for r in c.list_rules() if r.name == "vx-bellavista-reservations")
        rule.rule.dispatch_rule_individual.room_prefix = "evil-"
        c.update_rule(rule.sip_dispatch_rule_id, rule)
        c.create_trunk(api.SIPInboundTrunkInfo(name="hand-made", numbers=["+19995550000"]))

    text = cli(*args, env={**livekit_local.env, **SECRET_ENV})
    assert text.exit_code == 2
    first = text.stdout.splitlines()[0]
    assert first.startswith("agents/reservations.yaml:") and "telephony.dispatch.room_prefix" in first
    assert '"evil-" on the server, declared "bv-call"' in first
    assert "info: SIPInboundTrunk hand-made" in text.stdout

    as_json = cli(*args, "--format", "json", env={**livekit_local.env, **SECRET_ENV})
    assert as_json.exit_code == 2
    doc = json.loads(as_json.stdout)
    assert doc["summary"] == {"changed": 1, "missing": 0, "unexpected": 0, "unowned": 1, "unchecked": 0}
    assert doc["changed"][0]["source"]["file"] == "agents/reservations.yaml"

    md = cli(*args, "--format", "markdown", env={**livekit_local.env, **SECRET_ENV})
    assert md.exit_code == 2 and "| `agents/reservations.yaml:" in md.stdout and "**Drift found**" in md.stdout

    assert sync(cli, tree, livekit_local).exit_code == 0
    after = cli(*args, env={**livekit_local.env, **SECRET_ENV})
    assert after.exit_code == 0 and "info: SIPInboundTrunk hand-made" in after.stdout


def test_cli_wrong_credentials_one_line_and_nothing_changed(cli: Cli, tree: Tree, livekit_local: DevLiveKit) -> None:
    """Bad API secret: one clear line, exit 1, server untouched (sync and drift)."""
    assert sync(cli, tree, livekit_local).exit_code == 0
    tree.edit("agents/support.yaml", "room_prefix: nw-support", "room_prefix: nw-help")
    before = snapshot(livekit_local)
    bad = {"LIVEKIT_API_SECRET": "x" * 40}
    line = one_error_line(sync(cli, tree, livekit_local, env=bad))
    assert "rejected API key" in line and "401" in line and "nothing was changed" in line
    drift = cli("drift", "local", "--only", "livekit", "--root", str(tree.root), env={**livekit_local.env, **bad})
    assert "rejected API key" in one_error_line(drift)
    assert snapshot(livekit_local) == before


def test_cli_stopped_server_one_line(cli: Cli, tree: Tree) -> None:
    """A server that is not running: one clear line naming the URL, exit 1."""
    with livekit_with_redis() as lk:
        env = {**lk.env, **SECRET_ENV}
    # Both servers are stopped now; the port is closed.
    result = cli("livekit", "sync", "local", "--root", str(tree.root), env=env)
    line = one_error_line(result)
    assert line.startswith(f"error: cannot reach LiveKit at {env['LIVEKIT_URL'].replace('ws://', 'http://')}")
    assert one_error_line(cli("drift", "local", "--only", "livekit", "--root", str(tree.root),
                              env=env)).startswith("error: cannot reach")


def test_cli_manifest_problem_prints_validate_lines(cli: Cli, tree: Tree, livekit_local: DevLiveKit) -> None:
    """An invalid manifest: the validate lines on stderr, exit 1, no API call made."""
    tree.edit("agents/support.yaml", '["+16175550188"]', '["+13125550142"]')  # reservations' number
    result = sync(cli, tree, livekit_local)
    assert result.exit_code == 1
    assert "agents/support.yaml:24:" in result.stderr and "already routed to agent 'bellavista-reservations'" in result.stderr
    assert snapshot(livekit_local) == []
