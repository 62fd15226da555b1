"""The process supervisor (voxplane.dev.process): a recorded process is known by pid and create
time, so a stale record never names another process; a zombie has exited; `term_twice` servers get
a second SIGTERM before SIGKILL. The children are small Python programs, not servers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from voxplane.dev.process import ProcessRecord

#: Prints "ready" once its SIGTERM handler is in place; the first SIGTERM only restores the default.
_DRAINS_ON_FIRST_TERM = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: signal.signal(signal.SIGTERM, signal.SIG_DFL))\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def child() -> Iterator[subprocess.Popen[str]]:
    """A Python child that has installed its SIGTERM handler (it said so), killed afterwards."""
    with subprocess.Popen([sys.executable, "-c", _DRAINS_ON_FIRST_TERM], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield proc
        proc.kill()


def test_a_record_is_its_process_and_no_other(child: subprocess.Popen[str]) -> None:
    record = ProcessRecord.of(child.pid)
    assert record.running and ProcessRecord.from_json(record.as_json()) == record
    # The same pid with another create time: what a record becomes once the pid is reused.
    other = ProcessRecord(child.pid, record.started - 1)
    assert not other.running
    assert other.stop(timeout=1) is False
    assert child.poll() is None, "a stale record signalled the process that holds its pid now"


def test_a_record_without_a_create_time_names_nothing() -> None:
    assert ProcessRecord.from_json({"pid": os.getpid()}) is None
    assert ProcessRecord.from_json({"pid": "x", "started": 1.0}) is None


def test_a_zombie_has_exited() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    record = ProcessRecord.of(proc.pid)
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert not record.running
    assert record.stop(timeout=1) is False
    assert proc.wait() == 0


def test_term_twice_sends_a_second_sigterm_before_sigkill(child: subprocess.Popen[str]) -> None:
    """livekit-server and the gateway drain on the first SIGTERM and end on the second."""
    assert ProcessRecord.of(child.pid).stop(timeout=4, term_twice=True) is True
    assert child.wait() == -signal.SIGTERM


def test_one_sigterm_then_sigkill(child: subprocess.Popen[str]) -> None:
    assert ProcessRecord.of(child.pid).stop(timeout=1) is True
    assert child.wait() == -signal.SIGKILL
