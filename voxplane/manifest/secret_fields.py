"""The manifest fields that hold or reference a secret: what is written there is never echoed.

A field references a secret when the schema gives it the `secretRef` shape (`{config: KEY}` or
`{secret: NAME, key: K}`): provider `api_key`s, an agent's `secrets:`, trunk passwords and PINs,
a model's `hf_token`, the Redis password, and any field added with that shape later. Whatever a
person writes there instead (the key itself, a list, a mapping holding it) may be the secret, so
messages about it say what is wrong and what to write, never the value. Plain `env` entries whose
name says they hold a secret are treated the same way.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from .problems import Path
from .schema_files import SCHEMA_FILES, raw_schemas

#: The schema definition every secret reference uses (region.schema.json#/$defs/secretRef).
SECRET_REF = "secretRef"
#: A path part that stands for any key of a mapping or any index of a list.
ANY = "*"
#: Plain `env` entries whose names say they hold a secret.
SECRET_LIKE_ENV = re.compile(r"(^|_)(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)($|_)")
#: References the deployer writes into LiveKit itself (it cannot read a Secret inside the cluster),
#: so only a stack config secret will do.
WRITTEN_INTO_LIVEKIT: tuple[Path, ...] = (("telephony", "auth", "password"), ("telephony", "dispatch", "pin"))

#: The shapes of well-known API keys and tokens (prefix and length, as secret scanners match them):
#: a name written where a reference's name belongs, or an `env` value, that has one is the secret.
CREDENTIAL = re.compile(
    r"^(sk[-_][A-Za-z0-9_-]{16,}"          # OpenAI, Anthropic (sk-ant-), Stripe, ElevenLabs, Cartesia
    r"|rk_(live|test)_[A-Za-z0-9]{16,}"     # Stripe restricted keys
    r"|hf_[A-Za-z0-9]{30,}"                 # Hugging Face
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{20,}"  # GitHub
    r"|glpat-[A-Za-z0-9_-]{20,}"            # GitLab
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"        # Slack
    r"|(AKIA|ASIA)[A-Z0-9]{16}"             # AWS access key id
    r"|AIza[A-Za-z0-9_-]{35}"               # Google API key
    r"|gsk_[A-Za-z0-9]{20,})$"              # Groq
)

CONFIG_FORM = "{config: KEY} (its value set with `pulumi config set --secret KEY`)"
SECRET_FORM = "{secret: NAME, key: K} (a key of an existing Secret)"


@cache
def patterns(kind: str) -> tuple[Path, ...]:
    """Data paths (ANY for a key or index) of the `kind` schema where a secret reference sits,
    and of the mappings that hold nothing else (`secrets:`), read from the schema itself."""
    schemas = raw_schemas()
    found: set[Path] = set()
    _walk(schemas[SCHEMA_FILES[kind]], SCHEMA_FILES[kind], (), schemas, found, set())
    return tuple(sorted(found, key=lambda p: tuple(map(str, p))))


def _walk(schema: Any, base: str, path: Path, schemas: dict[str, Any], found: set[Path],
          seen: set[tuple[str, str, Path]]) -> None:
    if not isinstance(schema, dict):
        return
    if "$ref" in schema:
        file, _, pointer = str(schema["$ref"]).partition("#")
        target_base = file or base
        if pointer.rstrip("/").split("/")[-1] == SECRET_REF:
            found.add(path)
            return
        key = (target_base, pointer, path)
        if key in seen:
            return
        seen.add(key)
        target: Any = schemas[target_base]
        for part in pointer.strip("/").split("/") if pointer else []:
            target = target[part]
        _walk(target, target_base, path, schemas, found, seen)
    for name, sub in (schema.get("properties") or {}).items():
        _walk(sub, base, path + (name,), schemas, found, seen)
    for sub in (schema.get("patternProperties") or {}).values():
        _walk(sub, base, path + (ANY,), schemas, found, seen)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        _walk(extra, base, path + (ANY,), schemas, found, seen)
        if path + (ANY,) in found and not schema.get("properties"):
            found.add(path)  # a mapping of references only: a value written in its place is one too
    for keyword in ("items", "contains"):
        _walk(schema.get(keyword), base, path + (ANY,), schemas, found, seen)
    for keyword in ("allOf", "anyOf", "oneOf", "prefixItems"):
        for sub in schema.get(keyword) or ():
            _walk(sub, base, path + ((ANY,) if keyword == "prefixItems" else ()), schemas, found, seen)
    for keyword in ("if", "then", "else", "not"):
        _walk(schema.get(keyword), base, path, schemas, found, seen)


def _matches(pattern: Path, path: Path) -> bool:
    return len(path) >= len(pattern) and all(p == ANY or p == part for p, part in zip(pattern, path))


def field_of(kind: str, path: Path) -> Path | None:
    """The secret-bearing field at or above `path` (as written in the document), or None."""
    for pattern in patterns(kind):
        if _matches(pattern, path):
            return tuple(path[: len(pattern)])
    if kind == "agent" and len(path) >= 2 and path[0] == "env" and SECRET_LIKE_ENV.search(str(path[1])):
        return tuple(path[:2])
    return None


def is_secret(kind: str, path: Path) -> bool:
    """Whether the value at `path` of a `kind` document holds, or stands where belongs, a secret."""
    return field_of(kind, path) is not None


def looks_like_credential(value: object) -> bool:
    """Whether a string has the shape of a well-known API key or token."""
    return isinstance(value, str) and CREDENTIAL.match(value.strip()) is not None


def shown(path: Path) -> Path:
    """`path` up to a key shaped like an API key or token: a secret written as a key is not named."""
    for index, part in enumerate(path):
        if looks_like_credential(part):
            return tuple(path[:index])
    return tuple(path)


def holds_names(kind: str, path: Path) -> bool:
    """Whether `path` is a mapping of references (`secrets:`), whose keys are variable names."""
    return any(len(p) == len(path) and _matches(p, path) and p + (ANY,) in patterns(kind) for p in patterns(kind))


def what_to_write(kind: str, field: Path) -> str:
    """The forms a secret-bearing field takes, for a message that must not show its value."""
    if field and field[0] == "env":
        return f"move it to `secrets:` as {CONFIG_FORM} or {SECRET_FORM}"
    if tuple(field) in WRITTEN_INTO_LIVEKIT:
        return f"write {CONFIG_FORM}; the deployer writes it into LiveKit, so it cannot come from a cluster Secret"
    if field and field[0] == "secrets" and len(field) == 1:
        return f"write one entry per variable, `NAME: {{config: KEY}}` or `NAME: {{secret: NAME, key: K}}`"
    return f"write {CONFIG_FORM} or {SECRET_FORM}"
