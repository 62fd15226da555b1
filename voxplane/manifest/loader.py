"""Load manifests: files -> YAML with positions -> schema -> defaults -> typed model -> cross-file checks.

Everything is collected, nothing raised: `load()` returns every problem of every file in one
`LoadResult`, and a `Project` only when there are none (a bad manifest deploys nothing).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

import yaml

from . import changes, crosscheck, placeholders, schema, secret_fields, stackfile
from .model import Agent, Project, Region, Source, from_data
from .problems import ManifestError, Problem, format_path, plural
from .sourcemap import MAX_BYTES, SourceMap, YamlProblem, parse
from .stackfile import StackFile

Kind = Literal["region", "agent", "stack"]
MANIFEST_DIRS: dict[str, Literal["region", "agent"]] = {"regions": "region", "agents": "agent"}
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
    """`problems` are those of the files asked for (all of them by default), `files` those files.

    The checks always see the whole repository: `project` is set only when all of it is valid,
    `partial` holds whatever did load (for commands that can say something about a region even
    when another file is broken), and `elsewhere` counts the problems of files not asked for.
    """

    problems: list[Problem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    project: Project | None = None
    partial: Project = field(default_factory=lambda: Project(regions={}, agents=()))
    elsewhere: int = 0
    whole: bool = True
    #: Regions whose file exists but does not load: name -> file.
    invalid_regions: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def require_project(self) -> Project:
        if self.project is None or self.problems:
            raise ManifestError(self.problems)
        return self.project


def find_root(start: Path) -> Path:
    """The nearest folder at or above `start` holding Pulumi.yaml (the repository root); `start`
    itself when there is none."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / "Pulumi.yaml").is_file():
            return folder
    return start


def discover(paths: Sequence[str | os.PathLike[str]], root: Path) -> tuple[list[tuple[Path, Kind]], list[Problem]]:
    """Manifest and stack files under `paths` (files or folders); the kind comes from the folder
    (regions/, agents/) or the name (Pulumi.<stack>.yaml)."""
    found: list[tuple[Path, Kind]] = []
    problems: list[Problem] = []
    for given in paths:
        path = Path(given)
        if not path.is_absolute():
            path = root / path
        if path.is_dir():
            every = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
            # Agent code folders (agents/<name>/) hold no manifests; stack files sit at the top.
            files = [p for p in every if (p.parent.name in MANIFEST_DIRS)
                     or (p.parent == path and stackfile.stack_name(p) is not None)]
            # ... but a manifest put in a sub-folder would be ignored: say so instead.
            problems.extend(p for p in (_misplaced(f, root) for f in every if f not in files) if p is not None)
        elif path.exists():
            files = [path]
        else:
            problems.append(Problem(_display(path, root), 1, 1, "", "no such file or folder"))
            continue
        for file in files:
            kind = _kind_of(file, root)
            if kind is None:
                problems.append(_misplaced(file, root) or
                    Problem(_display(file, root), 1, 1, "",
                            "cannot tell the manifest kind; put regions in regions/ and agents in agents/ "
                            "(stack files are named Pulumi.<stack>.yaml)")
                )
            else:
                found.append((file, kind))
    return found, problems


#: Top-level keys that only a manifest of that kind has together (its required fields).
_MANIFEST_KEYS: dict[str, set[str]] = {"agent": {"name", "tenant", "regions"}, "region": {"name", "livekit"}}


def _misplaced(file: Path, root: Path) -> Problem | None:
    """A manifest in a sub-folder of regions/ or agents/ (read by nothing there), as one problem
    that says where it belongs; None for any other file (an agent's own YAML, say)."""
    folder = next((p for p in file.parents if p.name in MANIFEST_DIRS and p.parent.resolve() == root.resolve()), None)
    if folder is None or file.parent == folder:
        return None
    try:
        text = file.read_text(errors="replace") if file.stat().st_size <= MAX_BYTES else ""
        data = yaml.safe_load(text) if text else None
    except (OSError, yaml.YAMLError):
        data = None
    kind = MANIFEST_DIRS[folder.name]
    header = f"{kind}.schema.json" in text.split("\n", 1)[0] if text else False
    if not header and not (isinstance(data, dict) and _MANIFEST_KEYS[kind] <= set(map(str, data))):
        return None
    return Problem(_display(file, root), 1, 1, "",
                   f"{kind} manifest in a sub-folder, which nothing reads: manifests belong directly in "
                   f"{folder.name}/ ({folder.name}/{file.name}){'; sub-folders of agents/ hold agent code' if kind == 'agent' else ''}")


def _kind_of(file: Path, root: Path) -> Kind | None:
    if file.parent.name in MANIFEST_DIRS:
        return MANIFEST_DIRS[file.parent.name]
    return "stack" if stackfile.stack_name(file) is not None else None


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def read_document(file: Path, kind: Kind, root: Path) -> tuple[Document | None, list[Problem]]:
    """Parse and schema-check one file. Returns the document only when it is schema-valid."""
    doc, problems, _ = _read(file, kind, root)
    return doc, problems


def _read(file: Path, kind: Kind, root: Path) -> tuple[Document | None, list[Problem], Any]:
    """(document when schema-valid, problems, the parsed data when it parsed at all)."""
    name = _display(file, root)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        return None, [Problem(name, 1, 1, "", f"cannot read: {exc.strerror or exc}")], None
    try:
        data, smap = parse(raw, lambda path: schema.field_names(kind, path))
    except YamlProblem as exc:
        return None, [Problem(name, exc.line, exc.column, format_path(secret_fields.shown(exc.path)), exc.message)], None
    problems = schema.check(kind, data, smap, name)
    marks = placeholders.find(data, smap, name)
    if marks:  # a value left to fill in (`voxplane new region`) is said as such, not as a schema error
        return None, placeholders.merge(marks, problems), data
    if problems:
        return None, problems, data
    return Document(name, kind, data, smap), [], data


def problem_order(problem: Problem) -> tuple[int, str, int, int, str, str]:
    """Regions first, then stack files, then agents: a problem that points "above" (an agent of an
    invalid region) comes after what it points at."""
    path = Path(problem.file)
    group = 0 if path.parent.name == "regions" else 1 if stackfile.stack_name(path) else 2 if path.parent.name == "agents" else 3
    return (group, problem.file, problem.line, problem.column, problem.field, problem.message)


def load(paths: Sequence[str | os.PathLike[str]] = (), root: str | os.PathLike[str] = ".") -> LoadResult:
    """Load and check the repository under `root`: all of regions/, agents/ and its stack files.

    With `paths` (files or folders; relative ones against `root`), the checks still run on the
    whole repository, and the result reports the problems that touch those files: their own,
    and those between files where they are one end (stated at their own line too).
    """
    root_path = Path(root)
    repo, problems = discover([d for d in MANIFEST_DIRS if (root_path / d).is_dir()], root_path)
    if not paths and not repo:
        problems.append(Problem(".", 1, 1, "", "no manifests found under regions/ or agents/"))
    repo += [(p, "stack") for p in stackfile.stack_files(root_path)]
    named: set[str] | None = None
    if paths:
        given, given_problems = discover(paths, root_path)
        problems = given_problems  # problems of discovering the repository itself show when asked for
        named = {_display(f, root_path) for f, _ in given} | {p.file for p in given_problems}
        seen = {f.resolve() for f, _ in repo}
        repo += [(f, k) for f, k in given if f.resolve() not in seen]
        files = [_display(f, root_path) for f, _ in given]
    else:
        files = [_display(f, root_path) for f, _ in repo]

    documents: list[Document] = []
    stacks: list[StackFile] = []
    invalid_regions: dict[str, str] = {}
    done: set[Path] = set()
    for file, kind in repo:
        if file.resolve() in done:
            continue
        done.add(file.resolve())
        if kind == "stack":
            stack, found = stackfile.read(file, _display(file, root_path))
            problems.extend(found)
            if stack is not None:
                problems.extend(placeholders.in_stack(stack))
            if stack is not None:
                stacks.append(stack)
            continue
        doc, found, data = _read(file, kind, root_path)
        problems.extend(found)
        if doc is not None:
            documents.append(doc)
        elif kind == "region":
            name = data.get("name") if isinstance(data, dict) else None
            invalid_regions.setdefault(name if isinstance(name, str) and name else file.stem, _display(file, root_path))

    regions, agents = build_model(documents)
    changed = changes.changed_files(root_path)
    problems.extend(crosscheck.check(regions, agents, root_path, stacks=stacks, invalid_regions=invalid_regions,
                                     changed=changed))
    everything = sorted(set(problems), key=problem_order)
    result = LoadResult(files=list(dict.fromkeys(files)), whole=named is None, invalid_regions=invalid_regions)
    result.partial = Project(regions={r.name: r for r in regions}, agents=tuple(agents))
    if not everything:
        result.project = result.partial
    result.problems = stated(everything, changed) if named is None else touching(everything, named)
    result.elsewhere = len(set(everything) - set(result.problems))
    return result


def stated(problems: Sequence[Problem], changed: set[str] | None) -> list[Problem]:
    """The whole repository's problems, each once where it is stated, and a problem between files
    also at its other ends in files the working tree changes (a quota at the agent whose max_workers
    was raised), or at all of them when it is mutual and no end is known to have changed."""
    shown: list[Problem] = []
    for problem in problems:
        shown.append(problem)
        touched = {problem.file, *(e.file for e in problem.ends)} & (changed or set())
        shown.extend(e for e in problem.ends if e.file in touched or (problem.mutual and not touched))
    return sorted(set(shown), key=problem_order)


def touching(problems: Sequence[Problem], files: set[str]) -> list[Problem]:
    """The problems of `files`, and those between files where one of `files` is an end: the
    problem where it is stated plus its end in the named file; and the problems of files a shown
    problem points at (the region an agent names that did not load)."""
    shown: list[Problem] = []
    for problem in problems:
        ends = [e for e in problem.ends if e.file in files]
        if problem.file in files or ends:
            shown.append(problem)
            shown.extend(ends)
    pointed = {f for p in shown for f in p.see} - files
    shown.extend(p for p in problems if p.file in pointed)
    return sorted(set(shown), key=problem_order)


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


# --- one region, by name: every command that takes a REGION argument --------------------------------


class UnknownRegion(ValueError):
    """A region name that names no loaded region, in one line: the regions there are and the
    closest name (as `validate` says it of a manifest's `regions:`), or the file whose problems
    kept the region from loading and how many of them are values still to fill in."""

    def __init__(self, name: str, known: Iterable[str], broken: str | None = None, why: str = "problems"):
        self.name, self.known = name, sorted(known)
        if broken:
            message = f"region {name!r} ({broken}) does not load: {why} (above); fix them and run this again"
        else:
            message = (f"no region {name!r} (regions: {', '.join(self.known) or 'none'})"
                       + crosscheck.did_you_mean(name, self.known))
        super().__init__(message)


@dataclass(frozen=True)
class LoadedRegion:
    """A region found by name, with the project it was found in."""

    project: Project
    region: Region
    #: the problems of the repository's other files, where the caller answers from what loaded
    problems: tuple[Problem, ...] = ()

    @property
    def agents(self) -> tuple[Agent, ...]:
        return self.project.agents_in(self.region.name)


def find_region(project: Project, name: str, problems: Sequence[Problem] = (),
                invalid_regions: Mapping[str, str] | None = None) -> Region:
    """Region `name` of `project`, or `UnknownRegion` (naming its file, and how many of its
    problems are values still to fill in, when `problems` show that it did not load)."""
    region = project.regions.get(name)
    if region is None:
        broken = (invalid_regions or {}).get(name) or next(
            (p.file for p in problems if Path(p.file).parent.name == "regions" and Path(p.file).stem == name), None)
        raise UnknownRegion(name, project.regions, broken, _why_not_loaded(broken, problems) if broken else "")
    return region


def _why_not_loaded(file: str, problems: Sequence[Problem]) -> str:
    own = [p for p in problems if p.file == file]
    marked = sum(map(placeholders.is_fill_in, own))
    if own and marked == len(own):
        return plural(marked, "value") + " still to fill in"
    if marked:
        return f"{plural(len(own), 'problem')}, {marked} of them values still to fill in"
    return plural(len(own), "problem")


def load_region(root: str | os.PathLike[str], name: str) -> LoadedRegion:
    """Load the repository under `root` and find region `name` in it: `ManifestError` (every
    problem) when the manifests are not valid, `UnknownRegion` when none has that name. (Commands
    that answer from what loaded while another file is broken call `load` and `find_region`.)"""
    project = load((), root).require_project()
    return LoadedRegion(project, find_region(project, name))
