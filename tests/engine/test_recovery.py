"""A `pulumi up` killed with SIGKILL half way, and the recovery the README documents."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ..support.wait import wait_until
from .conftest import Deployment, stop_strays
from .test_deploy import live_keys, rendered

pytestmark = [pytest.mark.integration, pytest.mark.engine]


@pytest.mark.parametrize("deployment", ["local"], indirect=True)
def test_kill_9_half_way_then_the_documented_recovery_converges(deployment: Deployment):
    """`kill -9` of `pulumi up` mid-way; the README's recovery: empty `.attrs` sidecars deleted,
    `pulumi cancel` (the killed run's lock), `pulumi refresh --clear-pending-creates`, then
    `pulumi up` again."""
    dep = deployment
    assert dep.pulumi("destroy", "--yes", "--skip-preview").returncode == 0
    argv = ["pulumi", "up", "--yes", "--skip-preview", "--stack", dep.region, "--config-file",
            str(dep.stack.config_file), "--non-interactive"]
    proc = subprocess.Popen(argv, cwd=dep.root, env=dep.stack.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    # Kill once the engine has created some objects but not all.
    wait_until("8 objects created by `pulumi up`", lambda: len(live_keys(dep)) >= 8, timeout=120, interval=0.2,
               unless=lambda: None if proc.poll() is None else "pulumi up finished before it could be killed")
    proc.kill()
    proc.wait()
    stop_strays(dep.root)
    # A kill between the file backend's truncation of the checkpoint's `.attrs` sidecar and its
    # rewrite leaves it empty ("failed to load checkpoint: EOF"); the README's first step.
    state = Path(dep.stack.env["PULUMI_BACKEND_URL"].removeprefix("file://"))
    for sidecar in (state / ".pulumi").rglob("*.attrs"):
        if sidecar.stat().st_size == 0:
            sidecar.unlink()
    # The killed run's lock (the file backend keeps it until cancelled; a no-op when none is left).
    cancel = dep.pulumi("cancel", "--yes")
    assert cancel.returncode == 0, cancel.stdout + cancel.stderr
    refresh = dep.pulumi("refresh", "--yes", "--clear-pending-creates", "--skip-preview")
    assert refresh.returncode == 0, refresh.stdout[-3000:] + refresh.stderr[-2000:]
    dep.up()
    proc = dep.pulumi("preview", "--expect-no-changes")
    assert proc.returncode == 0, proc.stdout[-3000:]
    want = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in rendered(dep)}
    assert want <= live_keys(dep)
