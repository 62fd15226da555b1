"""The CI workflows (.github/workflows) pass actionlint, with ShellCheck on every `run:` block,
and zizmor (offline, its strictest persona), and hold to the hardening README's "CI" section
describes: actions pinned by commit with the version beside it, `permissions: {}` at the top and
least privilege per job, a write permission only in a job that runs none of the pull request's
code, credentials only through a protected environment and only for pull requests from this
repository, no secret looked up by a computed name, no expression in a `run:` script,
`persist-credentials: false`, a concurrency group and a timeout.

Each check is also run on a copy of a workflow with one known-bad pattern put back, and must
flag it: that is what shows the check can fail. The shell scripts in scripts/ and .ci/run pass
ShellCheck. The linters are installed (pinned, cached) by scripts/ensure-ci-linters.sh; when it
cannot install them the tests fail with its reason.
"""

from __future__ import annotations

import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from .support.repo import REPO

pytestmark = pytest.mark.integration

WORKFLOWS = REPO / ".github" / "workflows"
WORKFLOW_FILES = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
SHELL_SCRIPTS = sorted((REPO / "scripts").glob("*.sh")) + [REPO / ".ci" / "run"]

# `uses: owner/repo[/path]@<40 hex> # v1.2.3`: a full commit, the release it is, nothing else.
PINNED_USES = re.compile(r"^\s*(?:-\s+)?uses:\s+[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+\s*$")
SAME_REPO = "github.event.pull_request.head.repo.full_name == github.repository"


@pytest.fixture(scope="module")
def linters() -> dict[str, Path]:
    """actionlint, shellcheck and zizmor at their pinned versions (installed when missing)."""
    proc = subprocess.run(
        ["bash", "scripts/ensure-ci-linters.sh", "--print-paths"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/ensure-ci-linters.sh failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    paths = {name: Path(path) for name, path in (line.split("\t", 1) for line in proc.stdout.splitlines())}
    assert sorted(paths) == ["actionlint", "shellcheck", "zizmor"], proc.stdout
    for name, path in paths.items():
        assert path.is_file(), f"{name}: {path} missing after scripts/ensure-ci-linters.sh"
    return paths


def actionlint(linters: dict[str, Path], *files: Path) -> list[dict[str, Any]]:
    """actionlint's findings (ShellCheck's among them, kind "shellcheck") for FILES."""
    proc = subprocess.run(
        [str(linters["actionlint"]), "-no-color", "-format", "{{json .}}",
         "-shellcheck", str(linters["shellcheck"]), "-pyflakes=", *map(str, files)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode in (0, 1), f"actionlint failed to run (exit {proc.returncode}):\n{proc.stderr}"
    findings: list[dict[str, Any]] = json.loads(proc.stdout or "[]")
    assert (proc.returncode == 1) == bool(findings), proc.stdout + proc.stderr
    return findings


def zizmor(linters: dict[str, Path], *paths: Path) -> list[dict[str, Any]]:
    """zizmor's findings for PATHS: offline audits only, the auditor persona (everything)."""
    proc = subprocess.run(
        [str(linters["zizmor"]), "--offline", "--no-progress", "--format", "json",
         "--persona", "auditor", *map(str, paths)],
        capture_output=True, text=True, timeout=120,
    )
    # 0: no findings; 10-14: findings (by their highest severity); anything else: zizmor failed.
    assert proc.returncode == 0 or 10 <= proc.returncode <= 14, \
        f"zizmor failed to run (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    findings: list[dict[str, Any]] = json.loads(proc.stdout or "[]")
    assert (proc.returncode != 0) == bool(findings), proc.stderr[-3000:]
    return findings


def zizmor_summary(findings: list[dict[str, Any]]) -> list[str]:
    out = []
    for f in findings:
        loc = f["locations"][0]["concrete"]["location"]["start_point"]
        out.append(f"{f['ident']} at line {loc['row'] + 1}: {f['desc']}")
    return out


def _uses_checkout(job: dict[str, Any]) -> bool:
    return any(str(step.get("uses", "")).startswith("actions/checkout@") for step in job.get("steps", []))


def policy_problems(path: Path) -> list[str]:
    """What in the workflow at PATH breaks the hardening rules (README, "CI"), one line each."""
    text = path.read_text()
    wf = yaml.safe_load(text)
    problems = []
    for n, line in enumerate(text.splitlines(), 1):
        if re.match(r"^\s*(?:-\s+)?uses:", line) and not PINNED_USES.match(line):
            problems.append(f"line {n}: action not pinned as `owner/repo@<commit> # vX.Y.Z`: {line.strip()}")
    if re.search(r"\b(secrets|vars)\s*\[", text):
        problems.append("secrets or vars looked up by a computed name (`secrets[...]`): the runner gets them all")
    triggers = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` as true
    for_pull_requests = isinstance(triggers, dict) and any(t.startswith("pull_request") for t in triggers)
    if wf.get("permissions") != {}:
        problems.append("top-level `permissions:` is not `{}`")
    if "concurrency" not in wf and not all("concurrency" in j for j in wf["jobs"].values()):
        problems.append("no concurrency group (workflow or every job)")
    for name, job in wf["jobs"].items():
        perms = job.get("permissions")
        if not isinstance(perms, dict):
            problems.append(f"job {name}: no `permissions:` map of its own")
            perms = {}
        writes = sorted(k for k, v in perms.items() if v == "write")
        if writes and (_uses_checkout(job) or "make " in json.dumps(job)):
            problems.append(f"job {name}: {', '.join(writes)}: write in a job that checks out and runs the repository's code")
        if writes and writes != ["pull-requests"]:
            problems.append(f"job {name}: write permissions beyond pull-requests: {writes}")
        if "timeout-minutes" not in job:
            problems.append(f"job {name}: no timeout-minutes")
        dumped = json.dumps(job)
        if "secrets." in dumped:
            if "environment" not in job:
                problems.append(f"job {name}: uses secrets outside a (protected) environment")
            if for_pull_requests and SAME_REPO not in str(job.get("if", "")):
                problems.append(f"job {name}: uses secrets on pull requests without `if: ... {SAME_REPO}`")
        for i, step in enumerate(job.get("steps", []), 1):
            if "${{" in str(step.get("run", "")):
                problems.append(f"job {name} step {i}: an expression in `run:` (pass it through `env:` and quote it)")
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                if (step.get("with") or {}).get("persist-credentials") is not False:
                    problems.append(f"job {name} step {i}: checkout without `persist-credentials: false`")
    return problems


# --- the workflows as committed pass every check ---------------------------------------------

def test_the_workflows_are_found() -> None:
    assert {"drift.yml", "preview.yml"} <= {p.name for p in WORKFLOW_FILES}


def test_actionlint_and_shellcheck_pass(linters: dict[str, Path]) -> None:
    findings = actionlint(linters, *WORKFLOW_FILES)
    assert findings == [], "\n".join(f"{f['filepath']}:{f['line']}: {f['message']}" for f in findings)


def test_zizmor_passes(linters: dict[str, Path]) -> None:
    findings = zizmor(linters, WORKFLOWS)
    assert findings == [], "\n".join(zizmor_summary(findings))


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_workflow_policy(path: Path) -> None:
    assert policy_problems(path) == []


def test_only_the_comment_job_may_write() -> None:
    writers = {
        (p.name, name)
        for p in WORKFLOW_FILES
        for name, job in yaml.safe_load(p.read_text())["jobs"].items()
        if "write" in (job.get("permissions") or {}).values()
    }
    assert writers == {("preview.yml", "comment")}


def test_shell_scripts_pass_shellcheck(linters: dict[str, Path]) -> None:
    # One process per script, side by side: -x follows `source scripts/lib.sh` (~1-4 s a script).
    def check(script: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(linters["shellcheck"]), "-x", str(script.relative_to(REPO))],
                              cwd=REPO, capture_output=True, text=True, timeout=120)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(check, SHELL_SCRIPTS))
    failed = [r.stdout + r.stderr for r in results if r.returncode != 0]
    assert not failed, "\n".join(failed)


# --- a copy with one known-bad pattern is flagged ---------------------------------------------

def _bad_copy(tmp_path: Path, name: str, edit: Callable[[str], str]) -> Path:
    original = (WORKFLOWS / name).read_text()
    changed = edit(original)
    assert changed != original, "the edit no longer applies: the workflow changed, update this test"
    dest = tmp_path / ".github" / "workflows" / name
    dest.parent.mkdir(parents=True)
    dest.write_text(changed)
    return dest


def _unpin(text: str) -> str:
    return re.sub(r"actions/checkout@[0-9a-f]{40} # (v\d+)\S*", r"actions/checkout@\1", text, count=1)


def _dynamic_secret(text: str) -> str:
    return text.replace("${{ secrets.KUBECONFIG }}", "${{ secrets[format('KUBECONFIG_{0}', matrix.region)] }}", 1)


def _base_ref_in_run(text: str) -> str:
    return text.replace('"origin/$BASE_REF"', '"origin/${{ github.base_ref }}"', 1)


def _no_permissions(text: str) -> str:
    text = text.replace("permissions: {}\n", "", 1)
    return re.sub(r"\n    permissions:\n(      \S.*\n)+", "\n", text)


def _persisted_credentials(text: str) -> str:
    return text.replace("          persist-credentials: false\n", "", 1)


BAD = {
    # name: (workflow, edit, zizmor audit that must flag it, policy problem that must be listed)
    "unpinned-action": ("preview.yml", _unpin, "unpinned-uses", "action not pinned"),
    "secrets-format": ("drift.yml", _dynamic_secret, "overprovisioned-secrets", "computed name"),
    "base-ref-in-run": ("preview.yml", _base_ref_in_run, "template-injection", "an expression in `run:`"),
    "no-permissions": ("preview.yml", _no_permissions, "excessive-permissions", "top-level `permissions:`"),
    "persisted-credentials": ("preview.yml", _persisted_credentials, "artipacked", "persist-credentials"),
    "secrets-outside-environment": (
        "drift.yml", lambda t: t.replace("    environment: drift-${{ matrix.region }}\n", "", 1),
        "secrets-outside-env", "outside a (protected) environment"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_zizmor_and_policy_flag_a_bad_copy(case: str, tmp_path: Path, linters: dict[str, Path]) -> None:
    name, edit, audit, problem = BAD[case]
    bad = _bad_copy(tmp_path, name, edit)
    idents = {f["ident"] for f in zizmor(linters, bad)}
    assert audit in idents, f"zizmor did not flag {case}; it found {sorted(idents)}"
    assert any(problem in p for p in policy_problems(bad)), policy_problems(bad)


def test_policy_flags_write_in_a_job_that_runs_the_code(tmp_path: Path) -> None:
    bad = _bad_copy(tmp_path, "preview.yml", lambda t: t.replace(
        "      contents: read   # checkout; no write anywhere\n",
        "      contents: read\n      pull-requests: write\n", 1))
    assert any("job validate: pull-requests: write in a job that checks out" in p for p in policy_problems(bad))


def test_policy_flags_secrets_on_fork_pull_requests(tmp_path: Path) -> None:
    bad = _bad_copy(tmp_path, "preview.yml", lambda t: t.replace(f" && {SAME_REPO}\n", "\n", 1))
    assert any("job preview: uses secrets on pull requests without" in p for p in policy_problems(bad))


def test_actionlint_runs_shellcheck_on_run_blocks(tmp_path: Path, linters: dict[str, Path]) -> None:
    bad = _bad_copy(tmp_path, "drift.yml", lambda t: t.replace('voxplane drift "$REGION"', "voxplane drift $REGION", 1))
    findings = actionlint(linters, bad)
    assert [(f["kind"], "SC2086" in f["message"]) for f in findings] == [("shellcheck", True)], findings


def test_actionlint_flags_a_broken_workflow(tmp_path: Path, linters: dict[str, Path]) -> None:
    bad = _bad_copy(tmp_path, "drift.yml", lambda t: t.replace("${{ matrix.region }}", "${{ matrix.regoin }}", 1))
    assert any(f["kind"] == "expression" for f in actionlint(linters, bad))


def test_shellcheck_flags_a_bad_script(tmp_path: Path, linters: dict[str, Path]) -> None:
    script = tmp_path / "bad.sh"
    script.write_text('#!/usr/bin/env bash\ndir="$1"\nrm -rf $dir/\n')
    proc = subprocess.run([str(linters["shellcheck"]), str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "SC2086" in proc.stdout, proc.stdout + proc.stderr
