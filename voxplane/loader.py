"""Load manifests: files -> YAML with positions -> schema -> defaults -> typed model -> cross-file checks.

Everything is collected, nothing raised: `load()` returns every problem of every file in one
`LoadResult`, and a `Project` only when there are none (a bad manifest deploys nothing).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

from . import crosscheck, schema
from .model import Agent, Project, Region, Source, from_data
from .problems import ManifestError, Problem, format_path
from .sourcemap import SourceMap, YamlProblem, parse

Kind = Literal["region", "agent"]
MANIFEST_DIRS: dict[str, Kind] = {"regions": "region", "agents": "agent"}
SUFFIXES = (".yaml", ".yml")


@dataclass
class Document:
    """One manifest file after parsing and schema validation."""

    file: str
    kind: Kind
    data: dict[str, Any]
    smap: SourceMap


@dataclass
class LoadResult:
    problems: list[Problem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    project: Project | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def require_project(self) -> Project:
        if self.project is None or self.problems:
            raise ManifestError(self.problems)
        return self.project


def discover(paths: Sequence[str | os.PathLike[str]], root: Path) -> tuple[list[tuple[Path, Kind]], list[Problem]]:
    """Manifest files under `paths` (files or folders); the kind comes from the folder."""
    found: list[tuple[Path, Kind]] = []
    problems: list[Problem] = []
    for given in paths:
        path = Path(given)
        if not path.is_absolute():
            path = root / path
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
            # Agent code folders (agents/<name>/) hold no manifests.
            files = [p for p in files if _kind_of(p, root) is not None and p.parent.name in MANIFEST_DIRS]
        elif path.exists():
            files = [path]
        else:
            problems.append(Problem(_display(path, root), 1, 1, "(file)", "no such file or folder"))
            continue
        for file in files:
            kind = _kind_of(file, root)
            if kind is None:
                problems.append(
                    Problem(_display(file, root), 1, 1, "(file)",
                            "cannot tell the manifest kind; put regions in regions/ and agents in agents/")
                )
            else:
                found.append((file, kind))
    return found, problems


def _kind_of(file: Path, root: Path) -> Kind | None:
    return MANIFEST_DIRS.get(file.parent.name)


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def read_document(file: Path, kind: Kind, root: Path) -> tuple[Document | None, list[Problem]]:
    """Parse and schema-check one file. Returns the document only when it is schema-valid."""
    name = _display(file, root)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        return None, [Problem(name, 1, 1, "(file)", f"cannot read: {exc.strerror or exc}")]
    try:
        data, smap = parse(raw)
    except YamlProblem as exc:
        return None, [Problem(name, exc.line, exc.column, format_path(exc.path), exc.message)]
    problems = schema.check(kind, data, smap, name)
    if problems:
        return None, problems
    return Document(name, kind, data, smap), []


def load(paths: Sequence[str | os.PathLike[str]] = (), root: str | os.PathLike[str] = ".") -> LoadResult:
    """Load and check manifests. With no paths: all of regions/ and agents/ under `root`.

    Cross-file checks always see every region, so an agent file validated alone is still checked
    against the regions it names.
    """
    root_path = Path(root)
    targets = list(paths) or [d for d in MANIFEST_DIRS if (root_path / d).is_dir()]
    result = LoadResult()
    files, result.problems = discover(targets, root_path)
    if not paths and not files:
        result.problems.append(Problem(".", 1, 1, "(file)", "no manifests found under regions/ or agents/"))

    documents: list[Document] = []
    seen: set[Path] = set()
    for file, kind in files:
        seen.add(file.resolve())
        result.files.append(_display(file, root_path))
        doc, problems = read_document(file, kind, root_path)
        result.problems.extend(problems)
        if doc is not None:
            documents.append(doc)

    # Regions named by agents but not given on the command line still take part in the checks.
    if paths and (root_path / "regions").is_dir():
        for file in sorted((root_path / "regions").glob("*.y*ml")):
            if file.resolve() not in seen:
                doc, _ = read_document(file, "region", root_path)
                if doc is not None:
                    documents.append(doc)

    regions, agents = build_model(documents)
    result.problems.extend(crosscheck.check(regions, agents, root_path))
    result.problems = sorted(set(result.problems))
    if not result.problems:
        result.project = Project(regions={r.name: r for r in regions}, agents=tuple(agents))
    return result


def build_model(documents: Iterable[Document]) -> tuple[list[Region], list[Agent]]:
    """Schema-valid documents -> typed model objects (defaults from the schema)."""
    regions: list[Region] = []
    agents: list[Agent] = []
    for doc in documents:
        filled = schema.with_defaults(doc.kind, doc.data)
        filled["source"] = Source(doc.file, doc.smap)
        if doc.kind == "region":
            regions.append(from_data(Region, filled))
        else:
            agents.append(from_data(Agent, filled))
    return regions, agents


def load_project(root: str | os.PathLike[str] = ".") -> Project:
    """The whole repository as a model, or `ManifestError` listing every problem."""
    return load((), root).require_project()
