"""`voxplane dev servers` without servers: bad input is one line and starts nothing, and a state
file whose processes are not the ones it recorded is not used. (tests/integration/test_devservers.py
runs `up` and `down` for real.)"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import pytest
from click.testing import Result

from voxplane.dev.process import ProcessRecord


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VOXPLANE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize(("text", "says"), [
    (None, "No such file or directory"),
    ("port: [7880\n", ":2: neither JSON nor YAML"),
    ("- a list\n", "expected a mapping at the top level"),
], ids=["missing", "not-yaml", "not-a-mapping"])
def test_a_bad_config_file_is_one_line_and_starts_nothing(run_cli: Callable[..., Result], cache: Path, tmp_path: Path,
                                                          text: str | None, says: str) -> None:
    config = tmp_path / "livekit.yaml"
    if text is not None:
        config.write_text(text)
    result = run_cli("dev", "servers", "up", "--config", str(config))
    assert result.exit_code == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{config}") and says in line, line
    assert not (cache / "devservers.json").exists() and not (cache / "devservers").exists()


def test_config_and_region_exclude_each_other(run_cli: Callable[..., Result], cache: Path, tmp_path: Path) -> None:
    result = run_cli("dev", "servers", "up", "--config", str(tmp_path / "x.yaml"), "--region", "local")
    assert result.exit_code == 2 and "mutually exclusive" in result.stderr


def test_env_uses_only_a_state_whose_processes_still_run(run_cli: Callable[..., Result], cache: Path) -> None:
    me = ProcessRecord.of(os.getpid()).as_json()  # a process that surely runs, standing in for each server
    state = {"redis": {**me, "address": "127.0.0.1:1"},
             "livekit": {**me, "url": "ws://127.0.0.1:2", "api_key": "k", "api_secret": "s" * 32}}
    cache.mkdir()
    (cache / "devservers.json").write_text(json.dumps(state))
    assert run_cli("dev", "servers", "env").stdout == f"export LIVEKIT_URL=ws://127.0.0.1:2 LIVEKIT_API_KEY=k LIVEKIT_API_SECRET={'s' * 32}\n"
    for stale in ({"started": me["started"] - 1}, {"pid": 2**22 + 1}, {"started": None}):
        (cache / "devservers.json").write_text(json.dumps({**state, "livekit": {**state["livekit"], **stale}}))
        result = run_cli("dev", "servers", "env")
        assert result.exit_code == 1 and result.stderr == "devservers: not running (`make livekit-up`)\n", stale
