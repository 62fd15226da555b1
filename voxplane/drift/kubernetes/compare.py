"""The comparison rules of Kubernetes drift: a desired object (what voxplane declares) against the
live one (what the API server returns), on the fields voxplane declares only.

Pure: dicts in, `FieldDiff`s out. The rules, each because of what the API server does to an object:

- Only paths present in the desired object are compared. The server adds defaults (`protocol: TCP`,
  `imagePullPolicy`, `revisionHistoryLimit` …), status and metadata (uid, resourceVersion, managed
  fields); none of that is drift. A desired mapping is compared key by key, so a live mapping with
  more keys matches — except an empty desired mapping (`podSelector: {}` selects every pod; a live
  selector that narrows it is drift) and ConfigMap `data`/`binaryData`, compared as wholes.
- Lists of named things are compared by name: `containers`, `initContainers`, `env`, `volumes`,
  `imagePullSecrets` (key `name`), `volumeMounts` (key `mountPath`), `ports` (key `name`, when every
  item has one). An item added live (an env var set by hand) or removed is reported as its own
  finding (`env[FOO]`). Other lists are compared as wholes: same length, and item by item with the
  same rules (so defaults inside items still do not count); a difference reports the whole list.
- Quantities are compared as numbers where Kubernetes normalises them: `cpu: 1000m` comes back as
  "1", `pods: 60` as "60" (resource requests/limits, quota `hard`, LimitRange bounds, storage sizes).
- An empty desired value (`{}`, `[]`) matches an absent live one (the server drops empty fields).
- Ignored: `metadata.name`/`namespace` (the identity), annotations under `pulumi.com/` (the
  provider's own), and the paths the caller passes (fields an autoscaler owns, see `IGNORED`).
- Secret payloads are never compared here; see `secret_diffs` (keys always, values by hash).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable, Iterator, Mapping, Optional, Union

from ...manifest.quantity import parse_quantity


class _Unset:
    """The value of a path that is absent on one side."""

    def __repr__(self) -> str:
        return "(unset)"


UNSET: Any = _Unset()
#: How an absent value is shown in reports (as LiveKit drift shows fields voxplane leaves empty).
UNSET_TEXT = "(unset)"
#: What reports show instead of a secret value.
SECRET_TEXT = "<secret>"


@dataclass(frozen=True)
class Keyed:
    """A path segment naming a list item by its key field (`env[FOO]`)."""

    field: str
    value: Any

    def __str__(self) -> str:
        return f"[{self.value}]"


Segment = Union[str, int, Keyed]
Path = tuple[Segment, ...]


@dataclass(frozen=True)
class FieldDiff:
    """One drifted path: declared and live values (`UNSET` where absent; secrets never appear)."""

    path: Path
    declared: Any
    live: Any

    @property
    def field(self) -> str:
        return format_path(self.path)


def format_path(path: Iterable[Segment]) -> str:
    """`spec.template.spec.containers[agent].env[FOO]`: keys dotted, list items in brackets."""
    out = ""
    for seg in path:
        if isinstance(seg, Keyed):
            out += str(seg)
        elif isinstance(seg, int):
            out += f"[{seg}]"
        else:
            out += ("." if out else "") + seg
    return out or "(object)"


def shown(value: Any) -> Any:
    """A value as reports carry it: `UNSET` becomes "(unset)"."""
    return UNSET_TEXT if value is UNSET else value


# --- the rules ------------------------------------------------------------------------------------

#: List fields whose items are matched by a key field rather than by position.
KEYED_LISTS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "ports": "name",
}
#: Mappings whose keys are quantities Kubernetes normalises ("1000m" -> "1").
QUANTITY_PARENTS = frozenset({"requests", "limits", "hard", "default", "defaultRequest", "max", "min",
                              "maxLimitRequestRatio", "capacity", "allocatable"})
QUANTITY_LEAVES = frozenset({"sizeLimit", "storage"})
#: Mappings compared as wholes under an object's top level (a key added live is drift).
WHOLE_MAPS: dict[str, frozenset[str]] = {"ConfigMap": frozenset({"data", "binaryData"})}
#: Annotation prefixes that belong to tools, not to the manifests.
IGNORED_ANNOTATION_PREFIXES = ("pulumi.com/",)
#: Per kind, the paths an autoscaler owns on objects the caller marks (components tell Pulumi to
#: ignore them: components/agent_pool.py and components/inference.py `ignore_changes`).
IGNORED: dict[str, tuple[Path, ...]] = {
    "Deployment": (("spec", "replicas"),),
    "StatefulSet": (("spec", "replicas"),),
}


def is_quantity_path(path: Path) -> bool:
    if not path or not isinstance(path[-1], str):
        return False
    parent = path[-2] if len(path) > 1 else None
    return path[-1] in QUANTITY_LEAVES or (isinstance(parent, str) and parent in QUANTITY_PARENTS)


def _quantity(value: Any) -> Optional[Decimal]:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            return parse_quantity(value.strip())
        except ValueError:
            return None
    return None


def scalars_equal(declared: Any, live: Any, path: Path = ()) -> bool:
    """Equal as the API server stores them: identical, or the same quantity on a quantity path."""
    if declared == live and type(declared) is type(live):
        return True
    if isinstance(declared, bool) or isinstance(live, bool):
        return False
    if isinstance(declared, (int, float)) and isinstance(live, (int, float)):
        return declared == live
    if is_quantity_path(path):
        a, b = _quantity(declared), _quantity(live)
        return a is not None and b is not None and a == b
    return False


def _empty(value: Any) -> bool:
    return value is None or value == {} or value == []


def list_key(path: Path, a: list[Any], b: list[Any]) -> Optional[str]:
    """The key field of a list at `path` when every item on both sides has a distinct one."""
    name = path[-1] if path and isinstance(path[-1], str) else None
    key = KEYED_LISTS.get(name or "")
    if key is None:
        return None
    for items in (a, b):
        if not all(isinstance(i, dict) and key in i for i in items):
            return None
        values = [i[key] for i in items]
        if len(set(map(str, values))) != len(values):
            return None
    return key


def keyed_items(path: Path, a: list[Any], b: list[Any]) -> Optional[list[tuple[Keyed, Any, Any]]]:
    """The items of two lists of named things matched by their key (`env` by name): (segment,
    item of `a` or UNSET, item of `b` or UNSET), in `a`'s order, then `b`'s items `a` lacks.
    None when the list at `path` is not one of KEYED_LISTS (or an item lacks a distinct key)."""
    key = list_key(path, a, b)
    if key is None:
        return None
    by_key = {str(item[key]): item for item in b}
    seen = {str(item[key]) for item in a}
    out = [(Keyed(key, item[key]), item, by_key.get(str(item[key]), UNSET)) for item in a]
    out += [(Keyed(key, item[key]), UNSET, item) for item in b if str(item[key]) not in seen]
    return out


def matches(desired: Any, live: Any, path: Path = ()) -> bool:
    return next(iter(diff_values(desired, live, path)), None) is None


def diff_values(desired: Any, live: Any, path: Path = (), whole_maps: frozenset[str] = frozenset()) -> Iterator[FieldDiff]:
    """The drifted paths of `live` against `desired`, by the rules above."""
    if live is UNSET or live is None:
        if not _empty(desired):
            yield FieldDiff(path, desired, UNSET)
        return
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            yield FieldDiff(path, desired, live)
            return
        if not desired or (len(path) == 1 and path[0] in whole_maps):
            if desired != live:
                yield FieldDiff(path, desired, live)
            return
        for key, value in desired.items():
            yield from diff_values(value, live.get(key, UNSET), path + (key,), whole_maps if not path else frozenset())
        return
    if isinstance(desired, list):
        if not isinstance(live, list):
            yield FieldDiff(path, desired, live)
            return
        pairs = keyed_items(path, desired, live)
        if pairs is None:
            if len(desired) != len(live) or not all(matches(d, lv, path + (i,)) for i, (d, lv) in enumerate(zip(desired, live))):
                yield FieldDiff(path, desired, live)
            return
        for seg, item, live_item in pairs:
            if item is UNSET or live_item is UNSET:
                yield FieldDiff(path + (seg,), item, live_item)
            else:
                yield from diff_values(item, live_item, path + (seg,))
        return
    if not scalars_equal(desired, live, path):
        yield FieldDiff(path, desired, live)


def _without(obj: Mapping[str, Any], ignored: Iterable[Path]) -> dict[str, Any]:
    """A copy of `obj` without the ignored paths (dict keys only)."""
    out: dict[str, Any] = _copy(obj)
    for path in ignored:
        node: Any = out
        for seg in path[:-1]:
            node = node.get(seg) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return out


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def comparable(obj: Mapping[str, Any], ignored: Iterable[Path] = ()) -> dict[str, Any]:
    """The part of a desired object that drift compares: no identity, no tool annotations, no
    ignored paths, no Secret payload."""
    out = _without(obj, ignored)
    for key in ("apiVersion", "kind", "status"):
        out.pop(key, None)
    if obj.get("kind") == "Secret":
        out.pop("data", None)
        out.pop("stringData", None)
    meta = out.get("metadata") or {}
    meta = {k: v for k, v in meta.items() if k not in ("name", "namespace")}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if not k.startswith(IGNORED_ANNOTATION_PREFIXES)}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    if meta:
        out["metadata"] = meta
    else:
        out.pop("metadata", None)
    return out


def diff_object(desired: Mapping[str, Any], live: Mapping[str, Any], ignored: Iterable[Path] = ()) -> list[FieldDiff]:
    """Every drifted path of one object (Secret payloads excluded; see `secret_diffs`)."""
    whole = WHOLE_MAPS.get(str(desired.get("kind")), frozenset())
    return list(diff_values(comparable(desired, ignored), live, (), whole))


# --- secrets --------------------------------------------------------------------------------------


def digest(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


@dataclass(frozen=True)
class SecretCheck:
    """A Secret key whose declared value is not known here: compared by presence only."""

    key: str
    reason: str


def live_secret_digests(live: Mapping[str, Any]) -> dict[str, str]:
    """sha256 of each live Secret value (`data` is base64; `stringData` never comes back)."""
    out: dict[str, str] = {}
    for key, value in (live.get("data") or {}).items():
        try:
            out[key] = digest(base64.b64decode(value or ""))
        except (ValueError, TypeError):
            out[key] = digest(str(value).encode())
    for key, value in (live.get("stringData") or {}).items():
        out[key] = digest(str(value).encode())
    return out


def secret_diffs(
    declared_keys: Iterable[str],
    declared_digests: Mapping[str, str],
    live: Mapping[str, Any],
    unknown: Mapping[str, str],
) -> tuple[list[FieldDiff], list[SecretCheck]]:
    """A Secret's payload: the set of keys always; each value by its sha256 when the declared value
    is known (`declared_digests`), else a `SecretCheck` with the reason from `unknown`. Values and
    digests never appear in the findings: both sides read `SECRET_TEXT`."""
    live_digests = live_secret_digests(live)
    keys = sorted(set(declared_keys))
    diffs: list[FieldDiff] = []
    checks: list[SecretCheck] = []
    for key in keys:
        if key not in live_digests:
            diffs.append(FieldDiff(("data", key), SECRET_TEXT, UNSET))
        elif key in declared_digests:
            if declared_digests[key] != live_digests[key]:
                diffs.append(FieldDiff(("data", key), SECRET_TEXT, f"{SECRET_TEXT} (a different value)"))
        else:
            checks.append(SecretCheck(key, unknown.get(key, "the declared value is not available here")))
    for key in sorted(set(live_digests) - set(keys)):
        diffs.append(FieldDiff(("data", key), UNSET, SECRET_TEXT))
    return diffs, checks
