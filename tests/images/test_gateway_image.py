"""The gateway image, run as its pod runs it, in front of the dev LiveKit server: a slice of the
tenant isolation tests (tests/gateway/test_isolation_integration.py) passes through the container.

The container is the rendered `livekit-gateway` Deployment's (user 10001, read-only root
filesystem, every capability dropped, no privilege escalation, memory limit, grace period), with its
config volume (config.json and the keys, mode 0440, group fsGroup) bind-mounted read-only where the
pod mounts it. Rewrites, each recorded: config.json's `upstream` (the in-cluster LiveKit address →
the dev server on 127.0.0.1), `listen_host` (→ 127.0.0.1: the container shares the host's network),
`listen_port` and `metrics_port` (→ free ports, so it never collides with what else runs here).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.gateway.conftest import Stack
# A slice of the isolation tests, run here against the `stack` below (the containerized gateway).
from tests.gateway.test_isolation_integration import (  # noqa: F401
    test_b_room_is_out_of_reach,
    test_dispatching_b_agent_fails,
    test_gateway_metrics_count_refusals,
    test_listing_rooms_shows_only_own,
    test_own_agent_registers_is_dispatched_joins_and_ends_its_call,
    test_registering_as_b_agent_fails,
)
from voxplane.desired.common import ADMIN_KEY
from voxplane.dev.pod_container import write_volume_files
from voxplane.dev.livekit import LiveKitServer
from voxplane.dev.ports import LOOPBACK, free_ports
from voxplane.dev.redis import RedisServer
from voxplane.dev.region import region_config, region_gateway

from .conftest import REGION, REPO, Built, Container

pytestmark = pytest.mark.integration

CONFIG_VOLUME = "config"
#: config.json keys this test moves, and nothing else.
REWRITTEN = {"upstream", "listen_host", "listen_port", "metrics_port"}


class ContainerGateway:
    """What the isolation tests read of a gateway: its URLs and metrics port."""

    def __init__(self, container: Container, port: int, metrics_port: int):
        self.container, self.port, self.metrics_port = container, port, metrics_port

    @property
    def url(self) -> str:
        return f"ws://{LOOPBACK}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def _ready(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/readyz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def start_gateway(built: Built, pod_containers: Callable[..., Container], workdir: Path, upstream: str,
                  pod: dict[str, Any] | None = None) -> ContainerGateway:
    """The rendered gateway pod's container, its config volume written as the kubelet lays it out."""
    pod = pod or built.deployment("livekit-gateway")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config_text, keys = region_gateway(REGION, REPO, upstream=upstream)
    config = json.loads(config_text)
    port, metrics_port = free_ports(2)
    moved = {"upstream": upstream, "listen_host": LOOPBACK, "listen_port": port, "metrics_port": metrics_port}
    rewrites = {k: (str(config.get(k)), str(v)) for k, v in moved.items()}
    assert set(moved) == REWRITTEN and all(k in config for k in moved), sorted(config)
    config.update(moved)
    (volume,) = [v for v in pod["volumes"] if v["name"] == CONFIG_VOLUME]
    files = write_volume_files(workdir / "config-volume", volume, {"config.json": json.dumps(config), **keys},
                               gid=pod["securityContext"].get("fsGroup"))
    env = {e["name"]: str(e["value"]) for e in container.get("env", [])}
    c = pod_containers(pod, container["name"], env=env, files={CONFIG_VOLUME: files}, rewrites=rewrites)
    deadline = time.monotonic() + 60
    while not _ready(metrics_port):
        if not c.running():
            pytest.fail(f"the gateway container exited ({c.state().get('ExitCode')}); its log:\n{c.log_tail()}")
        if time.monotonic() > deadline:
            pytest.fail(f"the gateway container is not ready within 60 s; its log:\n{c.log_tail()}")
        time.sleep(0.2)
    return ContainerGateway(c, port, metrics_port)


@pytest.fixture(scope="module")
def livekit() -> Iterator[tuple[RedisServer, LiveKitServer]]:
    with RedisServer() as redis, LiveKitServer(region_config(REGION, REPO), redis=redis) as lk:
        assert lk.api_key == ADMIN_KEY
        yield redis, lk


@pytest.fixture
def stack(built: Built, pod_containers: Callable[..., Container], livekit: tuple[RedisServer, LiveKitServer],
          tmp_path: Path) -> Stack:
    """The isolation tests' Stack, its gateway the container (one per test: each starts clean)."""
    redis, lk = livekit
    gateway = start_gateway(built, pod_containers, tmp_path, lk.http_url)
    return Stack(redis, lk, gateway)


def test_the_gateway_runs_the_pushed_image_as_its_pod_says(stack: Stack, built: Built) -> None:
    """The container runs the digest the record gave the pod, as uid 10001 with the pod's groups,
    with a read-only root, no capabilities, and only the listed rewrites of its config."""
    gateway = stack.gateway
    assert isinstance(gateway, ContainerGateway)
    c = gateway.container
    image = built.image("voxplane/gateway")
    assert c.argv[c.argv.index("--entrypoint") + 1] == "python"
    assert f"{image.name}@{built.digest(image)}" in c.argv
    status = c._docker("exec", c.name, "sh", "-c", "id -u; id -G; grep Cap[EP][fr][fm] /proc/1/status; "
                                                   "touch /opt/x 2>&1 || true; touch /etc/voxplane-gateway/x 2>&1 || true")
    lines = status.stdout.splitlines()
    assert lines[0] == "10001" and "10001" in lines[1].split()
    assert all(line.split()[1] == "0000000000000000" for line in lines[2:4]), lines[2:4]
    assert "Read-only file system" in lines[4] and "Read-only file system" in lines[5], lines[4:]
    assert set(c.rewrites) == REWRITTEN
    print("rewrites:", json.dumps(c.rewrites, indent=1))


def test_the_gateway_container_drains_and_exits_0_on_docker_stop(stack: Stack) -> None:
    """`docker stop` (SIGTERM, then the pod's grace period): readiness fails at once, the process
    exits 0 well within the grace period."""
    gateway = stack.gateway
    assert isinstance(gateway, ContainerGateway)
    gateway.container.stop_as_the_kubelet_does()
    deadline = time.monotonic() + 10
    while _ready(gateway.metrics_port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _ready(gateway.metrics_port) and gateway.container.running(), "draining: not ready, still serving"
    code = gateway.container.wait_exit(timeout=60)
    assert code == 0, gateway.container.log_tail()
