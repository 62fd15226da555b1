"""CPU quantities may be YAML numbers (`cpu: 2`), as Kubernetes accepts; the model and every
rendered object keep them as quantity strings."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxplane.desired.agent_pool import build_agent_pool
from voxplane.desired.tenant import build_tenant
from voxplane.manifest.loader import load
from voxplane.manifest.quantity import quantity_text

BASE_REGION = Path(__file__).parent / "manifests" / "base" / "regions" / "test.yaml"


def test_cpu_may_be_a_yaml_number_and_renders_as_a_string(manifest_tree):
    """`cpu: 2` and `cpu: 0.5` are what Kubernetes accepts; the objects carry "2" and "0.5"."""
    agent = "name: echo\ntenant: acme\nregions: [test]\ncode:\n  image: acme/echo-agent:1.0.0\nresources: {cpu: 0.5, memory: 1Gi}\n"
    region = BASE_REGION.read_text().replace(
        'acme: { quotas: { cpu: "64", memory: 128Gi } }', "acme: { quotas: { cpu: 48, memory: 128Gi } }")
    result = load((), manifest_tree(files={"agents/echo.yaml": agent, "regions/test.yaml": region}))
    assert result.problems == []
    project = result.require_project()
    reg, echo = project.regions["test"], project.agents[0]
    assert (echo.resources.cpu, reg.tenants["acme"].quotas.cpu) == ("0.5", "48")
    [deployment] = [o for o in build_agent_pool(reg, echo, image="a/b:1") if o["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "0.5"
    [quota] = [o for o in build_tenant(reg, reg.tenants["acme"], [echo]) if o["kind"] == "ResourceQuota"]
    assert quota["spec"]["hard"]["requests.cpu"] == "48"


def test_cpu_of_the_wrong_form_says_which_forms_fit(manifest_tree):
    agent = "name: echo\ntenant: acme\nregions: [test]\ncode:\n  image: acme/echo-agent:1.0.0\nresources: {cpu: two}\n"
    [problem] = load((), manifest_tree(files={"agents/echo.yaml": agent})).problems
    assert problem.message == "'two' is not valid: A Kubernetes quantity such as 500m, 2, 4Gi."


@pytest.mark.parametrize("value, text", [(2, "2"), (0.5, "0.5"), (2.0, "2"), (1e3, "1000"), (0.25, "0.25"), ("500m", "500m")])
def test_quantity_text(value, text):
    """A YAML number becomes the quantity Kubernetes would print (no exponent, no trailing .0)."""
    assert quantity_text(value) == text
