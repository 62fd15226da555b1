"""Terminal manners: rich tables and colour on a terminal only (pipes stay plain and stable),
--no-color / NO_COLOR, -q / -v, shell completion of names, and the question before `livekit sync`."""

from __future__ import annotations

import io
import json
import re
import sys
from types import SimpleNamespace

import click
import pytest
from click.testing import CliRunner

from voxplane.cli import term
from voxplane.cli import main

from .support.repo import REPO


ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _reset_settings():
    yield
    term.configure()


def _table_on(stream: io.StringIO, monkeypatch, *, no_color: bool = False, env_no_color: str | None = None) -> str:
    monkeypatch.setattr("sys.stdout", stream)
    if env_no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", env_no_color)
    term.configure(no_color=no_color)
    term.table(["model", "status"], [["chat", "ok"], ["kokoro", "short: needs 3 replicas"]])
    return stream.getvalue()


def test_a_table_to_a_pipe_is_plain_text(monkeypatch):
    out = _table_on(io.StringIO(), monkeypatch)
    assert out == ("model   status\n"
                   "------  -----------------------\n"
                   "chat    ok\n"
                   "kokoro  short: needs 3 replicas\n")


def test_a_table_on_a_terminal_is_drawn_in_colour(monkeypatch):
    out = _table_on(_Tty(), monkeypatch)
    assert ANSI.search(out), out
    plain = ANSI.sub("", out)
    assert "kokoro" in plain and "short: needs 3 replicas" in plain and "──" in plain  # rich's rule
    assert "\x1b[32m" in out and "\x1b[31m" in out  # ok green, short red


@pytest.mark.parametrize("how", ["flag", "env"])
def test_no_color_keeps_the_drawing_and_drops_the_colour(monkeypatch, how):
    out = _table_on(_Tty(), monkeypatch, no_color=how == "flag", env_no_color="1" if how == "env" else None)
    assert "\x1b[3" not in out  # no foreground colours
    assert "short: needs 3 replicas" in ANSI.sub("", out)


def test_existing_exact_outputs_are_unchanged(run_cli, monkeypatch):
    """render's summary table to a non-terminal is the same plain table as before."""
    monkeypatch.chdir(REPO)
    result = run_cli("capacity", "local")
    assert result.stdout.splitlines()[1].startswith("model    kind  gpus/replica")
    assert not ANSI.search(result.output)


def test_quiet_drops_summaries_and_verbose_adds_detail(run_cli, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    loud = run_cli("validate")
    assert loud.stderr.startswith("ok: ")
    quiet = run_cli("-q", "validate")
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout == ""
    verbose = run_cli("-v", "render", "local", "--out", str(tmp_path / "out"))
    assert verbose.exit_code == 0
    assert f"wrote {tmp_path / 'out'}" in verbose.stderr
    assert "wrote" not in run_cli("render", "local", "--out", str(tmp_path / "out")).stderr
    # Errors are never quiet.
    missing = run_cli("-q", "capacity", "mars")
    assert missing.exit_code == 1 and "no region 'mars'" in missing.stderr


def _complete(args: str, cwd, monkeypatch) -> list[str]:
    """What bash completion offers after `args` (click's bash_complete protocol), from `cwd`."""
    monkeypatch.chdir(cwd)
    words = args.split(" ")
    env = {"_VOXPLANE_COMPLETE": "bash_complete", "COMP_WORDS": args, "COMP_CWORD": str(len(words) - 1)}
    result = CliRunner().invoke(main, [], env=env, prog_name="voxplane")
    return [line.split(",", 1)[1] for line in result.output.splitlines() if "," in line]


def test_completion_offers_region_tenant_and_agent_names(monkeypatch):
    assert _complete("voxplane capacity ", REPO, monkeypatch) == ["eu-west", "local", "us-east"]
    assert _complete("voxplane plan u", REPO, monkeypatch) == ["us-east"]
    assert _complete("voxplane new agent billing --tenant ", REPO, monkeypatch) == ["bellavista", "northwind"]
    assert _complete("voxplane new region x --from eu", REPO, monkeypatch) == ["eu-west"]
    assert _complete("voxplane validate supp", REPO, monkeypatch) == ["agents/support.yaml"]
    assert _complete("voxplane livekit route local --to +13", REPO, monkeypatch) == ["+13125550142", "+13125550143"]
    assert _complete("voxplane validate regions/us", REPO, monkeypatch) == ["regions/us-east.yaml"]


def test_completion_scripts(run_cli):
    for shell in ("bash", "zsh", "fish"):
        result = run_cli("completion", shell)
        assert result.exit_code == 0 and "_VOXPLANE_COMPLETE" in result.stdout


# --- livekit sync asks first, on a terminal only ------------------------------------------------


@pytest.fixture
def fake_sync(monkeypatch):
    """livekit sync against a stand-in for the LiveKit side: one planned step, recorded when applied."""
    from voxplane.livekit import commands as lk

    applied: list[str] = []

    class Client:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr("voxplane.cli.livekit.load_region",
                        lambda root, region: SimpleNamespace(region=SimpleNamespace(name=region), agents=()))
    monkeypatch.setattr(lk, "connect", lambda *a: Client())
    monkeypatch.setattr(lk, "plan_sync", lambda *a, **k: SimpleNamespace(steps=["create trunk"]))
    monkeypatch.setattr(lk, "plan_lines", lambda plan: ["+ create SIPInboundTrunk vx-northwind-support"])
    monkeypatch.setattr(lk, "apply_plan", lambda plan, client, progress: applied.append("applied") or ["x"])
    return applied


def test_sync_on_a_terminal_asks_and_no_changes_nothing(fake_sync, monkeypatch):
    monkeypatch.setattr(term, "interactive", lambda: True)
    result = CliRunner().invoke(main, ["livekit", "sync", "local"], input="n\n")
    assert result.exit_code == 1
    assert "apply 1 change to region local's LiveKit? [y/N]" in result.stderr
    assert "cancelled: nothing was changed" in result.stderr
    assert fake_sync == []


def test_sync_on_a_terminal_applies_on_yes(fake_sync, monkeypatch):
    monkeypatch.setattr(term, "interactive", lambda: True)
    result = CliRunner().invoke(main, ["livekit", "sync", "local"], input="y\n")
    assert result.exit_code == 0, result.output
    assert fake_sync == ["applied"]


def test_sync_with_yes_or_without_a_terminal_never_asks(fake_sync, monkeypatch):
    monkeypatch.setattr(term, "interactive", lambda: True)
    result = CliRunner().invoke(main, ["livekit", "sync", "local", "--yes"])
    assert result.exit_code == 0 and "[y/N]" not in result.output
    monkeypatch.setattr(term, "interactive", lambda: False)
    result = CliRunner().invoke(main, ["livekit", "sync", "local"])  # stdin is not a terminal
    assert result.exit_code == 0 and "[y/N]" not in result.output
    assert fake_sync == ["applied", "applied"]


def test_the_real_stdin_of_the_test_runner_is_not_interactive():
    """CliRunner's stdin is not a terminal, so the sync integration tests never block on a question."""
    @click.command()
    def probe() -> None:
        click.echo(json.dumps(term.interactive()))

    assert CliRunner().invoke(probe).stdout.strip() == "false"


def test_plan_lines_are_coloured_by_their_mark_on_a_terminal(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr("sys.stdout", _Tty())
    assert term.plan_line("    local  + Namespace vox-t-acme").startswith("\x1b[32m")
    assert term.plan_line("    local  - Deployment vox-t-a/b").startswith("\x1b[31m")
    assert term.plan_line("    local  ~ ScaledObject vox-t-a/b spec.maxReplicaCount 1 → 2").startswith("\x1b[33m")
    assert term.plan_line("agents/a.yaml:3: scaling.max_workers 1 → 2").startswith("\x1b[1magents/a.yaml:3:")
    assert term.plan_line("               spec.egress + {\"to\": []}").startswith("\x1b[33m")  # a path below its object
    assert term.plan_line("           (and 2 object changes listed above)") == "           (and 2 object changes listed above)"
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert term.plan_line("    local  + Namespace vox-t-acme") == "    local  + Namespace vox-t-acme"


# --- an 80-column terminal (issue #17 item 9) --------------------------------------------------------


def _on_a_terminal(monkeypatch, *args: str, columns: int = 80) -> str:
    """stdout of `voxplane ARGS` on a terminal `columns` wide, colour off (escape codes aside)."""
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = _Tty()
    monkeypatch.setattr("sys.stdout", out)
    with pytest.raises(SystemExit):
        main(["--no-color", *args], standalone_mode=True)
    return ANSI.sub("", out.getvalue())


def _plain(run_cli, *args: str) -> str:
    return run_cli(*args).stdout


@pytest.mark.parametrize("args", [("capacity", "us-east"), ("capacity", "local"), ("secrets", "us-east")])
def test_an_80_column_terminal_keeps_every_location_and_status_word(run_cli, monkeypatch, args):
    """What a pipe shows in full, the terminal shows too: no line wider than the terminal, nothing
    cut with …, and each file:line location and each status cell's first word whole on one line
    (not `analy…`, not a word a line)."""
    monkeypatch.chdir(REPO)
    plain = _plain(run_cli, *args)
    shown = _on_a_terminal(monkeypatch, *args)
    lines = shown.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert "…" not in shown
    locations = re.findall(r"\b(?:regions|agents)/[\w.-]+\.yaml:\d+:\d+", plain)
    words = [line.split()[-1] for line in plain.splitlines() if line.split() and line.split()[-1] in ("ok", "set", "missing")]
    words += re.findall(r"\b(no analytic model for tts/stt: load-test the server)", plain)
    assert (locations or words) and all(any(w in line for line in lines) for w in locations + words), (locations, words, shown)


def test_a_wide_status_table_becomes_a_block_per_row(monkeypatch):
    """`voxplane status`'s agent pool table (nine columns) on 80 columns: a block per pool, every
    cell whole, not columns squeezed to a few letters."""
    header = ["agent pool", "namespace", "ready", "autoscaler", "target", "rooms", "participants", "sip calls", "nodes"]
    rows = [["northwind/support", "vox-t-northwind", "2/2", "KEDA 2..40", "no autoscaler running", "0", "0", "0",
             "local-agents-0,local-agents-1"],
            ["bellavista/reservations", "vox-t-bellavista", "1/1", "KEDA 1..25", "2 (23 sessions / 10)", "3", "6", "2",
             "local-agents-1"]]
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr("sys.stdout", _Tty())
    term.configure(no_color=True)
    term.table(header, rows)
    shown = ANSI.sub("", sys.stdout.getvalue())  # type: ignore[attr-defined]
    lines = shown.splitlines()
    assert all(len(line) <= 80 for line in lines) and "…" not in shown
    assert lines[0] == "northwind/support"
    for row in rows:
        for name, cell in zip(header[1:], row[1:]):
            assert any(f"{name} {cell}" in line for line in lines), (name, cell, shown)
    monkeypatch.setattr("sys.stdout", _Tty())
    monkeypatch.setenv("COLUMNS", "200")
    term.table(header, rows)  # room enough: the table as it always was
    assert ANSI.sub("", sys.stdout.getvalue()).splitlines()[0].split() == ["agent", "pool", "namespace", "ready",  # type: ignore[attr-defined]
                                                                          "autoscaler", "target", "rooms",
                                                                          "participants", "sip", "calls", "nodes"]
