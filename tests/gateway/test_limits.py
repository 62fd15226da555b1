"""Per-tenant limits without a server (issue #19 item 3): from the manifest into the gateway's
config, the config's checks, and the buckets' and counts' answers. Rates here refill one token in
a thousand seconds or more, so no test depends on how fast it runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voxplane.desired.gateway import gateway_config
from voxplane.gateway.limits import Limited, Limits, Rate, TenantLimits
from voxplane.gateway.scope import GatewayConfig
from voxplane.manifest.loader import load

from tests.support.repo import copy_manifests
from .conftest import A, B

SLOW = 0.001  # tokens per second: none come back while a test runs


def _limits(joins: int = 3, api_calls: int = 3, registrations: int = 2, connections: int = 2) -> TenantLimits:
    return TenantLimits(Rate(SLOW, joins), Rate(SLOW, api_calls), Rate(SLOW, registrations), connections)


def test_manifest_limits_reach_the_gateway_config(tmp_path: Path) -> None:
    """A tenant's `limits` in the region manifest are what the rendered config holds; a tenant that
    sets none gets the schema's defaults."""
    root = copy_manifests(tmp_path / "repo")
    region = root / "regions" / "local.yaml"
    text = region.read_text()
    anchor = "    quotas: { cpu: \"96\", memory: 192Gi, pods: 60 }\n"
    assert anchor in text
    region.write_text(text.replace(anchor, anchor + "    limits:\n      joins: { per_second: 2.5, burst: 7 }\n"
                                   "      connections: 40\n"))
    project = load((), root).require_project()
    config = GatewayConfig.from_json(gateway_config(project.regions["local"], project.agents_in("local")).to_json())
    a, b = config.limits[A], config.limits[B]
    assert a.joins == Rate(2.5, 7) and a.connections == 40
    # Unset fields and the other tenant: the schema's defaults.
    assert a.api_calls == b.api_calls == Rate(200, 1000)
    assert a.worker_registrations == b.worker_registrations == Rate(20, 200)
    assert b.joins == Rate(100, 1000) and b.connections == 5000


def test_config_refuses_missing_or_bad_limits() -> None:
    project = load((), Path(__file__).resolve().parents[2]).require_project()
    good = json.loads(gateway_config(project.regions["local"], project.agents_in("local")).to_json())
    cases = {
        "tenants.northwind.limits: expected an object": lambda d: d["tenants"][A].pop("limits"),
        "tenants.northwind.limits.joins.burst: expected an integer of at least 1, got 0":
            lambda d: d["tenants"][A]["limits"]["joins"].update(burst=0),
        "tenants.northwind.limits.api_calls.per_second: expected a number above 0, got -1":
            lambda d: d["tenants"][A]["limits"]["api_calls"].update(per_second=-1),
        "tenants.northwind.limits.connections: expected an integer of at least 1, got True":
            lambda d: d["tenants"][A]["limits"].update(connections=True),
        "tenants.northwind.limits: unknown field 'joins_per_minute'":
            lambda d: d["tenants"][A]["limits"].update(joins_per_minute=1),
    }
    for message, spoil in cases.items():
        data = json.loads(json.dumps(good))
        spoil(data)
        with pytest.raises(ValueError) as refused:
            GatewayConfig.from_json(json.dumps(data))
        assert str(refused.value) == f"gateway config: {message}"
    # A config of the format before limits is refused, not served without them.
    with pytest.raises(ValueError, match='"version": 2'):
        GatewayConfig.from_json(json.dumps({**good, "version": 1}))


def test_a_rate_admits_its_burst_then_refuses_with_resource_exhausted() -> None:
    limits = Limits({A: _limits(joins=3), B: _limits(joins=3)})
    for _ in range(3):
        limits.take(A, "joins")
    with pytest.raises(Limited) as over:
        limits.take(A, "joins")
    assert (over.value.code, over.value.status, over.value.limit, over.value.tenant) == \
        ("resource_exhausted", 429, "joins", A)
    assert over.value.message.startswith(f"tenant {A!r} is over its limit of room joins (0.001 per second, burst 3)")
    assert over.value.retry_after >= 999  # a whole token at 0.001 per second
    # The other tenant and the other rates of the same tenant are untouched.
    for _ in range(3):
        limits.take(B, "joins")
    limits.take(A, "api_calls")


def test_check_answers_like_take_without_spending() -> None:
    limits = Limits({A: _limits(joins=1)})
    for _ in range(5):
        limits.check(A, "joins")
    limits.take(A, "joins")
    with pytest.raises(Limited):
        limits.check(A, "joins")


def test_connections_are_capped_and_released() -> None:
    limits = Limits({A: _limits(connections=2), B: _limits(connections=2)})
    limits.open(A)
    limits.open(A)
    with pytest.raises(Limited) as over:
        limits.open(A)
    assert over.value.limit == "connections" and over.value.status == 429
    limits.open(B)
    limits.close(A)
    limits.open(A)
    assert limits.connections(A) == 2 and limits.connections(B) == 1
