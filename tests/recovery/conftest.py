"""The platform the fault tests break (and bench/faults.py measures): real processes on loopback,
each as the region runs it.

- Redis (persistent, as the region's in-cluster Redis keeps an append-only file) and livekit-server
  with the `local` region's rendered config, its webhooks sent to the recovery controller;
- the recovery controller as its image runs it (the package under empty `voxplane` packages, an
  interpreter with only its locked requirements), with the config `local` renders;
- the gateway's two replicas as its image runs them, behind one port (voxplane/dev/balancer.py,
  the Service's stand-in: a dead replica's connections drop, new ones go to the live one);
- the region's SIP trunks and rules synced, so a call is routed as livekit-sip has it routed;
- workers: the example programs as real livekit-agents workers (tests/agents/conftest.py), with
  the rendered environment, registered through the gateway with their tenant's own key (as their
  pods are), two prewarmed processes each; callers: real rtc participants joining through the
  gateway with a tenant token (web callers; a SIP caller would reach the SFU as the bridge does).

Nothing skips: a server or worker that does not start fails the test with its reason.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from livekit import api
from prometheus_client.parser import text_string_to_metric_families

from voxplane.desired.common import tenant_api_key
from voxplane.dev.balancer import BalancerServer
from voxplane.dev.gateway import GatewayServer
from voxplane.dev.livekit import LiveKitServer
from voxplane.dev.ports import LOOPBACK
from voxplane.dev.recovery import RecoveryServer
from voxplane.dev.redis import RedisServer
from voxplane.dev.region import region_config, region_gateway, region_recovery
from voxplane.dev.stack import dev_root_secret
from voxplane.livekit.keys import derive_api_secret
from voxplane.livekit.reconcile import sync
from voxplane.livekit.route import Decision, RouteProbe
from voxplane.manifest.loader import load_region

from ..agents.conftest import SECRETS, Caller, Platform, Worker, join_caller, launch_worker, rendered_agents
from ..gateway._image import gateway_image_python, stage_image_context as stage_gateway
from ..support.repo import REPO
from ..support.wait import wait_until
from ._image import recovery_image_python, stage_image_context as stage_recovery

REGION = "local"
#: A number of each agent in region `local`, the carrier address its trunk admits, its credentials.
NUMBERS = {
    "reservations": ("+13125550142", "127.0.0.1", {}),
    "support": ("+16175550188", "192.76.120.10", {"username": "northwind-trunk", "password": "nw-trunk-password-agents"}),
}
#: Job processes each test worker keeps prewarmed (the rendered default is its sessions per worker:
#: more memory than this shared machine should spend on calls the tests never place).
IDLE_PROCESSES = "2"
AGENT_KIND = 4  # ParticipantInfo.Kind.AGENT


def metric(url: str, name: str, **labels: str) -> float:
    """The value of sample `name` with exactly `labels` at `url`/metrics (0 when absent)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        text = r.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


@dataclass
class Faults(Platform):
    """The platform above; `Platform`'s API helpers talk to livekit-server with the admin key."""

    recovery: RecoveryServer = field(kw_only=True)
    gateways: list[GatewayServer] = field(kw_only=True)
    balancer: BalancerServer = field(kw_only=True)
    workdir: Path = field(kw_only=True)

    # --- who's who ---

    def tenant_key(self, tenant: str) -> tuple[str, str]:
        key = tenant_api_key(tenant)
        return key, derive_api_secret(dev_root_secret(REGION), REGION, key)

    def tenant_token(self, tenant: str, room: str, identity: str) -> str:
        key, secret = self.tenant_key(tenant)
        return (api.AccessToken(key, secret).with_identity(identity)
                .with_grants(api.VideoGrants(room_join=True, room=room)).to_jwt())

    # --- workers and calls ---

    def worker(self, name: str, inference: dict[str, str], **env: str) -> Worker:
        """One more worker of agent `name`, registering through the gateway with its tenant's key."""
        agent = rendered_agents()[name]
        key, secret = self.tenant_key(agent.tenant)
        overrides = {"LIVEKIT_URL": self.balancer.url, "LIVEKIT_API_KEY": key, "LIVEKIT_API_SECRET": secret,
                     "VOXPLANE_IDLE_PROCESSES": IDLE_PROCESSES, **env}
        return launch_worker(name, self, Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir)), inference,
                             overrides)

    def call(self, agent: str, caller_number: str, identity: str) -> tuple[Decision, Caller]:
        """A call to `agent`: routed as livekit-sip has it routed, its room created with the rule's
        dispatch, a caller in it through the gateway with the tenant's token."""
        number, address, creds = NUMBERS[agent]
        d = self.route(number, address, caller_number, **creds)
        assert d.accepted and d.agents == [rendered_agents()[agent].agent_name], (d.reason, d.agents)
        self.create_room_as_routed(d)
        tenant = rendered_agents()[agent].tenant
        caller = join_caller(self, d.room, identity, self.workdir, url=self.balancer.url,
                             token=self.tenant_token(tenant, d.room, identity))
        return d, caller

    def join(self, tenant: str, room: str, identity: str) -> Caller:
        return join_caller(self, room, identity, self.workdir, url=self.balancer.url,
                           token=self.tenant_token(tenant, room, identity))

    # --- what the server says ---

    def agents_in(self, room: str) -> list[str]:
        return sorted(p.identity for p in self.participants(room) if p.kind == AGENT_KIND)

    def dispatches(self, room: str) -> list[api.AgentDispatch]:
        with self.client() as c:
            return list(c.call("ListDispatch", lambda lk: lk.agent_dispatch.list_dispatch(room)))

    def recovery_metric(self, name: str, **labels: str) -> float:
        return metric(self.recovery.metrics_url, name, **labels)

    def refusals(self) -> dict[str, float]:
        """voxplane_recovery_refused_total by reason."""
        with urllib.request.urlopen(f"{self.recovery.metrics_url}/metrics", timeout=5) as r:
            text = r.read().decode()
        return {s.labels["reason"]: s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "voxplane_recovery_refused_total"}

    def gateway_metric(self, replica: int, name: str, **labels: str) -> float:
        return metric(f"http://{LOOPBACK}:{self.gateways[replica].metrics_port}", name, **labels)


def kill(worker: Worker) -> None:
    """kill -9 of the worker and its job processes at once: its pod, or its node, gone."""
    assert worker.proc is not None
    os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait(10)


def wait_agent_back(platform: Faults, caller: Caller, lost: str, timeout: float = 90) -> dict[str, Any]:
    """The caller's event of an agent other than `lost` joining its room after `lost` left."""
    caller.wait_for(f"agent {lost} to leave", lambda e: e["event"] == "participant_disconnected"
                    and e["identity"] == lost, timeout)
    return caller.wait_for("a new agent", lambda e: e["event"] == "participant_connected" and e["kind"] == "AGENT"
                           and e["identity"] != lost, timeout)


@contextlib.contextmanager
def start_faults(workdir: Path) -> Iterator[Faults]:
    """The platform (module docstring), stopped afterwards in reverse order."""
    loaded = load_region(REPO, REGION)
    region, agents = loaded.region, loaded.agents
    gateway_python, gateway_context = gateway_image_python(), stage_gateway(workdir / "gateway-image")
    recovery_config, recovery_secret = region_recovery(REGION, REPO)
    recovery = RecoveryServer(recovery_config, recovery_secret, python=recovery_image_python(),
                              pythonpath=stage_recovery(workdir / "recovery-image"), workdir=workdir / "recovery")
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(RedisServer(workdir=workdir / "redis", persistent=True))
        lk = stack.enter_context(LiveKitServer(region_config(REGION, REPO), redis=redis, workdir=workdir / "livekit",
                                               webhook_urls=[recovery.webhook_url]))
        recovery.upstream = lk.http_url
        stack.enter_context(recovery)
        config, keys = region_gateway(REGION, REPO, upstream=lk.http_url)
        gateways = [stack.enter_context(GatewayServer(config, keys, python=gateway_python, pythonpath=gateway_context,
                                                      workdir=workdir / f"gateway-{i}")) for i in range(2)]
        balancer = stack.enter_context(BalancerServer([(LOOPBACK, g.port) for g in gateways], workdir=workdir))
        probe = stack.enter_context(RouteProbe(redis.address))
        platform = Faults(redis, lk, probe, region, agents, recovery=recovery, gateways=gateways, balancer=balancer,
                          workdir=workdir)
        with platform.client() as client:
            sync(region, agents, client, SECRETS)  # what `voxplane livekit sync local` does
        yield platform


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faults]:
    with start_faults(tmp_path_factory.mktemp("faults")) as platform:
        yield platform


@pytest.fixture
def workers(faults: Faults) -> Iterator[Callable[..., Worker]]:
    """`workers(name, inference, **env)`: one more worker through the gateway, stopped afterwards."""
    started: list[Worker] = []

    def start(name: str, inference: dict[str, str], **env: str) -> Worker:
        w = faults.worker(name, inference, **env)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def callers() -> Iterator[list[Caller]]:
    """Callers a test places go here; closed afterwards."""
    placed: list[Caller] = []
    yield placed
    for c in placed:
        c.close()


__all__ = ["AGENT_KIND", "Faults", "NUMBERS", "kill", "metric", "start_faults", "wait_agent_back", "wait_until"]
