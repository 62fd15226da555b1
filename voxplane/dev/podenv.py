"""A container's environment, command and arguments as the kubelet gives them (pkg/kubelet/
kubelet_pods.go `makeEnvironmentVariables`, Kubernetes v1.34), from the live Pod and the Secrets
and ConfigMaps it names:

- `envFrom` first, in order (ConfigMaps and Secrets, with their `prefix`; keys that are not valid
  variable names are skipped, as the kubelet skips them), then `env`, in order, later names
  replacing earlier ones;
- `value` with `$(VAR)` references expanded against what is defined so far (`$$` escapes a `$`,
  an undefined reference stays as written), and the command and arguments expanded the same way;
- `valueFrom`: `secretKeyRef`, `configMapKeyRef` (an `optional` reference to a missing object or
  key sets nothing), `fieldRef` (the downward API's pod fields), `resourceFieldRef` (the
  container's limits and requests, limits defaulting to the node's allocatable, with `divisor`).

Not given, and said so in `NOT_SIMULATED`: the Service links (`<SVC>_SERVICE_HOST`, ...; nothing
here resolves a ClusterIP) and what the image sets, which the pod runner adds itself.

Pure: lookups are passed in. A missing Secret, ConfigMap or key raises `EnvError` with the
kubelet's message (the container then waits with reason `CreateContainerConfigError`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Mapping, Optional

from ..manifest.quantity import parse_quantity

__all__ = ["ContainerRun", "EnvError", "NOT_SIMULATED", "container_run", "expand"]

#: What a kubelet also gives a container that this does not.
NOT_SIMULATED = ("Service links (<SVC>_SERVICE_HOST, <SVC>_PORT, ...): no ClusterIP is reachable here",)

#: A C identifier-like name; since v1.34 any printable ASCII but '=' is accepted by the API, but
#: envFrom keys are still checked by the kubelet against this (IsEnvVarName).
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

Lookup = Callable[[str, str], Optional[Mapping[str, str]]]


class EnvError(ValueError):
    """The container cannot be created: its environment names what does not exist."""


@dataclass(frozen=True)
class ContainerRun:
    """What the container runs: `argv` (command + args, expanded) and its `env`, in order;
    `from_secrets`: the variables whose value came from a Secret (never to be shown)."""

    argv: tuple[str, ...]
    env: dict[str, str]
    from_secrets: frozenset[str] = frozenset()


def expand(text: str, defined: Mapping[str, str]) -> str:
    """`$(VAR)` expanded as Kubernetes expands it (third_party/forked/golang/expansion)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$" or i + 1 >= len(text):
            out.append(text[i])
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":  # `$$` is an escaped `$`
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end < 0:  # no closing paren: kept as written
                out.append(text[i:])
                break
            name = text[i + 2:end]
            out.append(defined[name] if name in defined else text[i:end + 1])
            i = end + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def _field(pod: Mapping[str, Any], path: str) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    item = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if item:
        return str((meta.get(item.group(1)) or {}).get(item.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"), "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.hostIPs": ",".join(i.get("ip", "") for i in status.get("hostIPs") or []),
        "status.podIPs": ",".join(i.get("ip", "") for i in status.get("podIPs") or []),
    }
    if path not in simple:
        raise EnvError(f"unsupported fieldRef fieldPath {path!r}")
    return str(simple[path] or "")


def _resource(container: Mapping[str, Any], ref: Mapping[str, Any], allocatable: Mapping[str, str]) -> str:
    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or not name:
        raise EnvError(f"unsupported resourceFieldRef resource {resource!r}")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(name)
    if raw is None and kind == "requests":  # an unset request defaults to the limit
        raw = (resources.get("limits") or {}).get(name)
    if raw is None:  # an unset limit is the node's allocatable
        raw = allocatable.get(name)
    if raw is None:
        return "0"
    value = parse_quantity(str(raw))
    divisor = parse_quantity(str(ref.get("divisor") or "1"))
    return str(math.ceil(value / divisor if divisor else Decimal(0)))


def container_run(pod: Mapping[str, Any], container: Mapping[str, Any], *, secret: Lookup, config_map: Lookup,
                  allocatable: Mapping[str, str] | None = None) -> ContainerRun:
    """The argv and environment of `container` of `pod`. `secret(namespace, name)` and
    `config_map(namespace, name)` return the object's data (decoded) or None when it is missing."""
    namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
    env: dict[str, str] = {}
    secret_names: set[str] = set()
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        for kind, lookup in (("configMapRef", config_map), ("secretRef", secret)):
            ref = source.get(kind)
            if ref is None:
                continue
            data = lookup(namespace, str(ref.get("name", "")))
            if data is None:
                if ref.get("optional"):
                    continue
                what = "configmap" if kind == "configMapRef" else "secret"
                raise EnvError(f'{what} "{ref.get("name")}" not found')
            for key, value in data.items():
                if _ENV_NAME.match(prefix + key):
                    env[prefix + key] = value
                    if kind == "secretRef":
                        secret_names.add(prefix + key)
                    else:
                        secret_names.discard(prefix + key)
    for item in container.get("env") or []:
        name = str(item["name"])
        secret_names.discard(name)
        if "valueFrom" not in item:
            raw = str(item.get("value", ""))
            env[name] = expand(raw, env)
            if any(f"$({s})" in raw for s in secret_names):  # a Secret's value copied in
                secret_names.add(name)
            continue
        source = item["valueFrom"]
        if "secretKeyRef" in source or "configMapKeyRef" in source:
            kind = "secretKeyRef" if "secretKeyRef" in source else "configMapKeyRef"
            ref = source[kind]
            lookup = secret if kind == "secretKeyRef" else config_map
            data = lookup(namespace, str(ref.get("name", "")))
            what = "secret" if kind == "secretKeyRef" else "configmap"
            if data is None or ref.get("key") not in data:
                if ref.get("optional"):
                    continue
                if data is None:
                    raise EnvError(f'{what} "{ref.get("name")}" not found')
                label = "Secret" if kind == "secretKeyRef" else "ConfigMap"
                raise EnvError(f"couldn't find key {ref.get('key')} in {label} {namespace}/{ref.get('name')}")
            env[name] = data[str(ref["key"])]
            if kind == "secretKeyRef":
                secret_names.add(name)
        elif "fieldRef" in source:
            env[name] = _field(pod, str(source["fieldRef"].get("fieldPath", "")))
        elif "resourceFieldRef" in source:
            env[name] = _resource(container, source["resourceFieldRef"], allocatable or {})
        else:
            raise EnvError(f"env {name}: unsupported valueFrom {sorted(source)}")
    argv = [expand(str(a), env) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
    return ContainerRun(tuple(argv), env, frozenset(secret_names))
