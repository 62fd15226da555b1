"""Issue #17 item 1: no message repeats a value written where a secret, or a reference to one, belongs.

A recognisable value is planted in every secret-bearing field, in every shape a person might give
it (the key itself, a number, a list, a mapping holding it, a reference whose name is the key),
and every command that prints validation problems is run in every output format: the value must
appear in none of them. The fields come from the schema (every `secretRef` and every mapping of
them, at any depth), the plain `env` entries named like a secret, and the stack files' secrets,
so a field added later is planted without editing this test.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from voxplane.manifest import secret_fields, stackfile
from voxplane.manifest.loader import load
from voxplane.manifest.problems import format_path
from voxplane.manifest.schema_files import SCHEMA_FILES, raw_schemas

from tests.support.repo import copy_manifests

#: Longer than a stack config key may be: fails the schema's name pattern.
PLANTED = "sk-ant-api03-PLANTEDsecretXq9v3Lm8Kp2Rt7Wy4Nb6Hd1Jf5Gc0Ae7Ux2Pm5Lq8Zs1Vb4Nk7Tw0Yh3Rd6"
#: Shaped like a Hugging Face token and also a valid stack config key name.
PLANTED_NAME = "hf_PLANTEDnameXq9v3Lm8Kp2Rt7Wy4Nb6Hd1"
#: A numeric secret (a PIN written in place of its reference).
PLANTED_NUMBER = 86420975319
MARKS = ("planted", str(PLANTED_NUMBER))

#: Every shape a secret may take when written where its reference belongs.
SHAPES: dict[str, Any] = {
    "string": PLANTED,
    "number": PLANTED_NUMBER,
    "list": [PLANTED],
    "config": {"config": PLANTED},
    "config-name": {"config": PLANTED_NAME},
    "config-list": {"config": [PLANTED]},
    "config-mapping": {"config": {"value": PLANTED}},
    "config-and-secret": {"config": PLANTED, "secret": PLANTED},
    "secret-name": {"secret": PLANTED, "key": "token"},
    "secret-key": {"secret": "creds", "key": PLANTED},
    "secret-key-name": {"secret": "creds", "key": PLANTED_NAME},
    "value-key": {"value": PLANTED},
    "as-key": {PLANTED: "x"},
}
#: Property names that say a field holds a secret. Each such field of a schema must be one that
#: validation treats as secret-bearing (a `secretRef`): a new `*_token: {type: string}` fails here.
SECRET_NAMED = re.compile(r"(^|_)(key|token|secrets?|password|passwd|pin|credentials?)($|_)", re.I)
#: Secret-named properties that hold no secret, with why.
NOT_SECRETS = {
    "tls_secret": "the name of the Secret holding the TURN certificate, which the cluster already has",
    "key": "the key of a node taint or a toleration (a label name)",
}

REGION, AGENT, REGION_FILE, AGENT_FILE = "us-east", "support", "regions/us-east.yaml", "agents/support.yaml"


def _output_of(run_cli: Callable[..., Any], *args: str) -> str:
    """What the user sees: stdout and stderr together (click's `output`)."""
    return run_cli(*args).output


def _assert_not_echoed(text: str, what: str) -> None:
    for mark in MARKS:
        assert mark not in text.lower(), f"{what}: the planted secret is in the output:\n{text}"


# --- which fields -------------------------------------------------------------------------------


def _concrete(pattern: tuple, doc: dict[str, Any]) -> tuple:
    """A pattern's ANY parts replaced by a key the document has (a model's name), else a name."""
    out: list[Any] = []
    node: Any = doc
    for part in pattern:
        if part == secret_fields.ANY:
            part = next(iter(node), "CRM_TOKEN") if isinstance(node, dict) and node else "CRM_TOKEN"
        out.append(part)
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return tuple(out)


def _plant(doc: dict[str, Any], path: tuple, value: Any) -> None:
    node = doc
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
        if part in ("llm", "stt", "tts"):
            node.pop("model", None)  # a role takes a model or a provider: plant into the provider
    node[path[-1]] = value


def manifest_fields(root: Path) -> Iterator[tuple[str, str, tuple]]:
    """(file, kind, path) of every secret-bearing field of the example region and agent."""
    for file, kind in ((REGION_FILE, "region"), (AGENT_FILE, "agent")):
        doc = yaml.safe_load((root / file).read_text())
        for pattern in secret_fields.patterns(kind):
            yield file, kind, _concrete(pattern, doc)
    yield AGENT_FILE, "agent", ("env", "OPENAI_API_KEY")


def test_the_secret_fields_come_from_the_schema():
    """Every reference a model carries is among the fields found, and every property named like a
    secret in either schema is one (or is listed, with why, as holding none)."""
    agent = set(secret_fields.patterns("agent"))
    region = set(secret_fields.patterns("region"))
    for role in ("llm", "stt", "tts"):
        assert ("inference", role, "provider", "api_key") in agent
    assert {("secrets",), ("secrets", secret_fields.ANY), ("telephony", "auth", "password"),
            ("telephony", "dispatch", "pin")} <= agent
    assert {("models", secret_fields.ANY, "hf_token"), ("livekit", "redis", "password")} <= region

    def walk(schema: Any, base: str, path: tuple, seen: set) -> Iterator[tuple[str, tuple]]:
        if not isinstance(schema, dict):
            return
        if "$ref" in schema:
            file, _, pointer = schema["$ref"].partition("#")
            if (file or base, pointer, path) in seen or pointer.endswith("/secretRef"):
                return
            seen.add((file or base, pointer, path))
            target: Any = raw_schemas()[file or base]
            for part in pointer.strip("/").split("/"):
                target = target[part]
            yield from walk(target, file or base, path, seen)
        for name, sub in (schema.get("properties") or {}).items():
            yield name, path + (name,)
            yield from walk(sub, base, path + (name,), seen)
        if isinstance(schema.get("additionalProperties"), dict):
            yield from walk(schema["additionalProperties"], base, path + (secret_fields.ANY,), seen)
        for key in ("items", "then", "else"):
            yield from walk(schema.get(key), base, path + ((secret_fields.ANY,) if key == "items" else ()), seen)
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in schema.get(key) or ():
                yield from walk(sub, base, path, seen)

    named = 0
    for kind, file in SCHEMA_FILES.items():
        for name, path in walk(raw_schemas()[file], file, (), set()):
            if SECRET_NAMED.search(name) and name not in NOT_SECRETS:
                named += 1
                assert secret_fields.is_secret(kind, path), f"{file}: {format_path(path)} is named like a secret " \
                                                            f"but is not a secret reference"
    assert named >= 6


# --- the property -------------------------------------------------------------------------------


def _stack_secrets(root: Path) -> list[str]:
    project = load((), root).require_project()
    needed = stackfile.needed_secrets(project.regions[REGION], project.agents)
    declared = [k for k, spec in stackfile.project_keys(root).items() if spec.secret]
    return sorted(set(needed) | set(declared))


def _planted_tree(tmp_path: Path, name: str, shape: str, fields: list[tuple[str, str, tuple]],
                  stack_keys: list[str]) -> Path:
    root = copy_manifests(tmp_path / name)
    docs: dict[str, Any] = {}
    for file, _, path in fields:
        doc = docs.setdefault(file, yaml.safe_load((root / file).read_text()))
        value = copy.deepcopy(SHAPES[shape])
        if path[0] == "env" and shape not in ("string", "number", "list", "as-key"):
            value = PLANTED  # an env value is text: the shapes of a reference do not apply
        _plant(doc, path, value)
    for file, doc in docs.items():
        (root / file).write_text(yaml.safe_dump(doc, sort_keys=False))
    if stack_keys:
        stack_file = root / f"Pulumi.{REGION}.yaml"
        stack = yaml.safe_load(stack_file.read_text())
        for key in stack_keys:
            stack["config"][f"voxplane:{key}"] = copy.deepcopy(SHAPES[shape])
        stack_file.write_text(yaml.safe_dump(stack, sort_keys=False))
    return root


@pytest.fixture(scope="module")
def fields(tmp_path_factory) -> list[tuple[str, str, tuple]]:
    return list(manifest_fields(copy_manifests(tmp_path_factory.mktemp("fields") / "repo")))


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_validation_never_echoes_a_planted_secret(shape, fields, tmp_path):
    """One field at a time, every shape: validation reports a problem at the field, and the value
    is in no problem, as `validate` prints it (text) or writes it (JSON)."""
    for index, field in enumerate(fields):
        file, kind, path = field
        problems = load((), _planted_tree(tmp_path, f"{shape}-{index}", shape, [field], [])).problems
        what = f"{format_path(path)} = {shape}"
        _assert_not_echoed("\n".join(str(p) + json.dumps(p.as_dict()) for p in problems), what)
        here = [p for p in problems if p.file == file and (p.field + ".").startswith(format_path(path[:2]) + ".")]
        assert here, f"{what}: no problem at the field: {list(map(str, problems))}"


def test_a_plain_value_in_a_reference_says_what_to_write(fields, tmp_path, run_cli):
    """The value is not shown, and the two forms a reference takes are."""
    root = _planted_tree(tmp_path, "say", "string", [f for f in fields if f[2][-1] == "api_key"][:1], [])
    result = run_cli("validate", "--root", str(root))
    assert result.stdout.splitlines() == [
        "agents/support.yaml:44:16: inference.llm.provider.api_key: expected a secret reference, got a string "
        "(not shown: it may be the secret); write {config: KEY} (its value set with `pulumi config set --secret "
        "KEY`) or {secret: NAME, key: K} (a key of an existing Secret)"
    ]


COMMANDS: list[tuple[str, ...]] = [
    ("validate",), ("validate", "--format", "json"), ("validate", AGENT_FILE), ("validate", REGION_FILE),
    ("validate", f"Pulumi.{REGION}.yaml", "--format", "json"),
    ("secrets", REGION), ("secrets", REGION, "--format", "json"), ("capacity", REGION),
    ("capacity", REGION, "--format", "json"), ("render", REGION, "--out", "{out}"),
    ("render", REGION, "--out", "{out}", "--format", "json"), ("status", REGION), ("drift", REGION),
    ("livekit", "sync", REGION, "--dry-run"), ("affected", "--base", "HEAD"),
]


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_no_command_echoes_a_planted_secret(shape, fields, tmp_path, run_cli, monkeypatch):
    """Every field of a file at once (the region's, the agent's, the stack file's secrets, each in a
    tree of its own): every command that prints validation problems, in every format, keeps the
    value out."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    trees = [(file, [f for f in fields if f[0] == file], []) for file in (REGION_FILE, AGENT_FILE)]
    for name, planted, keys in [*trees, ("stack", [], None)]:
        name = name.replace("/", "-")
        root = _planted_tree(tmp_path, f"{shape}-{name}", shape, planted,
                             _stack_secrets(copy_manifests(tmp_path / f"{shape}-keys")) if keys is None else keys)
        monkeypatch.chdir(root)
        for command in COMMANDS:
            args = [a.replace("{out}", str(tmp_path / f"{shape}-{name}-out")) for a in command]
            _assert_not_echoed(_output_of(run_cli, *args, "--root", str(root)), f"{' '.join(command)} [{name}, {shape}]")


def test_plan_never_echoes_a_planted_secret(fields, tmp_path, run_cli):
    """`plan` of a change that writes secrets where references belong: the problems, not the values."""
    import subprocess

    root = copy_manifests(tmp_path / "repo")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=root, check=True)
    planted = _planted_tree(tmp_path, "planted", "config-name", fields, [])
    for file in (REGION_FILE, AGENT_FILE):
        (root / file).write_text((planted / file).read_text())
    for fmt in ("text", "json", "markdown"):
        result = run_cli("plan", "--root", str(root), "--base", "main", "--format", fmt)
        assert result.exit_code == 1, result.output
        _assert_not_echoed(result.output, f"plan ({fmt})")
