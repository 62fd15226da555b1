"""Each mistake in tests/manifests/invalid/<case>/ is reported at its exact file, line and field.

A case folder holds the files that replace or join tests/manifests/base and `expected.txt`, the
complete output of `voxplane validate`: nothing missing, nothing extra.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from voxplane.manifest import sourcemap
from voxplane.manifest.loader import load

CASES = sorted((Path(__file__).parent / "manifests" / "invalid").iterdir())


def test_base_is_valid(manifest_tree):
    """The base every case starts from is itself valid, so each case tests only its own mistake."""
    assert load((), manifest_tree()).problems == []


def test_there_are_at_least_25_distinct_mistakes():
    """The issue asks for a table of at least 25 distinct bad inputs."""
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_reported_exactly(case: Path, manifest_tree, run_cli, monkeypatch):
    """The CLI prints exactly the expected lines, exits 1 and never a traceback."""
    root = manifest_tree(overlay=case)
    monkeypatch.chdir(root)
    result = run_cli("validate")
    expected = (case / "expected.txt").read_text().splitlines()
    assert result.stdout.splitlines() == expected
    assert result.exit_code == 1
    assert "Traceback" not in result.output


def test_huge_file_is_refused_before_parsing(manifest_tree):
    """A file over the size limit is one clear error, not a slow parse."""
    big = "name: echo\n" + "# padding\n" * (sourcemap.MAX_BYTES // 10 + 1)
    root = manifest_tree(files={"agents/echo.yaml": big})
    [problem] = load((), root).problems
    assert (problem.file, problem.line, problem.field) == ("agents/echo.yaml", 1, "")
    assert "manifests are limited to 1,000,000" in problem.message


def test_all_files_are_reported_in_one_run(manifest_tree):
    """Errors of every file come out together, not just the first file's."""
    root = manifest_tree(
        files={
            "agents/one.yaml": "name: one\ntenant: acme\nregions: [test]\ncode: {image: a/b:1}\nscaling: {max: 1}\n",
            "agents/two.yaml": "name: two\ntenant: acme\nregions: [nowhere]\ncode: {image: a/b:1}\n",
            "agents/three.yaml": "",
        }
    )
    files = {p.file for p in load((), root).problems}
    assert files == {"agents/one.yaml", "agents/two.yaml", "agents/three.yaml"}


def test_json_format_carries_the_same_facts(manifest_tree, run_cli, monkeypatch):
    """`--format json` gives file, line, column, field and message for machines."""
    import json

    case = Path(__file__).parent / "manifests" / "invalid" / "unknown-field-typo"
    monkeypatch.chdir(manifest_tree(overlay=case))
    result = run_cli("validate", "--format", "json")
    doc = json.loads(result.stdout)
    assert result.exit_code == 1
    assert doc["valid"] is False
    assert doc["errors"] == [
        {"file": "agents/echo.yaml", "line": 7, "column": 3, "field": "scaling.max_worker",
         "message": "unknown field; did you mean 'max_workers'?"}
    ]
