"""The rendered SIP bridge held against livekit-sip v1.11.0's recorded facts (facts/livekit-sip.yaml:
the Go module proxy does not serve livekit-sip, so it cannot be built here). livekit-sip reads its
config with a plain yaml.Unmarshal, which ignores a key it does not know: only this check catches
a misspelt or removed one."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import REGIONS, facts, rendered

SIP = facts("livekit-sip")
WITH_SIP = [r for r in REGIONS if any(o["kind"] == "Deployment" and o["metadata"]["name"] == "livekit-sip" for o in rendered(r))]


def _container(region: str) -> dict[str, Any]:
    dep = next(o for o in rendered(region) if o["kind"] == "Deployment" and o["metadata"]["name"] == "livekit-sip")
    return dep["spec"]["template"]["spec"]["containers"][0]


def _config(region: str) -> dict[str, Any]:
    """The config livekit-sip reads: SIP_CONFIG_BODY, inline (JSON, a YAML subset) or from the ConfigMap."""
    env = {e["name"]: e for e in _container(region)["env"]}
    body = env["SIP_CONFIG_BODY"]
    if "value" in body:
        return json.loads(body["value"])
    cm = next(o for o in rendered(region) if o["kind"] == "ConfigMap" and o["metadata"]["name"] == body["valueFrom"]["configMapKeyRef"]["name"])
    import yaml

    return yaml.safe_load(cm["data"][body["valueFrom"]["configMapKeyRef"]["key"]])


def test_examples_run_the_recorded_release():
    assert WITH_SIP
    for region in WITH_SIP:
        assert _container(region)["image"].split("@")[0] == f"{SIP['image']['repository']}:{SIP['version']}"


@pytest.mark.parametrize("region", WITH_SIP)
def test_every_config_key_is_one_livekit_sip_reads(region):
    config = _config(region)
    keys = SIP["config_keys"]
    assert set(config) - set(keys["top"]) == set()
    for nested in ("redis", "logging"):
        assert set(config.get(nested, {})) - set(keys[nested]) == set(), nested


@pytest.mark.parametrize("region", WITH_SIP)
def test_every_variable_is_read_and_the_ports_are_the_configs(region):
    c = _container(region)
    assert {e["name"] for e in c["env"]} - set(SIP["env"]) == set()
    config = _config(region)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["health"] == config["health_port"] and ports["metrics"] == config["prometheus_port"]
    assert ports["sip-udp"] == ports["sip-tcp"] == config["sip_port"]
    probe = c["readinessProbe"]["httpGet"]
    assert probe["port"] == "health" and f"GET {probe['path']} (health_port)" in SIP["routes"]


def test_the_key_check_can_fail():
    """A key livekit-sip does not read is caught (the reason this check exists)."""
    assert "krisp_enabled" not in SIP["config_keys"]["top"]
    assert "rtp_ports" not in SIP["config_keys"]["top"]  # the field is `rtp_port`
