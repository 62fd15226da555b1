"""The local image tooling: a Docker engine, a registry and a package index on loopback, and the
Python base stand-in, so every image of the repository can be built, pushed and run here.

- Engine: Debian's `dockerd` (with the containerd and runc it starts), leaving the host's network
  alone: `--iptables=false --ip6tables=false` (no NAT or filter rules), `--bridge=none` (no docker0),
  `--ip-forward=false` (no sysctl write), and its own `--data-root` (cached under
  `<cache>/images/engine`: layers and build cache survive a run), `--exec-root` and socket.
  Containers have no network but the host's: they run with `--network=host` and reach the dev
  servers on 127.0.0.1. One engine per data root: a lock held by the engine's processes; a second
  run waits for it, or uses the one `voxplane dev images up` left running.
- Registry: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1, storage cached under
  `<cache>/images/registry`; the engine pushes to a loopback registry over plain HTTP by default.
  `voxplane dev images up` serves it on 127.0.0.1:5000, the `local` stack's `localhost:5000/voxplane`;
  the suite on a free port.
- Package index: the wheels the images install, downloaded by the host (dev/package_index.py) and
  served on 127.0.0.1; builds get it as the `PIP_INDEX_URL` build argument.
- Base stand-in: dev/python_standin.py, passed to builds as `VOXPLANE_PYTHON_BASE`.

`LocalImages` runs them for the length of a `with` block (the suite); `up`/`down`/`env` keep them
running in the background for a developer (`voxplane dev images up|down|env`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Optional, Sequence

import psutil

from ..images.docker import DockerCli, EngineUnreachable
from ..images.stack import ImageBuild
from . import package_index, python_standin
from .paths import cache_dir, dev_dir
from .ports import LOOPBACK, free_ports
from .process import ProcessRecord, answers_ok, log_tail

#: The port `voxplane dev images up` serves the registry on: the `local` stack's imageRegistry.
DEV_REGISTRY_PORT = 5000
#: How long dockerd may take to stop its containers and containerd before it is killed.
_ENGINE_STOP_S = 30
#: Which Docker CLI drives the engine: VOXPLANE_DOCKER_CLI, else the client Debian's docker.io
#: installs with dockerd (built-in BuildKit; a newer client without the buildx plugin has none).
_PACKAGED_CLI = Path("/usr/bin/docker")

Progress = Callable[[str], None]


def stderr_progress(line: str) -> None:
    print(f"images: {line}", file=sys.stderr, flush=True)


class ImagesError(RuntimeError):
    """The image tooling could not be installed, started or stopped; the message says why."""


def images_cache() -> Path:
    return cache_dir() / "images"


def docker_cli_path() -> str:
    env = os.environ.get("VOXPLANE_DOCKER_CLI")
    if env:
        return env
    return str(_PACKAGED_CLI) if _PACKAGED_CLI.is_file() else "docker"


def engine_argv(data_root: Path, exec_root: Path, socket: Path) -> list[str]:
    """dockerd's command line: loopback only, nothing of the host's network changed, own state."""
    return ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-forward=false",
            "--storage-driver=overlay2", f"--data-root={data_root}", f"--exec-root={exec_root}",
            f"--pidfile={exec_root / 'dockerd.pid'}", f"--host=unix://{socket}",
            "--containerd-namespace=voxplane", "--containerd-plugins-namespace=voxplane-plugins",
            "--shutdown-timeout=10", "--log-level=warn"]


# --- processes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc(ProcessRecord):
    """A process we started, by pid and create time (a reused pid is never taken for it), and stopped
    with every process it started in turn (dockerd's containerd and shims)."""

    name: str = ""
    #: Our child's handle, when this interpreter started it (reaped once it exits).
    popen: Optional[subprocess.Popen[bytes]] = field(default=None, compare=False, repr=False)

    @classmethod
    def spawned(cls, name: str, popen: subprocess.Popen[bytes]) -> Proc:
        return cls(popen.pid, psutil.Process(popen.pid).create_time(), name, popen)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, **super().as_json()}

    def stop_all(self, timeout: float) -> None:
        """SIGTERM, then SIGKILL for it and every descendant left after `timeout` seconds."""
        proc = self.process()
        if proc is None:
            return
        try:
            family = [proc, *proc.children(recursive=True)]
        except psutil.Error:
            family = [proc]
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
        _, alive = psutil.wait_procs(family, timeout=timeout)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)
        if self.popen is not None:
            self.popen.wait(5)


def _spawn(name: str, argv: Sequence[str], log: Path, *, detached: bool, pass_fds: Sequence[int] = ()) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with log.open("wb") as out:  # one start's log: the next start replaces it
            popen = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=detached, pass_fds=tuple(pass_fds))
    except OSError as exc:
        raise ImagesError(f"{name}: cannot run {argv[0]} ({exc.strerror}); scripts/ensure-images.sh installs it") from None
    return Proc.spawned(name, popen)


def _wait(what: str, ready: Callable[[], bool], proc: Proc, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.process() is None:
            raise ImagesError(f"{what} exited while starting; its log ({log}):\n{log_tail(log, 15)}")
        if time.monotonic() > deadline:
            raise ImagesError(f"{what} not ready within {timeout:.0f}s; its log ({log}):\n{log_tail(log, 15)}")
        time.sleep(0.2)


# --- the three servers -----------------------------------------------------------------------------


@dataclass
class Engine:
    """dockerd on its own data root (cached) and socket."""

    cache: Path
    proc: Optional[Proc] = None
    _lock: Optional[int] = field(default=None, repr=False)

    @property
    def data_root(self) -> Path:
        return self.cache / "engine"

    @property
    def exec_root(self) -> Path:
        # Unix socket paths are short (108 bytes): containerd's live under the exec root.
        return Path("/tmp") / f"voxplane-engine-{os.getuid()}"

    @property
    def socket(self) -> Path:
        return self.exec_root / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def log(self) -> Path:
        return self.cache / "engine.log"

    def docker(self) -> DockerCli:
        return DockerCli(docker_cli_path(), {**os.environ, "DOCKER_HOST": self.docker_host})

    def answers(self) -> bool:
        try:
            self.docker().check_engine()
            return True
        except EngineUnreachable:
            return False

    def try_lock(self) -> bool:
        """Take the data root's lock; False when another engine holds it."""
        self.cache.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.cache / "engine.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock = fd
        return True

    def wait_lock(self, progress: Progress) -> None:
        if self.try_lock():
            return
        progress(f"engine: another run's engine uses {self.data_root}; waiting for it to stop")
        fd = os.open(self.cache / "engine.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock = fd

    def start(self, progress: Progress, *, detached: bool) -> None:
        """Start dockerd (the lock must be held: `try_lock`/`wait_lock`); its processes keep the lock."""
        assert self._lock is not None, "take the engine's lock first"
        if shutil.which("dockerd") is None:
            raise ImagesError("dockerd not found; run scripts/ensure-images.sh (installs docker.io)")
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.exec_root.mkdir(parents=True, exist_ok=True)
        progress(f"engine: dockerd on {self.docker_host}, data in {self.data_root} (usually 2-5 s)")
        self.socket.unlink(missing_ok=True)
        self.proc = _spawn("dockerd", engine_argv(self.data_root, self.exec_root, self.socket), self.log,
                           detached=detached, pass_fds=(self._lock,))
        # The engine's processes hold the lock from now on; ours is no longer needed.
        os.close(self._lock)
        self._lock = None
        _wait("dockerd", self.answers, self.proc, self.log, 90)

    def stop(self, progress: Progress) -> None:
        if self.proc is not None and self.proc.process() is not None:
            progress("engine: stopping dockerd (its containers and containerd with it)")
            self.proc.stop_all(_ENGINE_STOP_S)
            unmount_below(self.exec_root)
        self.proc = None
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def unmount_below(folder: Path) -> None:
    """Unmount what a stopped dockerd leaves mounted under `folder` (its network namespace file,
    `netns/default`), deepest first, so nothing of it stays behind."""
    prefix = str(folder).rstrip("/") + "/"
    try:
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    except OSError:
        return
    for target in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", target], capture_output=True, stdin=subprocess.DEVNULL)


@dataclass
class Registry:
    """docker-registry serving `<cache>/registry` on 127.0.0.1:`port`."""

    cache: Path
    port: int
    proc: Optional[Proc] = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def log(self) -> Path:
        return self.cache / f"registry-{self.port}.log"

    def start(self, progress: Progress, *, detached: bool) -> None:
        if shutil.which("docker-registry") is None:
            raise ImagesError("docker-registry not found; run scripts/ensure-images.sh (installs it)")
        config = self.cache / f"registry-{self.port}.yml"
        config.write_text(json.dumps({  # YAML is a superset of JSON
            "version": 0.1, "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(self.cache / "registry")}, "delete": {"enabled": True}},
            "http": {"addr": self.address},
        }, indent=2))
        progress(f"registry: docker-registry on {self.address}, storage in {self.cache / 'registry'}")
        self.proc = _spawn("docker-registry", ["docker-registry", "serve", str(config)], self.log, detached=detached)
        _wait("docker-registry", lambda: answers_ok(f"http://{self.address}/v2/"), self.proc, self.log, 30)

    def stop(self, progress: Progress) -> None:
        if self.proc is not None:
            self.proc.stop_all(10)
            # Per-port files: what a failed start said is in the error already.
            for path in (self.cache / f"registry-{self.port}.yml", self.log):
                path.unlink(missing_ok=True)
        self.proc = None


@dataclass
class PackageIndex:
    """The wheels folder (dev/package_index.py) served on 127.0.0.1:`port`."""

    folder: Path
    port: int
    log: Path
    proc: Optional[Proc] = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/simple/"

    def start(self, progress: Progress, *, detached: bool) -> None:
        progress(f"package index: {self.url} serving {self.folder}")
        self.proc = _spawn("package index", [sys.executable, "-m", "http.server", "--bind", LOOPBACK, "--directory",
                                             str(self.folder), str(self.port)], self.log, detached=detached)
        _wait("the package index", lambda: answers_ok(self.url), self.proc, self.log, 30)

    def stop(self, progress: Progress) -> None:
        if self.proc is not None:
            self.proc.stop_all(5)
            self.log.unlink(missing_ok=True)
        self.proc = None


# --- the tooling together ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Running:
    """What builds and runs need from the tooling."""

    docker_host: str
    registry: str
    index_url: str
    standin: str

    def docker(self) -> DockerCli:
        return DockerCli(docker_cli_path(), {**os.environ, "DOCKER_HOST": self.docker_host})

    def build_args(self) -> dict[str, str]:
        """What a build here adds to the stack's own build arguments: the base stand-in and the
        loopback package index (builds run with `--network=host` to reach it)."""
        return {python_standin.BUILD_ARG: self.standin, "PIP_INDEX_URL": self.index_url}


def base_chains(images: Sequence[ImageBuild]) -> list[list[Path]]:
    """Each image's build contexts, the images it is built FROM first."""
    by_name = {i.name: i for i in images}

    def chain(image: ImageBuild) -> list[Path]:
        return [c for n in image.needs.values() for c in chain(by_name[n])] + [image.context]

    return [chain(i) for i in images]


def prepare(images: Sequence[ImageBuild], progress: Progress) -> tuple[Path, Path]:
    """The stand-in's tarball and the wheels folder `images` need (made once, cached)."""
    cache = images_cache()
    tar = python_standin.ensure_tarball(cache, progress)
    wheels = package_index.ensure_wheels(cache, package_index.requirement_sets(base_chains(images)), progress)
    return tar, wheels


class LocalImages:
    """Engine, registry, package index and stand-in for the length of a `with` block; what this
    block started is stopped at its end (an engine `voxplane dev images up` runs is used, not stopped)."""

    def __init__(self, images: Sequence[ImageBuild], progress: Progress = stderr_progress):
        self.images = list(images)
        self.progress = progress
        cache = images_cache()
        self.engine = Engine(cache)
        registry_port, index_port = free_ports(2)
        self.registry = Registry(cache, registry_port)
        self.index: Optional[PackageIndex] = None
        self._index_port = index_port
        self.running: Optional[Running] = None

    def __enter__(self) -> Running:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Running:
        tar, wheels = prepare(self.images, self.progress)
        dev = running_state()
        if dev is not None:
            self.progress(f"engine: using the one `voxplane dev images up` runs ({dev['docker_host']})")
            docker_host = str(dev["docker_host"])
        else:
            self.engine.wait_lock(self.progress)
            self.engine.start(self.progress, detached=False)
            docker_host = self.engine.docker_host
        self.registry.start(self.progress, detached=False)
        self.index = PackageIndex(wheels, self._index_port, self.engine.cache / f"index-{self._index_port}.log")
        self.index.start(self.progress, detached=False)
        docker = DockerCli(docker_cli_path(), {**os.environ, "DOCKER_HOST": docker_host})
        standin = python_standin.ensure_imported(docker, tar, self.progress)
        self.running = Running(docker_host, self.registry.address, self.index.url, standin)
        return self.running

    def stop(self) -> None:
        if self.index is not None:
            self.index.stop(self.progress)
        self.registry.stop(self.progress)
        self.engine.stop(self.progress)

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.stop()


# --- `voxplane dev images up|down|env` ---------------------------------------------------------------


def _state_path() -> Path:
    return dev_dir() / "images" / "state.json"


def running_state() -> Optional[dict[str, Any]]:
    """The state `up` wrote, while its engine still runs; None otherwise."""
    try:
        state = json.loads(_state_path().read_text())
        engine = Proc(**state["processes"]["engine"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state if engine.process() is not None else None


def up(images: Sequence[ImageBuild], progress: Progress) -> dict[str, Any]:
    """Start (or keep) engine, registry on 127.0.0.1:5000, package index and stand-in, in the background."""
    state = running_state()
    if state is not None:
        progress(f"already running (engine {state['docker_host']}, registry {state['registry']})")
        return state
    cache = images_cache()
    tar, wheels = prepare(images, progress)
    engine, registry = Engine(cache), Registry(cache, DEV_REGISTRY_PORT)
    (index_port,) = free_ports(1)
    index = PackageIndex(wheels, index_port, cache / "index-dev.log")
    if not engine.try_lock():
        raise ImagesError(f"another run's engine uses {engine.data_root} (a test run?); try again when it ends")
    started: list[Any] = []
    try:
        for server in (engine, registry, index):
            server.start(progress, detached=True)
            started.append(server)
        standin = python_standin.ensure_imported(engine.docker(), tar, progress)
    except BaseException:
        for server in reversed(started):
            server.stop(progress)
        raise
    assert engine.proc and registry.proc and index.proc
    state = {"docker_host": engine.docker_host, "registry": registry.address, "index_url": index.url,
             "standin": standin, "docker_cli": docker_cli_path(),
             "processes": {name: p.as_json()
                           for name, p in (("engine", engine.proc), ("registry", registry.proc), ("index", index.proc))}}
    path = _state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2))
    return state


def down(progress: Progress) -> bool:
    """Stop what `up` started; False when nothing was running."""
    try:
        state = json.loads(_state_path().read_text())
    except (OSError, ValueError):
        return False
    stopped = False
    for name, timeout in (("index", 5), ("registry", 10), ("engine", _ENGINE_STOP_S)):
        try:
            proc = Proc(**state["processes"][name])
        except (KeyError, TypeError):
            continue
        if proc.process() is not None:
            progress(f"stopping the {name} (pid {proc.pid})")
            proc.stop_all(timeout)
            stopped = True
    unmount_below(Engine(images_cache()).exec_root)
    _state_path().unlink(missing_ok=True)
    return stopped


def exports(state: dict[str, Any]) -> str:
    """Shell lines for `eval "$(voxplane dev images env)"`: the engine for the Docker CLI, and for
    `voxplane images build|push` the stand-in and package index as extra build arguments (needed only
    where the pinned base or the package index cannot be reached; never PIP_INDEX_URL itself, which
    would point the shell's own pip at the loopback index)."""
    build_args = f"{python_standin.BUILD_ARG}={state['standin']} PIP_INDEX_URL={state['index_url']}"
    return "\n".join([f"export DOCKER_HOST={state['docker_host']}",
                      f"export VOXPLANE_DOCKER_CLI={state['docker_cli']}",
                      f"export VOXPLANE_BUILD_ARGS='{build_args}'",
                      "export VOXPLANE_BUILD_NETWORK=host"])
