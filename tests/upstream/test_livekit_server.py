"""The rendered SFU held against livekit-server v1.13.5 itself: its config through the server's
own strict loader (tools/lkconfig), its flags and variables against the pinned source in the Go
module cache (the toolchain builds the server from it), and the metric the models' wake trigger
queries on a running server's /metrics."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from voxplane.dev.servers import LiveKitServer, RedisServer, region_config

from tests.support.repo import REPO
from .conftest import REGIONS, ensure, rendered

# Real servers and the tools `make servers` builds (vLLM's venv, lkconfig, redis-server).
pytestmark = pytest.mark.integration

VERSION = "v1.13.5"


@pytest.fixture(scope="module")
def lkconfig() -> str:
    return ensure("ensure-tool.sh", "lkconfig", "--print-path")


@cache
def server_source() -> Path:
    """livekit-server's module folder at the release tools/lkconfig is built against."""
    done = subprocess.run(["go", "list", "-mod=readonly", "-m", "-json", "github.com/livekit/livekit-server"],
                          cwd=REPO / "tools" / "lkconfig", capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"go list: {done.stderr.strip()}")
    module = json.loads(done.stdout)
    assert module["Version"] == VERSION
    return Path(module["Dir"])


def _sfu(region: str) -> tuple[dict[str, Any], str]:
    dep = next(o for o in rendered(region) if o["kind"] == "Deployment" and o["metadata"]["name"] == "livekit")
    cm = next(o for o in rendered(region) if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "livekit-config")
    return dep["spec"]["template"]["spec"]["containers"][0], cm["data"]["config.yaml"]


def test_examples_run_the_release_the_tool_loads_with():
    for region in REGIONS:
        container, _ = _sfu(region)
        assert container["image"].split("@")[0] == f"livekit/livekit-server:{VERSION}"


def _offline(config: str) -> str:
    """The one rewrite: `rtc.use_external_ip` off. With it on, the loader's RTC validation asks a
    public STUN server for the node's address, which this machine cannot reach; the key and its
    type are checked all the same."""
    import yaml

    doc = yaml.safe_load(config)
    if doc.get("rtc", {}).get("use_external_ip"):
        doc["rtc"]["use_external_ip"] = False
    return yaml.safe_dump(doc)


@pytest.mark.parametrize("region", REGIONS)
def test_rendered_config_passes_the_servers_strict_loader(region, lkconfig, tmp_path):
    _, config = _sfu(region)
    (tmp_path / "config.yaml").write_text(_offline(config))
    done = subprocess.run([lkconfig, str(tmp_path / "config.yaml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_loader_refuses_a_key_the_server_does_not_have(lkconfig, tmp_path):
    _, config = _sfu(REGIONS[0])
    (tmp_path / "config.yaml").write_text(_offline(config) + "krisp_enabled: true\n")
    done = subprocess.run([lkconfig, str(tmp_path / "config.yaml")], capture_output=True, text=True)
    assert done.returncode == 1 and "krisp_enabled" in done.stdout


@pytest.mark.parametrize("region", REGIONS)
def test_flags_and_variables_are_the_servers(region):
    """Every argument is one of cmd/server/main.go's flags, every variable one its flags read."""
    main = (server_source() / "cmd" / "server" / "main.go").read_text()
    flags = set(re.findall(r'Name:\s+"([a-z-]+)"', main))
    variables = {v for group in re.findall(r"cli\.EnvVars\(([^)]*)\)", main) for v in re.findall(r'"([A-Z_]+)"', group)}
    container, _ = _sfu(region)
    assert {a[2:].split("=")[0] for a in container["args"] if a.startswith("--")} <= flags
    assert {e["name"] for e in container.get("env") or []} <= variables


@pytest.mark.parametrize("region", REGIONS)
def test_ports_and_probe_path_are_the_configs(region):
    import yaml

    container, text = _sfu(region)
    config = yaml.safe_load(text)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == config["port"] and ports["rtc-tcp"] == config["rtc"]["tcp_port"]
    assert ports["metrics"] == config["prometheus"]["port"]
    if config.get("turn", {}).get("enabled"):
        assert (ports["turn-tls"], ports["turn-udp"]) == (config["turn"]["tls_port"], config["turn"]["udp_port"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/"
    assert 'mux.HandleFunc("/", ' in (server_source() / "pkg" / "service" / "server.go").read_text()


def test_the_wake_trigger_metric_is_on_a_running_servers_metrics():
    """Every livekit-server metric a ScaledObject queries (a model that scales to zero wakes on
    `livekit_room_total`; no example region scales one to zero, so such a model is built too), on
    the /metrics of livekit-server running the local region's config."""
    import dataclasses

    from voxplane.desired.inference import build_model

    from ..desired._helpers import project

    region = project().regions["local"]
    asleep = dataclasses.replace(region.models["chat"], min_replicas=0)
    objects = [*[o for r in REGIONS for o in rendered(r)], *build_model(region, asleep, preflight_image="")]
    queries = {t["metadata"]["query"] for o in objects if o["kind"] == "ScaledObject"
               for t in o["spec"]["triggers"] if "livekit_" in t["metadata"]["query"]}
    names = {n for q in queries for n in re.findall(r"(livekit_[a-z_]+)", q)}
    assert names
    with RedisServer() as redis, LiveKitServer(region_config("local", REPO), redis=redis) as lk:
        assert lk.prometheus_port is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{lk.prometheus_port}/metrics", timeout=10) as r:
            metrics = r.read().decode()
    for name in names:
        assert re.search(rf"^{name}(\{{| )", metrics, re.M), f"{name} not on livekit-server {VERSION}'s /metrics"
