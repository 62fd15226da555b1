"""Process supervision for the local servers and the dev control plane.

One way to start a child with its log, wait until it answers, stop it, and recognise it again
from another process (`voxplane dev servers down` after `up` has exited):

- `ProcessRecord`: a process as a state file records it, by pid *and* create time (psutil). A pid
  the kernel has handed to another process since has another create time, so a stale record never
  leads to signalling a stranger, and a zombie counts as gone.
- `launch()`: a child with stdout and stderr in a log file, in its own session when it must
  outlive us (and never get the terminal's Ctrl-C).
- `ServerProcess`: a server this process runs (a working folder, a log, one child), the base of
  the Redis, livekit-server, gateway and livekit-sip servers; `HttpServer`, one that serves HTTP and
  WebSocket on a loopback port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, ClassVar, Self

import psutil

from .ports import LOOPBACK

__all__ = ["HttpServer", "ProcessRecord", "ServerProcess", "ServerStartError", "answers_ok", "child_env", "installed_binary", "launch",
           "log_tail"]

# livekit-server (and livekit-sip) read every config key from a LIVEKIT_* variable too (and
# LIVEKIT_CONFIG replaces --config entirely), plus these legacy names. A stray export in the
# caller's shell would silently override the config we write, so children never see them.
_LIVEKIT_ENV_NAMES = frozenset({"NODE_IP", "UDP_PORT", "REDIS_HOST", "REDIS_PASSWORD"})


class ServerStartError(RuntimeError):
    """A server could not be built, started, or did not become ready in time."""


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment without LIVEKIT_* and livekit-server's legacy names, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_") and k not in _LIVEKIT_ENV_NAMES}
    env.update(extra or {})
    return env


def installed_binary(script: Path) -> Path:
    """The binary `script --print-path` installs (building it first if needed: minutes, cold) and
    prints. Its progress lines pass through to our stderr; a failure raises ServerStartError with
    its last lines."""
    if not script.is_file():
        raise ServerStartError(f"{script} not found (voxplane not run from its checkout?)")
    err_lines: list[str] = []
    with subprocess.Popen(["bash", str(script), "--print-path"], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        for line in proc.stderr:  # stdout gets one short line only, so this cannot deadlock
            sys.stderr.write(line)
            err_lines.append(line)
        out = proc.stdout.read()
    if proc.returncode != 0:
        raise ServerStartError(f"{script.name} failed (exit {proc.returncode}):\n" + "".join(err_lines[-20:]).rstrip())
    path = Path(out.strip())
    if not path.is_file():
        raise ServerStartError(f"{script.name} printed {out.strip()!r}: not a file")
    return path


def log_tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log file, or "(no log)"."""
    try:
        with path.open("r", errors="replace") as f:
            return "".join(deque(f, maxlen=lines)).rstrip()
    except OSError:
        return "(no log)"


def answers_ok(url: str) -> bool:
    """True when GET `url` answers 200 within a second (a server's health or readiness check)."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def launch(argv: list[str], *, log: Path, cwd: Path, env: Mapping[str, str] | None = None,
           detached: bool = False, append: bool = False) -> subprocess.Popen[bytes]:
    """Start `argv` with stdout and stderr in `log`; `detached`: in a session of its own, so it
    outlives us and never gets the terminal's Ctrl-C. Raises OSError when it cannot be run."""
    with log.open("ab" if append else "wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(argv, cwd=cwd, env=dict(env) if env is not None else None, stdin=subprocess.DEVNULL,
                                # livekit-server prints config errors on stdout, logs on stderr: keep both.
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=detached)


@dataclass(frozen=True)
class ProcessRecord:
    """A process by pid and create time, as a state file keeps it."""

    pid: int
    #: psutil's create time (seconds since the epoch): with the pid, it names one process for good.
    started: float

    @classmethod
    def of(cls, pid: int) -> ProcessRecord:
        """The record of the running process `pid`; psutil.NoSuchProcess when there is none."""
        return cls(pid, psutil.Process(pid).create_time())

    @classmethod
    def from_json(cls, data: Any) -> ProcessRecord | None:
        """The record in a state file's entry (`{"pid": ..., "started": ...}`), None if it has none."""
        try:
            return cls(int(data["pid"]), float(data["started"]))
        except (KeyError, TypeError, ValueError):
            return None

    def as_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "started": self.started}

    def process(self) -> psutil.Process | None:
        """The process, while it runs; None once it has exited (a zombie has), or when the pid now
        belongs to another process."""
        try:
            proc = psutil.Process(self.pid)
            if proc.create_time() != self.started or proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None

    @property
    def running(self) -> bool:
        return self.process() is not None

    def stop(self, timeout: float, term_twice: bool = False) -> bool:
        """Stop the process: SIGTERM, [a second SIGTERM,] then SIGKILL, within `timeout` seconds.
        True if it was running. Works for processes another interpreter started (it does not
        reap: a child of ours is reaped by its Popen)."""
        proc = self.process()
        if proc is None:
            return False
        signals = [signal.SIGTERM, signal.SIGTERM] if term_twice else [signal.SIGTERM]
        # The first SIGTERM gets most of the time (a graceful drain), the second the rest.
        shares = [0.6, 0.4] if term_twice else [1.0]
        for sig, share in zip(signals, shares):
            try:
                proc.send_signal(sig)  # psutil checks first that the pid is still this process
            except psutil.NoSuchProcess:
                return True
            deadline = time.monotonic() + timeout * share
            while time.monotonic() < deadline:
                if not self.running:
                    return True
                time.sleep(0.05)
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
        return True


class ServerProcess:
    """A server this process runs: a working folder (a temporary one unless given), a log file
    and one child. Subclasses build the command line and say when the server is ready (`start`)."""

    #: The server's name in messages and log file names.
    name: ClassVar[str] = "server"
    #: Stop with a second SIGTERM before SIGKILL (servers that drain on the first).
    term_twice: ClassVar[bool] = False
    #: What installs the server's binary, named when it cannot be run.
    installer: ClassVar[str] = "scripts/ensure-servers.sh"

    def __init__(self, workdir: Path | str | None, detached: bool) -> None:
        self._detached = detached
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._workdir = Path(workdir) if workdir is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._record: ProcessRecord | None = None

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"voxplane-{self.name}-")
            self._workdir = Path(self._tmp.name)
        return self._workdir

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def record(self) -> ProcessRecord | None:
        """The child's pid and create time, for a state file; None before `start`."""
        return self._record if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last `lines` lines the server wrote (stdout and stderr together)."""
        return log_tail(self.log_path, lines)

    def start(self) -> Self:  # each server knows how to start and wait for itself
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (twice for `term_twice` servers), then SIGKILL if still running after `timeout`
        seconds; removes a temporary workdir."""
        if self._proc is not None:
            if self._proc.poll() is None and self._record is not None:
                self._record.stop(timeout, self.term_twice)
            self._proc.wait()  # reap; SIGKILL has been sent if it was still alive
            self._proc = None
        self._cleanup()

    def kill(self) -> None:
        """SIGKILL now, without letting the server drain."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def _spawn(self, argv: list[str], env: Mapping[str, str] | None = None) -> None:
        """Run `argv` in the working folder, its output in the log, with `child_env(env)`."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._proc = launch(argv, log=self.log_path, cwd=self.workdir, env=child_env(env), detached=self._detached)
        except OSError as e:
            self._cleanup()
            raise ServerStartError(f"{self.name}: cannot run {argv[0]}: {e} ({self.installer} installs it)") from e
        self._record = ProcessRecord.of(self._proc.pid)  # not reaped yet, so it exists

    def _await_start(self, check: Callable[[], bool], not_ready: str, poll: float, timeout: float) -> None:
        """Wait until `check()` holds; a child that exits first, or a check still false after
        `timeout` seconds, ends in `_fail` (`not_ready` says what was not answered)."""
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise self._fail(f"exited with code {self._proc.returncode} during start")
            if check():
                return
            if time.monotonic() > deadline:
                raise self._fail(f"{not_ready} within {timeout:.0f}s")
            time.sleep(poll)

    def _fail(self, reason: str) -> ServerStartError:
        """Kill the child, clean up, and build the error with the server's last log lines."""
        self.kill()
        where = "its log" if self._tmp is not None else str(self.log_path)
        error = ServerStartError(f"{self.name} {reason}; last lines of {where}:\n{self.log_tail()}")
        self._proc = None
        self._cleanup()  # a failed start() leaves nothing behind (no __exit__ will run)
        return error

    def _cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self._workdir = None


class HttpServer(ServerProcess):
    """A server answering HTTP and WebSocket on 127.0.0.1:`port` (livekit-server, the gateway)."""

    port: int

    @property
    def url(self) -> str:
        """ws://: what the LiveKit SDKs connect to."""
        return f"ws://{LOOPBACK}:{self.port}"

    @property
    def http_url(self) -> str:
        """http://: the Twirp API and health checks."""
        return f"http://{LOOPBACK}:{self.port}"
