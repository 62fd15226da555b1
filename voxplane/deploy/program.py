"""The Pulumi program of a region stack: config → validated manifests → `RegionStack` → outputs.

`stacks/__main__.py` calls `run()` under the Pulumi engine; `voxplane render` calls the same
`run()` under the SDK's mock engine. Every manifest is validated before any resource is
registered, so a bad manifest deploys nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pulumi

from ..manifest.loader import UnknownRegion, find_region, load
from ..manifest.model import Project

#: Repository root: the folder holding Pulumi.yaml, regions/ and agents/.
REPO_ROOT = Path(__file__).resolve().parents[2]


class StackConfig:
    """The stack's `voxplane:*` settings (Pulumi.<stack>.yaml), each documented where it is read."""

    def __init__(self, config: Optional[pulumi.Config] = None, root: Optional[Path] = None):
        cfg = config or pulumi.Config("voxplane")
        #: Region manifest to deploy; default: the stack name (`pulumi up -s us-east`).
        self.region: str = cfg.get("region") or pulumi.get_stack()
        #: kubeconfig context of the region's cluster; default: the kubeconfig's current context.
        self.kube_context: Optional[str] = cfg.get("kubeContext") or None
        #: kubeconfig contents (secret) when not taken from KUBECONFIG / ~/.kube/config.
        self.kubeconfig: Optional[pulumi.Output[str]] = cfg.get_secret("kubeconfig")
        #: Render manifests to this folder instead of applying them (the `local` stack).
        self.render_to: Optional[str] = cfg.get("renderYamlTo") or None
        #: Registry agent images built from `code.build` are pushed to.
        self.image_registry: Optional[str] = cfg.get("imageRegistry") or None
        #: Build `code.build` images (needs a Docker engine); false deploys the content-hash tag
        #: that the same build folder gets in CI, as a render-only stack does.
        build = cfg.get_bool("buildImages")
        self.build_images: bool = (True if build is None else build) and not self.render_to
        #: Repository root: render's `repoRoot`, else the checkout the program runs from.
        self.root: Path = Path(cfg.get("repoRoot") or root or REPO_ROOT)


def run(settings: Optional[StackConfig] = None, project: Optional[Project] = None, root: Optional[Path] = None) -> "object":
    """Declare the stack's region. Every manifest problem is logged, then `pulumi.RunError`.

    `project` skips loading when the caller (render) has just validated the same manifests;
    `root` is the checkout holding the stack's manifests (stacks/__main__.py passes its own).
    """
    from voxplane.components.region_stack import RegionStack, RegionStackArgs

    settings = settings or StackConfig(root=root)
    if project is None:
        result = load((), settings.root)
        if result.problems:
            for problem in result.problems:
                pulumi.log.error(str(problem))
            # RunError: Pulumi reports the message without a Python traceback.
            raise pulumi.RunError(f"{len(result.problems)} manifest problem(s) above; nothing was deployed")
        project = result.require_project()
    try:
        region = find_region(project, settings.region)
    except UnknownRegion as exc:
        raise pulumi.RunError(str(exc)) from None

    stack = RegionStack(
        region.name,
        RegionStackArgs(
            region=region,
            agents=project.agents_in(region.name),
            repo_root=str(settings.root),
            image_registry=settings.image_registry,
            kube_context=settings.kube_context,
            kubeconfig=settings.kubeconfig,
            render_to=settings.render_to,
            build_images=settings.build_images,
        ),
    )
    pulumi.export("region", region.name)
    pulumi.export("livekit_url", stack.livekit_url)
    pulumi.export("livekit_internal_url", stack.livekit_internal_url)
    pulumi.export("sip_uri", stack.sip_uri)
    pulumi.export("firewall_rules", stack.firewall_rules)
    pulumi.export("agents", stack.agent_names)
    pulumi.export("gpu_node_requirements", stack.gpu_node_requirements)
    return stack
