"""Where the dev Prometheus listens: a region whose ScaledObjects send KEDA to a loopback
`prometheus_url` gets its Prometheus on that port; an in-cluster address leaves the port free."""

from __future__ import annotations

import pytest

from voxplane.dev.autoscaling import region_prometheus_port


@pytest.mark.parametrize(("url", "port"), [
    ("http://127.0.0.1:9090", 9090),
    ("http://localhost:19090/", 19090),
    ("http://127.0.0.1", 80),
    ("https://localhost", 443),
    ("http://prometheus-operated.monitoring.svc:9090", None),
    ("http://10.0.0.5:9090", None),
])
def test_a_loopback_prometheus_url_names_the_dev_prometheus_port(url: str, port: int | None) -> None:
    assert region_prometheus_port(url) == port
