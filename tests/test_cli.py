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
    """pyproject lists every package folder, so a non-editable install ships all of them."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "voxplane").rglob("__init__.py")}
    mapped = set(config["package-dir"])
    assert on_disk | mapped == listed
