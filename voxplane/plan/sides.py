"""The two sides of a plan: BASE exported with `git archive` into a temporary folder, the render
inputs that differ between it and the working tree, and each side rendered (the base by its own
code, in a child process, when the tool itself changed).
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
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

from ..manifest.model import Project
from .affected import GitError, git
from .result import PlanError

#: Top-level entries of a checkout that a render reads (manifests, stack files, the tool itself).
#: (components: where bases from before voxplane/components/ kept the components.)
RENDER_INPUTS = ("regions", "agents", "schemas", "voxplane", "components", "stacks", "Pulumi.yaml", "pyproject.toml")


_SKIP_DIRS = {"__pycache__", ".venv", "node_modules", ".git", ".mypy_cache", ".pytest_cache"}


@contextmanager
def exported(root: Path, commit: str) -> Iterator[Path]:
    """The render inputs of `commit` (RENDER_INPUTS) in a temporary folder, removed afterwards.

    The package folders kept at the top (schemas/; components/ too, before it moved into the package)
    are linked into voxplane/ as the package maps them (pyproject's package-dir), so BASE's own code
    can run from the export."""
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


Rendered = dict[str, Optional[dict[str, list[dict[str, Any]]]]]


_BASE_RENDER = r"""
import json, sys
from pathlib import Path
root, out = Path(sys.argv[1]), Path(sys.argv[2])
sys.path.insert(0, str(root))
import voxplane
if not Path(voxplane.__file__).resolve().is_relative_to(root.resolve()):
    sys.exit(f"imported voxplane from {voxplane.__file__}, not the base")
try:  # bases from before the manifest/deploy layout kept these at the package's top
    from voxplane.deploy.render import render
except ImportError:
    from voxplane.render import render
try:  # a name no region has; bases from before UnknownRegion raised a plain ValueError
    from voxplane.manifest.loader import UnknownRegion as NoRegion
except ImportError:
    try:
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
    from ..deploy.render import render

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
    from ..deploy.render import canonical

    return {name: None if objects is None else {target: [canonical(o) for o in items] for target, items in objects.items()}
            for name, objects in loaded.items()}
