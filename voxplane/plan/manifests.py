"""What changed in the manifests between the two sides, field by field (`FieldChange`): manifest
fields at their line, stack config keys (a secure value never shown), agent code folders (and the
agent base image's, as a change of each agent building FROM it), the tool's own code.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Optional, Sequence

from ..deploy import agent_base
from ..drift.kubernetes.compare import UNSET
from ..manifest.model import Project
from ..manifest.problems import plural
from ..manifest.sourcemap import SourceMap, YamlProblem, parse
from .affected import EVERYWHERE
from .result import FieldChange


def _read(path: Path) -> tuple[Any, SourceMap]:
    try:
        return parse(path.read_bytes())
    except (OSError, YamlProblem):
        return UNSET, SourceMap()


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
