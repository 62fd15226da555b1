"""Issue #17 item 6: an indentation hint never makes a manifest worse, and a dedented known key is
told which mapping it belongs under.

The property: every `key:` line of every example manifest and stack file, dedented to each
shallower indentation and indented up to 4 spaces deeper. Where validation then says "indent it N
spaces" (or "like `key:` (N spaces)") for a line, doing exactly that gives back the document.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from voxplane.manifest import stackfile
from voxplane.manifest.loader import read_document
from voxplane.manifest.problems import Problem

from tests.support.repo import REPO

#: A hint that names the indentation to give a line.
NUMBERED = re.compile(r"indent it (?:like `[^`]*` \()?(\d+) spaces?")
EXAMPLES = sorted([*((p, "region") for p in (REPO / "regions").glob("*.yaml")),
                   *((p, "agent") for p in (REPO / "agents").glob("*.yaml")),
                   *((p, "stack") for p in REPO.glob("Pulumi.*.yaml"))])


def _problems(tmp: Path, name: str, kind: str, text: str) -> list[Problem]:
    folder = tmp / {"region": "regions", "agent": "agents", "stack": "."}[kind]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    if kind == "stack":
        return stackfile.read(path, name)[1]
    return read_document(path, kind, tmp)[1]  # type: ignore[arg-type]


def _mutations(text: str):
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip(" "))
        for new in [*range(0, indent), *range(indent + 1, indent + 5)]:
            mutated = lines[:]
            mutated[i] = " " * new + stripped
            yield mutated


@pytest.mark.parametrize("example, kind", EXAMPLES, ids=[p.name for p, _ in EXAMPLES])
def test_a_numbered_indentation_hint_gives_back_the_document(example: Path, kind: str, tmp_path: Path):
    original = yaml.safe_load(example.read_text())
    failing = hinted = 0
    for mutated in _mutations(example.read_text()):
        text = "\n".join(mutated) + "\n"
        problems = [p for p in _problems(tmp_path, example.name, kind, text) if p.message.startswith("invalid YAML")]
        if not problems:
            continue
        failing += 1
        (problem,) = problems
        number = NUMBERED.search(problem.message)
        if number is None:
            continue
        hinted += 1
        fixed = mutated[:]
        fixed[problem.line - 1] = " " * int(number.group(1)) + fixed[problem.line - 1].lstrip(" ")
        try:
            after = yaml.safe_load("\n".join(fixed))
        except yaml.YAMLError:
            after = "(not YAML)"
        assert after == original, f"{example.name}: {problem}\n" + "\n".join(
            f"{n:3} {line}" for n, line in enumerate(mutated, 1))
    assert failing and hinted * 2 >= failing, (failing, hinted)


SUPPORT = (REPO / "agents" / "support.yaml").read_text()


def _dedent(old: str, new: str) -> str:
    assert old + "\n" in SUPPORT
    return SUPPORT.replace(old + "\n", new + "\n", 1)


def test_a_key_dedented_out_of_its_mapping_is_told_where_it_belongs(tmp_path: Path):
    """The issue's example: `max_workers:` at column 0 between the fields of `scaling:`. The hint
    was "indent it like max_workers: (0 spaces)" for the line after it, which breaks that one too."""
    (problem,) = _problems(tmp_path, "support.yaml", "agent", _dedent("  max_workers: 40", "max_workers: 40"))
    assert (problem.line, problem.column) == (20, 1)
    assert problem.message == (
        "invalid YAML: line 20 (`max_workers:`) is indented 0 spaces, less than the block it belongs to, so it ends "
        "`scaling:` (line 18) and line 21 has nowhere to go; `max_workers` belongs under `scaling:`: indent it 2 spaces")


def test_the_first_key_of_a_mapping_dedented_beside_it(tmp_path: Path):
    """`username:` dedented to the indentation of `auth:` leaves `auth:` empty."""
    (problem,) = _problems(tmp_path, "support.yaml", "agent",
                           _dedent("    username: northwind-trunk", "  username: northwind-trunk"))
    assert problem.line == 27
    assert "`username` belongs under `auth:`: indent it 4 spaces, like line 28" in problem.message


def test_the_last_key_of_a_mapping_dedented_reads_as_a_field_of_the_outer_one(tmp_path: Path):
    """Valid YAML, so the schema says it: not a field here, a field of `scaling`."""
    (problem,) = _problems(tmp_path, "support.yaml", "agent",
                           _dedent("  sessions_per_worker: 10", "sessions_per_worker: 10"))
    assert str(problem) == ("agents/support.yaml:21:1: sessions_per_worker: unknown field here; `sessions_per_worker` "
                            "belongs under `scaling:`: indent it like the fields of `scaling`")


def test_a_stack_setting_dedented_out_of_config(tmp_path: Path):
    text = (REPO / "Pulumi.us-east.yaml").read_text().replace("  voxplane:kubeContext", "voxplane:kubeContext")
    (problem,) = _problems(tmp_path, "Pulumi.us-east.yaml", "stack", text)
    assert "`voxplane:kubeContext` belongs under `config:`: indent it 2 spaces" in problem.message
