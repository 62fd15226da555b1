"""Each agent image, run as its pod runs it, against the dev LiveKit server: it registers as a
worker under its agent name, answers a dispatched call, and on `docker stop` (SIGTERM, then the
pod's grace period) drains — the call goes on — and exits 0 once the caller hangs up.

The container is the rendered Deployment's (command, user 10001, fsGroup, read-only root
filesystem, all capabilities dropped, no privilege escalation, /tmp as its emptyDir, memory limit,
terminationGracePeriodSeconds as the stop timeout), its image the digest the record gave the pod.
The container env is the rendered one, secret references resolved with test values, with these
rewrites only (each recorded and checked): LIVEKIT_URL (the in-cluster gateway → the dev server on
127.0.0.1), VOXPLANE_HEALTH_PORT and VOXPLANE_METRICS_PORT (→ free ports: containers share the
host's network here), and VOXPLANE_{STT,TTS,LLM}_BASE_URL (the in-region model servers → the
local stand-in model, tests/agents/standin.py). Nothing else of the test's environment reaches the
process: PATH, HOME and PYTHONPATH are the image's.
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from tests.agents.conftest import AGENT_SECRETS, ROLES, Platform, Rendered, Worker, join_caller, start_platform
from tests.agents.standin import StandIn
from tests.agents.test_workers import route
from voxplane.deploy import agent_base
from voxplane.dev.pod_container import PodSpecError, effective_user
from voxplane.dev.ports import free_ports

from .conftest import REPO, Built, Container, image_user

pytestmark = pytest.mark.integration

AGENTS = ("reservations", "scheduler", "support")
#: The only variables the test moves.
REWRITABLE = {"LIVEKIT_URL", "VOXPLANE_HEALTH_PORT", "VOXPLANE_METRICS_PORT",
              *(f"VOXPLANE_{role}_BASE_URL" for role in ROLES)}


@dataclass
class ContainerWorker(Worker):
    """tests/agents' Worker, its process the agent image's container."""

    container: Optional[Container] = None

    def log(self) -> str:
        return self.container.logs() if self.container else ""

    def alive(self) -> bool:
        return self.container is not None and self.container.running()

    def terminate(self) -> None:
        assert self.container is not None
        self.container.stop_as_the_kubelet_does()

    def wait_exit(self, timeout: float) -> int:
        assert self.container is not None
        return self.container.wait_exit(timeout)

    def stop(self) -> None:
        if self.container is not None:
            self.container.remove()


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    yield from start_platform()


def pod_of(built: Built, name: str) -> tuple[dict[str, Any], Rendered]:
    deployment = built.deployment(name)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = container["env"]
    agent_name = next(e["value"] for e in env if e["name"] == "LIVEKIT_AGENT_NAME")
    sessions = int(next(e["value"] for e in env if e["name"] == "VOXPLANE_SESSIONS_PER_WORKER"))
    labels = deployment["metadata"]["labels"]
    rendered = Rendered(name, labels["voxplane.io/tenant"], agent_name, deployment["metadata"]["namespace"],
                        REPO / "agents" / name, list(container["command"]), list(env), sessions)
    return pod, rendered


def container_env(agent: Rendered, platform: Platform, inference: dict[str, str]
                  ) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """The rendered container env, secrets resolved, addresses and ports moved to loopback."""
    secrets = {**AGENT_SECRETS, ("livekit-api", "LIVEKIT_API_KEY"): platform.livekit.api_key,
               ("livekit-api", "LIVEKIT_API_SECRET"): platform.livekit.api_secret}
    env: dict[str, str] = {}
    for entry in agent.env:
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = secrets[(ref["name"], ref["key"])]
    health, metrics = free_ports(2)
    moved = {"LIVEKIT_URL": platform.livekit.url, "VOXPLANE_HEALTH_PORT": str(health),
             "VOXPLANE_METRICS_PORT": str(metrics),
             **{f"VOXPLANE_{r}_BASE_URL": inference[r] for r in ROLES if f"VOXPLANE_{r}_BASE_URL" in env}}
    rewrites = {k: (env[k], v) for k, v in moved.items()}
    env.update(moved)
    return env, rewrites


def start_worker(built: Built, pod_containers: Callable[..., Container], platform: Platform, name: str,
                 inference: dict[str, str], pod: Optional[dict[str, Any]] = None) -> ContainerWorker:
    rendered_pod, agent = pod_of(built, name)
    pod = pod or rendered_pod
    env, rewrites = container_env(agent, platform, inference)
    container = pod_containers(pod, "agent", env=env, rewrites=rewrites)
    return ContainerWorker(agent, env, rewrites, Path(tempfile.mkdtemp(prefix=f"{name}-")), container=container)


@pytest.mark.parametrize("name", AGENTS)
def test_each_agent_image_registers_answers_a_call_and_drains_on_docker_stop(
        built: Built, pod_containers: Callable[..., Container], platform: Platform, name: str, tmp_path: Path) -> None:
    with StandIn() as model:
        inference = {role: model.base_url for role in ROLES}
        w = start_worker(built, pod_containers, platform, name, inference)
        assert w.container is not None
        assert set(w.rewrites) <= REWRITABLE and {"LIVEKIT_URL", "VOXPLANE_HEALTH_PORT"} <= set(w.rewrites)
        print("rewrites:", json.dumps(w.rewrites, indent=1))
        pod, agent = pod_of(built, name)
        grace = pod["terminationGracePeriodSeconds"]
        assert w.container.argv[w.container.argv.index("--stop-timeout") + 1] == str(grace)
        image = pod["containers"][0]["image"]
        assert image.startswith(built.registry) and "@sha256:" in image and image in w.container.argv

        # Registers under the rendered agent name.
        state = w.wait_registered(timeout=180)
        assert state["agent_name"] == agent.agent_name and state["registered"]

        # Answers a call dispatched as the routing decision says.
        d = route(platform, name)
        platform.create_room_as_routed(d)
        caller = join_caller(platform, d.room, "caller-1", tmp_path)
        try:
            w.wait("the job", lambda: (s := w.state()) and s["active_jobs"] == 1, 30)
            caller.agent_joined(30)
            caller.wait_for("the agent's audio track", lambda e: e["event"] == "track_subscribed", 30)
            w.wait("the greeting's LLM request",
                   lambda: any(p.endswith("/chat/completions") for p in model.paths()), 30)

            # docker stop: the worker drains (no new jobs, not ready, still live), the call goes on.
            w.terminate()
            w.wait("the drain", lambda: (s := w.state()) and s["draining"], 30)
            assert w.status("/ready") != 200 and w.alive()
            assert not any(e["event"] == "disconnected" for e in caller.drain_events()), caller.events
            caller.leave()
        finally:
            caller.close()
        code = w.wait_exit(timeout=120)
        assert code == 0, f"exit {code}; its log:\n{w.log_tail()}"
        assert "draining worker" in w.log()


def test_a_pod_without_its_tmp_volume_fails_here(
        built: Built, pod_containers: Callable[..., Container], platform: Platform) -> None:
    """The image's job processes need a temporary directory, which the pod gives as its /tmp
    emptyDir: the same pod without that volume (its root filesystem read-only) starts no job
    process, and its log says why."""
    pod, _ = pod_of(built, "reservations")
    pod = copy.deepcopy(pod)
    (container,) = pod["containers"]
    container["volumeMounts"] = [m for m in container["volumeMounts"] if m["mountPath"] != "/tmp"]
    w = start_worker(built, pod_containers, platform, "reservations", {r: "http://127.0.0.1:9/v1" for r in ROLES}, pod)
    w.wait("a job process failing to start", lambda: "No usable temporary directory found" in w.log(), 120)
    assert "error initializing process" in w.log()


def test_a_pod_that_would_run_an_image_as_root_is_refused(built: Built) -> None:
    """runAsNonRoot without runAsUser leaves the check to the image's USER, as the kubelet does:
    every image a pod runs has a numeric non-root USER (so even such a pod starts), and one
    without (the agent base, which pods never run) is refused with the kubelet's reason."""
    docker = built.docker()
    pod, _ = pod_of(built, "reservations")
    pod = copy.deepcopy(pod)
    for key in ("runAsUser", "runAsGroup"):
        pod["securityContext"].pop(key)
    for image in built.images:
        user = image_user(docker, built.pulled(image))
        if image.context == (REPO / agent_base.FOLDER).resolve():
            assert user == "", "the base image sets no USER: each agent image sets its own"
            with pytest.raises(PodSpecError, match="has runAsNonRoot and image will run as root"):
                effective_user(pod, pod["containers"][0], user)
        else:
            assert effective_user(pod, pod["containers"][0], user).uid == 10001, (image.name, user)
