"""What changes when an agent pod's container runs as a process on this machine instead of in its
pod, each change listed with its reason (tests/agents' worker tests make the same ones):

- **Addresses.** A value that is a URL or `host:port` of a cluster Service
  (`<svc>.<ns>.svc[.<domain>]`) gets the address of the process standing in for that Service
  (`standins`: the dev LiveKit server, the gateway, a test's model server); one with no stand-in,
  and one of a host outside this machine (an external provider), gets a closed port on 127.0.0.1:
  the address is unreachable here, and nothing is ever sent off the machine.
- **Ports.** Each container port gets a free loopback port (several workers share this host as
  they share no network namespace in a cluster); a variable whose value is a container port's
  number (`VOXPLANE_HEALTH_PORT`, `VOXPLANE_METRICS_PORT`) gets the new one, and the probes and the
  scrape targets use it too.
- **Prewarmed processes.** `VOXPLANE_IDLE_PROCESSES` above `max_idle_processes` is lowered to it
  (each prewarmed job process is ~140 MB; a small machine runs fewer). The rendered value's
  contract is tested by tests/agents, which runs it as rendered.
- **The image.** What the image's Dockerfiles set (`ENV`), its `PYTHONPATH` being the glue's folder
  here (agents/_platform, the base image's /opt/voxplane); `HOME` and `TMPDIR` in the worker's own
  folder (multiprocessing's forkserver socket needs a short path); `HOSTNAME`, the pod's name, as
  the container runtime sets it; `HF_HUB_OFFLINE=1` (the image has its model files baked in:
  nothing is downloaded here either).

Values from Secrets are never rewritten and never shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlsplit

from .podenv import ContainerRun
from .ports import LOOPBACK
from .standins import StandIns

__all__ = ["Launch", "Rewrite", "image_env", "rewrite"]

#: `<svc>.<ns>.svc` or `<svc>.<ns>.svc.<cluster domain>`, optionally `:port`.
_SERVICE_HOST = re.compile(r"^(?P<svc>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\.(?P<ns>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\.svc(\.[a-z0-9.-]+)?$")
_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
IDLE_PROCESSES = "VOXPLANE_IDLE_PROCESSES"


@dataclass(frozen=True)
class Rewrite:
    variable: str
    rendered: str
    here: str
    why: str

    def as_dict(self) -> dict[str, str]:
        return {"variable": self.variable, "rendered": self.rendered, "here": self.here, "why": self.why}


@dataclass
class Launch:
    """A container as a process here: argv, full environment, container port -> loopback port,
    and every change made to what the pod says."""

    argv: list[str]
    env: dict[str, str]
    ports: dict[int, int]
    rewrites: list[Rewrite] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def image_env(dockerfiles: Sequence[Path]) -> dict[str, str]:
    """The `ENV` instructions of `dockerfiles`, in order (`ENV K=V K2=V2`, continued lines)."""
    env: dict[str, str] = {}
    for dockerfile in dockerfiles:
        text = re.sub(r"\\\n", " ", dockerfile.read_text())
        for line in text.splitlines():
            words = line.strip().split()
            if not words or words[0].upper() != "ENV":
                continue
            if len(words) == 3 and "=" not in words[1]:  # legacy `ENV KEY value`
                env[words[1]] = words[2]
                continue
            for word in words[1:]:
                key, sep, value = word.partition("=")
                if sep:
                    env[key] = value.strip('"')
    return env


def _service(host: str) -> tuple[str, str] | None:
    match = _SERVICE_HOST.match(host)
    return (match.group("ns"), match.group("svc")) if match else None


def rewrite(run: ContainerRun, *, pod: Mapping[str, Any], container: Mapping[str, Any], standins: StandIns,
            free_port: Callable[[], int], python: Path, program: Path, glue: Path, workdir: Path, tmpdir: Path,
            image: Mapping[str, str], max_idle_processes: int | None) -> Launch:
    """The process for `run` (the container's resolved argv and env) on this machine."""
    meta = pod.get("metadata") or {}
    env = dict(run.env)
    changes: list[Rewrite] = []
    notes: list[str] = []

    def change(variable: str, value: str, why: str) -> None:
        changes.append(Rewrite(variable, env.get(variable, "(unset)"), value, why))
        env[variable] = value

    closed: dict[str, int] = {}

    def unreachable(what: str) -> str:
        if what not in closed:
            closed[what] = free_port()  # nothing listens there: connection refused
        return f"{LOOPBACK}:{closed[what]}"

    # Ports: every container port moves; variables carrying its number follow.
    ports: dict[int, int] = {}
    for port in container.get("ports") or []:
        if str(port.get("protocol", "TCP")) == "TCP":
            ports[int(port["containerPort"])] = free_port()
    for name in list(env):
        if name in run.from_secrets:
            continue
        value = env[name]
        if value.isdigit() and int(value) in ports:
            change(name, str(ports[int(value)]), f"container port {value}: each worker listens on its own loopback port")
    for number, here in ports.items():
        if not any(c.here == str(here) for c in changes):
            notes.append(f"container port {number} is passed to the program by no variable: it listens where it chooses")

    # Addresses.
    for name in list(env):
        if name in run.from_secrets:
            continue
        value = env[name]
        parts = urlsplit(value) if "://" in value else None
        host, port, scheme = None, None, ""
        if parts is not None and parts.scheme in _DEFAULT_PORTS and parts.hostname:
            host, scheme = parts.hostname, parts.scheme
            try:
                port = parts.port or _DEFAULT_PORTS[scheme]
            except ValueError:
                continue
        elif parts is None and re.fullmatch(r"[a-z0-9.-]+:\d+", value):
            host, _, raw_port = value.rpartition(":")
            port = int(raw_port)
        if host is None or port is None or host in _LOCAL_HOSTS:
            continue
        service = _service(host)
        if service is not None:
            address = standins.service(service[0], service[1], port)
            why = (f"Service {service[0]}/{service[1]} port {port}: played by {address}" if address else
                   f"Service {service[0]}/{service[1]} port {port} has no stand-in on this machine: unreachable")
            address = address or unreachable(f"{service[0]}/{service[1]}:{port}")
        else:
            address = unreachable(f"{host}:{port}")
            why = f"{host} is outside this machine: unreachable (nothing is sent off the machine)"
        netloc = parts.netloc if parts is not None else value
        userinfo = netloc.rpartition("@")[0] + "@" if "@" in netloc else ""
        new = (parts._replace(netloc=userinfo + address).geturl() if parts is not None else address)
        change(name, new, why)

    if max_idle_processes is not None and env.get(IDLE_PROCESSES, "").strip().isdigit() and \
            int(env[IDLE_PROCESSES]) > max_idle_processes:
        change(IDLE_PROCESSES, str(max_idle_processes),
               f"~140 MB per prewarmed job process: this machine runs at most {max_idle_processes} per worker "
               "(the rendered value is run as rendered by tests/agents)")

    # The image's environment, under what the pod sets (the runtime puts the image's ENV first).
    full = {k: v for k, v in image.items()}
    image_changes = {
        "PYTHONPATH": (str(glue), "the base image's glue folder (/opt/voxplane) is agents/_platform here"),
        "PATH": (f"{python.parent}:/usr/local/bin:/usr/bin:/bin", "the agents' venv (scripts/ensure-agents-venv.sh)"),
        "HOME": (str(workdir / "home"), "the worker's own folder"),
        "TMPDIR": (str(tmpdir), "a short folder of its own (the forkserver's socket path is limited)"),
        "HOSTNAME": (str(meta.get("name", "")), "the pod's name, as the container runtime sets it"),
        "HF_HUB_OFFLINE": ("1", "the image has its model files baked in: nothing is downloaded here either"),
    }
    for name, (value, why) in image_changes.items():
        if name in env:  # the pod's own value wins, as in the container
            continue
        if name in full and full[name] == value:
            continue
        changes.append(Rewrite(name, full.get(name, "(unset)"), value, why))
        full[name] = value
    full.update(env)

    argv = list(run.argv)
    if not argv:
        raise ValueError("the container sets no command (the image's CMD is not read here)")
    if Path(argv[0]).name not in ("python", "python3"):
        raise ValueError(f"the container runs {argv[0]!r}; the pod runner runs Python programs only")
    changes.append(Rewrite("(command)", " ".join(argv), " ".join([str(python), *argv[1:]]),
                           f"the agents' venv Python, in {program} (the image's WORKDIR)"))
    argv[0] = str(python)
    return Launch(argv, full, ports, changes, notes)
