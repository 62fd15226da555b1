"""Which region stacks a change touches, so CI previews exactly those (`voxplane affected`).

A region is affected when its manifest or stack file changes, when an agent that runs there (before
or after the change) changes, or when that agent's code folder changes, or the platform's agent
base image (`agents/_platform/`: the glue every agent image built from source starts FROM) while
an agent built from source runs there. A change to the tool itself (schemas, builders,
components, the program, dependencies) affects every region.
"""

from __future__ import annotations

import subprocess
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping, Sequence

import yaml

from ..deploy import agent_base
from ..manifest.model import Project

#: Paths whose change can alter what any region renders.
EVERYWHERE = ("schemas/", "components/", "voxplane/", "stacks/", "Pulumi.yaml", "pyproject.toml")


def affected_regions(
    changed: Iterable[str],
    project: Project,
    previous_regions: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """Regions touched by `changed` paths (repository-relative, forward slashes).

    `previous_regions` maps an agent manifest's path to the regions it listed before the change,
    so moving an agent out of a region (or deleting it) still previews that region.
    """
    every = sorted(project.regions)
    previous_regions = previous_regions or {}
    by_file = {a.source.file: a for a in project.agents if a.source is not None}
    by_build = {a.code.build.rstrip("/"): a for a in project.agents if a.code.build}
    hit: set[str] = set()
    for path in changed:
        if path.startswith(EVERYWHERE):
            return every
        parts = PurePosixPath(path).parts
        if len(parts) == 2 and parts[0] == "regions" and path.endswith((".yaml", ".yml")):
            hit.add(PurePosixPath(path).stem)
        elif len(parts) == 1 and path.startswith("Pulumi.") and path.endswith(".yaml"):
            hit.add(path[len("Pulumi."):-len(".yaml")])
        elif len(parts) == 2 and parts[0] == "agents":
            agent = by_file.get(path)
            hit.update(agent.regions if agent else ())
            hit.update(previous_regions.get(path, ()))
        elif agent_base.is_base_path(path):
            for built in project.agents:
                if built.code.build:
                    hit.update(built.regions)
        elif len(parts) > 2 and parts[0] == "agents":
            agent = by_build.get("/".join(parts[:2]))
            hit.update(agent.regions if agent else ())
    # A region whose manifest is gone has no stack to preview; tearing it down is a deliberate
    # `pulumi destroy`, not a preview.
    return sorted(hit & set(every))


# --- the base revision a change is compared with (`affected` and `plan` alike) --------------------

#: Where the main branch is looked for, in order, for the default base.
MAIN_BRANCHES = ("origin/main", "main", "origin/master", "master")


class GitError(Exception):
    """git could not answer (no repository, no such revision); one line for the user."""


def git(root: Path, *args: str, text: bool = True) -> Any:
    """`git ARGS` in `root`: its output, or GitError with git's own message in one line."""
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=text, check=True)
    except FileNotFoundError:
        raise GitError("git is not installed") from None
    except subprocess.CalledProcessError as exc:
        err = exc.stderr if isinstance(exc.stderr, str) else (exc.stderr or b"").decode(errors="replace")
        raise GitError(f"git {' '.join(args[:2])} failed: {' '.join(err.split()) or f'exit {exc.returncode}'}") from None
    return done.stdout


def _commit(root: Path, ref: str) -> str | None:
    try:
        return str(git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()) or None
    except GitError:
        return None


def _repository(root: Path) -> None:
    try:
        git(root, "rev-parse", "--git-dir")
    except GitError:
        raise GitError(f"{root} is not in a git repository: the change is compared with a git revision "
                       f"(--root names the repository)") from None


def resolve_base(root: Path, ref: str) -> str:
    """The commit `ref` names, or GitError saying it names none."""
    _repository(root)
    commit = _commit(root, ref)
    if commit is None:
        raise GitError(f"--base {ref}: no such revision in this repository (a branch, tag or commit: "
                       f"`git branch -a` lists the branches)")
    return commit


def default_base(root: Path) -> tuple[str, str]:
    """(commit, how it was chosen): the merge base of HEAD with the main branch (origin's default
    branch, else one of MAIN_BRANCHES); in a repository with none of them, HEAD itself (the
    uncommitted changes), said so."""
    _repository(root)
    candidates: list[str] = []
    try:
        candidates.append(git(root, "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD").strip())
    except GitError:
        pass
    for ref in [*candidates, *MAIN_BRANCHES]:
        if _commit(root, ref) is None:
            continue
        try:
            return git(root, "merge-base", "HEAD", ref).strip(), f"the merge base with {ref}"
        except GitError:
            continue  # HEAD has no commit, or no history in common with it
    head = _commit(root, "HEAD")
    if head is None:
        raise GitError("the repository has no commit to compare with yet; commit, or pass --base REF")
    return head, "HEAD; no main branch here, so only the uncommitted changes"


def changed_files(base: str, root: Path) -> list[str]:
    """Paths that differ between `base` and the working tree (committed or not)."""
    out = git(root, "diff", "--name-only", base, "--")
    untracked = git(root, "ls-files", "--others", "--exclude-standard")
    return sorted({line for line in (out + untracked).splitlines() if line})


def regions_at(base: str, root: Path, paths: Iterable[str]) -> dict[str, list[str]]:
    """The `regions:` each agent manifest listed at `base` (best effort: unreadable means none)."""
    found: dict[str, list[str]] = {}
    for path in paths:
        if not (path.startswith("agents/") and path.count("/") == 1):
            continue
        show = subprocess.run(["git", "show", f"{base}:{path}"], cwd=root, capture_output=True, text=True)
        if show.returncode != 0:
            continue  # the agent is new
        try:
            doc = yaml.safe_load(show.stdout)
        except yaml.YAMLError:
            continue
        regions = doc.get("regions") if isinstance(doc, dict) else None
        if isinstance(regions, list):
            found[path] = [str(r) for r in regions]
    return found


def explain_regions(
    changed: Iterable[str],
    project: Project,
    previous_regions: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, list[str]]:
    """Why each affected region is affected: region -> one reason per changed path that selects it.

    The same rule as `affected_regions` (its keys are exactly that list), stated per path."""
    every = sorted(project.regions)
    previous_regions = previous_regions or {}
    by_file = {a.source.file: a for a in project.agents if a.source is not None}
    by_build = {a.code.build.rstrip("/"): a for a in project.agents if a.code.build}
    reasons: dict[str, list[str]] = {}

    def add(regions: Iterable[str], reason: str) -> None:
        for region in regions:
            if region in project.regions and reason not in reasons.setdefault(region, []):
                reasons[region].append(reason)

    for path in sorted(changed):
        parts = PurePosixPath(path).parts
        if path.startswith(EVERYWHERE):
            add(every, f"{path} changed: the tool itself (affects every region)")
        elif len(parts) == 2 and parts[0] == "regions" and path.endswith((".yaml", ".yml")):
            add([PurePosixPath(path).stem], f"{path} changed: the region's manifest")
        elif len(parts) == 1 and path.startswith("Pulumi.") and path.endswith(".yaml"):
            add([path[len("Pulumi."):-len(".yaml")]], f"{path} changed: the region's stack file")
        elif len(parts) == 2 and parts[0] == "agents":
            agent = by_file.get(path)
            now = set(agent.regions) if agent else set()
            before = set(previous_regions.get(path, ()))
            name = f"agent {agent.tenant}/{agent.name}" if agent else f"the agent of {path}"
            if path not in previous_regions:  # a new agent (or its regions at the base are not known)
                add(sorted(now), f"{path} changed: {name} runs here")
            else:
                add(sorted(now & before), f"{path} changed: {name} runs here")
                add(sorted(now - before), f"{path} changed: {name} now runs here (added to its regions)")
            add(sorted(before - now), f"{path} changed: {name} ran here before the change"
                + (" (the manifest is gone)" if agent is None else " (removed from its regions)"))
        elif agent_base.is_base_path(path):
            for built in sorted((a for a in project.agents if a.code.build), key=lambda a: (a.tenant, a.name)):
                add(built.regions, f"{path} changed: the platform's agent base image ({agent_base.FOLDER}), which "
                                   f"agent {built.tenant}/{built.name} (code.build: {built.code.build}) builds FROM, "
                                   f"runs here")
        elif len(parts) > 2 and parts[0] == "agents":
            agent = by_build.get("/".join(parts[:2]))
            if agent is not None:
                add(agent.regions, f"{path} changed: the code of agent {agent.tenant}/{agent.name} "
                                   f"(code.build: {agent.code.build}), which runs here")
    return {region: reasons[region] for region in affected_regions(changed, project, previous_regions)}
