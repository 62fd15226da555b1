"""`voxplane dev images up|down|env`: what they say when nothing runs, and what `env` exports."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxplane.dev.images import engine_argv, exports


@pytest.fixture(autouse=True)
def own_dev_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXPLANE_DEV_STATE", str(tmp_path / "dev"))


def test_env_without_the_tooling_running_is_one_line(run_cli) -> None:
    result = run_cli("dev", "images", "env")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["error: the dev image tooling is not running (`voxplane dev images up`)"]


def test_down_without_the_tooling_running_says_so(run_cli) -> None:
    result = run_cli("dev", "images", "down")
    assert result.exit_code == 0 and result.stderr.splitlines() == ["dev images: nothing was running"]


def test_env_points_builds_at_the_stand_in_and_index_but_never_the_shells_pip() -> None:
    """The index reaches `voxplane images` builds as a build argument; an exported PIP_INDEX_URL
    would send the shell's own pip to the loopback index."""
    lines = exports({"docker_host": "unix:///tmp/e/docker.sock", "docker_cli": "/usr/bin/docker",
                     "standin": "voxplane-python-standin:1", "index_url": "http://127.0.0.1:1/simple/"}).splitlines()
    assert lines == ["export DOCKER_HOST=unix:///tmp/e/docker.sock", "export VOXPLANE_DOCKER_CLI=/usr/bin/docker",
                     "export VOXPLANE_BUILD_ARGS='VOXPLANE_PYTHON_BASE=voxplane-python-standin:1 "
                     "PIP_INDEX_URL=http://127.0.0.1:1/simple/'",
                     "export VOXPLANE_BUILD_NETWORK=host"]


def test_the_engine_is_told_to_leave_the_host_network_alone(tmp_path: Path) -> None:
    """No iptables or ip6tables rules, no docker0 bridge, no ip_forward write; its own state."""
    argv = engine_argv(tmp_path / "data", tmp_path / "exec", tmp_path / "exec" / "docker.sock")
    assert {"--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-forward=false"} <= set(argv)
    assert f"--data-root={tmp_path / 'data'}" in argv and f"--exec-root={tmp_path / 'exec'}" in argv
    assert f"--host=unix://{tmp_path / 'exec' / 'docker.sock'}" in argv
