"""kwok's Stage objects for the dev cluster (kwok v0.8.0 `kustomize/stage/*`, docs "Stages"):
kwok's defaults, and, when the pod runner runs agent pods as workers, those pods handed to it.

kwok's default pod stages mark a scheduled pod Running and Ready at once and delete a deleted pod
at once, ignoring its grace period. For an agent pod (label `voxplane.io/agent`) the pod runner is
the kubelet instead: kwok's `pod-ready` and `pod-delete` skip it, and one stage of ours gives it
only what the node would before any container runs (its IPs, Initialized, containers waiting in
ContainerCreating, Ready False). The runner then starts the worker, sets Running and the
container's state, makes Ready follow the readiness probe, and on deletion keeps the pod
Terminating while the worker drains, deleting it once the worker has exited.

Stages are selected with kwok's jq-style `matchExpressions` (`Exists` is true for a non-empty
value), so the agent and non-agent selectors never both match a pod.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import yaml

from ..desired.common import LABEL_AGENT

__all__ = ["AGENT_POD_START", "stages"]

_AGENT_KEY = f'.metadata.labels["{LABEL_AGENT}"]'
#: kwok's stages that would act on an agent pod the runner owns.
_LEFT_TO_RUNNER = ("pod-ready", "pod-delete")
AGENT_POD_START = "voxplane-agent-pod-start"

_START_TEMPLATE = """{{ $now := Now }}
conditions:
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: PodReadyToStartContainers
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Initialized
- lastTransitionTime: {{ $now | Quote }}
  status: "False"
  reason: ContainersNotReady
  type: Ready
- lastTransitionTime: {{ $now | Quote }}
  status: "False"
  reason: ContainersNotReady
  type: ContainersReady
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  started: false
  restartCount: 0
  state:
    waiting:
      reason: ContainerCreating
{{ end }}
{{ $hostIPs := NodeIPsWith .spec.nodeName }}
{{ with $hostIPs }}
hostIP: {{ index . 0 | Quote }}
hostIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
{{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
{{ with $podIPs }}
podIP: {{ index . 0 | Quote }}
podIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
phase: Pending
startTime: {{ $now | Quote }}
"""


def _agent_pod_start() -> dict[str, Any]:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage", "metadata": {"name": AGENT_POD_START},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {"matchExpressions": [
                {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                {"key": ".status.phase", "operator": "In", "values": ["Pending"]},
                {"key": ".status.podIP", "operator": "DoesNotExist"},
                {"key": _AGENT_KEY, "operator": "Exists"},
            ]},
            "next": {"statusTemplate": _START_TEMPLATE},
        },
    }


def stages(stages_dir: Path, names: Sequence[str], *, agent_workers: bool) -> list[str]:
    """The YAML of kwok's stages `names` (from `stages_dir`), and with `agent_workers` agent pods
    left to the pod runner. FileNotFoundError names a missing stage file."""
    out = []
    for name in names:
        path = stages_dir / f"{name}.yaml"
        if not path.is_file():
            raise FileNotFoundError(path)
        text = path.read_text()
        if agent_workers and name in _LEFT_TO_RUNNER:
            stage = yaml.safe_load(text)
            stage["spec"].setdefault("selector", {}).setdefault("matchExpressions", []).append(
                {"key": _AGENT_KEY, "operator": "DoesNotExist"})
            text = yaml.safe_dump(stage, sort_keys=False)
        out.append(text)
    if agent_workers:
        out.append(yaml.safe_dump(_agent_pod_start(), sort_keys=False))
    return out
