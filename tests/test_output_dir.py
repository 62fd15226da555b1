"""`voxplane render --out DIR` never removes what voxplane did not write."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from voxplane.deploy import output_dir
from voxplane.deploy.output_dir import MARKER, OutputDirError

from .support.repo import REPO, copy_checkout


def _copy_of_repo(tmp_path: Path) -> Path:
    """A git clone of the working tree's files (manifests, stacks), with a .git of its own."""
    clone = copy_checkout(tmp_path / "clone")
    subprocess.run(["git", "init", "-q", str(clone)], check=True)
    return clone


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_out_dot_in_a_clone_is_refused_and_deletes_nothing(run_cli, tmp_path, monkeypatch):
    clone = _copy_of_repo(tmp_path)
    before = _tree(clone)
    monkeypatch.chdir(clone)
    result = run_cli("render", "local", "--out", ".")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: --out .: folder holds files voxplane did not write (")
    assert "Traceback" not in result.output
    assert _tree(clone) == before


def test_a_folder_with_unrelated_files_is_refused(run_cli, tmp_path, monkeypatch):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me\n")
    monkeypatch.chdir(REPO)
    result = run_cli("render", "local", "--out", str(notes))
    assert result.exit_code == 1
    assert "todo.txt" in result.stderr and "voxplane did not write" in result.stderr
    assert _tree(notes) == {"todo.txt": b"keep me\n"}


def test_a_file_as_out_is_refused(run_cli, tmp_path, monkeypatch):
    target = tmp_path / "file.yaml"
    target.write_text("mine\n")
    monkeypatch.chdir(REPO)
    result = run_cli("render", "local", "--out", str(target))
    assert result.exit_code == 1
    assert "is not a folder" in result.stderr
    assert target.read_text() == "mine\n"


def test_default_out_is_out_region_under_the_root(run_cli, tmp_path, monkeypatch):
    clone = _copy_of_repo(tmp_path)
    monkeypatch.chdir(clone)
    result = run_cli("render", "local")
    assert result.exit_code == 0, result.output
    assert (clone / "out/local/kubernetes/vox-system/deployment.livekit.yaml").is_file()
    assert (clone / "out/local" / MARKER).is_file()


def test_rerender_replaces_only_its_own_files(run_cli, tmp_path, monkeypatch):
    """A second render removes the files the first one wrote (also those of objects that are gone)
    and keeps what a person added to the folder."""
    out = tmp_path / "out"
    monkeypatch.chdir(REPO)
    assert run_cli("render", "local", "--out", str(out)).exit_code == 0
    stale = out / "kubernetes/vox-system/configmap.gone.yaml"
    stale.write_text("kind: ConfigMap\n")
    marker = json.loads((out / MARKER).read_text())
    marker["files"].append("kubernetes/vox-system/configmap.gone.yaml")
    (out / MARKER).write_text(json.dumps(marker))
    (out / "README.review.md").write_text("reviewer notes\n")
    (out / "kubernetes/vox-system/patch.local.yaml").write_text("mine\n")

    result = run_cli("render", "local", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert not stale.exists()
    assert (out / "README.review.md").read_text() == "reviewer notes\n"
    assert (out / "kubernetes/vox-system/patch.local.yaml").read_text() == "mine\n"
    assert (out / "kubernetes/vox-system/deployment.livekit.yaml").is_file()


def test_a_marker_cannot_point_outside_the_folder(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER).write_text(json.dumps({"kind": "voxplane-output", "files": ["../victim.txt"]}))
    with pytest.raises(OutputDirError, match="outside the folder"):
        output_dir.claim(out, "render")
    assert victim.read_text() == "precious\n"


def test_a_foreign_marker_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER).write_text('{"files": ["a"]}')
    (out / "a").write_text("x")
    with pytest.raises(OutputDirError, match="not written by voxplane"):
        output_dir.claim(out, "render")
    assert (out / "a").exists()


def test_out_dash_is_the_objects_as_one_yaml_stream_on_stdout(run_cli, tmp_path, monkeypatch):
    """Issue #17 item 8: `--out -` writes the Kubernetes objects as one YAML stream to stdout (what
    `| kubectl diff -f -` reads), each document as render's file holds it, and no folder named `-`;
    the summary goes to stderr."""
    import yaml

    monkeypatch.chdir(tmp_path)
    result = run_cli("render", "local", "--root", str(REPO), "--out", "-")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "-").exists() and list(tmp_path.iterdir()) == []
    documents = list(yaml.safe_load_all(result.stdout))
    assert all(d["apiVersion"] and d["kind"] and d["metadata"]["name"] for d in documents)
    written = run_cli("render", "local", "--root", str(REPO), "--out", str(tmp_path / "dir"))
    assert written.exit_code == 0, written.output
    files = sorted((tmp_path / "dir" / "kubernetes").rglob("*.yaml"))
    assert len(documents) == len(files) == int(written.stdout.splitlines()[-1].split()[0])
    by_file = sorted(f.read_text() for f in files)
    assert sorted("---\n" + text for text in by_file) == sorted(
        "---\n" + part for part in result.stdout.split("---\n") if part)
    assert "Kubernetes objects -> stdout" in result.stderr
    assert run_cli("render", "local", "--root", str(REPO), "--out", "-", "--format", "json").exit_code == 2


def test_quiet_render_prints_no_summary(run_cli, tmp_path):
    """Issue #17 item 9 (and the README): `-q` leaves errors and the answer; render's answer is the
    files it writes, so its summary table and line are dropped."""
    quiet = run_cli("-q", "render", "local", "--root", str(REPO), "--out", str(tmp_path / "out"))
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stdout == "" and quiet.stderr == ""
    assert (tmp_path / "out" / "kubernetes").is_dir()
