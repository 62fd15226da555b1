"""The schemas are the one definition of manifest fields; the typed model follows them exactly."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest

from voxplane.manifest import model
from voxplane.manifest.schema_files import raw_schemas

# Fields the model adds that no manifest writes: map keys copied into `name`, and provenance.
DERIVED = {"name", "source"}


def _resolve(schema: dict[str, Any], doc: dict[str, Any], docs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    while "$ref" in schema:
        file, _, pointer = schema["$ref"].partition("#")
        doc = docs[file] if file else doc
        target: Any = doc
        for part in pointer.strip("/").split("/"):
            target = target[part]
        schema = target
    return schema, doc


def _pairs() -> list[tuple[str, type, dict[str, Any], dict[str, Any]]]:
    """(label, dataclass, object schema, its document) for every object type in the schemas."""
    docs = raw_schemas()
    out: list[tuple[str, type, dict[str, Any], dict[str, Any]]] = []

    def visit(label: str, cls: type, schema: dict[str, Any], doc: dict[str, Any]) -> None:
        schema, doc = _resolve(schema, doc, docs)
        out.append((label, cls, schema, doc))
        hints = typing.get_type_hints(cls)
        for name, sub in schema.get("properties", {}).items():
            hint = hints.get(name)
            target = _dataclass_in(hint)
            if target is None:
                continue
            sub, sub_doc = _resolve(sub, doc, docs)
            if sub.get("type") == "array":
                sub, sub_doc = _resolve(sub["items"], sub_doc, docs)
            if "additionalProperties" in sub and isinstance(sub["additionalProperties"], dict) and "properties" not in sub:
                sub = sub["additionalProperties"]
            visit(f"{label}.{name}", target, sub, sub_doc)

    visit("region", model.Region, docs["region.schema.json"], docs["region.schema.json"])
    visit("agent", model.Agent, docs["agent.schema.json"], docs["agent.schema.json"])
    return out


def _dataclass_in(hint: Any) -> type | None:
    if hint is None:
        return None
    if dataclasses.is_dataclass(hint):
        return hint  # type: ignore[return-value]
    for arg in typing.get_args(hint):
        found = _dataclass_in(arg)
        if found is not None:
            return found
    return None


PAIRS = _pairs()


@pytest.mark.parametrize("label,cls,schema,doc", PAIRS, ids=[p[0] for p in PAIRS])
def test_dataclass_fields_equal_schema_properties(label, cls, schema, doc):
    """Each schema object and its dataclass have the same fields (no field defined in only one place)."""
    fields = {f.name for f in dataclasses.fields(cls)} - DERIVED
    props = set(schema.get("properties", {})) - DERIVED
    assert fields == props, f"{label}: model-only {fields - props}, schema-only {props - fields}"


def test_every_property_is_documented():
    """Every schema property has a title or description (the schema is the documentation)."""
    docs = raw_schemas()
    missing = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                resolved = sub
                if not any(k in resolved for k in ("title", "description")) and "$ref" in resolved:
                    resolved, _ = _resolve(sub, docs_of[path.split("#")[0]], docs)
                if not any(k in resolved for k in ("title", "description")):
                    missing.append(f"{path}/{name}")
            for key, value in node.items():
                if key not in ("if", "not"):
                    walk(value, path)
        elif isinstance(node, list):
            for value in node:
                walk(value, path)

    docs_of = {name: doc for name, doc in docs.items()}
    for name, doc in docs.items():
        walk(doc, name)
    assert missing == []


def test_schemas_are_2020_12_and_closed():
    """JSON Schema 2020-12, and every object schema with properties rejects unknown fields."""
    docs = raw_schemas()
    open_objects = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if "properties" in node and node.get("additionalProperties") is not False:
                open_objects.append(path)
            for key, value in node.items():
                # Conditions and their branches (which only constrain fields the object
                # itself defines, e.g. `then: {properties: {shared_room: {const: true}}}`) are
                # not object definitions.
                if key not in ("if", "then", "else", "not"):
                    walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}/{i}")

    for name, doc in docs.items():
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        walk(doc, name)
    assert open_objects == []


def _examples(node: Any, path: str = "") -> list[tuple[str, dict[str, Any], Any]]:
    found = []
    if isinstance(node, dict):
        for example in node.get("examples", []):
            found.append((path, {k: v for k, v in node.items() if k != "examples"}, example))
        for key, value in node.items():
            if key not in ("examples", "if", "not"):
                found += _examples(value, f"{path}/{key}")
    elif isinstance(node, list):
        for value in node:
            found += _examples(value, path)
    return found


@pytest.mark.parametrize("kind", ["region", "agent"])
def test_every_example_in_the_schema_is_valid(kind):
    """Field examples are what editors suggest: each one passes its own field's schema."""
    from voxplane.manifest.schema import validator
    from voxplane.manifest.schema_files import SCHEMA_FILES

    root = validator(kind)
    bad = []
    for path, schema, example in _examples(raw_schemas()[SCHEMA_FILES[kind]]):
        errors = list(root.evolve(schema=schema).iter_errors(example))
        if errors:
            bad.append(f"{path}: {example!r}: {errors[0].message}")
    assert bad == []
    assert len(_examples(raw_schemas()[SCHEMA_FILES[kind]])) > 20
