"""The Docker CLI, as a build pipeline drives it: build with BuildKit where the client has it,
push, and ask a registry which digest a tag names.

BuildKit: Docker's 18.09-22.x clients build with it when `DOCKER_BUILDKIT=1`; from 23.0 on the
client needs its buildx plugin for that and refuses `DOCKER_BUILDKIT=1` without it, falling back to
the legacy builder otherwise. `DockerCli.buildkit` picks what this client can do.

A registry on a loopback address is spoken to over plain HTTP, as the Docker engine does by
default for 127.0.0.0/8; every other registry over HTTPS only.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
import shutil
import subprocess
from collections import deque
from pathlib import Path
from typing import Mapping, Optional, Sequence

#: `docker push` ends with `<tag>: digest: sha256:… size: N`.
_PUSHED_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")


class DockerError(RuntimeError):
    """A docker command failed; the message says which and ends with its last output lines."""


class EngineUnreachable(DockerError):
    """No Docker CLI, or no engine answering it; the message is one line saying which."""


class DockerCli:
    """One Docker CLI executable talking to one engine (`env`: DOCKER_HOST and the rest)."""

    def __init__(self, executable: str = "docker", env: Optional[Mapping[str, str]] = None):
        self.executable = executable
        self.env = dict(os.environ if env is None else env)

    # --- the engine ---------------------------------------------------------------------------

    def check_engine(self) -> str:
        """The engine's version; EngineUnreachable (one line) when there is no CLI or no engine."""
        path = shutil.which(self.executable, path=self.env.get("PATH"))
        if path is None:
            raise EngineUnreachable(f"no Docker CLI: {self.executable!r} not found on PATH")
        done = self._run(["version", "--format", "{{.Server.Version}}"], check=False)
        version = done.stdout.strip()
        if done.returncode != 0 or not version:
            reason = next((ln.strip() for ln in (done.stderr or done.stdout).splitlines() if ln.strip()), "no answer")
            where = self.env.get("DOCKER_HOST") or "the default socket"
            raise EngineUnreachable(f"no Docker engine reachable at {where}: {reason}")
        return version

    @functools.cached_property
    def buildkit(self) -> bool:
        """Whether this client builds with BuildKit (built in before 23.0, the buildx plugin after)."""
        done = self._run(["version", "--format", "{{.Client.Version}}"], check=False)
        major = re.match(r"(\d+)\.", done.stdout.strip())
        if major and int(major.group(1)) < 23:
            return True
        return self._run(["buildx", "version"], check=False).returncode == 0

    # --- images -------------------------------------------------------------------------------

    def build(self, *, context: Path, dockerfile: Path, tag: str, args: Mapping[str, str],
              platform: Optional[str] = None, network: Optional[str] = None, log: Optional[Path] = None) -> None:
        """`docker build` of `context` with `dockerfile` into `tag` (its output to `log`)."""
        argv = ["build", "--file", str(dockerfile), "--tag", tag]
        if platform:
            argv += ["--platform", platform]
        if network:
            argv += ["--network", network]
        for key, value in args.items():
            argv += ["--build-arg", f"{key}={value}"]
        argv.append(str(context))
        env = {"DOCKER_BUILDKIT": "1" if self.buildkit else "0", "BUILDKIT_PROGRESS": "plain"}
        self._logged(argv, log, f"building {tag}", env)

    def push(self, name: str, log: Optional[Path] = None) -> str:
        """Push `name` (repository:tag); the digest the registry answered (sha256:…)."""
        out = self._logged(["push", name], log, f"pushing {name}")
        found = _PUSHED_DIGEST.findall(out)
        if not found:
            raise DockerError(f"pushing {name}: docker push printed no digest")
        return found[-1]

    def remote_digest(self, name: str) -> Optional[str]:
        """The digest `name` (repository:tag) has in its registry; None when the registry has no such tag."""
        argv = ["manifest", "inspect", "--verbose"]
        if is_loopback_registry(name):
            argv.append("--insecure")  # plain HTTP, as the engine speaks to a loopback registry
        done = self._run([*argv, name], check=False, extra_env={"DOCKER_CLI_EXPERIMENTAL": "enabled"})
        if done.returncode != 0:
            text = (done.stderr + done.stdout).strip()
            if "no such manifest" in text or "manifest unknown" in text:
                return None
            raise DockerError(f"asking the registry for {name}: {_last_lines(text, 3)}")
        data = json.loads(done.stdout)
        if not isinstance(data, dict):
            raise DockerError(f"{name} is a manifest list; voxplane builds and pushes one platform per image")
        return str(data["Descriptor"]["digest"])

    def has_local(self, ref: str) -> bool:
        """Whether the engine holds the image `ref`."""
        return self._run(["image", "inspect", ref], check=False).returncode == 0

    # --- plumbing -----------------------------------------------------------------------------

    def _run(self, argv: Sequence[str], *, check: bool = True, extra_env: Optional[Mapping[str, str]] = None
             ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([self.executable, *argv], env={**self.env, **(extra_env or {})}, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise DockerError(f"docker {argv[0]} failed: {_last_lines(done.stderr or done.stdout, 5)}")
        return done

    def _logged(self, argv: Sequence[str], log: Optional[Path], what: str,
                extra_env: Optional[Mapping[str, str]] = None) -> str:
        """Run with output kept (in `log` when given); DockerError with its last lines on failure."""
        done = subprocess.run([self.executable, *argv], env={**self.env, **(extra_env or {})}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("a") as f:
                f.write(f"$ docker {' '.join(argv)}\n{done.stdout}\n")
        if done.returncode != 0:
            more = f" (full output: {log})" if log is not None else ""
            raise DockerError(f"{what} failed{more}:\n{_last_lines(done.stdout, 25)}")
        return done.stdout


def is_loopback_registry(name: str) -> bool:
    """Whether the registry of image `name` is on a loopback address (127.0.0.0/8, ::1, localhost)."""
    host = name.split("/", 1)[0]
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _last_lines(text: str, count: int) -> str:
    return "\n".join(deque((ln for ln in text.strip().splitlines() if ln.strip()), maxlen=count)) or "(no output)"
