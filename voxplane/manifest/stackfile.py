"""Stack files (`Pulumi.<stack>.yaml`): the config keys voxplane knows, the secrets a region needs,
and what a stack file gets wrong.

A stack deploys the region named by `voxplane:region`, or by its own name. Its `voxplane:` keys
are the ones Pulumi.yaml declares, the few the program reads without a declaration, and the
secrets its region needs (`livekitRootSecret`, every `{config: KEY}` reference of the region and
of its agents). A secret counts as set when the file holds it encrypted (`secure:`), which is what
`pulumi config set --secret` writes. Keys of other namespaces (`kubernetes:`, `aws:` ...) belong to
their providers and are left alone.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import yaml

from ..livekit.keys import ROOT_SECRET_CONFIG
from .model import Agent, Region, SecretRef, Source
from .problems import Problem, format_path
from .indentation import AnyField
from .sourcemap import SourceMap, YamlProblem, parse

PROJECT_FILE = "Pulumi.yaml"
NAMESPACE = "voxplane"
_STACK_FILE = re.compile(r"^Pulumi\.(?P<stack>.+)\.ya?ml$")

Status = Literal["set", "missing", "plain text"]


@dataclass(frozen=True)
class KeySpec:
    """What Pulumi.yaml says of a key: its type and whether its value must be a secret."""

    type: str = "string"
    secret: bool = False


#: Keys the program reads whether or not Pulumi.yaml declares them (secrets are never declared
#: there: Pulumi would then require them in every stack).
PROGRAM_KEYS: dict[str, KeySpec] = {
    "region": KeySpec(),
    "kubeContext": KeySpec(),
    "kubeconfig": KeySpec(secret=True),
    "imageRegistry": KeySpec(),
    "buildImages": KeySpec("boolean"),
    "renderYamlTo": KeySpec(),
    "livekitApiUrl": KeySpec(),
    "livekitApiKey": KeySpec(),
    "livekitApiSecret": KeySpec(secret=True),
}


def stack_name(path: Path) -> str | None:
    """`Pulumi.us-east.yaml` -> "us-east"; None for Pulumi.yaml and other files."""
    match = _STACK_FILE.match(path.name)
    return match.group("stack") if match else None


def stack_files(root: Path) -> list[Path]:
    """The stack files at the repository root, sorted."""
    try:
        return sorted(p for p in root.iterdir() if p.is_file() and stack_name(p) is not None)
    except OSError:
        return []


def project_keys(root: Path) -> dict[str, KeySpec]:
    """`voxplane:` keys Pulumi.yaml declares (type, secret) merged over the ones the program reads."""
    keys = dict(PROGRAM_KEYS)
    try:
        doc = yaml.safe_load((root / PROJECT_FILE).read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return keys
    config = doc.get("config") if isinstance(doc, dict) else None
    if isinstance(config, dict):
        for name, spec in config.items():
            key = _own_key(str(name))
            if key is None:
                continue
            spec = spec if isinstance(spec, dict) else {}
            keys[key] = KeySpec(str(spec.get("type", "string")), bool(spec.get("secret", False)))
    return keys


def _own_key(written: str) -> str | None:
    """`voxplane:region` or `region` -> "region"; another namespace -> None."""
    namespace, sep, key = written.partition(":")
    if not sep:
        return written
    return key if namespace == NAMESPACE else None


def is_secure(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"secure"}


@dataclass
class StackFile:
    """One parsed stack file: its `voxplane:` config keys (as bare names) and where each is written."""

    file: str
    stack: str
    config: dict[str, Any]
    written: dict[str, str]  # bare key -> the key as written (`voxplane:region`)
    smap: SourceMap

    @property
    def region(self) -> str:
        """The region the stack deploys: `voxplane:region`, or the stack's name."""
        value = self.config.get("region")
        return value if isinstance(value, str) and value else self.stack

    def status(self, key: str) -> Status:
        if key not in self.config:
            return "missing"
        return "set" if is_secure(self.config[key]) else "plain text"

    def value_at(self, key: str) -> tuple[int, int]:
        return self.smap.value(("config", self.written[key])) if key in self.written else self.smap.key(("config",))

    def key_at(self, key: str) -> tuple[int, int]:
        return self.smap.key(("config", self.written[key])) if key in self.written else self.smap.key(("config",))

    def problem(self, key: str | None, message: str, *, at_key: bool = False, **extra: Any) -> Problem:
        """A problem at `key`'s value (or the key itself), or at the file's `config:` for None."""
        if key is None:
            line, col = self.smap.key(("config",))
            return Problem(self.file, line, col, "config" if ("config",) in self.smap.keys else "", message, **extra)
        line, col = self.key_at(key) if at_key else self.value_at(key)
        return Problem(self.file, line, col, self.written.get(key, f"{NAMESPACE}:{key}"), message, **extra)


def read(file: Path, display: str) -> tuple[StackFile | None, list[Problem]]:
    """Parse one stack file; the problems are those of its shape (YAML, `config:` a mapping)."""
    stack = stack_name(file) or file.stem
    try:
        data, smap = parse(file.read_bytes(), _stack_fields)
    except OSError as exc:
        return None, [Problem(display, 1, 1, "", f"cannot read: {exc.strerror or exc}")]
    except YamlProblem as exc:
        return None, [Problem(display, exc.line, exc.column, "", exc.message)]
    if not isinstance(data, dict):
        return None, [Problem(display, 1, 1, "", "expected a mapping with `config:`")]
    config = data.get("config", {})
    if config is None:
        config = {}
    if not isinstance(config, dict):
        line, col = smap.value(("config",))
        return None, [Problem(display, line, col, "config", "expected a mapping of config keys")]
    own: dict[str, Any] = {}
    written: dict[str, str] = {}
    problems: list[Problem] = []
    for name, value in config.items():
        key = _own_key(name)
        if key is not None:
            own[key] = value
            written[key] = name
        elif _misspelt_namespace(name):
            # Another provider's namespace is left alone, but one a letter away from ours is a typo
            # that would silently drop the setting.
            line, col = smap.key(("config", name))
            problems.append(Problem(display, line, col, name,
                                    f"unknown config namespace {name.partition(':')[0]!r}; did you mean "
                                    f"'{NAMESPACE}:{name.partition(':')[2]}'? (voxplane reads only {NAMESPACE}: keys)"))
    return StackFile(display, stack, own, written, smap), problems


def _misspelt_namespace(written: str) -> bool:
    """`voxplan:kubeContext`, `Voxplane:region`: a namespace that is nearly ours."""
    namespace, sep, _ = written.partition(":")
    return bool(sep) and namespace != NAMESPACE and (
        namespace.lower() == NAMESPACE or difflib.SequenceMatcher(None, namespace.lower(), NAMESPACE).ratio() >= 0.8)


#: Top-level keys of a Pulumi stack file (Pulumi's project-stack settings).
STACK_FILE_KEYS = frozenset({"config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment"})


def _stack_fields(path: tuple[str | int, ...]) -> frozenset[str] | None:
    """The keys a stack file's mapping at `path` holds, for indentation hints (config: any)."""
    return STACK_FILE_KEYS if not path else AnyField() if path == ("config",) else frozenset()


# --- what a region needs -------------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    """Why a secret is needed: the manifest field that references it (None: the platform itself)."""

    source: Source | None
    path: tuple[str | int, ...]
    what: str

    @property
    def location(self) -> str:
        if self.source is None:
            return ""
        line, col = self.source.map.value(self.path)
        return f"{self.source.file}:{line}:{col}"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"what": self.what}
        if self.source is not None:
            line, col = self.source.map.value(self.path)
            out.update(file=self.source.file, line=line, column=col, field=".".join(map(str, self.path)))
        return out


def needed_secrets(region: Region, agents: Iterable[Agent], stack: StackFile | None = None) -> dict[str, list[Need]]:
    """Stack config secrets the region's stack reads, each with what needs it (sorted by key).

    The same set the program asks the engine for: the root secret, the `config:` references of
    the region (model `hf_token`, Redis password) and of every agent that runs there (secrets,
    provider keys, trunk passwords and PINs), and `livekitApiSecret` when the stack names its own
    `livekitApiKey`.
    """
    needs: dict[str, list[Need]] = {}

    def need(ref: SecretRef | None, source: Source | None, path: tuple[str | int, ...], what: str) -> None:
        if ref is not None and ref.config:
            needs.setdefault(ref.config, []).append(Need(source, path + ("config",), what))

    needs[ROOT_SECRET_CONFIG] = [Need(None, (), "LiveKit API keys and the Redis password of the region (derived)")]
    for name, model in region.models.items():
        need(model.hf_token, region.source, ("models", name, "hf_token"), f"Hugging Face token of model {name!r}")
    need(region.livekit.redis.password, region.source, ("livekit", "redis", "password"), "Redis password")
    for agent in agents:
        if region.name not in agent.regions:
            continue
        for ref, path in agent.secret_refs():
            if ref.config:
                needs.setdefault(ref.config, []).append(Need(agent.source, path, f"agent {agent.scoped_name!r}"))
    if stack is not None and stack.config.get("livekitApiKey"):
        needs.setdefault("livekitApiSecret", []).append(Need(None, (), "the secret of voxplane:livekitApiKey"))
    return dict(sorted(needs.items()))


# --- checks ---------------------------------------------------------------------------------


def check(
    stack: StackFile,
    regions: dict[str, Region],
    invalid_regions: dict[str, str],
    agents: Sequence[Agent],
    keys: dict[str, KeySpec],
) -> list[Problem]:
    """A stack file's own mistakes: its region, unknown or mistyped keys, plain-text secrets, and
    an image registry for agents that build from source."""
    problems: list[Problem] = []
    declared_secret = {k for k, spec in keys.items() if spec.secret}
    region = regions.get(stack.region)
    if region is None:
        problems.append(_region_problem(stack, regions, invalid_regions))
        problems.extend(_plain_secrets(stack, declared_secret))
        problems.extend(_types(stack, keys, declared_secret))
        return problems

    secrets = needed_secrets(region, agents, stack)
    known = set(keys) | set(secrets)
    for key in stack.config:
        if key not in known:
            problems.append(stack.problem(key, "unknown config key" + _hint(key, sorted(known)), at_key=True))
    # A secret a manifest references is reported at that reference (crosscheck), this file being its
    # other end; the platform's own secrets have no manifest line, so they are reported here.
    unreferenced = {k for k, needs in secrets.items() if all(n.source is None for n in needs)}
    problems.extend(_plain_secrets(stack, declared_secret | unreferenced))
    problems.extend(_types(stack, keys, declared_secret | set(secrets)))

    building = [a for a in agents if region.name in a.regions and a.code.build is not None]
    registry = stack.config.get("imageRegistry")
    builds_gateway = stack.config.get("buildImages") not in (False, "false")
    # A misspelt imageRegistry is reported once, as the unknown key with its did-you-mean.
    misspelt = any(k not in known and _hint(k, ["imageRegistry"], listed=True) for k in stack.config)
    if (building or builds_gateway) and not misspelt and not (isinstance(registry, str) and registry.strip()):
        # The gateway's image is built unless the stack builds nothing; agents built from source
        # need the registry even then (their tags name it).
        names = ", ".join(a.source.file if a.source else a.name for a in building)
        if builds_gateway:
            what = f"builds images (the LiveKit gateway's from voxplane/gateway{', ' + names if names else ''}) " \
                   f"and sets no voxplane:imageRegistry to push them to"
        else:
            what = f"deploys agents built from source ({names}) and sets no voxplane:imageRegistry to name their images"
        ends = tuple(
            _at_agent(a, ("code", "build"), f"builds from source, and {stack.file} (stack {stack.stack!r}) sets no "
                                            f"voxplane:imageRegistry to push the image to")
            for a in building
        )
        problems.append(stack.problem(
            "imageRegistry" if "imageRegistry" in stack.config else None,
            f"stack {stack.stack!r} {what} (pulumi config set voxplane:imageRegistry <registry>/<path> -s {stack.stack})",
            ends=ends,
        ))
    return problems


def _region_problem(stack: StackFile, regions: dict[str, Region], invalid: dict[str, str]) -> Problem:
    name = stack.region
    if name in invalid:
        message = f"region {name!r} is invalid (see above)"
        see: tuple[str, ...] = (invalid[name],)
    else:
        known = sorted(regions) + sorted(n for n in invalid if n not in regions)
        message = f"no region {name!r} (regions: {', '.join(known) or 'none'}){_hint(name, known, listed=True)}"
        see = ()
    if "region" in stack.written and stack.config.get("region"):
        return stack.problem("region", message, see=see)
    line, col = stack.smap.key(("config",)) if ("config",) in stack.smap.keys else (1, 1)
    return Problem(stack.file, line, col, "",
                   f"stack {stack.stack!r} deploys the region of its name (no voxplane:region): {message}", see=see)


def _plain_secrets(stack: StackFile, keys: set[str]) -> Iterable[Problem]:
    for key in sorted(keys):
        if stack.status(key) == "plain text" and not isinstance(stack.config[key], (dict, list)):
            yield stack.problem(key, _plain(key, stack))


def _types(stack: StackFile, keys: dict[str, KeySpec], secrets: set[str]) -> Iterable[Problem]:
    """Values of the declared type (Pulumi checks them too, but only at `pulumi up`)."""
    for key, value in stack.config.items():
        if is_secure(value):
            continue
        if isinstance(value, (dict, list)):
            shape = "a mapping" if isinstance(value, dict) else "a list"
            yield stack.problem(key, f"expected {'`secure:` (a secret)' if key in secrets else 'a single value'}, got {shape}")
            continue
        spec = keys.get(key)
        if key in secrets or spec is None or value is None:
            continue
        if spec.type == "boolean" and not (isinstance(value, bool) or value in ("true", "false")):
            yield stack.problem(key, f"expected true or false, got {_shown(value)}")
        elif spec.type == "integer" and not (
            (isinstance(value, int) and not isinstance(value, bool))
            or (isinstance(value, str) and value.strip().lstrip("-").isdigit())
        ):
            yield stack.problem(key, f"expected an integer, got {_shown(value)}")
        elif spec.type == "string" and not isinstance(value, str):
            yield stack.problem(key, f"expected a string, got {_shown(value)}; quote the value to keep it text")


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)


def _plain(key: str, stack: StackFile) -> str:
    return (f"{key!r} is a secret but is written in plain text; remove it and set it with "
            f"`pulumi config set --secret {key} -s {stack.stack}`")


def _at_agent(agent: Agent, path: tuple[str | int, ...], message: str) -> Problem:
    assert agent.source is not None
    line, col = agent.source.map.value(path)
    return Problem(agent.source.file, line, col, format_path(path), message)


def _hint(word: str, choices: Sequence[str], *, listed: bool = False) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return "" if listed else f" (known: {', '.join(choices)})"
