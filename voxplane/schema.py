"""The JSON Schemas in schemas/: compiled validators, schema errors as located problems, defaults.

The schemas are the one definition of every manifest field. This module only reads them: it
validates a document, turns each `jsonschema` error into a `Problem` at the exact key or value, and
fills in the documented `default`s so the typed model never invents its own.
"""

from __future__ import annotations

import copy
import difflib
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Iterable, Iterator

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from .problems import Path, Problem, format_path
from .sourcemap import SourceMap

SCHEMA_FILES = {"region": "region.schema.json", "agent": "agent.schema.json"}


@cache
def raw_schemas() -> dict[str, dict[str, Any]]:
    """Schema documents keyed by file name (`region.schema.json`, ...)."""
    folder = resources.files("voxplane.schemas")
    return {name: json.loads(folder.joinpath(name).read_text()) for name in SCHEMA_FILES.values()}


@cache
def validator(kind: str) -> Draft202012Validator:
    """A compiled validator for `kind` ("region" or "agent"); refs between files resolve locally."""
    schemas = raw_schemas()
    registry: Registry = Registry().with_resources(
        (name, Resource.from_contents(doc)) for name, doc in schemas.items()
    )
    schema = dict(schemas[SCHEMA_FILES[kind]])
    schema["$id"] = SCHEMA_FILES[kind]  # base URI for the relative refs
    return Draft202012Validator(schema, registry=registry)


@dataclass(frozen=True)
class Located:
    """A schema error before it is bound to a file: field path, whether the key is at fault."""

    path: Path
    message: str
    at_key: bool = False


def check(kind: str, data: Any, smap: SourceMap, file: str) -> list[Problem]:
    """Validate `data` against the `kind` schema; every error, located, sorted by position."""
    problems = []
    for found in _located(validator(kind).iter_errors(data)):
        line, col = smap.key(found.path) if found.at_key else smap.value(found.path)
        problems.append(Problem(file, line, col, format_path(found.path), found.message))
    return sorted(set(problems))


def _located(errors: Iterable[ValidationError]) -> Iterator[Located]:
    for error in errors:
        yield from _explain(error)


def _explain(error: ValidationError) -> Iterator[Located]:
    path: Path = tuple(error.absolute_path)
    kind = error.validator
    value: Any = error.validator_value  # the keyword's value in the schema (e.g. required's list)
    schema = error.schema if isinstance(error.schema, dict) else {}
    instance = error.instance

    if "propertyNames" in error.relative_schema_path and isinstance(instance, str):
        # A bad key: jsonschema reports it against the mapping; point at the key itself.
        yield Located(path + (instance,), f"invalid key {instance!r}: {_form(schema)}", at_key=True)
        return
    if kind == "additionalProperties" and isinstance(instance, dict):
        known = list(schema.get("properties", {}))
        for extra in sorted(set(instance) - set(known)):
            yield Located(path + (extra,), "unknown field" + _did_you_mean(extra, known), at_key=True)
        return
    if kind == "required" and isinstance(instance, dict):
        for name in value:
            if name not in instance:
                # A condition's branch (if/then) may say why the field is needed there.
                sub = (schema.get("properties") or {}).get(name)
                why = f": {sub['description']}" if isinstance(sub, dict) and "const" in sub and sub.get("description") else ""
                yield Located(path + (name,), "required field is missing" + why, at_key=True)
        return
    if kind in ("oneOf", "anyOf"):
        yield from _explain_choice(error, path)
        return
    if kind == "type":
        yield Located(path, _type_message(error.validator_value, instance))
        return
    if kind == "enum":
        allowed = [str(v) for v in value]
        hint = _did_you_mean(str(instance), allowed) if isinstance(instance, str) else ""
        yield Located(path, f"{instance!r} is not one of {', '.join(allowed)}{hint}")
        return
    if kind == "pattern":
        yield Located(path, f"{instance!r} is not valid: {_form(schema)}")
        return
    if kind == "const":
        # A value fixed by a condition (if/then): the branch's description says why.
        why = f": {schema['description']}" if schema.get("description") else ""
        yield Located(path, f"must be {json.dumps(value)} here{why}")
        return
    if kind == "uniqueItems":
        yield Located(path, "entries must be unique; remove the repeated value")
        return
    yield Located(path, error.message)


def _explain_choice(error: ValidationError, path: Path) -> Iterator[Located]:
    """oneOf/anyOf: name the alternatives when none (or several) apply, else the deepest cause."""
    branches: Any = error.validator_value
    deep = [e for e in error.context if e.validator not in ("required", "not", "oneOf", "anyOf")]
    if deep and isinstance(error.instance, dict):
        # A branch was chosen but something inside it is wrong: report the best of those.
        best = min(deep, key=lambda e: (-len(e.absolute_path), e.validator in ("type",)))
        yield from _explain(best)
        return
    if not isinstance(error.instance, dict) and error.context:
        # A value that may take several forms (`cpu: 2` or `cpu: "500m"`): report the form whose
        # type fits, or name every form when none does.
        by_branch: dict[int, list[ValidationError]] = {}
        for sub in error.context:
            by_branch.setdefault(int(sub.relative_schema_path[0]), []).append(sub)
        fitting = [errs for errs in by_branch.values() if not any(e.validator == "type" and not e.path for e in errs)]
        if len(fitting) == 1:
            best = min(fitting[0], key=lambda e: -len(e.absolute_path))
            yield from _explain(best)
            return
        types: list[str] = []
        for sub in error.context:
            if sub.validator == "type" and not sub.path:
                value = sub.validator_value
                for t in value if isinstance(value, list) else [value]:
                    if str(t) not in types:
                        types.append(str(t))
        if types:
            yield Located(path, _type_message(types, error.instance))
            return
    options = []
    for branch in branches:
        need = branch.get("required") if isinstance(branch, dict) else None
        if need:
            options.append(" and ".join(f"`{name}`" for name in need))
    if options and isinstance(error.instance, dict):
        yield Located(path, "give exactly one of: " + "; or ".join(options))
    else:
        yield Located(path, _type_message("object", error.instance) if not isinstance(error.instance, dict) else error.message)


def _form(schema: dict[str, Any]) -> str:
    """How a patterned value must look. Format types in $defs (untitled) describe their form;
    a titled property's description says what it means, so fall back to the pattern."""
    if "title" not in schema and schema.get("description"):
        return str(schema["description"])
    return f"must match {schema.get('pattern')}"


_JSON_TYPES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if value is None:
        return "nothing (null)"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _type_message(expected: Any, value: Any) -> str:
    names = expected if isinstance(expected, list) else [expected]
    want = " or ".join(_JSON_TYPES.get(str(n), str(n)) for n in names)
    message = f"expected {want}, got {_describe(value)}"
    if "string" in names and isinstance(value, (int, float, bool)):
        message += "; quote the value to keep it text"
    return message


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# --- defaults ------------------------------------------------------------------------------


def with_defaults(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """A copy of a *valid* document with every documented schema default filled in."""
    doc = copy.deepcopy(data)
    schemas = raw_schemas()
    _fill(schemas[SCHEMA_FILES[kind]], doc, SCHEMA_FILES[kind], schemas)
    return doc


def _resolve(schema: dict[str, Any], base: str, schemas: dict[str, Any]) -> tuple[dict[str, Any], str]:
    while "$ref" in schema:
        ref = schema["$ref"]
        file, _, pointer = ref.partition("#")
        base = file or base
        target: Any = schemas[base]
        for part in pointer.strip("/").split("/") if pointer else []:
            target = target[part]
        # Keywords beside $ref (title, default) belong to the referring schema and stay there.
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema, base


def _fill(schema: dict[str, Any], value: Any, base: str, schemas: dict[str, Any]) -> None:
    schema, base = _resolve(schema, base, schemas)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name, sub in props.items():
            if name not in value:
                sub_resolved, _ = _resolve(sub, base, schemas)
                if "default" in sub_resolved:
                    value[name] = copy.deepcopy(sub_resolved["default"])
            if name in value:
                _fill(sub, value[name], base, schemas)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in value:
                if name not in props:
                    _fill(extra, value[name], base, schemas)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _fill(schema["items"], item, base, schemas)
