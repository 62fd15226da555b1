"""Fixtures for the image tests: every image of the repository built from its Dockerfile as the
`local` stack builds it, pushed to a registry on loopback, and run with its pod's own constraints.

- `built` (session): the local image tooling (voxplane/dev/images.py: engine, registry, package
  index, Python base stand-in), the images `voxplane.images.stack.repository_images` reads from the
  program for every region (an image only another region builds, the LLM router's, included), with
  every agent folder built from source (the scheduler's manifest names a published image; its folder
  is built as `code.build` would build it), pushed (`voxplane.images.publish`), their digests
  recorded in a copy of the repository's manifests, and every region rendered there: the pod specs
  name the pushed digests, read from the record as a stack that does not build reads it. The tooling stops at the end of the session, and its teardown checks that nothing of
  it is left running.
- `pod_containers`: run a rendered pod's container (voxplane/dev/pod_container.py) and remove it
  afterwards.

Nothing skips: a package that is not installed, an engine that does not start or an image that
does not build fails the test with the reason (scripts/ensure-images.sh installs and prepares).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import psutil
import pytest

from tests.support.repo import REPO, copy_manifests
from voxplane.dev.images import LocalImages, Running
from voxplane.dev.pod_container import run_argv, write_env_file
from voxplane.images.docker import DockerCli
from voxplane.images.publish import Outcome, publish
from voxplane.images.record import record_path, write_record
from voxplane.images.stack import ImageBuild, agents_from_source, repository_images
from voxplane.manifest.loader import load, load_region
from voxplane.deploy.render import render

REGION = "local"
#: Label on every container a test starts, so a failed run's leftovers are found and removed.
LABEL = "voxplane.io/test-run"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The first test to use `built` starts the tooling and builds every image changed since the
    last run (a minute or two; more where `make images` has not prepared the cache): its own
    bound, not a check of how long it took."""
    for item in items:
        if "built" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(1200))


def host_network() -> dict[str, str]:
    """What the engine must leave alone: the interfaces, IPv4 forwarding and the iptables rules."""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    # docker.io depends on iptables, so it is there once the tooling is installed.
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    return {"links": "\n".join(sorted(ln.split(":")[1].strip() for ln in links.splitlines() if ":" in ln)),
            "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
            "iptables": "\n".join(ln for ln in rules.splitlines() if not ln.startswith("#"))}


@dataclass
class Built:
    """The images as built and pushed, and the region rendered to run them."""

    running: Running
    images: list[ImageBuild]
    outcomes: list[Outcome]
    #: A copy of the repository's manifests holding the record of the pushed digests.
    root: Path
    #: The `local` render of `root` (every agent from source; the registry is the suite's).
    kubernetes: list[dict[str, Any]]
    #: Every region's render of `root`, `local`'s included, as `kubernetes` is rendered.
    renders: dict[str, list[dict[str, Any]]]
    network_before: dict[str, str]
    log: Path

    @property
    def registry(self) -> str:
        return f"{self.running.registry}/voxplane"

    def docker(self) -> DockerCli:
        return self.running.docker()

    def image(self, context: str) -> ImageBuild:
        (image,) = [i for i in self.images if i.context == (REPO / context).resolve()]
        return image

    def digest(self, image: ImageBuild) -> str:
        (outcome,) = [o for o in self.outcomes if o.image.name == image.name]
        assert outcome.digest, outcome
        return outcome.digest

    def pulled(self, image: ImageBuild) -> str:
        """`name@digest` of `image`, in the engine (pulled: an image found in the registry from an
        earlier run was not built by this one, and the registry's port differs between runs)."""
        ref = f"{image.name}@{self.digest(image)}"
        pull(self.docker(), ref)
        return ref

    def deployment(self, name: str) -> dict[str, Any]:
        (obj,) = [o for o in self.kubernetes if o["kind"] == "Deployment" and o["metadata"]["name"] == name]
        return obj


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    before = host_network()
    wanted = repository_images(REPO, "127.0.0.1:1/voxplane")  # names only: wheels
    tooling = LocalImages(wanted)
    with tooling as running:
        ours = _processes(tooling)
        own_engine = tooling.engine.proc is not None  # else `voxplane dev images up` runs it
        registry = f"{running.registry}/voxplane"
        images = repository_images(REPO, registry)
        log = tmp_path_factory.mktemp("image-builds") / "docker.log"
        outcomes = publish(images, running.docker(), push=True, extra_args=running.build_args(), network="host",
                           log=log, progress=lambda line: print(f"images: {line}", flush=True))
        root = copy_manifests(tmp_path_factory.mktemp("record") / "repo")
        renders: dict[str, list[dict[str, Any]]] = {}
        for region in sorted(load((), root).require_project().regions):
            write_record(record_path(root, region), region, {o.image.name: o.digest for o in outcomes if o.digest})
            project = agents_from_source(load_region(root, region).project, root)
            # As a stack that does not build renders it (`local`'s own setting): pods run the recorded digests.
            renders[region] = render(region, root, project=project, extra_config={
                "voxplane:imageRegistry": registry, "voxplane:buildImages": "false"}).kubernetes
        try:
            yield Built(running, images, outcomes, root, renders[REGION], renders, before, log)
        finally:
            docker = running.docker()
            left = subprocess.run([docker.executable, "ps", "-aq", "--filter", f"label={LABEL}"], env=docker.env,
                                  capture_output=True, text=True).stdout.split()
            if left:
                subprocess.run([docker.executable, "rm", "-f", *left], env=docker.env, capture_output=True)
    # The session's teardown: nothing the tooling started runs on, nothing of the engine stays mounted.
    alive = [f"{p.pid} {' '.join(p.cmdline())[:200]}" for p in ours if _alive(p)]
    assert alive == [], "still running after the image tooling stopped:\n" + "\n".join(alive)
    exec_root = str(tooling.engine.exec_root) + "/"
    mounts = [ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()
              if ln.split()[4].startswith(exec_root)]
    assert not own_engine or mounts == [], f"left mounted after the engine stopped: {mounts}"


def _processes(tooling: LocalImages) -> list[psutil.Process]:
    """Every process the tooling started (the engine with its containerd and shims)."""
    out: list[psutil.Process] = []
    for record in (tooling.engine.proc, tooling.registry.proc, tooling.index.proc if tooling.index else None):
        proc = record.process() if record else None
        if proc is not None:
            out += [proc, *proc.children(recursive=True)]
    return out


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# --- containers -------------------------------------------------------------------------------------


@dataclass
class Container:
    """A pod's container, running in the suite's engine."""

    name: str
    docker: DockerCli
    argv: list[str]
    rewrites: dict[str, tuple[str, str]] = field(default_factory=dict)
    _stopping: Optional[subprocess.Popen[bytes]] = None

    def _docker(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.docker.executable, *args], env=self.docker.env, capture_output=True, text=True,
                              timeout=timeout)

    def state(self) -> dict[str, Any]:
        done = self._docker("inspect", "--format", "{{json .State}}", self.name)
        return json.loads(done.stdout) if done.returncode == 0 else {}

    def running(self) -> bool:
        return bool(self.state().get("Running"))

    def logs(self) -> str:
        done = self._docker("logs", self.name)
        return done.stdout + done.stderr

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(ln[:600] for ln in self.logs().splitlines()[-lines:])

    def stop_as_the_kubelet_does(self) -> None:
        """`docker stop` without a timeout: SIGTERM, then SIGKILL only after the container's
        stop timeout, which is the pod's terminationGracePeriodSeconds (returns at once)."""
        self._stopping = subprocess.Popen([self.docker.executable, "stop", self.name], env=self.docker.env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_exit(self, timeout: float) -> int:
        """The container's exit code once it exits (fails the test after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if state and not state.get("Running"):
                return int(state["ExitCode"])
            time.sleep(0.2)
        pytest.fail(f"container {self.name} still running {timeout:.0f}s later; its log:\n{self.log_tail()}")

    def remove(self) -> None:
        if self._stopping is not None and self._stopping.poll() is None:
            self._stopping.kill()
            self._stopping.wait()
        self._docker("rm", "-f", self.name)


def image_user(docker: DockerCli, ref: str) -> str:
    done = subprocess.run([docker.executable, "image", "inspect", "--format", "{{.Config.User}}", ref], env=docker.env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def pull(docker: DockerCli, ref: str) -> None:
    """The engine holds `ref` (a name@digest in the suite's registry): pulled, as a kubelet pulls."""
    done = subprocess.run([docker.executable, "pull", "--quiet", ref], env=docker.env, capture_output=True, text=True)
    assert done.returncode == 0, f"docker pull {ref}: {done.stderr.strip()}"


@pytest.fixture
def pod_containers(built: Built, tmp_path: Path) -> Iterator[Callable[..., Container]]:
    """`pod_containers(pod, container, env=..., files=...)`: `container` (an init container too) of
    pod spec `pod` started with `env` (resolved, rewritten), `files` (volume name → host folder) and
    `termination_log` (mounted at its terminationMessagePath); removed afterwards."""
    started: list[Container] = []

    def start(pod: Mapping[str, Any], container: str, *, env: Mapping[str, str], files: Mapping[str, Path] | None = None,
              rewrites: Mapping[str, tuple[str, str]] | None = None, network: str = "host",
              termination_log: Path | None = None) -> Container:
        (spec,) = [c for c in [*pod.get("initContainers", []), *pod["containers"]] if c["name"] == container]
        docker = built.docker()
        pull(docker, spec["image"])
        name = f"vx-{container}-{uuid.uuid4().hex[:8]}"
        env_file = write_env_file(tmp_path / f"{name}.env", env)
        argv = run_argv(pod, container, image=spec["image"], image_user=image_user(docker, spec["image"]), name=name,
                        env_file=env_file, files=files or {}, labels={LABEL: "1"}, network=network,
                        termination_log=termination_log)
        done = subprocess.run([docker.executable, "run", *argv], env=docker.env, capture_output=True, text=True)
        c = Container(name, docker, argv, dict(rewrites or {}))
        started.append(c)
        assert done.returncode == 0, f"docker run {' '.join(argv)}:\n{done.stderr.strip()}"
        return c

    yield start
    for c in started:
        c.remove()
