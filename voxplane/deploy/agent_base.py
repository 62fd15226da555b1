"""The platform's agent base image: the one place the agent glue lives.

`agents/_platform/` holds `voxplane_agent.py` (the platform's side of the agent contract: agent
name, inference clients, load, drain, metrics, health, call teardown, dispatch timeline), the
livekit-agents pins it is written against, and the Dockerfile of `voxplane-agent-base` (Python,
those pins, the glue on PYTHONPATH, the non-root user). An agent image built from source starts
`FROM` it through a build argument:

    ARG VOXPLANE_AGENT_BASE=voxplane-agent-base
    FROM ${VOXPLANE_AGENT_BASE}

so each agent's build context stays its own folder (no shared build context trick): `pulumi up`
builds the base first and passes its pushed digest as that argument (components/agent_pool.py);
a local `docker build` uses the `voxplane-agent-base` tag; a team's own pipeline passes whatever
base it published. Tests and local runs put the folder on PYTHONPATH instead.

Who counts a change of the folder as a change of every agent built from source: the image tag
(components/agent_pool.py hashes the base into the tag of each Dockerfile that uses it),
`voxplane affected` and `voxplane plan` (voxplane/plan/affected.py, voxplane/plan/plan.py).
"""

from __future__ import annotations

import re
from pathlib import Path

#: The folder, relative to the repository root.
FOLDER = "agents/_platform"
#: The glue module in it.
GLUE = "voxplane_agent.py"
#: The image's name (the registry path is the stack's `voxplane:imageRegistry`).
IMAGE = "voxplane-agent-base"
#: The build argument an agent's Dockerfile takes the base image reference from.
BUILD_ARG = "VOXPLANE_AGENT_BASE"

_FROM_ARG = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*\$\{?" + BUILD_ARG + r"\}?(?:\s|$)", re.IGNORECASE | re.MULTILINE)


def uses_base(dockerfile_text: str) -> bool:
    """Whether a Dockerfile builds `FROM ${VOXPLANE_AGENT_BASE}` (the platform's base image)."""
    return _FROM_ARG.search(dockerfile_text) is not None


def dockerfile_uses_base(path: Path) -> bool:
    """`uses_base` of the file at `path`; False when it cannot be read."""
    try:
        return uses_base(path.read_text())
    except (OSError, UnicodeDecodeError):
        return False


def is_base_path(rel: str) -> bool:
    """Whether a repository-relative path (forward slashes) is inside the base folder."""
    return rel == FOLDER or rel.startswith(FOLDER + "/")
