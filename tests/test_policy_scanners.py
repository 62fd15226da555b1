"""Kubernetes policy scanners on every example region (issue #8 item 11).

checkov's kubernetes framework and kube-score, at the versions scripts/ensure-scanners.sh pins
(checkov in a venv of its own, kube-score from the Go module proxy), run on the render of each
regions/*.yaml. Their findings must be exactly policy/scanner-exceptions.yaml: a finding that no
entry covers fails (one line per finding, ready to fix or to list), so does an entry's object
pattern that no finding matches any more (the builder was fixed: remove it), and so does a finding
that two entries cover. The scan tests install the scanners themselves when they are missing and
fail with the installer's reason when that cannot work; they never skip.

The tests without the integration mark check the exceptions file's shape and the comparison and
normalisation logic on made-up findings, without the scanners.
"""

from __future__ import annotations

import importlib.util
import json
import re
import stat
from pathlib import Path

import pytest

from .support.repo import REPO

from voxplane.devtools.scan import (
    EXCEPTIONS_FILE,
    ExceptionEntry,
    ExceptionsFileError,
    Finding,
    RegionRender,
    ScanError,
    ScanResult,
    compare,
    ensure_scanners,
    example_regions,
    load_exceptions,
    object_matches,
    parse_exceptions,
    report_lines,
    run_checkov,
    run_kube_score,
    scan,
)

REGIONS = example_regions(REPO)
ENSURE = REPO / "scripts" / "ensure-scanners.sh"
# A cold install (checkov's venv, kube-score's build) takes a few minutes on 2 cores; the module
# fixture's time counts against the first test that uses it.
INSTALL_TIMEOUT = 1500


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> ScanResult:
    try:
        scanners = ensure_scanners(REPO)
    except ScanError as exc:
        pytest.fail(f"cannot install the policy scanners: {exc}")
    try:
        return scan(REGIONS, REPO, tmp_path_factory.mktemp("scan"), scanners)
    except ScanError as exc:
        pytest.fail(str(exc))


def _exceptions() -> list[ExceptionEntry]:
    try:
        return load_exceptions(REPO / EXCEPTIONS_FILE, REGIONS)
    except ExceptionsFileError as exc:
        pytest.fail("\n".join(exc.problems))


# --- the real scan --------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(INSTALL_TIMEOUT)
def test_scanners_read_every_rendered_workload(scanned: ScanResult) -> None:
    """A scan that parsed nothing would find nothing: both scanners saw each region's objects."""
    assert {"local", "us-east", "eu-west"} <= set(REGIONS) == set(scanned.renders), REGIONS
    for region, rendered in scanned.renders.items():
        workloads = [o for o in rendered.objects.values() if o[0] in ("Deployment", "StatefulSet")]
        assert len(workloads) >= 5, (region, workloads)
        summary = scanned.checkov_summaries[region]
        assert summary.get("parsing_errors") == 0, (region, summary)
        assert summary.get("resource_count", 0) >= len(workloads), (region, summary)
        assert scanned.kube_score_counts[region] >= len(workloads), (region, scanned.kube_score_counts)
    assert {f.scanner for f in scanned.findings} == {"checkov", "kube-score"}


@pytest.mark.integration
@pytest.mark.timeout(INSTALL_TIMEOUT)
def test_no_finding_outside_the_exceptions(scanned: ScanResult) -> None:
    cmp = compare(scanned.findings, _exceptions())
    assert not cmp.new, "\n" + "\n".join(report_lines(compare(cmp.new, []), scanned.regions_of()))


@pytest.mark.integration
@pytest.mark.timeout(INSTALL_TIMEOUT)
def test_no_stale_exception(scanned: ScanResult) -> None:
    cmp = compare(scanned.findings, _exceptions())
    stale = [e.label(p) for e, p in cmp.stale]
    assert not stale, "\nno finding matches these any more; remove them from " \
                      f"{EXCEPTIONS_FILE.as_posix()}:\n" + "\n".join(stale)


@pytest.mark.integration
@pytest.mark.timeout(INSTALL_TIMEOUT)
def test_each_finding_listed_once(scanned: ScanResult) -> None:
    cmp = compare(scanned.findings, _exceptions())
    assert not cmp.twice, "\n".join(f"{f.line()} [{f.region}] <- {'; '.join(by)}" for f, by in cmp.twice)


@pytest.mark.integration
@pytest.mark.timeout(INSTALL_TIMEOUT)
def test_checkov_stays_out_of_the_project_venv(scanned: ScanResult) -> None:
    """checkov's dependency tree (hundreds of pins) lives in its own venv under the cache."""
    paths = ensure_scanners(REPO)
    assert importlib.util.find_spec("checkov") is None
    assert REPO not in paths.checkov.resolve().parents
    assert "checkov-" in paths.checkov.parent.parent.name


# --- the exceptions file --------------------------------------------------------------------------


def test_exceptions_file_is_well_formed() -> None:
    entries = _exceptions()
    assert entries
    for e in entries:
        if e.reason.startswith("pending #8."):
            item = int(e.reason.split(".", 1)[1].split(":", 1)[0])
            assert item in (8, 9, 10), f"exceptions[{e.index}]: issue #8 item {item} is not the builders' work"


def test_installer_pins_versions() -> None:
    text = ENSURE.read_text()
    assert re.search(r'^readonly CHECKOV_VERSION="\d+\.\d+\.\d+"$', text, re.M), "checkov not pinned"
    assert re.search(r'^readonly KUBE_SCORE_VERSION="v\d+\.\d+\.\d+"$', text, re.M), "kube-score not pinned"


def _entry(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"scanner": "checkov", "check": "CKV_K8S_19", "objects": ["Deployment/vox-system/livekit"],
                               "reason": "hostNetwork carries the media port ranges"}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([], "must be a mapping with one key, `exceptions`"),
        ({"exceptions": [], "extra": 1}, "must be a mapping with one key, `exceptions`"),
        ({"exceptions": ["x"]}, "exceptions[0]: must be a mapping"),
        ({"exceptions": [_entry(scanner="trivy")]}, "exceptions[0].scanner: 'trivy' is not one of checkov, kube-score"),
        ({"exceptions": [_entry(check="container-resources")]}, "exceptions[0].check: 'container-resources' is not a checkov check id"),
        ({"exceptions": [_entry(scanner="kube-score")]}, "exceptions[0].check: 'CKV_K8S_19' is not a kube-score check id"),
        ({"exceptions": [_entry(reason=None)]}, "exceptions[0]: missing 'reason'"),
        ({"exceptions": [_entry(objects=None)]}, "exceptions[0]: missing 'objects'"),
        ({"exceptions": [_entry(objects=[])]}, "exceptions[0].objects: must be a non-empty list"),
        ({"exceptions": [_entry(objects=["livekit"])]}, "must be Kind/namespace/name"),
        ({"exceptions": [_entry(objects=["Deployment/*/*"])]}, "matches every Deployment in every namespace"),
        ({"exceptions": [_entry(objects=["*/vox-system/livekit"])]}, "must name one Kind exactly"),
        ({"exceptions": [_entry(objects=["Deployment//livekit"])]}, "has an empty segment"),
        ({"exceptions": [_entry(objects=["Deployment/a/b", "Deployment/a/b"])]}, "listed more than once: Deployment/a/b"),
        ({"exceptions": [_entry(reason="because")]}, "too short to tell a reviewer why"),
        ({"exceptions": [_entry(reason="pending: the other helper does it")]}, "work under way reads `pending #<issue>.<item>:"),
        ({"exceptions": [_entry(reason="to fix the builder some day, really")]}, "a builder change still to make reads `to fix:"),
        ({"exceptions": [_entry(reason="line one is long enough\nline two")]}, "must be one line"),
        ({"exceptions": [_entry(regions=["mars"])]}, "no such example region: mars"),
        ({"exceptions": [_entry(regions=[])]}, "regions: must be a non-empty list"),
        ({"exceptions": [_entry(message="")]}, "message: must be a non-empty fnmatch pattern"),
        ({"exceptions": [_entry(reasons="typo")]}, "unknown key 'reasons'"),
        ({"exceptions": [_entry(), _entry(objects=["Deployment/vox-system/livekit-sip"])]},
         "exceptions[1]: same scanner, check, message, regions and reason as exceptions[0]"),
    ],
)
def test_exceptions_shape_problems(data: object, problem: str) -> None:
    with pytest.raises(ExceptionsFileError) as err:
        parse_exceptions(data, "policy/scanner-exceptions.yaml", ["local", "us-east"])
    assert any(problem in line for line in err.value.problems), err.value.problems
    assert all(line.startswith("policy/scanner-exceptions.yaml") for line in err.value.problems)


def test_exceptions_file_yaml_error_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text("exceptions:\n  - scanner: checkov\n   check: x\n")
    with pytest.raises(ExceptionsFileError) as err:
        load_exceptions(bad)
    assert err.value.problems[0].startswith(f"{bad}:3: not valid YAML"), err.value.problems


# --- comparing ------------------------------------------------------------------------------------


def _f(check: str, obj: str, message: str = "m", region: str = "local", scanner: str = "checkov") -> Finding:
    kind, *rest = obj.split("/")
    ns, name = (rest[0], rest[1]) if len(rest) == 2 else ("", rest[0])
    return Finding(scanner, check, kind, ns, name, message, region)


def test_object_patterns_match_segment_by_segment() -> None:
    assert object_matches("Deployment/vox-t-*/*", "Deployment/vox-t-northwind/support")
    assert not object_matches("Deployment/vox-t-*/*", "Deployment/vox-system/livekit")
    assert not object_matches("Deployment/vox-*", "Deployment/vox-system/livekit")  # * never spans a /
    assert not object_matches("StatefulSet/vox-system/livekit", "Deployment/vox-system/livekit")
    assert object_matches("Namespace/vox-system", "Namespace/vox-system")
    assert not object_matches("Namespace/vox-system", "Deployment/vox-system/x")


def test_compare_reports_new_stale_and_twice() -> None:
    exceptions = parse_exceptions({"exceptions": [
        _entry(objects=["Deployment/vox-system/livekit", "Deployment/vox-system/livekit-sip"]),
        _entry(check="CKV_K8S_11", objects=["Deployment/vox-t-*/*"], reason="no CPU limits on the call path"),
        _entry(check="CKV_K8S_11", objects=["Deployment/vox-t-a/agent"], reason="a second reason for one object"),
        _entry(scanner="kube-score", check="container-resources", objects=["Deployment/vox-system/livekit"],
               message="critical: (*) CPU limit is not set", reason="no CPU limits on the call path"),
        _entry(scanner="kube-score", check="deployment-replicas", objects=["Deployment/vox-system/livekit"],
               regions=["local"], reason="one media node in the local region"),
    ]})
    findings = [
        _f("CKV_K8S_19", "Deployment/vox-system/livekit", region="local"),
        _f("CKV_K8S_19", "Deployment/vox-system/livekit", region="us-east"),
        _f("CKV_K8S_19", "Deployment/vox-system/livekit-gateway"),  # new: not listed
        _f("CKV_K8S_11", "Deployment/vox-t-a/agent"),  # twice
        _f("CKV_K8S_11", "Deployment/vox-t-b/agent"),
        _f("container-resources", "Deployment/vox-system/livekit", "critical: (livekit-server) CPU limit is not set",
           scanner="kube-score"),
        _f("container-resources", "Deployment/vox-system/livekit", "critical: (livekit-server) Memory limit is not set",
           scanner="kube-score"),  # new: the message pattern does not cover it
        _f("deployment-replicas", "Deployment/vox-system/livekit", "warning: Deployment few replicas",
           region="us-east", scanner="kube-score"),  # new: the entry is for local only
    ]
    cmp = compare(findings, exceptions)
    assert not cmp.ok
    assert [f.line() for f in cmp.new] == [
        "checkov CKV_K8S_19 Deployment/vox-system/livekit-gateway: m",
        "kube-score container-resources Deployment/vox-system/livekit: critical: (livekit-server) Memory limit is not set",
        "kube-score deployment-replicas Deployment/vox-system/livekit: warning: Deployment few replicas",
    ]
    assert [(e.index, p) for e, p in cmp.stale] == [(0, "Deployment/vox-system/livekit-sip"),
                                                    (4, "Deployment/vox-system/livekit")]
    assert [(f.object, by) for f, by in cmp.twice] == [
        ("Deployment/vox-t-a/agent", ["exceptions[1] Deployment/vox-t-*/*", "exceptions[2] Deployment/vox-t-a/agent"])]
    text = "\n".join(report_lines(cmp, {}))
    assert "3 new finding(s)" in text and "2 stale exception(s)" in text and "1 finding(s) covered by more than one" in text
    assert "  checkov CKV_K8S_19 Deployment/vox-system/livekit-gateway: m [local]" in text


def test_compare_all_covered_is_ok() -> None:
    exceptions = parse_exceptions({"exceptions": [_entry()]})
    assert compare([_f("CKV_K8S_19", "Deployment/vox-system/livekit")], exceptions).ok
    assert not compare([], exceptions).ok  # the exception is stale


# --- normalising the scanners' output -------------------------------------------------------------


def _fake(tmp_path: Path, name: str, payload: object, rc: int) -> Path:
    data = tmp_path / f"{name}.json"
    data.write_text(json.dumps(payload))
    script = tmp_path / name
    script.write_text(f"#!/bin/sh\ncat '{data}'\nexit {rc}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def _rendered(tmp_path: Path) -> RegionRender:
    kdir = tmp_path / "kubernetes"
    (kdir / "vox-system").mkdir(parents=True)
    sfu = kdir / "vox-system" / "deployment.livekit.yaml"
    sfu.write_text("kind: Deployment\n")
    return RegionRender("local", kdir, {sfu.resolve(): ("Deployment", "vox-system", "livekit")})


def test_kube_score_findings_one_per_comment(tmp_path: Path) -> None:
    rendered = _rendered(tmp_path)
    check = {"name": "Container Resources", "id": "container-resources"}
    payload = [{
        "type_meta": {"kind": "Deployment", "apiVersion": "apps/v1"},
        "object_meta": {"name": "livekit", "namespace": "vox-system"},
        "checks": [
            {"check": check, "grade": 1, "skipped": False, "comments": [
                {"path": "livekit-server", "summary": "CPU limit is not set"},
                {"path": "livekit-server", "summary": "Memory limit is not set"}]},
            {"check": {"id": "deployment-replicas", "name": "Deployment Replicas"}, "grade": 5, "skipped": False,
             "comments": [{"path": "", "summary": "Deployment few replicas"}]},
            {"check": {"id": "pod-probes", "name": "Pod Probes"}, "grade": 10, "skipped": False, "comments": []},
            {"check": {"id": "container-seccomp-profile", "name": "x"}, "grade": 1, "skipped": True, "comments": []},
        ],
    }]
    findings, count = run_kube_score(_fake(tmp_path, "kube-score", payload, 1), rendered)
    assert count == 1
    assert [f.line() for f in findings] == [
        "kube-score container-resources Deployment/vox-system/livekit: critical: (livekit-server) CPU limit is not set",
        "kube-score container-resources Deployment/vox-system/livekit: critical: (livekit-server) Memory limit is not set",
        "kube-score deployment-replicas Deployment/vox-system/livekit: warning: Deployment few replicas",
    ]


def test_checkov_findings_by_rendered_file(tmp_path: Path) -> None:
    rendered = _rendered(tmp_path)
    (path,) = rendered.objects
    payload = {"check_type": "kubernetes", "summary": {"parsing_errors": 0, "resource_count": 1},
               "results": {"failed_checks": [{"check_id": "CKV_K8S_19", "check_name": "No host network",
                                              "resource": "Deployment.vox-system.livekit", "file_abs_path": str(path)}]}}
    findings, summary = run_checkov(_fake(tmp_path, "checkov", payload, 1), rendered)
    assert [f.line() for f in findings] == ["checkov CKV_K8S_19 Deployment/vox-system/livekit: No host network"]
    assert summary["resource_count"] == 1
    # No failure: checkov prints the summary alone.
    assert run_checkov(_fake(tmp_path, "checkov", {"passed": 3, "failed": 0, "parsing_errors": 0}, 0), rendered)[0] == []
    with pytest.raises(ScanError, match="exited 2"):
        run_checkov(_fake(tmp_path, "checkov", {}, 2), rendered)
    with pytest.raises(ScanError, match="could not parse 1 rendered file"):
        run_checkov(_fake(tmp_path, "checkov", {"summary": {"parsing_errors": 1}, "results": {}}, 0), rendered)
