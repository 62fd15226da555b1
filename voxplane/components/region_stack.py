"""RegionStack: a region's whole platform — SFU, LiveKit gateway, lost-agent recovery, SIP bridge,
tenants, GPU node groups, inference models, agent pools, the platform controllers and LiveKit
control-plane objects — behind one Kubernetes provider."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from voxplane.deploy import agent_base
from voxplane.desired.common import platform_api_keys
from voxplane.desired.region import build_region
from voxplane.manifest.model import Agent, Region

from ._register import register_all
from .agent_pool import AgentPool, AgentPoolArgs, agent_base_image, builds_on_base
from .deletion_cost import PodDeletionCost, PodDeletionCostArgs
from .gateway import LiveKitGateway, LiveKitGatewayArgs
from .gpu import GPUNodeGroup, GPUNodeGroupArgs
from .images import IMAGE_PLACEHOLDER, FolderImage
from .inference import InferencePool, InferencePoolArgs, preflight_image
from .llm_router import LLMRouter, LLMRouterArgs
from .livekit_objects import LiveKitControlPlane, LiveKitControlPlaneArgs
from .recovery import AgentRecovery, AgentRecoveryArgs
from .secrets import SecretResolver
from .sfu import LiveKitSFU, LiveKitSFUArgs
from .sip import SIPBridge, SIPBridgeArgs
from .tenant import Tenant, TenantArgs


@dataclass(frozen=True, kw_only=True)
class RegionStackArgs:
    """Inputs of a `RegionStack`.

    Attributes:
        region: The region manifest, validated.
        agents: Agents whose manifests list this region.
        repo_root: Repository root; agent build directories are relative to it.
        image_registry: Registry the images the stack builds are pushed to: the gateway's, the LLM
            routers', the deletion-cost controller's, the recovery controller's, the GPU preflight's
            and those of agents built from `code.build` (stack config `voxplane:imageRegistry`).
        kube_context: kubeconfig context; unset uses the current context.
        kubeconfig: kubeconfig contents; unset uses KUBECONFIG or ~/.kube/config.
        render_to: When set, the Kubernetes provider writes manifests to this folder instead of
            applying them.
        build_images: Build and push the gateway's, the LLM routers' and `code.build` agents' images (needs a
            Docker engine); False deploys the content-hash tag of each build folder (stack config
            `voxplane:buildImages`).
    """

    region: Region
    agents: Sequence[Agent]
    repo_root: str
    image_registry: Optional[str] = None
    kube_context: Optional[str] = None
    kubeconfig: Optional[pulumi.Input[str]] = None
    render_to: Optional[str] = None
    build_images: bool = True


class RegionStack(pulumi.ComponentResource):
    """Everything one region runs. Children are named `<region>-<role>`; outputs are flat.

    The region's objects come from one `build_region`; each part goes to the component named
    after it. Shared things are the stack's own: the Kubernetes provider, the secret resolver, the
    platform's agent base image (`agent_base`, registered once when an agent builds on it) and the
    GPU preflight's image (once, when the region runs models)."""

    livekit_url: pulumi.Output[str]
    livekit_internal_url: pulumi.Output[str]
    sip_uri: pulumi.Output[str]
    firewall_rules: pulumi.Output[list]
    agent_names: pulumi.Output[list]
    gpu_node_requirements: pulumi.Output[dict]

    def __init__(self, name: str, args: RegionStackArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("voxplane:index:RegionStack", name, None, opts)
        region = args.region
        provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=args.kubeconfig,
            context=args.kube_context,
            render_yaml_to_directory=args.render_to,
            opts=pulumi.ResourceOptions(parent=self),
        )
        child = pulumi.ResourceOptions(parent=self, providers={"kubernetes": provider})
        # livekit-server's key file holds the platform's keys only; tenant keys are the gateway's.
        secrets = SecretResolver(region.name, platform_api_keys())
        desired = build_region(region, args.agents, image=IMAGE_PLACEHOLDER)

        namespaces = register_all(f"{name}-ns", desired.namespaces, secrets, child)
        after_ns = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=list(namespaces.values())))
        # Default deny in the system and inference namespaces; each component admits its own flows.
        # (Resource names carry the namespace: both policies are called default-deny.)
        self.default_deny = {
            ns: register_all(f"{name}-net-{ns}", [policy], secrets, after_ns)
            for policy in desired.default_deny
            for ns in [policy["metadata"]["namespace"]]
        }

        self.sfu = LiveKitSFU(f"{name}-sfu", LiveKitSFUArgs(region=region, objects=desired.sfu, secrets=secrets),
                              opts=after_ns)
        # A render-only stack has no Docker engine to build images with.
        build_images = args.build_images and not args.render_to
        self.gateway = LiveKitGateway(
            f"{name}-gateway",
            LiveKitGatewayArgs(region=region, objects=desired.gateway, secrets=secrets,
                               image_registry=args.image_registry, build_images=build_images),
            opts=after_ns,
        )
        # livekit-server's webhooks go to it: a call whose agent is lost gets the agent again.
        self.recovery = AgentRecovery(
            f"{name}-recovery",
            AgentRecoveryArgs(region=region, objects=desired.recovery, secrets=secrets,
                              image_registry=args.image_registry, build_images=build_images),
            opts=after_ns,
        )
        # The SIP bridge reads the Redis password the SFU component declares: its pods roll only
        # after that Secret holds the new value (a rotated root secret).
        self.sip = (
            SIPBridge(f"{name}-sip", SIPBridgeArgs(region=region, objects=desired.sip, secrets=secrets),
                      opts=pulumi.ResourceOptions.merge(
                          after_ns, pulumi.ResourceOptions(depends_on=self.sfu.secret_resources)))
            if region.sip is not None
            else None
        )
        self.gpu_groups = {
            g: GPUNodeGroup(f"{name}-gpu-{g}", GPUNodeGroupArgs(region=region, group=group, objects=desired.gpu_groups[g]),
                            opts=child)
            for g, group in region.gpu_node_groups.items()
        }
        self.models: dict[str, InferencePool] = {}
        if region.models:
            # One GPU preflight image, run first by every model pod of the region.
            preflight = preflight_image(f"{name}-gpu-preflight", region, image_registry=args.image_registry,
                                        build=build_images, parent=self)
            self.models = {
                m: InferencePool(
                    f"{name}-model-{m}",
                    InferencePoolArgs(region=region, model=model, objects=desired.models[m], secrets=secrets,
                                      preflight_image=preflight.ref),
                    opts=pulumi.ResourceOptions.merge(
                        after_ns, pulumi.ResourceOptions(depends_on=[self.gpu_groups[model.node_group]])
                    ),
                )
                for m, model in region.models.items()
            }
        # The router of an LLM with more than one replica; agents reach the model through it.
        self.routers = {
            m: LLMRouter(
                f"{name}-model-{m}-router",
                LLMRouterArgs(region=region, model=region.models[m], objects=objects, secrets=secrets,
                              image_registry=args.image_registry, build_images=build_images),
                opts=after_ns,
            )
            for m, objects in desired.routers.items()
        }
        self.tenants = {
            t: Tenant(
                f"{name}-tenant-{t}",
                TenantArgs(region=region, tenant=tenant, objects=desired.tenants[t], secrets=secrets),
                opts=child,
            )
            for t, tenant in region.tenants.items()
        }
        # Ranks each pool's pods for scale-down by their live calls; its RBAC lives in the tenant namespaces.
        self.deletion_cost = PodDeletionCost(
            f"{name}-deletion-cost",
            PodDeletionCostArgs(region=region, objects=desired.deletion_cost, secrets=secrets,
                                image_registry=args.image_registry, build_images=build_images),
            opts=pulumi.ResourceOptions.merge(after_ns, pulumi.ResourceOptions(depends_on=list(self.tenants.values()))),
        )
        self.agent_base = self._agent_base_image(args, build_images)
        self.agents = {
            agent.scoped_name: AgentPool(
                f"{name}-agent-{agent.scoped_name}",
                AgentPoolArgs(
                    region=region,
                    agent=agent,
                    objects=desired.agents[agent.scoped_name],
                    secrets=secrets,
                    image_registry=args.image_registry,
                    repo_root=args.repo_root,
                    build_images=build_images,
                    base_image=self.agent_base,
                ),
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[self.tenants[agent.tenant]])),
            )
            for agent in args.agents
        }

        # SIP trunks and dispatch rules live inside LiveKit. A stack that only renders YAML has no
        # server to write them to (`voxplane livekit sync REGION` does that); `voxplane render`
        # still shows them.
        self.livekit = (
            LiveKitControlPlane(
                f"{name}-livekit",
                LiveKitControlPlaneArgs(region=region, agents=args.agents, secrets=secrets),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.sfu]),
            )
            if not args.render_to
            else None
        )

        self.livekit_url = pulumi.Output.from_input(region.livekit.public_url)
        self.livekit_internal_url = self.sfu.internal_url
        self.sip_uri = self.sip.sip_uri if self.sip is not None else pulumi.Output.from_input("")
        self.firewall_rules = self.sfu.firewall_rules
        self.agent_names = pulumi.Output.from_input(sorted(self.agents))
        # Labels and taints pre-provisioned GPU nodes must carry (Karpenter groups: their NodePool).
        self.gpu_node_requirements = pulumi.Output.from_input(
            {g: group.node_requirements for g, group in self.gpu_groups.items()}
        )
        self.register_outputs(
            {
                "livekit_url": self.livekit_url,
                "livekit_internal_url": self.livekit_internal_url,
                "sip_uri": self.sip_uri,
                "firewall_rules": self.firewall_rules,
                "agent_names": self.agent_names,
                "gpu_node_requirements": self.gpu_node_requirements,
            }
        )

    def _agent_base_image(self, args: RegionStackArgs, build_images: bool) -> Optional[FolderImage]:
        """The platform's agent base image, when an agent of the region builds on it (and there is
        a registry to push it to: without one, that agent's pool says what to set)."""
        registry = (args.image_registry or "").strip().rstrip("/")
        if not registry or not any(builds_on_base(a, args.repo_root) for a in args.agents):
            return None
        return agent_base_image(
            f"{args.region.name}-{agent_base.IMAGE}",
            registry=registry,
            repo_root=args.repo_root,
            build_images=build_images,
            opts=pulumi.ResourceOptions(parent=self),
        )
