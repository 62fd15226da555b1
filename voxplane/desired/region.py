"""A region's whole desired state: `build_region`.

`build_region` is the one place a region's objects are gathered: the region stack registers its
parts (voxplane/components/region_stack.py, each part to the component named after it), drift reads the
Secrets it declares (drift/kubernetes/secrets.py), and the dev servers run the gateway config it
holds (dev/region.py). LiveKit's own objects (trunks, dispatch rules) are livekit/desired.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..manifest.model import Agent, Region
from .agent_pool import build_agent_pool
from .common import K8sObject
from .deletion_cost import build_deletion_cost
from .gateway import build_gateway
from .gpu import build_gpu_group
from .inference import build_model, model_clients, model_labels
from .llm_router import build_router, has_router
from .namespaces import build_namespaces
from .network import build_platform_default_deny
from .recovery import build_recovery
from .redis import build_redis
from .sfu import build_sfu
from .sip import build_sip
from .tenant import build_tenant


@dataclass(frozen=True)
class RegionObjects:
    """A region's Kubernetes objects, by the component that registers each part."""

    #: the system and inference namespaces
    namespaces: list[K8sObject]
    #: default-deny NetworkPolicies of the system and inference namespaces
    default_deny: list[K8sObject]
    #: livekit-server and its Redis
    sfu: list[K8sObject]
    gateway: list[K8sObject]
    #: the recovery controller (lost agents dispatched again)
    recovery: list[K8sObject]
    #: livekit-sip; empty when the region declares no `sip`
    sip: list[K8sObject]
    #: by GPU node group name
    gpu_groups: dict[str, list[K8sObject]]
    #: by model name
    models: dict[str, list[K8sObject]]
    #: the router in front of an LLM's replicas, by model name; only models that have one
    routers: dict[str, list[K8sObject]]
    #: by tenant name
    tenants: dict[str, list[K8sObject]]
    #: by the agent's scoped name (`<tenant>-<agent>`)
    agents: dict[str, list[K8sObject]]
    #: the controller that ranks agent pods for scale-down; empty when the region has no agent pool
    deletion_cost: list[K8sObject]

    def all(self) -> list[K8sObject]:
        """Every object, part after part."""
        out = self.namespaces + self.default_deny + self.sfu + self.gateway + self.recovery + self.sip
        for parts in (self.gpu_groups, self.models, self.routers, self.tenants, self.agents):
            for objects in parts.values():
                out = out + objects
        return out + self.deletion_cost


def build_region(region: Region, agents: Sequence[Agent], *, image: str) -> RegionObjects:
    """Everything `region` runs, with `agents` (those whose manifests list it). `image` stands
    where the stack builds an image (the gateway's, the LLM routers', the deletion-cost controller's,
    the recovery controller's, each `code.build` agent's, the models' GPU preflight): the components
    put the built image there; drift and the dev servers, which read no image, pass ""."""
    return RegionObjects(
        namespaces=build_namespaces(region),
        default_deny=build_platform_default_deny(region),
        sfu=build_redis(region) + build_sfu(region),
        gateway=build_gateway(region, agents, image=image),
        recovery=build_recovery(region, agents, image=image),
        sip=build_sip(region) if region.sip is not None else [],
        gpu_groups={name: build_gpu_group(region, group) for name, group in region.gpu_node_groups.items()},
        models={name: build_model(region, model, agents, preflight_image=image) for name, model in region.models.items()},
        routers={name: build_router(region, model, model_labels(region, model), model_clients(model, agents),
                                    image=image)
                 for name, model in region.models.items() if has_router(model)},
        tenants={name: build_tenant(region, tenant, [a for a in agents if a.tenant == name])
                 for name, tenant in region.tenants.items()},
        agents={agent.scoped_name: build_agent_pool(region, agent, image=image) for agent in agents},
        deletion_cost=build_deletion_cost(region, agents, image=image),
    )
