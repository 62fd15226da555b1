"""Names that Pulumi state records, held still: a deployed stack keys every resource by its type
token, and a LiveKit dynamic resource's state holds its provider pickled *by module path*. A change
to either, without an alias (tokens) or a module left importable at the old path (providers), makes
the next `pulumi up` replace resources or fail to read them. The layout change of issue #18 moved
files but kept both (components shipped as `voxplane.components` already); this test says so, and
fails when a later move does not.
"""

from __future__ import annotations

import ast

import dill

from voxplane.components import livekit_objects

from .support.repo import REPO

# What stacks deployed since the gateway's image landed (9c214f3) hold in their state.
TYPE_TOKENS = {
    "voxplane:agents:AgentPool", "voxplane:index:RegionStack", "voxplane:inference:GPUNodeGroup",
    "voxplane:inference:InferencePool", "voxplane:livekit:LiveKitControlPlane", "voxplane:livekit:LiveKitGateway",
    "voxplane:livekit:LiveKitSFU", "voxplane:livekit:SIPBridge", "voxplane:tenant:Tenant",
    # since the deletion-cost controller landed (issue #21 item 4)
    "voxplane:controllers:PodDeletionCost",
}
PICKLED_PROVIDER = b"voxplane.components.livekit_objects"


def _component_tokens() -> set[str]:
    tokens = set()
    for path in (REPO / "voxplane" / "components").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "__init__"
                    and node.args and isinstance(node.args[0], ast.Constant)
                    and str(node.args[0].value).startswith("voxplane:")):
                tokens.add(str(node.args[0].value))
    return tokens


def test_every_deployed_type_token_is_still_declared() -> None:
    missing = TYPE_TOKENS - _component_tokens()
    assert not missing, f"type tokens deployed stacks hold but no component declares (add an alias): {sorted(missing)}"


def test_the_livekit_provider_pickles_at_the_module_path_deployed_state_holds() -> None:
    # As pulumi.dynamic serializes it (dill, recurse=True): a class is pickled by reference.
    pickled = dill.dumps(livekit_objects.LiveKitSIPProvider(), protocol=dill.DEFAULT_PROTOCOL, recurse=True)
    assert PICKLED_PROVIDER in pickled
    assert type(dill.loads(pickled)) is livekit_objects.LiveKitSIPProvider
