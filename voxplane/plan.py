"""`voxplane plan`: what a change does, offline — the desired state of the working tree against a
base revision, told per manifest field.

Both sides are rendered (`voxplane render`'s objects: Kubernetes and LiveKit). The base is a
`git archive` export of BASE in a temporary folder; when the change touches the tool itself
(schemas, builders, components: `affected.EVERYWHERE`), the base is rendered by BASE's own code in
a child process, so the plan shows what the new code changes too. The object differences are then
attributed to the manifest changes that cause them:

1. the field `kubedrift.attribution` names for the object path (`spec.maxReplicaCount` of an
   agent's ScaledObject -> `scaling.max_workers` of its file), or a field of the region file that
   path is known to come from (an agent's node selector -> `agents.node_pool`);
2. else, when the tool itself changed, that change;
3. else every change of the object's own manifest file;
4. else the changes of the object's region: its region file and stack file, then the agents that
   run there (and their code folders), narrowed to the agents a changed value names.

A code folder's change is a change of `code.build` of each manifest building from it; a change of
the platform's agent base image (`agents/_platform/`, `voxplane.agent_base`) is one of every
manifest whose Dockerfile builds FROM it (its hash is part of each such image tag).

A config checksum annotation takes the causes of the ConfigMaps and Secrets of its namespace.

Lists are compared item by item (named ones, `env` or `containers`, by name as drift does), so a
NetworkPolicy rule or an env var added or removed is one change shown whole. A new or removed
agent takes its code folder's change, a new or removed region its stack file's: one change each.

An object change reached by none of them is listed as unattributed (the property test in
tests/test_plan_properties.py checks that random manifest edits never leave one). Alongside: what
the change does to capacity (`voxplane/capacity.py`: replicas and GPUs at peak, agent sessions,
tenant quota headroom) and to routing (numbers added, moved to another agent, removed).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

from . import agent_base, capacity
from .affected import EVERYWHERE, GitError, affected_regions, git
from .kubedrift.attribution import Attribution
from .kubedrift.compare import UNSET, Keyed, Path as ObjPath, format_path, keyed_items
from .livekit.desired import Desired, DesiredTrunk, desired_objects
from .loader import UnknownRegion, load
from .model import ROLES, Agent, Project, Region
from .problems import ManifestError, plural
from .sourcemap import SourceMap, YamlProblem, parse

#: Top-level entries of a checkout that a render reads (manifests, stack files, the tool itself).
RENDER_INPUTS = ("regions", "agents", "schemas", "voxplane", "components", "stacks", "Pulumi.yaml", "pyproject.toml")
_SKIP_DIRS = {"__pycache__", ".venv", "node_modules", ".git", ".mypy_cache", ".pytest_cache"}
#: How many characters of a value the text and markdown forms show.
SHORT = 72
#: ... and of a list item (a NetworkPolicy rule is read whole).
ITEM_LIMIT = 400
#: GitHub refuses comments over 65,536 characters.
MARKDOWN_LIMIT = 60_000
MARKER = "<!-- voxplane-plan -->"


class PlanError(Exception):
    """A plan that cannot be made (git, an unreadable base); one line for the user."""


# --- the result -----------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class ObjectRef:
    region: str
    target: str  # "kubernetes" | "livekit"
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

    def as_dict(self) -> dict[str, str]:
        return {"region": self.region, "target": self.target, "kind": self.kind, "namespace": self.namespace,
                "name": self.name}


@dataclass(frozen=True)
class Touch:
    """One change of one object: added, removed, or one path changed."""

    ref: ObjectRef
    action: str  # "add" | "remove" | "change"
    path: str = ""
    before: Any = UNSET
    after: Any = UNSET
    #: how it was attributed: "field", "file", "region", "tool"
    via: str = "field"
    #: "added" or "removed" when the change is one item of a list at `path` (a NetworkPolicy
    #: rule, an env var `env[NAME]`), else ""
    item: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.ref.as_dict(), "action": self.action, "via": self.via}
        if self.action == "change":
            out.update(path=self.path, before=_jsonable(self.before), after=_jsonable(self.after))
            if self.item:
                out["item"] = self.item
        return out

    def change_text(self) -> str:
        """`PATH before → after`, or `PATH + ITEM` / `PATH - ITEM` for a list item, in full."""
        if self.item:
            return f"{self.path} {'+' if self.item == 'added' else '-'} {item_text(self.after if self.item == 'added' else self.before)}"
        return f"{self.path} {pair(self.before, self.after)}"


@dataclass
class FieldChange:
    """One changed field of one file: a manifest field, a stack config key, a code folder's
    contents, or the tool's own code."""

    file: str
    path: tuple[str | int, ...]
    kind: str  # "manifest" | "stack" | "code" | "tool"
    before: Any
    after: Any
    line: int = 1
    note: str = ""
    touches: list[Touch] = field(default_factory=list)

    @property
    def location(self) -> str:
        return "(tool)" if self.kind == "tool" else f"{self.file}:{self.line}"

    @property
    def field(self) -> str:
        if self.kind == "tool":
            return "(code)"
        if not self.path:
            return "(new file)" if self.before is UNSET else "(file removed)" if self.after is UNSET else "(file)"
        return _dotted(self.path)

    def change_text(self) -> str:
        if self.kind in ("code", "tool"):
            return self.note
        if not self.path:
            return self.note or ("added" if self.before is UNSET else "removed")
        if self.before is UNSET:
            return f"{short(self.after)} (added)"
        if self.after is UNSET:
            return f"{short(self.before)} (removed)"
        if isinstance(self.before, list) and isinstance(self.after, list):
            items = list_changes(self.before, self.after, in_place=False)
            if items:
                return ", ".join(_item_change(i, a, b) for i, a, b in items)
        if isinstance(self.before, dict) and isinstance(self.after, dict):
            # one alternative for another (`llm: {model: chat}` → `{provider: ...}`), in full
            return f"{_mapping_text(self.before)} → {_mapping_text(self.after)}"
        return pair(self.before, self.after, SHORT)

    def headline(self) -> str:
        """The change's line in text: `FILE:LINE: field change`, a whole file without `(new file)`."""
        if self.kind != "tool" and not self.path:
            return f"{self.location}: {self.change_text()}"
        return f"{self.location}: {self.field} {self.change_text()}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": None if self.kind == "tool" else self.file, "line": self.line, "field": self.field, "kind": self.kind,
                "before": _jsonable(self.before), "after": _jsonable(self.after), "note": self.note,
                "objects": [t.as_dict() for t in self.touches]}


@dataclass(frozen=True)
class RouteChange:
    number: str
    change: str  # "added" | "moved" | "removed"
    before: str = ""
    after: str = ""

    def text(self) -> str:
        if self.change == "added":
            return f"{self.number} added → {self.after}"
        if self.change == "removed":
            return f"{self.number} removed (was {self.before})"
        return f"{self.number} moved {self.before} → {self.after}"

    def as_dict(self) -> dict[str, str]:
        return {"number": self.number, "change": self.change, "before": self.before, "after": self.after}


@dataclass(frozen=True)
class CapacityChange:
    subject: str  # "peak", "model chat", "gpu group h100", "agent pools", "tenant northwind", "short"
    text: str
    before: Any = None
    after: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "text": self.text, "before": _jsonable(self.before),
                "after": _jsonable(self.after)}


@dataclass
class RegionPlan:
    region: str
    status: str = "changed"  # "changed" | "added" | "removed"
    added: list[ObjectRef] = field(default_factory=list)
    removed: list[ObjectRef] = field(default_factory=list)
    changed: list[ObjectRef] = field(default_factory=list)
    capacity: list[CapacityChange] = field(default_factory=list)
    routing: list[RouteChange] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def as_dict(self) -> dict[str, Any]:
        return {"region": self.region, "status": self.status,
                "added": [str(r) for r in self.added], "removed": [str(r) for r in self.removed],
                "changed": [str(r) for r in self.changed],
                "capacity": [c.as_dict() for c in self.capacity], "routing": [r.as_dict() for r in self.routing]}


@dataclass
class Plan:
    base: str
    base_label: str
    regions: list[RegionPlan]
    changes: list[FieldChange]
    unattributed: list[Touch] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return any(r.has_changes for r in self.regions)

    def counts(self) -> dict[str, int]:
        return {"changed": sum(len(r.changed) for r in self.regions), "added": sum(len(r.added) for r in self.regions),
                "removed": sum(len(r.removed) for r in self.regions), "fields": len(self.changes)}

    def as_dict(self) -> dict[str, Any]:
        return {"base": {"commit": self.base, "label": self.base_label},
                "regions": [r.region for r in self.regions], "changes": self.has_changes, "summary": self.counts(),
                "fields": [c.as_dict() for c in self.changes],
                "objects": {r.region: r.as_dict() for r in self.regions},
                "unattributed": [t.as_dict() for t in self.unattributed], "notes": self.notes}


# --- git: the base revision, exported -------------------------------------------------------------


@contextmanager
def exported(root: Path, commit: str) -> Iterator[Path]:
    """The render inputs of `commit` (RENDER_INPUTS) in a temporary folder, removed afterwards.

    The package folders components/ and schemas/ are linked into voxplane/ as the package maps them
    (pyproject's package-dir), so BASE's own code can run from the export."""
    prefix = git(root, "rev-parse", "--show-prefix").strip()
    tree = f"{commit}:{prefix}" if prefix else commit
    present = set(git(root, "ls-tree", "--name-only", tree).split("\n"))
    wanted = [p for p in present if p in RENDER_INPUTS or (p.startswith("Pulumi.") and p.endswith(".yaml"))]
    folder = Path(tempfile.mkdtemp(prefix="voxplane-plan-"))
    try:
        if wanted:
            data = git(root, "archive", "--format=tar", tree, "--", *sorted(wanted), text=False)
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                tar.extractall(folder, filter="data")
        for package in ("components", "schemas"):
            if (folder / package).is_dir() and (folder / "voxplane").is_dir() and not (folder / "voxplane" / package).exists():
                os.symlink(Path("..") / package, folder / "voxplane" / package)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def tree_files(root: Path) -> dict[str, Path]:
    """The render inputs under `root` by repository-relative path (git's view when `root` is a
    work tree: tracked and untracked files, ignored ones left out). Symbolic links are not inputs
    (`stacks/.venv` points at the environment, dangling in a `git archive` export): counted on one
    side only, they would make every plan report a tool change."""
    listed: Optional[list[str]] = None
    if (root / ".git").exists():
        try:
            listed = git(root, "ls-files", "-co", "--exclude-standard", "--", *RENDER_INPUTS, "Pulumi.*.yaml").splitlines()
        except GitError:
            listed = None
    out: dict[str, Path] = {}
    if listed is not None:
        for rel in listed:
            if (root / rel).is_file() and not (root / rel).is_symlink() and not rel.endswith(".pyc"):
                out[rel] = root / rel
        return out
    for top in sorted(p for p in root.iterdir() if p.name in RENDER_INPUTS or (p.name.startswith("Pulumi.") and p.suffix == ".yaml")):
        if top.is_symlink():
            continue
        if top.is_file():
            out[top.name] = top
            continue
        for folder, dirs, names in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not (Path(folder) / d).is_symlink())
            for name in names:
                path = Path(folder) / name
                if not name.endswith(".pyc") and not path.is_symlink():
                    out[path.relative_to(root).as_posix()] = path
    return out


def changed_between(base_root: Path, head_root: Path) -> list[str]:
    """Render inputs that differ between two folders (added, removed or with other bytes)."""
    base, head = tree_files(base_root), tree_files(head_root)
    changed = set(base) ^ set(head)
    changed |= {rel for rel in set(base) & set(head) if base[rel].read_bytes() != head[rel].read_bytes()}
    return sorted(changed)


# --- rendering both sides -------------------------------------------------------------------------

Rendered = dict[str, Optional[dict[str, list[dict[str, Any]]]]]

_BASE_RENDER = r"""
import json, sys
from pathlib import Path
root, out = Path(sys.argv[1]), Path(sys.argv[2])
sys.path.insert(0, str(root))
import voxplane
if not Path(voxplane.__file__).resolve().is_relative_to(root.resolve()):
    sys.exit(f"imported voxplane from {voxplane.__file__}, not the base")
from voxplane.render import render
try:  # a name no region has; bases from before UnknownRegion raised a plain ValueError
    from voxplane.loader import UnknownRegion as NoRegion
except ImportError:
    NoRegion = ValueError
done = {}
for name in sys.argv[3:]:
    try:
        result = render(name, root)
    except NoRegion:
        done[name] = None
        continue
    done[name] = {"kubernetes": result.kubernetes, "livekit": result.livekit}
out.write_text(json.dumps(done))
"""


def render_here(root: Path, regions: Iterable[str], project: Optional[Project]) -> Rendered:
    """Each region rendered in this process (the working tree's code); None where it has no region."""
    from .render import render

    out: Rendered = {}
    for name in regions:
        if project is None or name not in project.regions:
            out[name] = None
            continue
        result = render(name, root)
        out[name] = {"kubernetes": result.kubernetes, "livekit": result.livekit}
    return out


def render_with_own_code(root: Path, regions: Sequence[str]) -> Rendered:
    """Each region rendered by the code in `root` (a base export), in a child process."""
    with tempfile.TemporaryDirectory(prefix="voxplane-plan-out-") as tmp:
        target = Path(tmp) / "rendered.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
        done = subprocess.run([sys.executable, "-c", _BASE_RENDER, str(root), str(target), *regions],
                              cwd=root, capture_output=True, text=True, env=env)
        if done.returncode != 0 or not target.is_file():
            tail = (done.stderr or done.stdout or "").strip().splitlines()
            raise PlanError(tail[-1] if tail else f"exit {done.returncode}")
        loaded: Rendered = json.loads(target.read_text())
    # The base's own code may predate canonical key order; what is shown must not follow its seed.
    from .render import canonical

    return {name: None if objects is None else {target: [canonical(o) for o in items] for target, items in objects.items()}
            for name, objects in loaded.items()}


# --- object differences ---------------------------------------------------------------------------


def object_key(target: str, region: str, obj: Mapping[str, Any]) -> ObjectRef:
    if target == "kubernetes":
        meta = obj.get("metadata") or {}
        return ObjectRef(region, target, str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name")))
    return ObjectRef(region, target, str(obj.get("kind")), "", str(obj.get("name")))


def _structured(text: str) -> Optional[dict[str, Any]]:
    """A JSON or YAML mapping held in a string (a config file in a ConfigMap), else None."""
    stripped = text.strip()
    if not (stripped.startswith("{") or "\n" in stripped):
        return None
    try:
        import yaml

        value = json.loads(stripped) if stripped.startswith("{") else yaml.safe_load(stripped)
    except ValueError:
        return None
    except Exception:  # noqa: BLE001  (yaml.YAMLError and its kin: not a config file, then)
        return None
    return value if isinstance(value, dict) else None


def diff_values(before: Any, after: Any, path: ObjPath = ()) -> Iterator[tuple[ObjPath, Any, Any]]:
    """Every path where `before` and `after` differ (both sides). Lists of named things are
    matched by name (`compare.keyed_items`, as drift matches them); other lists item by item
    (`list_changes`): an item added or removed is one difference at the list's path plus the
    item's index, with UNSET on the side that lacks it."""
    if type(before) is type(after) and before == after:
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=str):
            yield from diff_values(before.get(key, UNSET), after.get(key, UNSET), path + (key,))
        return
    if isinstance(before, str) and isinstance(after, str):
        a, b = _structured(before), _structured(after)
        if a is not None and b is not None:
            yield from diff_values(a, b, path)  # a config file in a ConfigMap: its keys, not the whole text
            return
    if isinstance(before, list) or isinstance(after, list):
        old = before if isinstance(before, list) else [] if before is UNSET else None
        new = after if isinstance(after, list) else [] if after is UNSET else None
        if old is not None and new is not None and (old or new):
            pairs = keyed_items(path, old, new)
            if pairs is not None:
                for seg, a_item, b_item in pairs:
                    yield from diff_values(a_item, b_item, path + (seg,))
                return
            changes = list_changes(old, new)
            if changes is not None:
                for index, a_item, b_item in changes:
                    if isinstance(a_item, dict) and isinstance(b_item, dict):
                        yield from diff_values(a_item, b_item, path + (index,))  # one rule, changed in part
                    else:
                        yield path + (index,), a_item, b_item
                return
    yield path, before, after


def list_changes(before: list[Any], after: list[Any], *, in_place: bool = True) -> Optional[list[tuple[int, Any, Any]]]:
    """(index, before item or UNSET, after item or UNSET) for each item removed (its index in
    `before`), added (its index in `after`) or changed in place (its index in `after`): a scalar
    replaced by one scalar (`args[13] "0.85" → "0.9"`), or a rule (a mapping) replaced by one
    that keeps part of it (a peer fewer, the same ports); other rules are added or removed whole.
    Without `in_place` (a manifest's list of regions or numbers, a set in all but syntax), every
    change is an item removed or added. None when the lists hold the same items in another order
    (shown as the two lists)."""
    import difflib

    keys = [json.dumps(v, sort_keys=True, default=str) for v in before]
    other = [json.dumps(v, sort_keys=True, default=str) for v in after]
    if sorted(keys) == sorted(other):
        return None
    out: list[tuple[int, Any, Any]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, keys, other, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        if in_place and op == "replace" and i2 - i1 == j2 - j1 and all(_alike(before[i1 + n], after[j1 + n]) for n in range(i2 - i1)):
            out += [(j1 + n, before[i1 + n], after[j1 + n]) for n in range(i2 - i1)]
            continue
        out += [(i, before[i], UNSET) for i in range(i1, i2)]
        out += [(j, UNSET, after[j]) for j in range(j1, j2)]
    return out


def _alike(a: Any, b: Any) -> bool:
    """Whether `b` is `a` changed (shown as its changed parts) rather than another item: two
    scalars, or two mappings with a key of the same value."""
    if isinstance(a, dict) and isinstance(b, dict):
        return any(k in b and b[k] == v for k, v in a.items())
    return not isinstance(a, (dict, list)) and not isinstance(b, (dict, list))


ObjectDiff = tuple[ObjectRef, str, Optional[dict[str, Any]], Optional[dict[str, Any]], list[tuple[ObjPath, Any, Any]]]


def diff_objects(region: str, before: Optional[dict[str, list[dict[str, Any]]]],
                 after: Optional[dict[str, list[dict[str, Any]]]]) -> list[ObjectDiff]:
    """(ref, action, before object, after object, changed paths) for every object that differs."""
    out: list[ObjectDiff] = []
    for target in ("kubernetes", "livekit"):
        old = {object_key(target, region, o): o for o in (before or {}).get(target, [])}
        new = {object_key(target, region, o): o for o in (after or {}).get(target, [])}
        for ref in sorted(set(old) | set(new)):
            a, b = old.get(ref), new.get(ref)
            if a is None:
                out.append((ref, "add", None, b, []))
            elif b is None:
                out.append((ref, "remove", a, None, []))
            else:
                paths = list(diff_values(a, b))
                if paths:
                    out.append((ref, "change", a, b, paths))
    return out


# --- manifest differences -------------------------------------------------------------------------


def _read(path: Path) -> tuple[Any, SourceMap]:
    try:
        return parse(path.read_bytes())
    except (OSError, YamlProblem):
        return UNSET, SourceMap()


def _dotted(path: Sequence[str | int]) -> str:
    out = ""
    for seg in path:
        out += f"[{seg}]" if isinstance(seg, int) else ("." if out else "") + str(seg)
    return out


def _data_changes(before: Any, after: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Any, Any]]:
    """Changed paths of two YAML documents: mappings key by key, everything else as a whole. A
    mapping replaced by one with none of its keys is one change (`inference.llm: {model: chat}`
    → `{provider: ...}`: one alternative for another, not a removal and an addition)."""
    if type(before) is type(after) and before == after:
        return
    if path and isinstance(before, dict) and isinstance(after, dict) and before and after and not set(before) & set(after):
        yield path, before, after
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=str):
            yield from _data_changes(before.get(key, UNSET), after.get(key, UNSET), path + (key,))
        return
    yield path, before, after


def manifest_changes(base_root: Path, head_root: Path, changed: Sequence[str],
                     head: Optional[Project], base: Optional[Project]) -> list[FieldChange]:
    """Every changed field of every changed manifest and stack file, every agent code folder whose
    contents changed (as that agent's `code.build`), and the tool's own changed files (one entry)."""
    out: list[FieldChange] = []
    builds: dict[str, list[str]] = {}
    for project in (head, base):
        for agent in (project.agents if project else ()):
            if agent.code.build and agent.source is not None:
                builds.setdefault(agent.code.build.rstrip("/"), [])
                if agent.source.file not in builds[agent.code.build.rstrip("/")]:
                    builds[agent.code.build.rstrip("/")].append(agent.source.file)
    code: dict[str, list[str]] = {}
    base_files: list[str] = []
    tool: list[str] = []
    for rel in changed:
        parts = PurePosixPath(rel).parts
        if rel.startswith(EVERYWHERE):
            tool.append(rel)
        elif len(parts) == 2 and parts[0] in ("regions", "agents") and rel.endswith((".yaml", ".yml")):
            out.extend(_file_changes(base_root, head_root, rel, "manifest"))
        elif len(parts) == 1 and rel.startswith("Pulumi.") and rel.endswith(".yaml"):
            out.extend(_file_changes(base_root, head_root, rel, "stack"))
        elif agent_base.is_base_path(rel):
            base_files.append(rel[len(agent_base.FOLDER) + 1:])
        elif len(parts) > 2 and parts[0] == "agents":
            folder = "/".join(parts[:2])
            code.setdefault(folder, []).append("/".join(parts[2:]))
    # One code.build change per manifest: its own folder's files, and the platform's agent base
    # image (agents/_platform) when its Dockerfile builds FROM it (the base is in the image tag).
    notes: dict[str, list[str]] = {}
    folder_of: dict[str, str] = {}
    for folder, files in sorted(code.items()):
        for manifest in builds.get(folder, []):
            notes.setdefault(manifest, []).append(f"{folder}/ contents changed: {', '.join(sorted(files))}")
            folder_of[manifest] = folder
    if base_files:
        for folder, manifests in sorted(builds.items()):
            if not _builds_from_base(head_root, base_root, folder, manifests, head, base):
                continue
            for manifest in manifests:
                notes.setdefault(manifest, []).append(
                    f"{agent_base.FOLDER}/ (the agent base image {folder}/ builds FROM) contents changed: "
                    f"{', '.join(sorted(base_files))}")
                folder_of.setdefault(manifest, folder)
    whole_files = {c.file: c for c in out if not c.path}
    for manifest in sorted(notes):
        folder = folder_of[manifest]
        if manifest in whole_files:
            # A new (or removed) agent with its code: one change, the agent's, not two (a base
            # image change says nothing more about an agent that is new or gone as a whole).
            if code.get(folder):
                whole_files[manifest].note += f", with its code {folder}/ ({', '.join(sorted(code[folder]))})"
            continue
        line = _line_of(head_root / manifest, ("code", "build")) or _line_of(base_root / manifest, ("code", "build"))
        out.append(FieldChange(manifest, ("code", "build"), "code", folder, folder, line or 1, note="; ".join(notes[manifest])))
    for stack in [c for c in out if c.kind == "stack" and not c.path]:
        region = whole_files.get(f"regions/{stack.file[len('Pulumi.'):-len('.yaml')]}.yaml")
        if region is not None and (region.before is UNSET) == (stack.before is UNSET):
            # A new (or removed) region with its stack file: one change, the region's.
            region.note += f", with its stack file {stack.file}"
            out.remove(stack)
    if tool:
        out.append(FieldChange("(tool)", (), "tool", UNSET, UNSET, 0,
                               note=f"{plural(len(tool), 'file')} of voxplane itself changed: {', '.join(tool)}"))
    return out


def _builds_from_base(head_root: Path, base_root: Path, folder: str, manifests: Sequence[str],
                      head: Optional[Project], base: Optional[Project]) -> bool:
    """Whether the Dockerfile of build folder `folder` (on either side) builds FROM the agent base."""
    names = {a.code.dockerfile or "Dockerfile" for project in (head, base) for a in (project.agents if project else ())
             if a.code.build and a.code.build.rstrip("/") == folder and a.source is not None and a.source.file in manifests}
    return any(agent_base.dockerfile_uses_base(root / folder / name) for root in (head_root, base_root)
               for name in names or {"Dockerfile"})


def _line_of(path: Path, field_path: tuple[str | int, ...]) -> Optional[int]:
    data, smap = _read(path)
    if data is UNSET:
        return None
    return smap.key(field_path)[0]


def _file_changes(base_root: Path, head_root: Path, rel: str, kind: str) -> list[FieldChange]:
    before, _ = _read(base_root / rel) if (base_root / rel).is_file() else (UNSET, SourceMap())
    after, smap = _read(head_root / rel) if (head_root / rel).is_file() else (UNSET, SourceMap())
    if before is UNSET or after is UNSET:
        what = _what_file(rel, kind, after if before is UNSET else before)
        note = f"new {what}" if before is UNSET else f"{what} removed"
        return [FieldChange(rel, (), kind, before if before is UNSET else {}, after if after is UNSET else {}, 1, note=note)]
    if kind == "stack":
        before = {"config": (before or {}).get("config")} if isinstance(before, dict) else before
        after = {"config": (after or {}).get("config")} if isinstance(after, dict) else after
    out = []
    for path, old, new in _data_changes(before, after):
        line = smap.key(path)[0] if new is not UNSET else _removed_line(smap, path)
        out.append(FieldChange(rel, path, kind, _secure(old), _secure(new), line))
    return out


def _what_file(rel: str, kind: str, data: Any) -> str:
    """What a whole file declares, in words: `agent northwind/billing`, `region ap-south`."""
    data = data if isinstance(data, dict) else {}
    if kind == "stack":
        return f"stack file of {rel[len('Pulumi.'):-len('.yaml')]}"
    if rel.startswith("regions/"):
        return f"region {data.get('name') or PurePosixPath(rel).stem}"
    name = data.get("name") or PurePosixPath(rel).stem
    return f"agent {data['tenant']}/{name}" if data.get("tenant") else f"agent {name}"


def _removed_line(smap: SourceMap, path: tuple[str | int, ...]) -> int:
    """A removed key: the line of its nearest parent still written."""
    return smap.key(path[:-1])[0] if path[:-1] else 1


def _secure(value: Any) -> Any:
    """Stack config secrets (`secure:` ciphertext) are shown as such, never as their text."""
    if isinstance(value, dict) and set(value) == {"secure"}:
        return "(secure)"
    return value


# --- attribution ----------------------------------------------------------------------------------


def _as_path(dotted: str) -> tuple[str, ...]:
    if not dotted or dotted.startswith("("):
        return ()
    return tuple(dotted.split("."))


def _related(a: Sequence[str | int], b: Sequence[str | int]) -> bool:
    n = min(len(a), len(b))
    return tuple(map(str, a[:n])) == tuple(map(str, b[:n]))


_POD = ("spec", "template", "spec")


def region_fields(region: Region, agent: Optional[Agent], path: ObjPath) -> list[tuple[str, ...]]:
    """Fields of the region file an agent object's path comes from, where attribution names only
    the agent's file (an extension of kubedrift.attribution for agent objects)."""
    if agent is None:
        return []
    plain = [s.value if isinstance(s, Keyed) else s for s in path]
    out: list[tuple[str, ...]] = []
    if tuple(plain[:3]) == _POD and len(plain) > 3 and plain[3] in ("nodeSelector", "tolerations", "affinity",
                                                                   "topologySpreadConstraints"):
        out += [("agents", "node_pool"), ("tenants", agent.tenant, "node_pool"), ("tenants", agent.tenant, "isolation")]
    if tuple(plain[:3]) == _POD and len(plain) > 6 and plain[3] == "containers" and plain[5] == "env":
        name = str(plain[6])
        for role in ROLES:
            spec = agent.inference.roles().get(role)
            if name.startswith(f"VOXPLANE_{role.upper()}_") and spec is not None and spec.model:
                out.append(("models", spec.model))
    if tuple(plain[:3]) == _POD and len(plain) > 6 and plain[3] == "containers" and plain[5] == "image":
        out.append(("kubernetes",))
    return out


def agent_fields(agent: Optional[Agent], path: ObjPath) -> list[tuple[str, ...]]:
    """Fields of an agent's own file a `VOXPLANE_<FIELD>` env var of its container is set from,
    where attribution falls back to `env.<NAME>` (`VOXPLANE_SESSIONS_PER_WORKER` ->
    `scaling.sessions_per_worker`), and `scaling.sessions_per_worker` for the ScaledObject's target,
    which is built from it and `scaling.target_utilization`."""
    if agent is None:
        return []
    plain = [s.value if isinstance(s, Keyed) else s for s in path]
    if plain[:2] == ["spec", "triggers"] and plain[-2:] == ["metadata", "threshold"]:
        # The autoscaling target is sessions_per_worker × target_utilization (attribution names the latter).
        return [("scaling", "sessions_per_worker")]
    if not (tuple(plain[:3]) == _POD and len(plain) > 6 and plain[3] == "containers" and plain[5] == "env"):
        return []
    name = str(plain[6])
    if not name.startswith("VOXPLANE_") or name in agent.env:
        return []
    leaf = name[len("VOXPLANE_"):].lower()
    return [("scaling", leaf), (leaf,), ("telephony", leaf), ("resources", leaf)]


class _Attributor:
    """Finds the field changes that cause an object change (the tiers in the module docstring)."""

    def __init__(self, changes: list[FieldChange], region: str, head: Optional[Project], base: Optional[Project]):
        self.changes = changes
        self.region = region
        self.by_file: dict[str, list[FieldChange]] = {}
        for c in changes:
            if c.kind != "tool":
                self.by_file.setdefault(c.file, []).append(c)
        self.tool = [c for c in changes if c.kind == "tool"]
        self.head, self.base = head, base
        self.sides: dict[str, tuple[Optional[Attribution], dict[tuple[str, str], Desired]]] = {}
        for label, project in (("head", head), ("base", base)):
            reg = project.regions.get(region) if project else None
            if reg is None or project is None:
                self.sides[label] = (None, {})
                continue
            agents = project.agents_in(region)
            self.sides[label] = (Attribution(reg, agents), {(d.kind, d.name): d for d in desired_objects(reg, agents)})
        region_files = {f"Pulumi.{region}.yaml"}
        agent_files: set[str] = set()
        for project in (head, base):
            if project and region in project.regions and project.regions[region].source:
                src = project.regions[region].source
                assert src is not None
                region_files.add(src.file)
            for agent in (project.agents_in(region) if project else ()):
                if agent.source is not None:
                    agent_files.add(agent.source.file)
        region_files |= {c.file for c in changes if c.kind == "manifest" and c.file == f"regions/{region}.yaml"}
        self.region_files, self.agent_files = region_files, agent_files

    def _in(self, files: Iterable[str]) -> list[FieldChange]:
        return [c for f in sorted(files) for c in self.by_file.get(f, [])]

    def _evidenced(self, before: Any, after: Any) -> set[str]:
        """Agent files whose agent a changed value names on one side only (its LIVEKIT_AGENT_NAME,
        room prefix or a number): a shared object (a gateway's config listing every agent) changed
        because of that agent."""
        a, b = short(before, 10**9), short(after, 10**9)
        found: set[str] = set()
        for project in (self.head, self.base):
            for agent in (project.agents_in(self.region) if project else ()):
                marks = [agent.scoped_name, *(agent.telephony.numbers if agent.telephony else ())]
                if agent.telephony and agent.telephony.dispatch.room_prefix:
                    marks.append(agent.telephony.dispatch.room_prefix)
                if agent.source is not None and any((f'"{m}"' in a) != (f'"{m}"' in b) or (m == a) != (m == b)
                                                    for m in marks):
                    found.add(agent.source.file)
        return found

    def causes(self, ref: ObjectRef, action: str, obj: Mapping[str, Any], path: ObjPath,
               before: Any = UNSET, after: Any = UNSET) -> tuple[list[FieldChange], str]:
        side = "base" if action == "remove" else "head"
        attribution, desired = self.sides[side]
        candidates: list[tuple[str, tuple[str, ...]]] = []
        own_file = ""
        if ref.target == "kubernetes" and attribution is not None:
            origin = attribution.field_origin(obj, path) if path else attribution.object_origin(obj)
            own_file = origin.file
            agent = attribution.agent_of(obj)
            if action in ("add", "remove") and agent is not None:
                candidates.append((own_file, ("regions",)))
            candidates += [(own_file, p) for p in agent_fields(agent, path)]
            candidates.append((own_file, _as_path(origin.field)))
            region_file = attribution.region.source.file if attribution.region.source else ""
            candidates += [(region_file, p) for p in region_fields(attribution.region, agent, path)]
        elif ref.target == "livekit":
            d = desired.get((ref.kind, ref.name))
            if d is not None:
                origin = d.origin(format_path(path) if path else "*")
                own_file = origin.file
                if action in ("add", "remove"):
                    candidates.append((d.source or own_file, ("regions",)))
                    candidates.append((d.source or own_file, ("telephony",)))
                candidates.append((origin.file, _as_path(origin.field)))
        for file, fpath in candidates:
            if not fpath:
                continue
            found = [c for c in self.by_file.get(file, []) if _related(c.path, fpath)]
            if found:
                return found, "field"
        if self.tool:
            # The tool changed: what no changed field explains is most likely its doing.
            return list(self.tool), "tool"
        if own_file and self.by_file.get(own_file):
            return list(self.by_file[own_file]), "file"
        for files in (self.region_files, self.agent_files):
            found = self._in(files)
            if found and files is self.agent_files:
                named = self._in(self._evidenced(before, after) & self.agent_files)
                # A shared object that names an agent (the gateway's tenant scopes) changes because
                # the agent joined or left the region, or its routing changed: not its other fields.
                def scoped(changes: list[FieldChange]) -> list[FieldChange]:
                    # In this order: joining/leaving the region explains the most, then routing.
                    for prefix in (("regions",), ("telephony", "dispatch"), ("name",)):
                        hit = [c for c in changes if c.path[:len(prefix)] == prefix]
                        if hit:
                            return hit
                    return []

                found = scoped(named) or named or scoped(found) or found
            if found:
                return found, "region"
        return [], "none"


# --- capacity and routing -------------------------------------------------------------------------


def _capacity(project: Optional[Project], region: str) -> Optional[capacity.RegionCapacity]:
    if project is None or region not in project.regions:
        return None
    return capacity.plan(project, region)


def capacity_changes(base: Optional[Project], head: Optional[Project], region: str) -> list[CapacityChange]:
    """What the change does to the region's capacity plan (only what differs)."""
    old, new = _capacity(base, region), _capacity(head, region)
    if new is None and old is not None:
        return [CapacityChange("region", f"region removed (it was sized for {old.peak_calls} peak concurrent calls)",
                               old.peak_calls, None)]
    if new is None:
        return []
    if old is None:
        assert head is not None
        return new_region_capacity(new, head)
    out: list[CapacityChange] = []
    if old.peak_calls != new.peak_calls:
        out.append(CapacityChange("peak", f"peak concurrent calls {old.peak_calls} → {new.peak_calls}",
                                  old.peak_calls, new.peak_calls))
    old_models = {m.model: m for m in old.models}
    new_models = {m.model: m for m in new.models}
    assert head is not None and base is not None
    for name in sorted(set(old_models) | set(new_models)):
        a, b = old_models.get(name), new_models.get(name)
        if a is None and b is not None:
            out.append(CapacityChange(f"model {name}", f"model {name} ({b.kind}) added: {_replicas(b, head, region)}",
                                      None, _model_numbers(b)))
        elif b is None and a is not None:
            out.append(CapacityChange(f"model {name}", f"model {name} removed (was {_replicas(a, base, region)})",
                                      _model_numbers(a), None))
        elif a is not None and b is not None and _model_numbers(a) != _model_numbers(b):
            text = f"model {name} ({b.kind}): {_replicas(a, base, region)} → {_replicas(b, head, region)}"
            if a.status != b.status:
                text += f"; {b.status}"
            out.append(CapacityChange(f"model {name}", text, _model_numbers(a), _model_numbers(b)))
    old_groups, new_groups = _gpu_demand(base, region), _gpu_demand(head, region)
    for group in sorted(set(old_groups) | set(new_groups)):
        a2, b2 = old_groups.get(group), new_groups.get(group)
        if a2 != b2:
            show = lambda v: "-" if v is None else f"{v[0]} of {v[1]} GPUs"  # noqa: E731
            out.append(CapacityChange(f"gpu group {group}", f"GPU group {group} at peak: {show(a2)} → {show(b2)}",
                                      a2, b2))
    if (old.agent_sessions, old.agent_sessions_at_target) != (new.agent_sessions, new.agent_sessions_at_target):
        def change(a: float, b: float) -> str:
            return f"{a:g}" if a == b else f"{a:g} → {b:g}"

        out.append(CapacityChange(
            "agent pools", f"agent pools at max_workers: {change(old.agent_sessions, new.agent_sessions)} sessions "
            f"({change(old.agent_sessions_at_target, new.agent_sessions_at_target)} at the autoscaling target) for "
            f"{new.peak_calls} peak calls", old.agent_sessions, new.agent_sessions))
    old_t = {t.tenant: t for t in old.tenants}
    new_t = {t.tenant: t for t in new.tenants}
    for name in sorted(set(old_t) | set(new_t)):
        ta, tb = old_t.get(name), new_t.get(name)
        if ta is None or tb is None:
            continue  # a tenant added or removed shows as its objects
        parts = []
        for what, unit, at_a, q_a, at_b, q_b in (
            ("cpu", "", ta.cpu_at_max, ta.cpu_quota, tb.cpu_at_max, tb.cpu_quota),
            ("memory", " GiB", ta.memory_gib_at_max, ta.memory_gib_quota, tb.memory_gib_at_max, tb.memory_gib_quota),
            ("pods", "", ta.pods_at_max, ta.pods_quota, tb.pods_at_max, tb.pods_quota),
        ):
            if (at_a, q_a) != (at_b, q_b):
                parts.append(f"{what} {_num(q_a - at_a)} → {_num(q_b - at_b)}{unit} "
                             f"({_num(at_b)} of {_num(q_b)} at max_workers)")
        if parts:
            text = f"tenant {name} quota headroom: " + "; ".join(parts)
            if ta.status != tb.status:
                text += f" — {tb.status}"
            out.append(CapacityChange(f"tenant {name}", text, _tenant_numbers(ta), _tenant_numbers(tb)))
    short_a, short_b = set(capacity.shortfalls(old)), set(capacity.shortfalls(new))
    out += [CapacityChange("short", f"now short: {s}", None, s) for s in sorted(short_b - short_a)]
    out += [CapacityChange("short", f"no longer short: {s}", s, None) for s in sorted(short_a - short_b)]
    return out


def new_region_capacity(report: capacity.RegionCapacity, project: Project) -> list[CapacityChange]:
    """A new region's whole capacity plan, as `voxplane capacity` sizes it, ending with what is
    short (or that nothing is)."""
    region = report.region
    out = [CapacityChange("peak", f"new region: peak {report.peak_calls} concurrent calls", None, report.peak_calls)]
    for m in report.models:
        text = f"model {m.model} ({m.kind}): {_replicas(m, project, region)}"
        out.append(CapacityChange(f"model {m.model}", text + ("" if m.status == "ok" else f"; {m.status}"),
                                  None, _model_numbers(m)))
    for group, (used, have) in sorted(_gpu_demand(project, region).items()):
        out.append(CapacityChange(f"gpu group {group}", f"GPU group {group} at peak: {used} of {have} GPUs", None,
                                  (used, have)))
    out.append(CapacityChange("agent pools", f"agent pools at max_workers: {report.agent_sessions} sessions "
                                             f"({report.agent_sessions_at_target:g} at the autoscaling target) for "
                                             f"{report.peak_calls} peak calls", None, report.agent_sessions))
    for t in report.tenants:
        out.append(CapacityChange(
            f"tenant {t.tenant}",
            f"tenant {t.tenant} quota headroom: cpu {_num(round(t.cpu_quota - t.cpu_at_max, 2))} ({_num(t.cpu_at_max)} of "
            f"{_num(t.cpu_quota)} at max_workers); memory {_num(round(t.memory_gib_quota - t.memory_gib_at_max, 2))} GiB "
            f"({_num(t.memory_gib_at_max)} of {_num(t.memory_gib_quota)} at max_workers); pods "
            f"{t.pods_quota - t.pods_at_max} ({t.pods_at_max} of {t.pods_quota} at max_workers)"
            + ("" if t.status == "ok" else f" — {t.status}"),
            None, _tenant_numbers(t)))
    short = capacity.shortfalls(report)
    out += [CapacityChange("short", f"short: {s}", None, s) for s in short]
    if not short:
        out.append(CapacityChange("short", "not short: the plan holds at the peak", None, None))
    return out


def _num(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _model_numbers(m: capacity.ModelCapacity) -> dict[str, Any]:
    return {"replicas_needed": m.replicas_needed, "max_replicas": m.max_replicas, "gpus_per_replica": m.gpus_per_replica,
            "gpus_needed": m.gpus_needed, "calls_per_replica": m.calls_per_replica, "status": m.status}


def _tenant_numbers(t: capacity.TenantCapacity) -> dict[str, Any]:
    return {"cpu_headroom": round(t.cpu_quota - t.cpu_at_max, 2),
            "memory_gib_headroom": round(t.memory_gib_quota - t.memory_gib_at_max, 2),
            "pods_headroom": t.pods_quota - t.pods_at_max, "status": t.status}


def _replicas(m: capacity.ModelCapacity, project: Project, region: str) -> str:
    spec = project.regions[region].models[m.model]
    gpus = f"{m.gpus_per_replica} GPU{'s' if m.gpus_per_replica != 1 else ''}/replica"
    if m.replicas_needed is not None:
        return f"{m.replicas_needed} replicas at peak of max {m.max_replicas} ({gpus})"
    return f"{spec.min_replicas}..{m.max_replicas} replicas ({gpus})"


def _gpu_demand(project: Optional[Project], region: str) -> dict[str, tuple[int, int]]:
    """GPUs each node group needs at peak (LLMs as sized, other models at max_replicas) and has."""
    report = _capacity(project, region)
    if report is None or project is None:
        return {}
    reg = project.regions[region]
    demand: dict[str, tuple[int, int]] = {}
    for m in report.models:
        spec = reg.models[m.model]
        need = m.gpus_needed if m.gpus_needed is not None else spec.gpus_per_replica * spec.max_replicas
        used, have = demand.get(spec.node_group, (0, m.gpus_available))
        demand[spec.node_group] = (used + need, have)
    return demand


def numbers(project: Optional[Project], region: str) -> dict[str, str]:
    """Number -> the agent its trunk routes to (`tenant/agent`)."""
    if project is None or region not in project.regions:
        return {}
    reg = project.regions[region]
    out: dict[str, str] = {}
    for d in desired_objects(reg, project.agents_in(region)):
        if isinstance(d, DesiredTrunk):
            for number in d.numbers:
                out[number] = f"{d.owner.tenant}/{d.owner.agent}"
    return out


def routing_changes(base: Optional[Project], head: Optional[Project], region: str) -> list[RouteChange]:
    old, new = numbers(base, region), numbers(head, region)
    out = []
    for number in sorted(set(old) | set(new)):
        a, b = old.get(number), new.get(number)
        if a is None and b is not None:
            out.append(RouteChange(number, "added", after=b))
        elif b is None and a is not None:
            out.append(RouteChange(number, "removed", before=a))
        elif a != b and a is not None and b is not None:
            out.append(RouteChange(number, "moved", a, b))
    return out


def _checksums_follow_configs(found: list[tuple[Touch, list[FieldChange]]]) -> list[tuple[Touch, list[FieldChange]]]:
    """A config checksum annotation (`…checksum`) changes because a ConfigMap or Secret of its
    namespace did: it gets their causes, not a guess of its own."""
    configs: dict[str, list[FieldChange]] = {}
    for touch, causes in found:
        if touch.ref.kind in ("ConfigMap", "Secret") and touch.ref.target == "kubernetes":
            bucket = configs.setdefault(touch.ref.namespace, [])
            bucket += [c for c in causes if c not in bucket]
    out = []
    for touch, causes in found:
        leaf = touch.path.rsplit(".", 1)[-1]
        if touch.action == "change" and "annotations" in touch.path and "checksum" in leaf and configs.get(touch.ref.namespace):
            out.append((replace(touch, via="field"),
                        list(configs[touch.ref.namespace])))
        else:
            out.append((touch, causes))
    return out


# --- the plan -------------------------------------------------------------------------------------


def _path_touch(ref: ObjectRef, path: ObjPath, before: Any, after: Any) -> tuple[Touch, ObjPath]:
    """The touch of one changed path, and the path its cause is looked up by. An item added to
    or removed from a list is shown at the list's path (`spec.egress + {...}`); an unnamed list's
    item is attributed as the list (its index is no manifest field)."""
    last = path[-1] if path else None
    item = ("added" if before is UNSET else "removed" if after is UNSET else "") if isinstance(last, (int, Keyed)) else ""
    shown = path[:-1] if item else path
    looked_up = path[:-1] if isinstance(last, int) else path
    return Touch(ref, "change", format_path(shown), before, after, item=item), looked_up


def plan_between(base_root: Path, head_root: Path, regions: Optional[Sequence[str]] = None, *,
                 changed: Optional[Sequence[str]] = None, base: str = "", base_label: str = "") -> Plan:
    """The plan of `head_root` against `base_root` (two checkouts' render inputs).

    `regions` default: those the change can affect (`voxplane affected`'s rule, on both sides).
    `changed`: the paths that differ (default: compared file by file). Raises ManifestError when
    the head's manifests are invalid, UnknownRegion for a region named at neither side, PlanError
    when the base cannot be rendered.
    """
    head_result = load((), head_root)
    if head_result.problems:
        raise ManifestError(head_result.problems)
    head = head_result.require_project()
    base_result = load((), base_root)
    base_project = base_result.project
    notes: list[str] = []
    changed = list(changed) if changed is not None else changed_between(base_root, head_root)
    tool_changed = any(p.startswith(EVERYWHERE) for p in changed)
    if base_project is None and not tool_changed:
        raise PlanError(f"the manifests at the base do not validate ({plural(len(base_result.problems), 'problem')}; "
                        f"first: {base_result.problems[0] if base_result.problems else '?'}); plan needs a valid base")
    if base_project is None:
        notes.append("the base's manifests do not load with this version of voxplane; removed objects are "
                     "attributed by their source annotation only")
    if regions is None:
        wanted = set(affected_regions(changed, head))
        if base_project is not None:
            wanted |= set(affected_regions(changed, base_project))
        regions = sorted(wanted)
    else:
        known = set(head.regions) | set(base_project.regions if base_project else ())
        missing = [r for r in regions if r not in known]
        if missing:
            raise UnknownRegion(missing[0], known)
    regions = list(regions)

    after = render_here(head_root, regions, head)
    base_regions = [r for r in regions if base_project is None or r in base_project.regions]
    if tool_changed and base_regions:
        try:
            before = render_with_own_code(base_root, base_regions)
            notes.append("the tool itself changed: the base was rendered by the base's own code")
        except PlanError as exc:
            if base_project is None:
                raise PlanError(f"the base could not be rendered by its own code: {exc}") from None
            notes.append(f"the tool itself changed, but the base's own code could not render it ({exc}); both sides "
                         f"were rendered by the working tree's code, so changes of the tool are not shown")
            before = render_here(base_root, base_regions, base_project)
    else:
        before = render_here(base_root, base_regions, base_project)
    for name in regions:
        before.setdefault(name, None)

    changes = sorted(manifest_changes(base_root, head_root, changed, head, base_project),
                     key=lambda c: (c.kind == "tool", c.file, c.line, c.field))
    result = Plan(base=base, base_label=base_label, regions=[], changes=changes, notes=notes)
    for name in regions:
        status = "added" if before[name] is None else "removed" if after[name] is None else "changed"
        region_plan = RegionPlan(name, status)
        attributor = _Attributor(changes, name, head, base_project)
        found: list[tuple[Touch, list[FieldChange]]] = []
        for ref, action, old, new, paths in diff_objects(name, before[name], after[name]):
            obj = new if new is not None else old
            assert obj is not None
            {"add": region_plan.added, "remove": region_plan.removed, "change": region_plan.changed}[action].append(ref)
            touches = ([(Touch(ref, action), ())] if action != "change" else [_path_touch(ref, p, a, b) for p, a, b in paths])
            for touch, path in touches:
                causes, via = attributor.causes(ref, action, obj, path, touch.before, touch.after)
                found.append((replace(touch, via=via), causes))
        found = _checksums_follow_configs(found)
        for touch, causes in found:
            if not causes:
                result.unattributed.append(touch)
            for cause in causes:
                cause.touches.append(touch)
        region_plan.capacity = capacity_changes(base_project, head, name)
        region_plan.routing = routing_changes(base_project, head, name)
        result.regions.append(region_plan)
    return result


# --- output ---------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if value is UNSET:
        return None
    if isinstance(value, (dict, list, str, int, float, bool)) or value is None:
        return value
    return str(value)


def short(value: Any, limit: int = SHORT, *, quote: bool = False) -> str:
    """A value in one short line: "(unset)", text as is (quoted with `quote`), data as compact
    JSON, cut with …"""
    if value is UNSET:
        text = "(unset)"
    elif isinstance(value, str) and not quote:
        text = value
    else:
        text = json.dumps(value, separators=(", ", ": "), ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pair(before: Any, after: Any, limit: int = 48) -> str:
    """`before → after` in one line; a long common beginning is elided, so the difference shows
    (an image digest, the end of a URL)."""
    a, b = short(before, 10_000), short(after, 10_000)
    if len(a) > limit or len(b) > limit:
        common = len(os.path.commonprefix([a, b]))
        if common > 16:
            keep = common - 8
            a, b = "…" + a[keep:], "…" + b[keep:]
    return f"{short(a, limit)} → {short(b, limit)}"


def item_text(value: Any) -> str:
    """A list item (a rule, an env var, a number) in one line, as compact JSON: in full up to
    ITEM_LIMIT characters (a rule is read whole, never cut to a common prefix)."""
    return short(value if value is not UNSET else None, ITEM_LIMIT, quote=True)


def _item_change(index: int, before: Any, after: Any) -> str:
    if before is UNSET:
        return f"+ {item_text(after)}"
    if after is UNSET:
        return f"- {item_text(before)}"
    return f"[{index}] {item_text(before)} → {item_text(after)}"


def _mapping_text(value: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}: {item_text(item)}" for key, item in value.items())


_MARK = {"add": "+", "remove": "-", "change": "~"}


def touch_text(t: Touch) -> str:
    if t.action != "change":
        return f"{_MARK[t.action]} {t.ref}"
    return f"~ {t.ref} {t.change_text()}"


def object_lines(touches: Sequence[Touch]) -> list[tuple[str, str, list[str]]]:
    """(region, the object's line, its changed paths' lines) per object, each object once: one
    changed path stays on the object's line, several go below it."""
    by_ref: dict[ObjectRef, list[Touch]] = {}
    for touch in touches:
        by_ref.setdefault(touch.ref, []).append(touch)
    out: list[tuple[str, str, list[str]]] = []
    for ref, mine in by_ref.items():
        if len(mine) == 1:
            out.append((ref.region, touch_text(mine[0]), []))
        else:
            out.append((ref.region, f"~ {ref}", [t.change_text() for t in mine]))
    return out


def blocks(plan: Plan) -> list[tuple[list[FieldChange], list[Touch], int]]:
    """The field changes in order, each object change shown once: (changes that cause the same
    objects, the object changes not shown above, how many of theirs were shown above)."""
    out: list[tuple[list[FieldChange], list[Touch], int]] = []
    shown: set[int] = set()
    for change in plan.changes:
        if out and change.touches and [id(t) for t in change.touches] == [id(t) for t in out[-1][0][-1].touches]:
            out[-1][0].append(change)  # several fields with the very same objects: one block
            continue
        fresh = [t for t in change.touches if id(t) not in shown]
        shown.update(id(t) for t in fresh)
        out.append(([change], fresh, len(change.touches) - len(fresh)))
    return out


def _summary_line(plan: Plan) -> str:
    c = plan.counts()
    if not plan.has_changes:
        tail = f"; {plural(c['fields'], 'manifest change')} that no object reflects" if c["fields"] else ""
        return f"plan: no changes to objects in {plural(len(plan.regions), 'region')}{tail}"
    return (f"plan: {c['changed']} to change, {c['added']} to add, {c['removed']} to remove in "
            f"{plural(sum(1 for r in plan.regions if r.has_changes), 'region')}, from "
            f"{plural(c['fields'], 'field change')}")


def _header(plan: Plan) -> str:
    regions = ", ".join(r.region for r in plan.regions) or "none"
    base = plan.base[:12] if plan.base else "?"
    how = f" ({plan.base_label})" if plan.base_label else ""
    return f"plan: the working tree against {base}{how}; regions: {regions}"


def to_text(plan: Plan) -> str:
    lines = [_header(plan), ""]
    for note in plan.notes:
        lines.append(f"note: {note}")
    if plan.notes:
        lines.append("")
    width = max((len(r.region) for r in plan.regions), default=0)
    for changes, touches, above in blocks(plan):
        lines += [change.headline() for change in changes]
        if not touches and not above:
            lines.append("    (no object changes)")
        for region, line, paths in object_lines(touches):
            lines.append(f"    {region.ljust(width)}  {line}")
            lines += [f"    {' ' * width}      {path}" for path in paths]
        if above:
            lines.append(f"    {' ' * width}  (and {plural(above, 'object change')} listed above)")
    if plan.unattributed:
        lines.append("unattributed (no manifest change explains these):")
        for region, line, paths in object_lines(plan.unattributed):
            lines.append(f"    {region.ljust(width)}  {line}")
            lines += [f"    {' ' * width}      {path}" for path in paths]
    if not plan.changes and not plan.unattributed:
        lines.append("no manifest, stack or code changes")
    lines.append("")
    lines.append("objects:")
    for r in plan.regions:
        status = {"added": " (new region)", "removed": " (region removed)"}.get(r.status, "")
        lines.append(f"    {r.region.ljust(width)}  {len(r.changed)} changed, {len(r.added)} added, "
                     f"{len(r.removed)} removed{status}")
    cap = [(r.region, c.text) for r in plan.regions for c in r.capacity]
    route = [(r.region, c.text()) for r in plan.regions for c in r.routing]
    lines.append("capacity:" + ("" if cap else " unchanged"))
    lines += [f"    {region.ljust(width)}  {text}" for region, text in cap]
    lines.append("routing:" + ("" if route else " unchanged"))
    lines += [f"    {region.ljust(width)}  {text}" for region, text in route]
    lines.append("")
    lines.append(_summary_line(plan))
    return "\n".join(lines) + "\n"


def to_json(plan: Plan) -> str:
    return json.dumps(plan.as_dict(), indent=2) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def to_markdown(plan: Plan, limit: int = MARKDOWN_LIMIT) -> str:
    """The PR comment: a summary, a table per field change, capacity and routing. One comment per
    pull request, found again by MARKER and updated in place (.github/workflows/preview.yml)."""
    out = [MARKER, "### voxplane plan", "",
           f"{_md(_summary_line(plan))} (against `{plan.base[:12] or '?'}`{', ' + _md(plan.base_label) if plan.base_label else ''}).",
           ""]
    out += [f"> note: {_md(n)}" for n in plan.notes]
    if plan.notes:
        out.append("")
    if plan.changes:
        out += ["| manifest | field | change | objects |", "|---|---|---|---|"]
        for changes, touches, above in blocks(plan):
            objects = [f"`{region}` {_md(line)}" + "".join(f"<br>&nbsp;&nbsp;&nbsp;&nbsp;{_md(p)}" for p in paths)
                       for region, line, paths in object_lines(touches)]
            if above:
                objects.append(f"(and {plural(above, 'object change')} listed above)")
            cell = "<br>".join(objects) or "(none)"
            for n, c in enumerate(changes):
                field_text = "(file)" if c.kind != "tool" and not c.path else c.field
                out.append(f"| `{c.location}` | `{_md(field_text)}` | {_md(c.change_text())} | "
                           f"{cell if n == 0 else '(the objects above)'} |")
        out.append("")
    if plan.unattributed:
        out.append("**Unattributed** (no manifest change explains these):")
        out += [f"- `{region}` {_md(line)}" + "".join(f"<br>{_md(p)}" for p in paths)
                for region, line, paths in object_lines(plan.unattributed)]
        out.append("")
    out += ["| region | changed | added | removed |", "|---|---|---|---|"]
    for r in plan.regions:
        out.append(f"| `{r.region}`{' (new)' if r.status == 'added' else ' (removed)' if r.status == 'removed' else ''} "
                   f"| {len(r.changed)} | {len(r.added)} | {len(r.removed)} |")
    out.append("")
    cap = [(r.region, c.text) for r in plan.regions for c in r.capacity]
    out.append("**Capacity:** " + ("unchanged" if not cap else ""))
    out += [f"- `{region}` {_md(text)}" for region, text in cap]
    route = [(r.region, c.text()) for r in plan.regions for c in r.routing]
    out.append("")
    out.append("**Routing:** " + ("unchanged" if not route else ""))
    out += [f"- `{region}` {_md(text)}" for region, text in route]
    text = "\n".join(out) + "\n"
    if len(text) > limit:
        cut = text[:limit].rsplit("\n", 1)[0]
        text = cut + "\n\n… (cut: the plan is longer than a comment holds; `voxplane plan` shows all of it)\n"
    return text


RENDERERS = {"text": to_text, "json": to_json, "markdown": to_markdown}
