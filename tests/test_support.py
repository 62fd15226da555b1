"""tests/support and the rules tests/conftest.py keeps: one percentile, one way to wait, no real
server started by a test that is not marked `integration`, and the lanes' units of work."""

from __future__ import annotations

import math
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from voxplane.dev.redis import RedisServer

from .support.lanes import plain_environment, shared_fixture_outside, unit_of
from .support.repo import REPO, copy_checkout
from .support.stats import percentile
from .support.wait import wait_until


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, q) for q in (0, 50, 95, 99, 100)] == [1.0, 50.0, 95.0, 99.0, 100.0]
    assert percentile([3.0], 95) == 3.0
    # Where nearest rank and rounding an interpolation index part: p50 of four is the second value.
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.0
    assert math.isnan(percentile([], 50))


def test_wait_until_returns_the_first_true_value() -> None:
    answers = iter([None, 0, [], "ready"])
    assert wait_until("an answer", lambda: next(answers), timeout=10, interval=0) == "ready"


def test_wait_until_fails_naming_what_it_waited_for() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"^no green light within 0s\nlast log line$"):
        wait_until("green light", lambda: False, timeout=0, interval=0, details=lambda: "last log line")
    calls = []
    with pytest.raises(pytest.fail.Exception, match=r"^server exited while waiting for green light$"):
        wait_until("green light", lambda: calls.append(1), timeout=60, interval=0, unless=lambda: "server exited")
    assert len(calls) == 1, "a reason to stop waiting ends the wait at once"


def test_a_test_not_marked_integration_cannot_start_a_server(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="starts a real redis server: mark it `integration`"):
        RedisServer(workdir=tmp_path).start()


def test_a_checkout_copy_leaves_out_what_a_checkout_does_not_hold(tmp_path: Path) -> None:
    copy = copy_checkout(tmp_path / "copy", tests=False, link_venv=True)
    assert (copy / "Pulumi.yaml").is_file() and (copy / "voxplane" / "cli" / "__init__.py").is_file()
    assert not (copy / ".git").exists() and not (copy / "tests").exists()
    assert not list(copy.rglob("__pycache__"))
    assert (copy / ".venv").resolve() == (REPO / ".venv").resolve()
    assert (copy / "stacks" / ".venv").is_symlink()  # still the link to ../.venv, now the copy's


def test_lanes_keep_a_module_whole_and_a_shared_folder_together() -> None:
    assert unit_of("tests/test_render.py::test_x[local]") == unit_of("tests/test_render.py::test_y") == "tests/test_render.py"
    assert unit_of("tests/engine/test_deploy.py::test_a[local]") == unit_of("tests/engine/test_status.py::test_b") == "engine"
    assert unit_of("tests/agents/test_workers.py::t") == unit_of("tests/upstream/test_vllm_server.py::t") == "vllm"


def test_lanes_refuse_a_shared_session_fixture_used_outside_its_unit() -> None:
    def item(nodeid: str, fixture: str, scope: str) -> Any:
        return SimpleNamespace(nodeid=nodeid, _fixtureinfo=SimpleNamespace(
            name2fixturedefs={fixture: (SimpleNamespace(scope=scope),)}))

    assert shared_fixture_outside(item("tests/upstream/test_vllm_server.py::t", "vllm_server", "session")) is None
    assert shared_fixture_outside(item("tests/controllers/test_x.py::t", "cluster", "module")) is None  # their own
    assert shared_fixture_outside(item("tests/test_new.py::t", "vllm_server", "session")) == (
        "tests/test_new.py::t uses the session fixture 'vllm_server' of lane unit 'vllm': "
        "add its folder to tests/support/lanes.py SHARED")


def test_a_lane_runs_with_a_plain_runs_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "24")
    plain_environment()
    assert "COLUMNS" not in os.environ and "LINES" not in os.environ
