"""Simulated nodes come from the region manifest: its pools' labels, taints and GPU capacity."""

from __future__ import annotations

from functools import cache

import pytest

from voxplane.dev.nodes import KWOK_ANNOTATION, node_objects, plan_pools
from voxplane.manifest.loader import load

from ..support.repo import REPO


@cache
def project():
    return load((), REPO).require_project()


def nodes(region: str) -> dict[str, dict]:
    p = project()
    return {n["metadata"]["name"]: n for n in node_objects(p.regions[region], p.agents_in(region))}


def pool(region: str, name: str) -> list[dict]:
    return [n for n in nodes(region).values() if n["metadata"]["labels"]["voxplane.io/dev-pool"] == name]


def test_media_nodes_follow_livekit_nodes_and_carry_the_pools_taint():
    media = pool("us-east", "media")
    assert len(media) == project().regions["us-east"].livekit.nodes == 3
    for node in media:
        assert node["metadata"]["labels"]["voxplane.io/pool"] == "media"
        assert node["spec"]["taints"] == [{"key": "voxplane.io/media", "value": "true", "effect": "NoSchedule"}]
        assert "nvidia.com/gpu" not in node["status"]["capacity"]


def test_gpu_groups_get_their_labels_taints_and_gpu_capacity():
    region = project().regions["us-east"]
    for group in region.gpu_node_groups.values():
        group_nodes = pool("us-east", f"gpu-{group.name}")
        assert group.min_nodes <= len(group_nodes) <= group.max_nodes
        for node in group_nodes:
            labels = node["metadata"]["labels"]
            assert labels["nvidia.com/gpu.product"] == group.gpu_product
            assert labels["voxplane.io/gpu-group"] == group.name
            assert node["status"]["capacity"]["nvidia.com/gpu"] == str(group.gpus_per_node)
            assert node["spec"]["taints"] == [
                {k: v for k, v in {"key": t.key, "value": t.value, "effect": t.effect}.items() if v is not None}
                for t in group.taints
            ]


def test_a_dedicated_tenant_pool_is_tainted_for_that_tenant_only():
    northwind = pool("us-east", "agents-northwind")
    assert len(northwind) >= 2
    assert all(n["spec"]["taints"] == [{"key": "voxplane.io/tenant", "value": "northwind", "effect": "NoSchedule"}]
               for n in northwind)
    assert all("taints" not in n["spec"] for n in pool("us-east", "agents"))


def test_gpu_nodes_hold_every_models_minimum_replicas():
    for name, region in project().regions.items():
        for group in region.gpu_node_groups.values():
            need = sum(m.gpus_per_replica * m.min_replicas for m in region.models.values() if m.node_group == group.name)
            have = sum(int(n["status"]["capacity"]["nvidia.com/gpu"]) for n in pool(name, f"gpu-{group.name}"))
            assert have >= need, f"{name}/{group.name}: {have} GPUs for {need}"


@pytest.mark.parametrize("region", ["local", "us-east", "eu-west"])
def test_every_node_is_kwok_managed_and_named_after_its_region(region):
    for name, node in nodes(region).items():
        assert name.startswith(f"{region}-")
        assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == KWOK_ANNOTATION["kwok.x-k8s.io/node"]
        assert node["metadata"]["labels"]["voxplane.io/simulated-node"] == "true"


def test_a_shared_media_and_sip_pool_is_one_pool():
    plans = {p.name: p for p in plan_pools(project().regions["local"], project().agents_in("local"))}
    assert "sip" not in plans  # local runs the SIP bridge on the media pool
    assert plans["media"].count >= 1
