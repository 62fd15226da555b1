"""Real Redis and livekit-server processes on loopback, for integration tests and local use.

The livekit-server config voxplane renders for a region is run as-is except for addresses and
ports, which are rewritten so that everything listens on 127.0.0.1 on free ports (see
`loopback_config`). livekit-server parses its config strictly, so a rendered config with an
unknown key fails to start here exactly as it would in the cluster.

Library use::

    with RedisServer() as redis, LiveKitServer(config, redis=redis) as lk:
        ...  # lk.url, lk.http_url, lk.api_key, lk.api_secret

Shell use (servers keep running in the background until `down`)::

    eval "$(python -m voxplane.dev.servers up [--config livekit.yaml])"
    python -m voxplane.dev.servers down

With `--region`, the region's authorizing gateway (voxplane/gateway) runs next to the server too,
with the config the region renders (addresses moved to loopback), and `up` also prints
`export VOXPLANE_LIVEKIT_TENANT_URL=...`: the URL tenant credentials work at
(`voxplane dev credentials REGION TENANT`).

Only the standard library is used. The config file is written as JSON, which is valid YAML.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Callable, Literal, Self

if TYPE_CHECKING:
    from ..model import Project, Region

__all__ = [
    "DEFAULT_CONFIG",
    "GatewayServer",
    "LOOPBACK",
    "LiveKitServer",
    "RedisServer",
    "ServerStartError",
    "cache_dir",
    "ensure_livekit_binary",
    "free_port",
    "free_ports",
    "loopback_config",
    "main",
    "region_gateway",
]

LOOPBACK = "127.0.0.1"

# scripts/ensure-servers.sh, next to this package in the repository.
_ENSURE_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ensure-servers.sh"

# livekit-server reads every config key from a LIVEKIT_* variable too (and LIVEKIT_CONFIG
# replaces --config entirely), plus these legacy names. A stray export in the caller's shell
# would silently override the config we write, so children never see them.
_LIVEKIT_ENV_NAMES = frozenset({"NODE_IP", "UDP_PORT", "REDIS_HOST", "REDIS_PASSWORD"})

# redis.* settings that only make sense for the deployment's Redis.
_REDIS_REMOTE_KEYS = frozenset({
    "username", "password", "use_tls", "tls", "max_redirects", "cluster_addresses",
    "sentinel_master_name", "sentinel_username", "sentinel_password", "sentinel_addresses",
})

# The built-in config for `up` without --config: voxplane's region configs supply the rest.
DEFAULT_CONFIG: Mapping[str, Any] = {
    "region": "local",
    "logging": {"level": "info"},
    "room": {"empty_timeout": 300},
}


class ServerStartError(RuntimeError):
    """A server could not be built, started, or did not become ready in time."""


def cache_dir() -> Path:
    """`$VOXPLANE_CACHE`, or ~/.cache/voxplane (the same default as ensure-servers.sh)."""
    env = os.environ.get("VOXPLANE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "voxplane"


# --------------------------------------------------------------------------- ports


def free_ports(count: int, kind: Literal["tcp", "udp"] = "tcp") -> list[int]:
    """`count` distinct ports that are free on 127.0.0.1 right now.

    All probe sockets stay open until every port is picked, so the kernel cannot hand out the
    same port twice. Another process may still take one before we use it; that race is rare
    and shows up as a clear "address already in use" start error.
    """
    sock_type = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    probes: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, sock_type)
            probes.append(s)
            s.bind((LOOPBACK, 0))
        return [s.getsockname()[1] for s in probes]
    finally:
        for s in probes:
            s.close()


def free_port(kind: Literal["tcp", "udp"] = "tcp") -> int:
    """One port that is free on 127.0.0.1 right now (see `free_ports`)."""
    return free_ports(1, kind)[0]


# --------------------------------------------------------------------------- processes


def _child_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LIVEKIT_") and k not in _LIVEKIT_ENV_NAMES
    }


def _tail(path: Path, lines: int = 20) -> str:
    try:
        with path.open("r", errors="replace") as f:
            return "".join(deque(f, maxlen=lines)).rstrip()
    except OSError:
        return "(no log)"


def _terminate(pid: int, timeout: float, term_twice: bool = False) -> None:
    """Stop `pid`: SIGTERM, [a second SIGTERM,] then SIGKILL, within `timeout` seconds.

    Works for processes we did not spawn in this interpreter (`down`), so it polls with
    signal 0 instead of waitpid.
    """
    signals = [signal.SIGTERM, signal.SIGTERM] if term_twice else [signal.SIGTERM]
    # The first SIGTERM gets most of the time (graceful drain), the second the rest.
    shares = [0.6, 0.4] if term_twice else [1.0]
    for sig, share in zip(signals, shares):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout * share
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers signal 0; treat it as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class _Process:
    """Shared plumbing: a working directory, a log file and one child process."""

    name = "server"
    _term_twice = False

    def __init__(self, workdir: Path | str | None, detached: bool) -> None:
        self._detached = detached
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._workdir = Path(workdir) if workdir is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

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
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last `lines` lines the server wrote (stdout and stderr together)."""
        return _tail(self.log_path, lines)

    def _spawn(self, argv: list[str], env: Mapping[str, str] | None = None) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        try:
            self._proc = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env={**_child_env(), **(env or {})},
                stdin=subprocess.DEVNULL,
                # livekit-server prints config errors on stdout, logs on stderr: keep both.
                stdout=self._log,
                stderr=subprocess.STDOUT,
                # Detached servers outlive us and must not get the terminal's Ctrl-C.
                start_new_session=self._detached,
            )
        except OSError as e:
            self._cleanup()
            raise ServerStartError(
                f"{self.name}: cannot run {argv[0]}: {e} (scripts/ensure-servers.sh installs it)"
            ) from e

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

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if still running after `timeout` seconds; removes a temporary
        workdir. For livekit-server a second SIGTERM comes first (see `_term_twice`)."""
        if self._proc is not None:
            if self._proc.poll() is None:
                _terminate(self._proc.pid, timeout, self._term_twice)
                self._proc.wait()  # reap; SIGKILL has been sent if it was still alive
            self._proc = None
        self._cleanup()

    def kill(self) -> None:
        """SIGKILL now, without letting the server drain."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _cleanup(self) -> None:
        self._close_log()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self._workdir = None


# --------------------------------------------------------------------------- redis

    def start(self) -> Self:  # each server knows how to start and wait for itself
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class RedisServer(_Process):
    """A throwaway redis-server on 127.0.0.1 with persistence off."""

    name = "redis"

    def __init__(
        self,
        port: int | None = None,
        *,
        executable: str = "redis-server",
        startup_timeout: float = 10.0,
        workdir: Path | str | None = None,
        detached: bool = False,
    ) -> None:
        super().__init__(workdir, detached)
        self.port = port or free_port("tcp")
        self.executable = executable
        self.startup_timeout = startup_timeout

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> Self:
        # fmt: off
        self._spawn([
            self.executable,
            "--port", str(self.port),
            "--bind", LOOPBACK,
            "--save", "",            # no RDB snapshots
            "--appendonly", "no",    # no AOF
            "--protected-mode", "yes",
            "--dir", str(self.workdir),
            "--daemonize", "no",     # we own the process; logs go to stdout -> log file
        ])
        # fmt: on
        self._await_start(self.ping, "did not answer PING", 0.05, self.startup_timeout)
        return self

    def ping(self) -> bool:
        """True when the server answers a RESP PING with +PONG."""
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=1.0) as s:
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False


# --------------------------------------------------------------------------- livekit


def loopback_config(
    config: Mapping[str, Any],
    *,
    port: int,
    rtc_tcp_port: int,
    rtc_udp_port: int,
    redis_address: str | None,
    prometheus_port: int | None = None,
    debug_port: int | None = None,
) -> dict[str, Any]:
    """A copy of a livekit-server `config` with only addresses and ports changed for loopback.

    Everything else (keys, region, room, logging, limits, webhook, ...) is kept, so the
    server still validates the rest of the rendered config.
    """
    cfg: dict[str, Any] = copy.deepcopy(dict(config))

    cfg["port"] = port
    # Signal/API, Prometheus and debug listeners all bind to these addresses.
    cfg["bind_addresses"] = [LOOPBACK]

    rtc: dict[str, Any] = dict(cfg.get("rtc") or {})
    # A port range wins over udp_port in livekit-server; one muxed UDP port is enough here.
    for key in ("port_range_start", "port_range_end", "interfaces", "turn_servers"):
        rtc.pop(key, None)
    rtc["udp_port"] = rtc_udp_port
    rtc["tcp_port"] = rtc_tcp_port  # note: the ICE/TCP listener binds all interfaces
    rtc["use_external_ip"] = False  # no STUN lookups of a public IP
    rtc["node_ip"] = LOOPBACK  # advertised in ICE candidates
    # Gather and bind only loopback addresses, and allow them as ICE candidates, so clients on
    # this host can reach the media port and nothing else can.
    rtc["enable_loopback_candidate"] = True
    rtc["ips"] = {"includes": [f"{LOOPBACK}/8"]}
    cfg["rtc"] = rtc

    if redis_address is not None:
        # Our Redis is a plain single instance: drop credentials, TLS, sentinel and cluster
        # settings; keep the rest (db, timeouts, pool size).
        redis = {k: v for k, v in (cfg.get("redis") or {}).items() if k not in _REDIS_REMOTE_KEYS}
        redis["address"] = redis_address
        cfg["redis"] = redis
    else:
        cfg.pop("redis", None)  # single-node mode (SIP, egress, ingress APIs then refuse)

    # The embedded TURN server would need a domain, TLS certificate and relay ports.
    cfg["turn"] = {"enabled": False}

    cfg.pop("prometheus_port", None)  # deprecated spelling of prometheus.port
    if prometheus_port is not None:
        cfg["prometheus"] = {**(cfg.get("prometheus") or {}), "port": prometheus_port}
    else:
        cfg.pop("prometheus", None)

    if debug_port is not None:
        cfg["debug_handler"] = {**(cfg.get("debug_handler") or {}), "port": debug_port}
    else:
        cfg.pop("debug_handler", None)

    return cfg


def _prometheus_enabled(config: Mapping[str, Any]) -> bool:
    prom = config.get("prometheus") or {}
    return bool(config.get("prometheus_port") or (isinstance(prom, Mapping) and prom.get("port")))


def _debug_enabled(config: Mapping[str, Any]) -> bool:
    dbg = config.get("debug_handler") or {}
    return bool(isinstance(dbg, Mapping) and dbg.get("port"))


class LiveKitServer(_Process):
    """livekit-server on loopback, run with `--config FILE` from a config mapping."""

    name = "livekit"
    # livekit-server drains on the first SIGTERM (waiting, without limit, for participants to
    # leave) and shuts down at once on the second. Worse, a SIGTERM that lands within ~100 ms
    # of the health check first passing is lost: Stop() returns early while the server is not
    # yet marked running. The second SIGTERM covers both.
    _term_twice = True

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        redis: RedisServer | str | None = None,
        binary: Path | str | None = None,
        startup_timeout: float = 30.0,
        workdir: Path | str | None = None,
        detached: bool = False,
    ) -> None:
        """`redis` is a RedisServer or a "host:port" address; None runs single-node
        (no SIP/egress/ingress). `binary` defaults to `ensure_livekit_binary()`."""
        super().__init__(workdir, detached)
        source: dict[str, Any] = dict(DEFAULT_CONFIG if config is None else config)
        redis_address = redis.address if isinstance(redis, RedisServer) else redis

        # API keys come from the config; key_file points at a deployment path, so drop it.
        source.pop("key_file", None)
        keys = source.get("keys")
        if isinstance(keys, Mapping) and keys:
            self.api_key, self.api_secret = (str(x) for x in next(iter(keys.items())))
        elif "keys" in source:
            # Present but empty or malformed: let the server reject it with its own message.
            self.api_key, self.api_secret = "", ""
        else:
            self.api_key = "voxplane-dev-" + secrets.token_hex(4)
            self.api_secret = secrets.token_urlsafe(32)  # 43 chars; the server wants >= 32
            source["keys"] = {self.api_key: self.api_secret}

        self.port, tcp_port, prom_port, debug_port = free_ports(4, "tcp")
        self.config: dict[str, Any] = loopback_config(
            source,
            port=self.port,
            rtc_tcp_port=tcp_port,
            rtc_udp_port=free_port("udp"),
            redis_address=redis_address,
            prometheus_port=prom_port if _prometheus_enabled(source) else None,
            debug_port=debug_port if _debug_enabled(source) else None,
        )
        self.binary = Path(binary) if binary is not None else None
        self.startup_timeout = startup_timeout

    @property
    def url(self) -> str:
        return f"ws://{LOOPBACK}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "livekit.yaml"

    @property
    def prometheus_port(self) -> int | None:
        prom = self.config.get("prometheus")
        return int(prom["port"]) if prom else None

    def start(self) -> Self:
        binary = self.binary or ensure_livekit_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The config holds the API secret: create it 0600 before writing a byte.
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to an existing file
        with os.fdopen(fd, "w") as f:
            json.dump(self.config, f, indent=2)  # JSON is YAML; no PyYAML needed
            f.write("\n")

        # Not --dev: that would switch on debug logging and pprof and relax key checks.
        self._spawn([str(binary), "--config", str(self.config_path)])
        # Config errors make livekit-server print a line and exit, with status 0.
        self._await_start(self.healthy, f"not healthy at {self.http_url}/", 0.1, self.startup_timeout)
        # GET / answers 200 about 100 ms before the server marks itself running and
        # can act on SIGTERM (see _term_twice); let that window pass.
        time.sleep(0.25)
        return self

    def healthy(self) -> bool:
        """True when GET / answers 200 ("OK"); it answers 406 until the node reports stats."""
        try:
            with urllib.request.urlopen(self.http_url + "/", timeout=1.0) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False


# --------------------------------------------------------------------------- binary


def ensure_livekit_binary() -> Path:
    """Path of the pinned livekit-server build, building it first if needed (minutes).

    Runs scripts/ensure-servers.sh --print-path, which also installs redis-server. Its
    progress lines pass through to our stderr.
    """
    if not _ENSURE_SCRIPT.is_file():
        raise ServerStartError(f"{_ENSURE_SCRIPT} not found (voxplane not run from its checkout?)")
    err_lines: list[str] = []
    with subprocess.Popen(
        ["bash", str(_ENSURE_SCRIPT), "--print-path"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        for line in proc.stderr:  # stdout gets one short line only, so this cannot deadlock
            sys.stderr.write(line)
            err_lines.append(line)
        out = proc.stdout.read()
    if proc.returncode != 0:
        raise ServerStartError(
            f"{_ENSURE_SCRIPT.name} failed (exit {proc.returncode}):\n"
            + "".join(err_lines[-20:]).rstrip()
        )
    path = Path(out.strip())
    if not path.is_file():
        raise ServerStartError(f"{_ENSURE_SCRIPT.name} printed {out.strip()!r}: not a file")
    return path


# --------------------------------------------------------------------------- CLI


def _state_path() -> Path:
    return cache_dir() / "devservers.json"


def _load_config_file(path: Path) -> dict[str, Any]:
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            import yaml  # JSON needs nothing, YAML needs PyYAML (a dependency)
        except ImportError as e:
            raise SystemExit(f"{path}: not JSON, and PyYAML is not installed to read YAML") from e
        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: expected a mapping at the top level")
    return data


def _owned(pid: int, needle: str) -> bool:
    """True if `pid` is alive and its command line contains `needle` (guards pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return needle in cmdline and _alive(pid)


def _exports(state: Mapping[str, Any]) -> str:
    lk = state["livekit"]
    pairs = {
        "LIVEKIT_URL": lk["url"],
        "LIVEKIT_API_KEY": lk["api_key"],
        "LIVEKIT_API_SECRET": lk["api_secret"],
    }
    if "gateway" in state:
        # Where tenant credentials work (they are not valid at LIVEKIT_URL, the server itself).
        pairs["VOXPLANE_LIVEKIT_TENANT_URL"] = state["gateway"]["url"]
    return "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in pairs.items())


def _running_state() -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(_state_path().read_text())
        if _owned(state["livekit"]["pid"], state["livekit"]["binary"]) and _owned(
            state["redis"]["pid"], "redis-server"
        ) and ("gateway" not in state or _owned(state["gateway"]["pid"], "voxplane.gateway")):
            return state
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def load_region(name: str, root: Path) -> tuple[Project, Region]:
    """The valid project at `root` and its region `name`; ValueError naming the first problems, or
    the regions there are."""
    from ..loader import load

    result = load((), root)
    if result.problems or result.project is None:
        raise ValueError("; ".join(str(p) for p in result.problems[:3]) or "invalid manifests")
    region = result.project.regions.get(name)
    if region is None:
        raise ValueError(f"no region {name!r} (regions: {', '.join(sorted(result.project.regions))})")
    return result.project, region


def region_config(name: str, root: Path) -> dict[str, Any]:
    """The livekit-server config voxplane renders for region `name`, with dev API keys.

    The admin key (the one `voxplane livekit sync` uses) comes first, then the gateway's: the
    platform's keys only, as in the cluster (tenant keys are the gateway's, see `region_gateway`).
    Their secrets derive from the region's *dev* root secret (a random value kept under the cache,
    `voxplane.dev.stack.dev_root_secret`), exactly as the stack derives them from
    `livekitRootSecret`: the dev stack's keys match this server, and no production secret is
    involved. Raises ValueError with the manifest problems when the manifests are invalid.
    """
    from ..desired.common import ADMIN_KEY, platform_api_keys
    from ..desired.livekit_config import server_config

    _, region = load_region(name, root)
    config = server_config(region, redis_address=f"{LOOPBACK}:6379")  # replaced by the real address
    names = [ADMIN_KEY] + [k for k in platform_api_keys() if k != ADMIN_KEY]
    from .stack import dev_root_secret
    from ..keys import derive_api_secret

    root_secret = dev_root_secret(name)
    config["keys"] = {key: derive_api_secret(root_secret, name, key) for key in names}
    return config


def region_gateway(name: str, root: Path, *, upstream: str) -> tuple[str, dict[str, str]]:
    """The gateway config region `name` renders (its ConfigMap's config.json) with addresses moved
    to loopback and `upstream` (livekit-server's http:// URL), plus the keys its Secret holds, their
    secrets derived from the region's dev root secret. `GatewayServer` fills in ports and folder."""
    from ..desired.gateway import CONFIG_FILE, build_gateway
    from .stack import dev_root_secret
    from ..keys import derive_api_secret

    project, region = load_region(name, root)
    objects = build_gateway(region, project.agents_in(name), image="")
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"][CONFIG_FILE]
    key_names = next(o for o in objects if o["kind"] == "Secret")["stringData"]
    root_secret = dev_root_secret(name)
    keys = {k: derive_api_secret(root_secret, name, k) for k in key_names}
    data = json.loads(config)
    data["upstream"] = upstream
    return json.dumps(data, indent=2, sort_keys=True) + "\n", keys


class GatewayServer(_Process):
    """The gateway (`python -m voxplane.gateway serve`) on loopback, from a rendered config whose
    listen addresses and keys folder are replaced; `keys` maps key names to secrets."""

    name = "gateway"
    # The first SIGTERM starts a drain (readiness fails, sockets stay); the second ends it.
    _term_twice = True

    def __init__(
        self,
        config_json: str,
        keys: Mapping[str, str],
        *,
        startup_timeout: float = 20.0,
        workdir: Path | str | None = None,
        detached: bool = False,
        python: str = sys.executable,
        pythonpath: Path | None = None,
    ) -> None:
        """`python` and `pythonpath`: the interpreter and import path to run the gateway with
        (default: this one's; tests run it as its image does, from a copy of the build context)."""
        super().__init__(workdir, detached)
        self.port, self.metrics_port = free_ports(2, "tcp")
        self._python, self._pythonpath = python, pythonpath
        self._source = json.loads(config_json)
        self._keys = dict(keys)
        self.startup_timeout = startup_timeout

    @property
    def url(self) -> str:
        return f"ws://{LOOPBACK}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "gateway.json"

    def start(self) -> Self:
        keys_dir = self.workdir / "gateway-keys"
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for key, secret in self._keys.items():
            fd = os.open(keys_dir / key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secret)
        config = {**self._source, "listen_host": LOOPBACK, "listen_port": self.port,
                  "metrics_port": self.metrics_port, "keys_dir": str(keys_dir)}
        self.config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        self._spawn([self._python, "-m", "voxplane.gateway", "serve", "--config", str(self.config_path)],
                    env={"PYTHONPATH": str(self._pythonpath)} if self._pythonpath else None)
        self._await_start(self.ready, f"not ready at {LOOPBACK}:{self.metrics_port}/readyz", 0.05, self.startup_timeout)
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{self.metrics_port}/readyz", timeout=1.0) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False


def _up(args: argparse.Namespace) -> int:
    if (state := _running_state()) is not None:
        print("devservers: already running; `down` first to change the config", file=sys.stderr)
        print(_exports(state))
        return 0
    _down()  # clear leftovers of a half-dead previous run

    if args.region:
        try:
            config = region_config(args.region, Path(args.root))
        except ValueError as e:
            print(f"devservers: {e}", file=sys.stderr)
            return 1
    else:
        config = _load_config_file(Path(args.config)) if args.config else dict(DEFAULT_CONFIG)
    workdir = cache_dir() / "devservers"
    binary = ensure_livekit_binary()
    redis = RedisServer(workdir=workdir, detached=True)
    lk = LiveKitServer(config, redis=redis, binary=binary, workdir=workdir, detached=True)
    gateway: GatewayServer | None = None
    try:
        redis.start()
        lk.start()
        if args.region:
            gateway_config, gateway_keys = region_gateway(args.region, Path(args.root), upstream=lk.http_url)
            gateway = GatewayServer(gateway_config, gateway_keys, workdir=workdir, detached=True).start()
    except (ServerStartError, ValueError) as e:
        lk.stop()
        redis.stop()
        print(f"devservers: {e}", file=sys.stderr)
        return 1

    state = {
        "redis": {"pid": redis.pid, "address": redis.address, "log": str(redis.log_path)},
        "livekit": {
            "pid": lk.pid,
            "binary": str(binary),
            "url": lk.url,
            "http_url": lk.http_url,
            "api_key": lk.api_key,
            "api_secret": lk.api_secret,
            "config": str(lk.config_path),
            "log": str(lk.log_path),
        },
    }
    if gateway is not None:
        state["gateway"] = {"pid": gateway.pid, "url": gateway.url, "config": str(gateway.config_path),
                            "log": str(gateway.log_path)}
    # Holds the API secret, like the config file.
    fd = os.open(_state_path(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=2)
    print(
        f"devservers: livekit-server {lk.http_url} (log {lk.log_path}), redis {redis.address}"
        + (f", gateway {gateway.http_url} (log {gateway.log_path})" if gateway is not None else ""),
        file=sys.stderr,
    )
    print(_exports(state))
    return 0


def _down() -> int:
    path = _state_path()
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return 0
    gw = state.get("gateway", {})
    if gw.get("pid") and _owned(gw["pid"], "voxplane.gateway"):
        _terminate(gw["pid"], timeout=5.0, term_twice=True)
    # LiveKit first: it unregisters its node from Redis while draining.
    lk, redis = state.get("livekit", {}), state.get("redis", {})
    if lk.get("pid") and _owned(lk["pid"], lk.get("binary", "livekit-server")):
        _terminate(lk["pid"], timeout=5.0, term_twice=True)
    if redis.get("pid") and _owned(redis["pid"], "redis-server"):
        _terminate(redis["pid"], timeout=5.0)
    path.unlink(missing_ok=True)
    print("devservers: stopped", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m voxplane.dev.servers",
        description="Run Redis + livekit-server on loopback in the background.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help='start; prints "export LIVEKIT_URL=... ..." for eval (with --region, the '
                                   "region's gateway too, and VOXPLANE_LIVEKIT_TENANT_URL)")
    source = up.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="FILE", help="livekit-server config (YAML or JSON)")
    source.add_argument("--region", metavar="NAME", help="use the config voxplane renders for this region")
    up.add_argument("--root", default=".", help="repository root for --region (default: .)")
    sub.add_parser("down", help="stop what `up` started")
    sub.add_parser("env", help='print "export LIVEKIT_URL=... ..." of the running servers; exit 1 if none')
    args = parser.parse_args(argv)

    cache_dir().mkdir(parents=True, exist_ok=True)
    if args.command == "up":
        return _up(args)
    if args.command == "env":
        state = _running_state()
        if state is None:
            print("devservers: not running (`make livekit-up`)", file=sys.stderr)
            return 1
        print(_exports(state))
        return 0
    return _down()


if __name__ == "__main__":
    sys.exit(main())
