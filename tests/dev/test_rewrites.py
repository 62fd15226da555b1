"""What the pod runner changes when a rendered agent pod runs as a process here
(voxplane/dev/rewrites.py): only addresses, ports, the prewarmed-process cap and what the image
would set, each listed; Secret values are neither changed nor shown."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path
from typing import Any

from voxplane.dev.podenv import ContainerRun, container_run
from voxplane.dev.rewrites import image_env, rewrite
from voxplane.dev.standins import StandIns
from voxplane.deploy.render import render

from ..support.repo import REPO

GATEWAY = "127.0.0.1:41000"
MODEL = "127.0.0.1:41001"


@functools.lru_cache(maxsize=None)
def rendered_pod(agent: str) -> dict[str, Any]:
    """A pod of the agent's rendered Deployment, as the API server makes it (its template)."""
    deployment = next(o for o in render("local", REPO).kubernetes
                      if o["kind"] == "Deployment" and o["metadata"]["name"] == agent)
    template = deployment["spec"]["template"]
    return {"metadata": {**template["metadata"], "name": f"{agent}-abc", "namespace": deployment["metadata"]["namespace"],
                         "uid": "u"}, "spec": template["spec"], "status": {"podIP": "10.0.0.9"}}


def resolved(pod: dict[str, Any]) -> ContainerRun:
    """The container's env with every Secret key given a test value."""
    return container_run(pod, pod["spec"]["containers"][0], config_map=lambda ns, name: None,
                         secret=lambda ns, name: SecretData())


class SecretData(dict):  # every key of every Secret: "secret-<key>"
    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        return f"secret-{key}"


def launch(agent: str, standins: StandIns, cap: int | None = 2, tmp: Path = Path("/tmp/x")):
    pod = rendered_pod(agent)
    ports = itertools.count(50000)
    glue = REPO / "agents" / "_platform"
    return rewrite(resolved(pod), pod=pod, container=pod["spec"]["containers"][0], standins=standins,
                   free_port=lambda: next(ports), python=Path("/venv/bin/python"), program=REPO / "agents" / agent,
                   glue=glue, workdir=tmp, tmpdir=tmp / "t",
                   image=image_env([glue / "Dockerfile", REPO / "agents" / agent / "Dockerfile"]), max_idle_processes=cap)


def by_variable(result: Any) -> dict[str, Any]:
    return {r.variable: r for r in result.rewrites}


def test_the_reservations_pod_runs_with_its_env_and_only_listed_rewrites() -> None:
    standins = StandIns({"vox-system/livekit-gateway:7880": GATEWAY, "vox-inference/chat:8000": MODEL})
    result = launch("reservations", standins)
    changes = by_variable(result)
    pod_env = resolved(rendered_pod("reservations")).env
    # Every variable of the pod is there; those not listed have the pod's value exactly.
    for name, value in pod_env.items():
        assert result.env[name] == (changes[name].here if name in changes else value), name
    assert changes["LIVEKIT_URL"].here == f"ws://{GATEWAY}"
    assert "played by" in changes["LIVEKIT_URL"].why
    assert changes["VOXPLANE_LLM_BASE_URL"].here == f"http://{MODEL}/v1"
    # whisper and kokoro have no stand-in: a closed loopback port, said so.
    for role in ("STT", "TTS"):
        assert changes[f"VOXPLANE_{role}_BASE_URL"].here.startswith("http://127.0.0.1:5")
        assert "no stand-in" in changes[f"VOXPLANE_{role}_BASE_URL"].why
    # The two container ports move, and the variables carrying them follow.
    assert result.ports == {8081: 50000, 9100: 50001}
    assert (changes["VOXPLANE_HEALTH_PORT"].here, changes["VOXPLANE_METRICS_PORT"].here) == ("50000", "50001")
    # 8 prewarmed processes rendered, 2 here.
    assert (changes["VOXPLANE_IDLE_PROCESSES"].rendered, changes["VOXPLANE_IDLE_PROCESSES"].here) == ("8", "2")
    # The image's own environment (its Dockerfiles' ENV), its glue folder where it is here.
    assert result.env["PYTHONUNBUFFERED"] == "1" and result.env["PIP_NO_CACHE_DIR"] == "1"
    assert changes["PYTHONPATH"].rendered == "/opt/voxplane" and result.env["PYTHONPATH"] == str(REPO / "agents" / "_platform")
    assert result.env["HOSTNAME"] == "reservations-abc" and result.env["HF_HUB_OFFLINE"] == "1"
    assert result.argv == ["/venv/bin/python", "agent.py", "start"]
    expected = {"LIVEKIT_URL", "VOXPLANE_STT_BASE_URL", "VOXPLANE_TTS_BASE_URL", "VOXPLANE_LLM_BASE_URL",
                "VOXPLANE_HEALTH_PORT", "VOXPLANE_METRICS_PORT", "VOXPLANE_IDLE_PROCESSES", "PYTHONPATH", "PATH", "HOME",
                "TMPDIR", "HOSTNAME", "HF_HUB_OFFLINE", "(command)"}
    assert set(changes) == expected


def test_secret_values_are_never_rewritten_nor_listed() -> None:
    result = launch("reservations", StandIns())
    assert result.env["LIVEKIT_API_SECRET"] == "secret-LIVEKIT_API_SECRET"
    assert result.env["BOOKING_API_TOKEN"] == "secret-token"
    assert not any("secret-" in r.rendered or "secret-" in r.here for r in result.rewrites)


def test_an_external_provider_is_made_unreachable_and_nothing_else_of_it_changes() -> None:
    """support's LLM is an external provider: its URL gets a closed loopback port; its key (a
    Secret) stays as the pod has it."""
    result = launch("support", StandIns())
    change = by_variable(result)["VOXPLANE_LLM_BASE_URL"]
    assert change.here.startswith("https://127.0.0.1:5") and "outside this machine" in change.why
    assert result.env["VOXPLANE_LLM_API_KEY"] == "secret-VOXPLANE_LLM_API_KEY"


def test_without_a_cap_the_prewarmed_processes_are_as_rendered() -> None:
    result = launch("reservations", StandIns(), cap=None)
    assert result.env["VOXPLANE_IDLE_PROCESSES"] == "8" and "VOXPLANE_IDLE_PROCESSES" not in by_variable(result)
