"""Check rendered Kubernetes objects against the real schemas, custom resources included.

Built-in kinds go through `kubernetes-validate` in strict mode (unknown fields are errors, as with
`kubectl apply --validate=strict`). Custom resources (KEDA, Karpenter, prometheus-operator) are
checked against the `openAPIV3Schema` of their real CRD, fetched by `scripts/fetch-crds.sh` into
`crd_dir()`. The API server prunes unknown fields of a structural schema silently (and strict
field validation rejects them), so here every object node without
`x-kubernetes-preserve-unknown-fields` gets `additionalProperties: false`: a typo such as
`spec.minReplicas` for KEDA's `minReplicaCount` is an error, not a field that vanishes on apply.

Not evaluated: CEL rules (`x-kubernetes-validations`) and string `format`s (int32, date-time, ...).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema.exceptions import ValidationError as JsonSchemaError

from voxplane.desired.common import SecretValue

#: Kubernetes minor version the built-in kinds are checked against; kubernetes-validate 1.37
#: ships schemas for 1.33 .. 1.37.
KUBERNETES_VERSION = "1.34"

#: The script that fills `crd_dir()`; named in every "missing CRD" problem.
CRD_SCRIPT = "scripts/fetch-crds.sh"

# DNS names (k8s.io/apimachinery/pkg/util/validation): most object names are DNS-1123
# subdomains; a Namespace name is a DNS-1123 label, a Service name a DNS-1035 label (it becomes a
# DNS label itself and must start with a letter).
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Label keys are `[prefix/]name`, values empty or a "qualified name" part; both parts <= 63.
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAMES = {"Namespace": ("DNS-1123", _DNS1123_LABEL), "Service": ("DNS-1035", _DNS1035_LABEL)}
# RBAC names are path segments ("system:aggregate-to-view" is valid), not DNS names.
_PATH_SEGMENT_GROUPS = {"rbac.authorization.k8s.io"}

_MESSAGE_LIMIT = 240


def crd_dir() -> Path:
    """Where `scripts/fetch-crds.sh` puts CRD YAML: `$VOXPLANE_CACHE/crds` (default
    `~/.cache/voxplane/crds`). Third-party files live in the cache, never in the repository."""
    cache = os.environ.get("VOXPLANE_CACHE") or str(Path.home() / ".cache" / "voxplane")
    return Path(cache) / "crds"


@dataclass(frozen=True)
class CrdVersion:
    """One served-or-not version of a CRD, with its schema already made strict."""

    crd_name: str  # e.g. "scaledobjects.keda.sh"
    group: str
    version: str
    kind: str
    namespaced: bool
    served: bool
    schema: Mapping[str, Any] | None  # strict JSON Schema, None when the CRD has no schema
    source: Path


# --- CRD loading -------------------------------------------------------------------------------


def strict_schema(node: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a CRD `openAPIV3Schema` (structural OpenAPI v3) into a JSON Schema that rejects
    what the API server would prune or refuse."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: strict_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = strict_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [strict_schema(sub) for sub in value]
        elif key in ("description", "example", "externalDocs", "nullable", "default"):
            continue  # documentation, or applied by the server (defaults) — not a constraint
        elif key.startswith("x-kubernetes-"):
            continue  # handled below
        else:
            out[key] = value

    if node.get("x-kubernetes-int-or-string"):
        # IntOrString: the server accepts either; `pattern` etc. then apply to the string form.
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable"):
        # Without `nullable: true` a null is not a value of the field (the server drops or
        # rejects it); with it, null is allowed next to the declared type.
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    if node.get("x-kubernetes-embedded-resource"):
        # An embedded object carries its own apiVersion/kind/metadata even if not declared.
        props = out.setdefault("properties", {})
        for implicit in ("apiVersion", "kind"):
            props.setdefault(implicit, {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    is_object = "properties" in node or node.get("type") == "object"
    if (
        is_object
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        # Structural-schema pruning: a field not declared here is dropped by the API server
        # (and refused by strict field validation) — for us, an error.
        out["additionalProperties"] = False
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if node.get("x-kubernetes-list-type") == "map" and node.get("x-kubernetes-list-map-keys"):
        out["x-kubernetes-list-map-keys"] = list(node["x-kubernetes-list-map-keys"])
    return out


def _list_map_keys(
    validator: Any, keys: list[str], instance: Any, schema: Mapping[str, Any]
) -> Iterator[JsonSchemaError]:
    """`x-kubernetes-list-type: map`: entries are merged by these keys, so each key tuple must be
    unique (the API server rejects duplicates)."""
    if not validator.is_type(instance, "array"):
        return
    seen: dict[str, int] = {}
    for index, item in enumerate(instance):
        if not isinstance(item, dict):
            continue
        key = json.dumps([item.get(k) for k in keys], sort_keys=True)
        if key in seen:
            shown = ", ".join(f"{k}={item.get(k)!r}" for k in keys)
            yield JsonSchemaError(f"duplicate entry {shown} (items {seen[key]} and {index})")
        else:
            seen[key] = index


_CrdValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"x-kubernetes-list-map-keys": _list_map_keys}
)


def _read_crds(path: Path) -> Iterator[CrdVersion]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open(encoding="utf-8") as fh:
        docs = list(yaml.load_all(fh, Loader=loader))
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc.get("spec") or {}
        for version in spec.get("versions") or []:
            raw = ((version.get("schema") or {}).get("openAPIV3Schema")) or None
            schema = None
            if raw is not None:
                schema = strict_schema(raw)
                # Root metadata is ObjectMeta; the CRD leaves it open and we check it separately.
                schema.setdefault("properties", {})["metadata"] = {"type": "object"}
            yield CrdVersion(
                crd_name=str((doc.get("metadata") or {}).get("name", "")),
                group=str(spec.get("group", "")),
                version=str(version.get("name", "")),
                kind=str((spec.get("names") or {}).get("kind", "")),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                served=bool(version.get("served", False)),
                schema=schema,
                source=path,
            )


@lru_cache(maxsize=8)
def _load_crds_cached(
    directory: str, stamp: tuple[tuple[str, int, int], ...]
) -> dict[tuple[str, str], dict[str, CrdVersion]]:
    del stamp  # only part of the cache key: a changed file reloads
    index: dict[tuple[str, str], dict[str, CrdVersion]] = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        for crd in _read_crds(path):
            index.setdefault((crd.group, crd.kind), {})[crd.version] = crd
    return index


def load_crds(directory: Path | None = None) -> dict[tuple[str, str], dict[str, CrdVersion]]:
    """All CRDs in `directory` (default `crd_dir()`): (group, kind) -> {version: CrdVersion}.
    Cached per directory content, so a fetch during a session is picked up."""
    directory = directory if directory is not None else crd_dir()
    if not directory.is_dir():
        return {}
    stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(directory.glob("*.yaml")))
    return _load_crds_cached(str(directory), stamp)


# --- formatting --------------------------------------------------------------------------------


def _ident(obj: Mapping[str, Any]) -> str:
    raw = obj.get("metadata")
    meta: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    name = meta.get("name", "<no name>")
    namespace = meta.get("namespace")
    kind = obj.get("kind", "<no kind>")
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def _field_path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _join(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


def _short(text: str) -> str:
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


def _unknown_fields(instance: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    declared = schema.get("properties") or {}
    patterns = list((schema.get("patternProperties") or {}).keys())
    return [key for key in instance if key not in declared and not any(re.search(p, key) for p in patterns)]


def _describe(error: JsonSchemaError, ident: str, redact_under: tuple[str, ...] = ()) -> list[str]:
    """One line per problem: `<Kind ns/name>: <field path>: <what is wrong>`."""
    path = _field_path(error.absolute_path)
    if (
        error.validator == "additionalProperties"
        and error.validator_value is False
        and isinstance(error.instance, dict)
        and isinstance(error.schema, dict)
    ):
        extra = _unknown_fields(error.instance, error.schema) or ["?"]
        return [f"{ident}: {_join(path, field)}: unknown field" for field in extra]
    if error.validator == "required":
        match = re.match(r"^'(.+)' is a required property$", error.message)
        if match:
            return [f"{ident}: {_join(path, match.group(1))}: required field is missing"]
    if redact_under and (not path or error.absolute_path[0] in redact_under):
        # Never echo a Secret's values into a message (messages end up in logs).
        return [f"{ident}: {path or '(object)'}: invalid value (fails '{error.validator}')"]
    message = _short(error.message)
    return [f"{ident}: {path}: {message}" if path else f"{ident}: {message}"]


# --- validation --------------------------------------------------------------------------------


def _without_secrets(value: Any) -> Any:
    # Builders leave SecretValue markers where the component layer puts a Pulumi secret; for
    # the schema a secret is just a string.
    if isinstance(value, SecretValue):
        return "redacted"
    if isinstance(value, dict):
        return {k: _without_secrets(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_without_secrets(v) for v in value]
    return value


def _group(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def _is_builtin(api_version: str) -> bool:
    # Core ("v1") and the dotless or *.k8s.io groups are Kubernetes' own; any other domain is a
    # custom resource (keda.sh, karpenter.sh, monitoring.coreos.com, ...).
    group = _group(api_version)
    return "." not in group or group.endswith(".k8s.io")


def _check_names(obj: Mapping[str, Any], ident: str) -> list[str]:
    """The parts of ObjectMeta validation that no schema expresses: name and label syntax."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return [f"{ident}: metadata: required object is missing"]
    problems: list[str] = []
    name = meta.get("name")
    kind = str(obj.get("kind", ""))
    if not isinstance(name, str) or not name:
        problems.append(f"{ident}: metadata.name: required field is missing")
    elif _group(str(obj.get("apiVersion", ""))) in _PATH_SEGMENT_GROUPS:
        if name in (".", "..") or "/" in name or "%" in name:
            problems.append(f"{ident}: metadata.name: {name!r} is not a valid path segment name")
    elif kind in _LABEL_NAMES and _is_builtin(str(obj.get("apiVersion", ""))):
        rule, pattern = _LABEL_NAMES[kind]
        if len(name) > 63 or not pattern.match(name):
            problems.append(
                f"{ident}: metadata.name: {name!r} is not a {rule} label "
                "(lowercase alphanumerics and '-', at most 63 characters)"
            )
    elif len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        problems.append(
            f"{ident}: metadata.name: {name!r} is not a DNS-1123 subdomain "
            "(lowercase alphanumerics, '-' and '.', at most 253 characters)"
        )
    namespace = meta.get("namespace")
    if namespace is not None and (
        not isinstance(namespace, str) or len(namespace) > 63 or not _DNS1123_LABEL.match(namespace)
    ):
        problems.append(f"{ident}: metadata.namespace: {namespace!r} is not a DNS-1123 label")
    labels = meta.get("labels")
    if isinstance(labels, dict):
        for key, value in labels.items():
            prefix, _, label_name = str(key).rpartition("/")
            if (
                (prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)))
                or len(label_name) > 63
                or not _LABEL_NAME.match(label_name)
            ):
                problems.append(f"{ident}: metadata.labels: key {key!r} is not a valid label key")
            if isinstance(value, str) and (len(value) > 63 or not _LABEL_VALUE.match(value)):
                problems.append(
                    f"{ident}: metadata.labels.{key}: {value!r} is not a valid label value "
                    "(at most 63 characters: alphanumerics, '-', '_', '.')"
                )
    return problems


def _kubernetes_validate(obj: dict[str, Any], ident: str) -> list[str]:
    try:
        # A test extra: imported here so that importing this module never needs it.
        import kubernetes_validate
    except ImportError:
        return [f"{ident}: cannot validate: kubernetes-validate is not installed (pip install -e '.[test]')"]
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        redact = ("data", "stringData") if obj.get("kind") == "Secret" else ()
        # validate() stops at its best-matching error; list every one where we can.
        errors = _all_builtin_errors(obj) or [error]
        return [line for e in errors for line in _describe(e, ident, redact)]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [f"{ident}: {error.message}"]
    return []


def _all_builtin_errors(obj: Mapping[str, Any]) -> list[JsonSchemaError]:
    """Every strict-schema error of a built-in object, from the same schema files that
    kubernetes-validate reads (its package data). Empty if that layout is not found, and the
    caller falls back to the single error `validate()` raised."""
    try:
        validator = _builtin_validator(str(obj["apiVersion"]), str(obj["kind"]))
    except (OSError, ValueError, KeyError, ImportError):
        return []
    return sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])


@lru_cache(maxsize=64)
def _builtin_validator(api_version: str, kind: str) -> Any:
    from referencing import Registry, Resource

    schema_dir = _builtin_schema_dir()
    # Same file naming as kubernetes-validate: "rbac.authorization.k8s.io/v1" -> "rbac-v1".
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = json.loads((schema_dir / f"{kind.lower()}-{api}.json").read_text())
    definitions = _builtin_definitions(schema_dir)
    registry: Registry[Any] = Resource.from_contents(definitions) @ (
        Resource.from_contents(schema) @ Registry()
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


@lru_cache(maxsize=1)
def _builtin_definitions(schema_dir: Path) -> Any:
    return json.loads((schema_dir / "_definitions.json").read_text())  # 1.5 MB: read once


def _builtin_schema_dir() -> Path:
    import kubernetes_validate

    # Package data laid out as kubernetes-json-schema/v<major.minor.patch>-local-strict/.
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    found = sorted(root.glob(f"v{KUBERNETES_VERSION}.*-local-strict"))
    if not found:
        raise OSError(f"no strict schemas for {KUBERNETES_VERSION} in {root}")
    return found[-1]


def _check_metadata_schema(obj: Mapping[str, Any], ident: str) -> list[str]:
    # A CRD leaves root metadata open, but the API server validates it as ObjectMeta: reuse the
    # built-in ObjectMeta schema by wrapping the metadata in the simplest kind that has one.
    if not isinstance(obj.get("metadata"), dict):
        return []  # already reported by _check_names
    shell = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}
    return _kubernetes_validate(shell, ident)


def _validate_custom(obj: dict[str, Any], ident: str) -> list[str]:
    api_version = str(obj.get("apiVersion", ""))
    group, _, version = api_version.rpartition("/")
    kind = str(obj.get("kind", ""))
    directory = crd_dir()
    versions = load_crds(directory).get((group, kind))
    if not versions:
        return [
            f"{ident}: no CRD for kind {kind!r} in group {group!r} (apiVersion {api_version}) in "
            f"{directory}; run {CRD_SCRIPT} (add the CRD there if it is a new kind)"
        ]
    crd = versions.get(version)
    if crd is None or not crd.served:
        served = sorted(v for v, c in versions.items() if c.served)
        any_crd = next(iter(versions.values()))
        return [
            f"{ident}: apiVersion {api_version} is not served by CRD {any_crd.crd_name} "
            f"(served: {', '.join(served) or 'none'})"
        ]
    if crd.schema is None:
        return [f"{ident}: CRD {crd.crd_name} {version} has no openAPIV3Schema to check against"]
    problems: list[str] = []
    if not crd.namespaced and "namespace" in (obj.get("metadata") or {}):
        problems.append(f"{ident}: metadata.namespace: {kind} is cluster-scoped; namespace must not be set")
    validator = _CrdValidator(crd.schema)
    for error in sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path]):
        problems.extend(_describe(error, ident))
    return problems + _check_metadata_schema(obj, ident)


def validate_object(obj: Mapping[str, Any]) -> list[str]:
    """Problems with one rendered object as readable lines (`<Kind ns/name>: <field>: <why>`);
    empty when the API server would accept it as is (up to the limits in the module doc)."""
    if not isinstance(obj, Mapping):
        return [f"not a Kubernetes object: {type(obj).__name__}"]
    plain: dict[str, Any] = _without_secrets(dict(obj))
    ident = _ident(plain)
    api_version, kind = plain.get("apiVersion"), plain.get("kind")
    if not isinstance(api_version, str) or not api_version or not isinstance(kind, str) or not kind:
        return [f"{ident}: apiVersion and kind must both be set"]
    problems = _check_names(plain, ident)
    if _is_builtin(api_version):
        problems += _kubernetes_validate(plain, ident)
    else:
        problems += _validate_custom(plain, ident)
    return list(dict.fromkeys(problems))  # a problem found twice is one problem


def validate_objects(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """`validate_object` over many objects, problems in input order."""
    return [problem for obj in objects for problem in validate_object(obj)]
