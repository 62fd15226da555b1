"""The JSON Schemas in schemas/: compiled validators, schema errors as located problems, defaults.

The schemas are the one definition of every manifest field. This module only reads them: it
validates a document, turns each `jsonschema` error into a `Problem` at the exact key or value, and
fills in the documented `default`s so the typed model never invents its own.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any, Iterable, Iterator

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from . import secret_fields
from .schema_files import SCHEMA_FILES, raw_schemas
from .problems import Path, Problem, format_path
from .sourcemap import SourceMap

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
    """A schema error before it is bound to a file: field path, whether the key is at fault, and
    the field to name when it is not the path (a key that may be a secret is not named)."""

    path: Path
    message: str
    at_key: bool = False
    field: Path | None = None


def check(kind: str, data: Any, smap: SourceMap, file: str) -> list[Problem]:
    """Validate `data` against the `kind` schema; every error, located, sorted by position."""
    problems = []
    for found in [*_located(validator(kind).iter_errors(data), kind), *_credentials(kind, data)]:
        line, col = smap.key(found.path) if found.at_key else smap.value(found.path)
        problems.append(Problem(file, line, col, format_path(secret_fields.shown(found.path if found.field is None else found.field)),
                                found.message))
    return sorted(set(problems))


def _credentials(kind: str, data: Any, path: Path = ()) -> Iterator[Located]:
    """Strings shaped like a well-known API key where only a name belongs (the `config`, `secret`
    or `key` of a reference) or in plain `env`: valid by the schema, and yet the secret itself."""
    if isinstance(data, dict):
        for key, item in data.items():
            if secret_fields.looks_like_credential(key) and (secret_fields.is_secret(kind, path) or path == ("env",)):
                yield Located(path + (key,), f"looks like an API key or token written as a name (not shown); "
                                             f"{secret_fields.what_to_write(kind, path)}", at_key=True, field=path)
                continue
            yield from _credentials(kind, item, path + (key,))
    elif isinstance(data, list):
        for index, item in enumerate(data):
            yield from _credentials(kind, item, path + (index,))
    elif secret_fields.looks_like_credential(data):
        field = secret_fields.field_of(kind, path)
        if kind == "agent" and len(path) == 2 and path[0] == "env":
            yield Located(path, f"looks like an API key or token in plain text (not shown); "
                                f"{secret_fields.what_to_write(kind, path)}")
        elif field is not None and len(path) > len(field):  # (a value in place of the reference: a type error)
            yield Located(path, f"looks like an API key or token itself, where only the name of one belongs "
                                f"(not shown); {secret_fields.what_to_write(kind, field)}")


def _located(errors: Iterable[ValidationError], doc_kind: str) -> Iterator[Located]:
    for error in errors:
        yield from _explain(error, doc_kind)


def _explain(error: ValidationError, doc_kind: str) -> Iterator[Located]:
    path: Path = tuple(error.absolute_path)
    kind = error.validator
    value: Any = error.validator_value  # the keyword's value in the schema (e.g. required's list)
    schema = error.schema if isinstance(error.schema, dict) else {}
    instance = error.instance
    # A field that holds or references a secret: what was written there is never repeated.
    secret = secret_fields.field_of(doc_kind, path)
    hide = secret is not None
    fix = f"; {secret_fields.what_to_write(doc_kind, secret)}" if secret is not None else ""

    if "propertyNames" in error.relative_schema_path and isinstance(instance, str):
        # A bad key: jsonschema reports it against the mapping; point at the key itself. The keys
        # of a mapping of references (`secrets:`) are variable names, shown; others are not.
        if hide and (not secret_fields.holds_names(doc_kind, path) or secret_fields.looks_like_credential(instance)):
            yield Located(path + (instance,), f"invalid key (not shown: it may be the secret){fix}", at_key=True,
                          field=path)
        else:
            yield Located(path + (instance,), f"invalid key {instance!r}: {_form(schema)}", at_key=True)
        return
    if kind == "additionalProperties" and isinstance(instance, dict):
        known = list(schema.get("properties", {}))
        for extra in sorted(set(instance) - set(known)):
            if hide:
                yield Located(path + (extra,), f"unknown field (not shown: it may be the secret){fix}", at_key=True,
                              field=path)
            else:
                hint = _did_you_mean(extra, known) or _belongs_under(doc_kind, path, extra, known, instance)
                yield Located(path + (extra,), "unknown field" + hint, at_key=True)
        return
    if kind == "required" and isinstance(instance, dict):
        for name in value:
            if name not in instance:
                # A condition's branch (if/then) may say why the field is needed there.
                sub = (schema.get("properties") or {}).get(name)
                why = f": {sub['description']}" if isinstance(sub, dict) and "const" in sub and sub.get("description") else ""
                # A field's description may say why it is required ("Required: <why>.").
                said = re.search(r"Required: ([^.]+)", str(sub.get("description", ""))) if isinstance(sub, dict) else None
                why = why or (f": {said.group(1)}" if said else "")
                yield Located(path + (name,), "required field is missing" + why, at_key=True)
        return
    if kind in ("oneOf", "anyOf"):
        yield from _explain_choice(error, path, doc_kind)
        return
    if kind == "type":
        if hide:
            yield Located(path, _hidden_type_message(error.validator_value, instance, schema) + fix)
        else:
            yield Located(path, _type_message(error.validator_value, instance))
        return
    if hide:
        # pattern, enum, length ...: say which rule, never the value (jsonschema's own message shows it).
        rule = f": {_form(schema)}" if kind == "pattern" else ""
        yield Located(path, f"not valid (not shown: it may be the secret){rule}{fix}")
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


def _belongs_under(kind: str, path: Path, key: str, known: list[str], instance: dict[str, Any]) -> str:
    """A field of a mapping one level down (a key dedented out of `scaling:`): which one. Mappings
    written in the document come first; said only when one of them holds the key."""
    holders = [name for name in known if (names := field_names(kind, path + (name,))) and key in names]
    written = [name for name in holders if name in instance] or holders
    if len(written) != 1:
        return ""
    return f" here; `{key}` belongs under `{written[0]}:`: indent it like the fields of `{written[0]}`"


def _explain_choice(error: ValidationError, path: Path, doc_kind: str) -> Iterator[Located]:
    """oneOf/anyOf: name the alternatives when none (or several) apply, else the deepest cause."""
    branches: Any = error.validator_value
    secret = secret_fields.field_of(doc_kind, path)
    deep = [e for e in error.context if e.validator not in ("required", "not", "oneOf", "anyOf")]
    if deep and isinstance(error.instance, dict):
        # A branch was chosen but something inside it is wrong: report the best of those.
        best = min(deep, key=lambda e: (-len(e.absolute_path), e.validator in ("type",)))
        yield from _explain(best, doc_kind)
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
            yield from _explain(best, doc_kind)
            return
        types: list[str] = []
        for sub in error.context:
            if sub.validator == "type" and not sub.path:
                value = sub.validator_value
                for t in value if isinstance(value, list) else [value]:
                    if str(t) not in types:
                        types.append(str(t))
        if types:
            yield Located(path, _type_message(types, error.instance) if secret is None else
                          _hidden_type_message(types, error.instance, {}) + f"; {secret_fields.what_to_write(doc_kind, secret)}")
            return
    options = []
    for branch in branches:
        need = branch.get("required") if isinstance(branch, dict) else None
        if need:
            options.append(" and ".join(f"`{name}`" for name in need))
    if options and isinstance(error.instance, dict):
        yield Located(path, "give exactly one of: " + "; or ".join(options))
    elif secret is not None:
        yield Located(path, _hidden_type_message("object", error.instance, error.schema if isinstance(error.schema, dict) else {})
                      + f"; {secret_fields.what_to_write(doc_kind, secret)}")
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


def _hidden_type_message(expected: Any, value: Any, schema: dict[str, Any]) -> str:
    """A type error at a secret-bearing field: the kind of value written, not the value."""
    names = expected if isinstance(expected, list) else [expected]
    if names == ["object"] and str(schema.get("title", "")).lower() == "secret reference":
        want = "a secret reference"
    else:
        want = " or ".join(_JSON_TYPES.get(str(n), str(n)) for n in names)
    got = _JSON_TYPES.get(_json_type(value), "a value")
    return f"expected {want}, got {got} (not shown: it may be the secret)"


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object" if isinstance(value, dict) else ""


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# --- field names, for hints ------------------------------------------------------------------


def field_names(kind: str, path: Path) -> frozenset[str] | None:
    """The keys a mapping at `path` of a `kind` document may hold (list indices in `path` may be
    any int): its declared properties; None when it takes keys of any name (`env`, `models`); an
    empty set when the schema has no mapping there."""
    schemas = raw_schemas()
    level = [(schemas[SCHEMA_FILES[kind]], SCHEMA_FILES[kind])]
    for part in path:
        level = [sub for schema, base in level for sub in _children(schema, base, part, schemas)]
    names: set[str] = set()
    for schema, base in level:
        for branch, _ in _branches(schema, base, schemas):
            names.update(branch.get("properties") or {})
            extra = branch.get("additionalProperties")
            if extra not in (None, False) or branch.get("patternProperties"):
                return None
    return frozenset(names)


def _branches(schema: dict[str, Any], base: str, schemas: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """`schema` resolved, with the subschemas that apply to the same value (allOf, oneOf, ...)."""
    schema, base = _resolve(schema, base, schemas)
    out = [(schema, base)]
    for keyword in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(keyword) or ():
            if isinstance(sub, dict):
                out += _branches(sub, base, schemas)
    for keyword in ("then", "else"):
        if isinstance(schema.get(keyword), dict):
            out += _branches(schema[keyword], base, schemas)
    return out


def _children(schema: dict[str, Any], base: str, part: str | int,
              schemas: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    out = []
    for branch, at in _branches(schema, base, schemas):
        if isinstance(part, int):
            if isinstance(branch.get("items"), dict):
                out.append((branch["items"], at))
            continue
        props = branch.get("properties") or {}
        if part in props:
            out.append((props[part], at))
        elif isinstance(branch.get("additionalProperties"), dict):
            out.append((branch["additionalProperties"], at))
    return out


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
