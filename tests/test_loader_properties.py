"""Property tests: whatever a manifest turns into, the loader answers with problems, never a crash."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voxplane.manifest.loader import load

from .support.repo import REPO, copy_manifests


EXAMPLES = {
    "regions/local.yaml": (REPO / "regions/local.yaml").read_bytes(),
    "agents/support.yaml": (REPO / "agents/support.yaml").read_bytes(),
}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**12) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def _repo(tmp: Path, rel: str, content: bytes) -> Path:
    root = tmp / "repo"
    if root.exists():
        shutil.rmtree(root)
    copy_manifests(root)
    (root / rel).write_bytes(content)
    return root


def _check(root: Path) -> None:
    result = load((), root)
    for problem in result.problems:
        assert problem.line >= 1 and problem.column >= 1
        assert problem.file and problem.message  # field is empty for the file as a whole
        assert "\n" not in str(problem)


@SETTINGS
@given(
    target=st.sampled_from(sorted(EXAMPLES)),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 3), st.binary(max_size=4)), min_size=1, max_size=6),
)
def test_byte_mutations_never_crash(tmp_path, target, edits):
    """Random insertions, deletions and replacements of bytes yield located problems or a valid project."""
    data = bytearray(EXAMPLES[target])
    for where, length, new in edits:
        at = int(where * len(data))
        data[at : at + length] = new
    _check(_repo(tmp_path, target, bytes(data)))


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, prefix + (i,))
    return out


@SETTINGS
@given(target=st.sampled_from(sorted(EXAMPLES)), data=st.data())
def test_structural_mutations_never_crash(tmp_path, target, data):
    """Replacing any node with any JSON value, or deleting it, yields located problems, not a crash."""
    doc = yaml.safe_load(EXAMPLES[target])
    paths = [p for p in _paths(doc) if p]
    path = data.draw(st.sampled_from(paths))
    parent: Any = doc
    for part in path[:-1]:
        parent = parent[part]
    if data.draw(st.booleans()):
        parent[path[-1]] = data.draw(json_values)
    elif isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent.pop(path[-1])
    _check(_repo(tmp_path, target, yaml.safe_dump(doc).encode()))
