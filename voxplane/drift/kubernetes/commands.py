"""What `voxplane drift --only kubernetes` does, minus option parsing: render the region, connect
to its cluster, compare. Failures the user can fix are `CommandError`s with one line each."""

from __future__ import annotations

import os

from pathlib import Path
from typing import Any, Optional, Sequence

from ...errors import CommandError
from ...manifest.model import Agent, Region
from .live import LiveReader
from .report import KubeDriftReport, detect
from .secrets import ConfigLookup, env_lookup


def stack_context(root: Path, region: str) -> Optional[str]:
    """The stack's `voxplane:kubeContext` (Pulumi.<region>.yaml), as `pulumi up` uses it."""
    from ...manifest import crosscheck

    return str(crosscheck.stack_config(root, region).get("kubeContext") or "") or None


def connect(context: Optional[str]) -> Any:
    """An ApiClient for `context` of the kubeconfig (KUBECONFIG, else ~/.kube/config)."""
    from kubernetes import config as kube_config
    from kubernetes.config.config_exception import ConfigException

    try:
        # The client reads KUBECONFIG once, when first imported; read it now, as kubectl would.
        return kube_config.new_client_from_config(config_file=os.environ.get("KUBECONFIG") or None, context=context)
    except (ConfigException, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CommandError([f"error: kubeconfig{f' context {context}' if context else ''}: {first}"]) from None


def run_drift(root: Path, region: Region, agents: Sequence[Agent], context: Optional[str],
              api_client: Any = None, secrets: Optional[ConfigLookup] = None) -> KubeDriftReport:
    """Render the region (the desired objects) and compare them with the cluster."""
    from kubernetes.client import ApiException
    from urllib3.exceptions import HTTPError

    from ...deploy.render import render

    desired = render(region.name, root).kubernetes
    client = api_client if api_client is not None else connect(context)
    reader = LiveReader(client)
    try:
        return detect(region, agents, desired, reader, secrets=secrets or env_lookup(), context=context)
    except ApiException as exc:
        reason = f"{exc.status} {exc.reason}".strip() if exc.status else str(exc.reason or exc).splitlines()[0]
        raise CommandError([f"error: reading the cluster at {reader.server}"
                            f"{f' (context {context})' if context else ''}: {reason}"]) from None
    except (HTTPError, OSError) as exc:
        first = (" ".join(str(exc).split()) or type(exc).__name__)[:300]
        raise CommandError([f"error: reading the cluster at {reader.server}"
                            f"{f' (context {context})' if context else ''}: {first}"]) from None
