"""The command line contract: --help everywhere, --version, exit codes, JSON output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from voxplane import __version__
from voxplane.cli import main

from .support.repo import REPO


def _commands(group=main, prefix=()):
    for name, cmd in sorted(group.commands.items()):
        yield prefix + (name,)
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, prefix + (name,))


COMMANDS = list(_commands())


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_command_has_help(run_cli, command):
    """`voxplane <command> --help` exits 0 and describes the command."""
    result = run_cli(*command, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.stdout and len(result.stdout.splitlines()) > 3


def test_version(run_cli):
    """`voxplane --version` prints the package version."""
    result = run_cli("--version")
    assert result.exit_code == 0 and __version__ in result.stdout


def test_missing_path_is_one_line_not_a_traceback(run_cli, monkeypatch):
    """A path that does not exist is reported as a problem with exit 1."""
    monkeypatch.chdir(REPO)
    result = run_cli("validate", "agents/nope.yaml")
    assert result.exit_code == 1
    assert result.stdout.strip() == "agents/nope.yaml:1:1: no such file or folder"


def test_valid_json_output(run_cli, monkeypatch):
    """`--format json` on valid manifests says valid, lists the files and no errors."""
    monkeypatch.chdir(REPO)
    result = run_cli("validate", "--format", "json")
    doc = json.loads(result.stdout)
    assert result.exit_code == 0
    assert doc["valid"] is True and doc["errors"] == [] and "regions/us-east.yaml" in doc["files"]


def test_installed_console_script_runs():
    """The `voxplane` console script installed by the package works from a shell."""
    script = Path(sys.executable).parent / "voxplane"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0 and __version__ in result.stdout


def test_every_subpackage_is_packaged():
    """setuptools' own reading of setup.py and pyproject.toml (what a non-editable install ships)
    holds every package folder, a new one included, without a list to keep up to date."""
    import tomllib

    code = ("import json, setuptools; from distutils.core import run_setup; "
            "print(json.dumps(sorted(run_setup('setup.py', stop_after='config').packages)))")
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    packaged = set(json.loads(done.stdout.splitlines()[-1]))
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "voxplane").rglob("__init__.py")}
    mapped = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"])
    assert on_disk | mapped == packaged


# --- region names and the repository, the same answer everywhere (issue #17 item 7) -----------------

#: Each command that takes a region, with the misspelt region where it goes.
REGION_TAKERS = {
    ("render",): ["render", "us-eats"],
    ("capacity",): ["capacity", "us-eats"],
    ("secrets",): ["secrets", "us-eats"],
    ("plan",): ["plan", "us-eats"],
    ("drift",): ["drift", "us-eats"],
    ("status",): ["status", "us-eats"],
    ("livekit", "sync"): ["livekit", "sync", "us-eats"],
    ("livekit", "route"): ["livekit", "route", "us-eats", "--to", "+16175550188"],
    ("new", "agent"): ["new", "agent", "billing", "--tenant", "northwind", "--region", "us-eats"],
    ("new", "region"): ["new", "region", "ap-south", "--from", "us-eats"],
    ("dev", "cluster", "up"): ["dev", "cluster", "up", "--region", "us-eats"],
    ("dev", "servers", "up"): ["dev", "servers", "up", "--region", "us-eats"],
    ("dev", "calls"): ["dev", "calls", "us-eats", "--to", "+16175550188", "--concurrent", "1", "--duration", "1"],
    ("dev", "pulumi"): ["dev", "pulumi", "us-eats", "preview"],
    ("dev", "tenant-credentials"): ["dev", "tenant-credentials", "us-eats", "northwind"],
    ("dev", "credentials"): ["dev", "credentials", "us-eats", "northwind"],
    ("dev", "images", "up"): ["dev", "images", "up", "--region", "us-eats"],
    ("dev", "images", "prepare"): ["dev", "images", "prepare", "--region", "us-eats"],
    ("images", "build"): ["images", "build", "us-eats"],
    ("images", "push"): ["images", "push", "us-eats"],
}


def _takes_a_region(command: tuple[str, ...]) -> bool:
    cmd = main
    for name in command:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    return any(p.name in ("region", "regions") or "--from" in getattr(p, "opts", ()) for p in cmd.params)


def test_every_command_taking_a_region_is_checked_below():
    """Every one, `voxplane dev`'s included: one region lookup, one answer."""
    assert {c for c in COMMANDS if _takes_a_region(c)} == set(REGION_TAKERS)


@pytest.mark.parametrize("where", ["root", "agents/"])
@pytest.mark.parametrize("args", list(REGION_TAKERS.values()), ids=[" ".join(c) for c in REGION_TAKERS])
def test_a_misspelt_region_gets_the_same_did_you_mean_as_validate(run_cli, monkeypatch, args, where):
    """One line, exit 1, the regions there are and the closest one, as `validate` says it of a
    manifest's `regions:`; nothing written, nothing started or stopped (the dev servers, the dev
    cluster and the dev stack are left as they are). From a sub-folder too: every command finds
    the repository above it (`voxplane dev`'s included)."""
    monkeypatch.chdir(REPO if where == "root" else REPO / where)
    before = sorted(p.name for p in (REPO / "agents").iterdir())
    result = run_cli(*args)
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[-1] == (
        "error: " + ("--from: " if "--from" in args else "")
        + "no region 'us-eats' (regions: eu-west, local, us-east); did you mean 'us-east'?")
    assert not (REPO / "regions/ap-south.yaml").exists() and sorted(p.name for p in (REPO / "agents").iterdir()) == before


def test_outside_a_repository_the_message_says_how_one_is_found(run_cli, monkeypatch, tmp_path):
    """Not under a folder with Pulumi.yaml (nor holding regions/ or agents/): one line naming
    Pulumi.yaml and --root, not "no manifests found" or "no region 'local'"."""
    monkeypatch.chdir(tmp_path)
    for args in (["validate"], ["render", "local"], ["capacity", "local"], ["plan"], ["affected"],
                 ["dev", "credentials", "local", "northwind"], ["dev", "servers", "up", "--region", "local"]):
        result = run_cli(*args)
        assert result.exit_code == 1, (args, result.output)
        (line,) = result.stderr.splitlines()
        assert "Pulumi.yaml" in line and "--root DIR" in line and str(tmp_path) in line, (args, line)
    assert run_cli("validate", "--root", str(REPO)).exit_code == 0
