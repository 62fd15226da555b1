"""Generate docs/manifest-reference.md from the schemas, so the reference can never drift from them.

`python -m voxplane.devtools.docs > docs/manifest-reference.md` (or `make docs`); a test fails when the
committed file differs from what the schemas produce.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Iterator

from ..manifest.schema_files import SCHEMA_FILES, raw_schemas


def _resolve(schema: dict[str, Any], doc: str, docs: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Follow $ref (local or to the other schema file); sibling keywords win over the target's."""
    while "$ref" in schema:
        file, _, pointer = schema["$ref"].partition("#")
        doc = file or doc
        target: Any = docs[doc]
        for part in pointer.strip("/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema, doc


def _type(schema: dict[str, Any], doc: str, docs: dict[str, Any]) -> str:
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        items, _ = _resolve(schema.get("items", {}), doc, docs)
        inner = items.get("type") or ("object" if "properties" in items else "")
        return f"list of {inner}" if inner else "list"
    if kind == "object" and "additionalProperties" in schema and "properties" not in schema:
        return "map"
    if kind:
        return str(kind)
    branches = schema.get("anyOf") or schema.get("oneOf") or []
    forms = [_resolve(b, doc, docs)[0].get("type") for b in branches if isinstance(b, dict)]
    if forms and all(isinstance(f, str) for f in forms):
        return " or ".join(dict.fromkeys(str(f) for f in forms))
    if "oneOf" in schema or "properties" in schema:
        return "object"
    return ""


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _rows(schema: dict[str, Any], doc: str, docs: dict[str, Any], prefix: str, required: set[str]) -> Iterator[str]:
    for name, sub in schema.get("properties", {}).items():
        resolved, sub_doc = _resolve(sub, doc, docs)
        path = f"{prefix}{name}"
        default = f"`{json.dumps(resolved['default'])}`" if "default" in resolved else ("required" if name in required else "")
        text = resolved.get("description") or resolved.get("title") or ""
        yield f"| `{path}` | {_type(resolved, sub_doc, docs)} | {_cell(default)} | {_cell(text)} |"
        nested = resolved
        suffix = "."
        if resolved.get("type") == "array" and isinstance(resolved.get("items"), dict):
            nested, sub_doc = _resolve(resolved["items"], sub_doc, docs)
            suffix = "[]."
        elif "properties" not in resolved and isinstance(resolved.get("additionalProperties"), dict):
            nested, sub_doc = _resolve(resolved["additionalProperties"], sub_doc, docs)
            suffix = ".<name>."
        if "properties" in nested:
            yield from _rows(nested, sub_doc, docs, path + suffix, set(nested.get("required", [])))


def reference() -> str:
    docs = raw_schemas()
    out = [
        "# Manifest reference",
        "",
        "Generated from `schemas/*.json` by `python -m voxplane.devtools.docs`; do not edit by hand.",
        "Every field, its type, its default and what it means. `required` marks fields without a default",
        "that must be given.",
    ]
    for kind, file in SCHEMA_FILES.items():
        schema = docs[file]
        out += ["", f"## {schema.get('title', kind)} (`{file}`)", "", schema.get("description", ""), ""]
        out += ["| field | type | default | description |", "|---|---|---|---|"]
        out += list(_rows(schema, file, docs, "", set(schema.get("required", []))))
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(reference())
