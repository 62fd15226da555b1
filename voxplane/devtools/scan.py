"""Kubernetes policy scanners on rendered regions: checkov (kubernetes framework) and kube-score.

Each region is rendered offline (as `voxplane render` does) into a temporary folder, both scanners
run on its kubernetes/ objects with machine-readable output, and their findings are normalised to
one line each, `scanner check Kind/namespace/name: message` (cluster-scoped objects read
`Kind/name`). The findings are then compared with the deliberate exceptions in
policy/scanner-exceptions.yaml: a finding no exception covers is *new*; an exception object pattern
that no finding in any scanned region matches is *stale*; a finding that two entries cover is
listed *twice*. Any of the three fails (exit 1), so the list stays exactly what the render does.

The scanners are installed at pinned versions by scripts/ensure-scanners.sh (checkov in a venv of
its own, kube-score from the Go module proxy); this module calls it when asked for the binaries.

    python -m voxplane.devtools.scan [REGION ...] [--exceptions FILE] [--format text|json] [--all]

Exceptions file::

    exceptions:
      - scanner: checkov | kube-score
        check: CKV_K8S_19 | container-resources      # the scanner's own check id
        objects: [Deployment/vox-system/livekit]       # Kind/namespace/name (Kind/name when
                                                       # cluster-scoped); each segment an fnmatch
                                                       # pattern, as narrow as possible
        regions: [us-east]                             # optional: only these regions
        reason: one line a reviewer accepts            # "pending #8.<item>: ..." for work under
                                                       # way, "to fix: ..." for a builder change
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import yaml

SCANNERS = ("checkov", "kube-score")
EXCEPTIONS_FILE = Path("policy") / "scanner-exceptions.yaml"
ENSURE_SCRIPT = Path("scripts") / "ensure-scanners.sh"

#: kube-score judges apiVersions against this Kubernetes release: the one the local control plane
#: runs (scripts/ensure-toolchain.sh KUBERNETES_VERSION).
KUBE_SCORE_KUBERNETES_VERSION = "v1.34"
#: kube-score checks that are off by default and that voxplane's render passes, enabled so a
#: regression shows: seccomp profile on every pod; container port names and numbers valid.
KUBE_SCORE_OPTIONAL_TESTS = ("container-seccomp-profile", "container-ports-check")
#: kube-score grades: 1 critical, 5 warning, 7 almost ok, 10 ok. Anything below ok is a finding.
KUBE_SCORE_OK = 10

_ENTRY_KEYS = {"scanner", "check", "objects", "message", "regions", "reason"}
_CHECK_ID = {"checkov": re.compile(r"^CKV2?_K8S_[0-9]+$"), "kube-score": re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")}
_PENDING = re.compile(r"^pending #(?P<issue>[0-9]+)\.(?P<item>[0-9]+): \S")
_SEGMENT = re.compile(r"^[A-Za-z0-9*?.\[\]!_-]+$")


class ScanError(Exception):
    """A scanner could not be installed or run, or its output not read: one line for the user."""


class ExceptionsFileError(Exception):
    """The exceptions file has the wrong shape; .problems holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, order=True)
class Finding:
    scanner: str
    check: str
    kind: str
    namespace: str  # "" for cluster-scoped objects
    name: str
    message: str  # checkov: the check's title; kube-score: "level: (container) what", one per comment
    region: str = field(compare=False)

    @property
    def object(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"

    @property
    def key(self) -> tuple[str, str, str, str]:
        """The same finding on the same object in several regions is one key."""
        return (self.scanner, self.check, self.object, self.message)

    def line(self) -> str:
        return f"{self.scanner} {self.check} {self.object}: {self.message}"


@dataclass
class ExceptionEntry:
    index: int
    scanner: str
    check: str
    objects: list[str]
    reason: str
    regions: Optional[list[str]] = None
    message: Optional[str] = None

    def matches(self, finding: Finding, pattern: str) -> bool:
        if finding.scanner != self.scanner or finding.check != self.check:
            return False
        if self.regions is not None and finding.region not in self.regions:
            return False
        if self.message is not None and not fnmatch.fnmatchcase(finding.message, self.message):
            return False
        return object_matches(pattern, finding.object)

    def label(self, pattern: str) -> str:
        where = f" in {', '.join(self.regions)}" if self.regions else ""
        what = f" {self.message!r}" if self.message is not None else ""
        why = self.reason if len(self.reason) <= 60 else self.reason[:57] + "..."
        return f"{self.scanner} {self.check} {pattern}{what}{where} (exceptions[{self.index}]: {why})"


def object_matches(pattern: str, obj: str) -> bool:
    """Segment by segment (Kind, namespace, name), each an fnmatch pattern: `*` never spans a `/`,
    and a namespaced pattern never matches a cluster-scoped object or the other way round."""
    p_parts, o_parts = pattern.split("/"), obj.split("/")
    return len(p_parts) == len(o_parts) and all(fnmatch.fnmatchcase(o, p) for p, o in zip(p_parts, o_parts))


# ---------------------------------------------------------------------------------------------
# The exceptions file.

def load_exceptions(path: Path, known_regions: Optional[Iterable[str]] = None) -> list[ExceptionEntry]:
    """Read and check the file's shape; raises ExceptionsFileError with every problem found."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ExceptionsFileError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ExceptionsFileError([f"{path}{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})"]) from None
    return parse_exceptions(data, str(path), known_regions)


def parse_exceptions(data: Any, source: str = EXCEPTIONS_FILE.as_posix(),
                     known_regions: Optional[Iterable[str]] = None) -> list[ExceptionEntry]:
    if not isinstance(data, dict) or set(data) != {"exceptions"} or not isinstance(data["exceptions"], list):
        raise ExceptionsFileError([f"{source}: must be a mapping with one key, `exceptions`, holding a list"])
    regions_ok = set(known_regions) if known_regions is not None else None
    problems: list[str] = []
    entries: list[ExceptionEntry] = []
    seen: dict[tuple[str, str, str, tuple[str, ...], str], int] = {}
    for i, raw in enumerate(data["exceptions"]):
        at = f"{source}: exceptions[{i}]"
        entry = _parse_entry(i, raw, at, regions_ok, problems)
        if entry is None:
            continue
        # The same check twice with one reason is one list to merge; different reasons may stand apart.
        ident = (entry.scanner, entry.check, entry.reason, tuple(entry.regions or ()), entry.message or "")
        if ident in seen:
            problems.append(f"{at}: same scanner, check, message, regions and reason as exceptions[{seen[ident]}]:"
                            " merge their objects into one entry")
        seen.setdefault(ident, i)
        entries.append(entry)
    if problems:
        raise ExceptionsFileError(problems)
    return entries


def _parse_entry(i: int, raw: Any, at: str, regions_ok: Optional[set[str]], problems: list[str]) -> Optional[ExceptionEntry]:
    """One entry, or None with its problems appended."""
    if not isinstance(raw, dict):
        problems.append(f"{at}: must be a mapping (scanner, check, objects, reason)")
        return None
    before = len(problems)
    for key in sorted(set(raw) - _ENTRY_KEYS, key=str):
        problems.append(f"{at}: unknown key {key!r} (known: {', '.join(sorted(_ENTRY_KEYS))})")
    for key in ("scanner", "check", "objects", "reason"):
        if key not in raw:
            problems.append(f"{at}: missing {key!r}")
    scanner, check, objects = raw.get("scanner"), raw.get("check"), raw.get("objects")
    reason, regions, message = raw.get("reason"), raw.get("regions"), raw.get("message")
    if "scanner" in raw and scanner not in SCANNERS:
        problems.append(f"{at}.scanner: {scanner!r} is not one of {', '.join(SCANNERS)}")
    if "check" in raw and not (isinstance(check, str) and (scanner not in _CHECK_ID or _CHECK_ID[scanner].match(check))):
        problems.append(f"{at}.check: {check!r} is not a {scanner} check id")
    if "objects" in raw:
        if not isinstance(objects, list) or not objects:
            problems.append(f"{at}.objects: must be a non-empty list of Kind/namespace/name patterns")
        else:
            for j, pattern in enumerate(objects):
                bad = _object_pattern_problem(pattern)
                if bad:
                    problems.append(f"{at}.objects[{j}]: {pattern!r} {bad}")
            dupes = sorted({str(p) for p in objects if objects.count(p) > 1})
            if dupes:
                problems.append(f"{at}.objects: listed more than once: {', '.join(dupes)}")
    if "reason" in raw:
        bad = _reason_problem(reason)
        if bad:
            problems.append(f"{at}.reason: {bad}")
    if "message" in raw and (not isinstance(message, str) or not message.strip()):
        problems.append(f"{at}.message: must be a non-empty fnmatch pattern of the finding's message")
    if "regions" in raw:
        if not isinstance(regions, list) or not regions or not all(isinstance(r, str) for r in regions):
            problems.append(f"{at}.regions: must be a non-empty list of region names")
        elif regions_ok is not None and set(regions) - regions_ok:
            problems.append(f"{at}.regions: no such example region: {', '.join(sorted(set(regions) - regions_ok))}"
                            f" (known: {', '.join(sorted(regions_ok))})")
    if len(problems) > before:
        return None
    assert isinstance(scanner, str) and isinstance(check, str) and isinstance(objects, list) and isinstance(reason, str)
    return ExceptionEntry(i, scanner, check, [str(o) for o in objects], reason.strip(),
                          [str(r) for r in regions] if regions else None, message if isinstance(message, str) else None)


def _object_pattern_problem(pattern: Any) -> str:
    if not isinstance(pattern, str):
        return "must be a string Kind/namespace/name"
    parts = pattern.split("/")
    if len(parts) not in (2, 3):
        return "must be Kind/namespace/name (or Kind/name for a cluster-scoped object)"
    if not all(parts) or not all(_SEGMENT.match(p) for p in parts):
        return "has an empty segment or a character outside names and fnmatch patterns"
    if any(c in parts[0] for c in "*?[") or not parts[0][:1].isupper():
        return "must name one Kind exactly (Deployment, StatefulSet, ...), not a pattern"
    if all(p == "*" for p in parts[1:]):
        return f"matches every {parts[0]} in every namespace: name the namespace or the objects"
    return ""


def _reason_problem(reason: Any) -> str:
    if not isinstance(reason, str) or not reason.strip():
        return "must be a non-empty one-line string"
    if "\n" in reason.strip():
        return "must be one line"
    if len(reason.strip()) < 20:
        return f"{reason!r} is too short to tell a reviewer why"
    if reason.startswith("pending") and not _PENDING.match(reason):
        return f"{reason!r}: work under way reads `pending #<issue>.<item>: what changes`"
    if reason.lower().startswith("to fix") and not reason.startswith("to fix: "):
        return f"{reason!r}: a builder change still to make reads `to fix: what changes`"
    return ""


# ---------------------------------------------------------------------------------------------
# Comparing.

@dataclass
class Comparison:
    findings: list[Finding]
    new: list[Finding]
    stale: list[tuple[ExceptionEntry, str]]
    twice: list[tuple[Finding, list[str]]]
    covered: dict[tuple[int, str], list[Finding]]

    @property
    def ok(self) -> bool:
        return not (self.new or self.stale or self.twice)


def compare(findings: Sequence[Finding], exceptions: Sequence[ExceptionEntry]) -> Comparison:
    covered: dict[tuple[int, str], list[Finding]] = {(e.index, p): [] for e in exceptions for p in e.objects}
    new: list[Finding] = []
    twice: list[tuple[Finding, list[str]]] = []
    for f in sorted(set(findings)):
        hits = [(e, p) for e in exceptions for p in e.objects if e.matches(f, p)]
        for e, p in hits:
            covered[(e.index, p)].append(f)
        if not hits:
            new.append(f)
        elif len(hits) > 1:
            twice.append((f, [f"exceptions[{e.index}] {p}" for e, p in hits]))
    stale = [(e, p) for e in exceptions for p in e.objects if not covered[(e.index, p)]]
    return Comparison(sorted(set(findings)), new, stale, twice, covered)


def _dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per key across regions (the first region's)."""
    by_key: dict[tuple[str, str, str, str], list[Finding]] = {}
    for f in findings:
        by_key.setdefault(f.key, []).append(f)
    return [fs[0] for _, fs in sorted(by_key.items())]


def report_lines(cmp: Comparison, regions_of: dict[tuple[str, str, str, str], list[str]]) -> list[str]:
    def regions(f: Finding) -> str:
        return ",".join(regions_of.get(f.key, [f.region]))

    out: list[str] = []
    if cmp.new:
        out.append(f"{len(cmp.new)} new finding(s), not in {EXCEPTIONS_FILE.as_posix()} (fix the builder, or add"
                   " an exception with its reason):")
        out += [f"  {f.line()} [{regions(f)}]" for f in _dedupe(cmp.new)]
    if cmp.stale:
        out.append(f"{len(cmp.stale)} stale exception(s) that no finding matches any more (remove them):")
        out += [f"  {e.label(p)}" for e, p in cmp.stale]
    if cmp.twice:
        out.append(f"{len(cmp.twice)} finding(s) covered by more than one exception (list each once):")
        out += [f"  {f.line()} [{f.region}] <- {'; '.join(by)}" for f, by in cmp.twice]
    return out


# ---------------------------------------------------------------------------------------------
# Running the scanners.

@dataclass
class Scanners:
    checkov: Path
    kube_score: Path


def ensure_scanners(root: Path) -> Scanners:
    """Install (or find, cached) both scanners through scripts/ensure-scanners.sh."""
    script = root / ENSURE_SCRIPT
    if not script.is_file():
        raise ScanError(f"{script} not found (run from the voxplane repository, or pass --root)")
    proc = subprocess.run(["bash", str(script), "all", "--print-paths"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise ScanError(f"{ENSURE_SCRIPT} failed (exit {proc.returncode}):\n{tail}")
    paths = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    try:
        return Scanners(Path(paths["checkov"]), Path(paths["kube-score"]))
    except KeyError:
        raise ScanError(f"{ENSURE_SCRIPT} printed no paths: {proc.stdout!r}") from None


@dataclass
class RegionRender:
    region: str
    kubernetes_dir: Path
    objects: dict[Path, tuple[str, str, str]]  # file -> (kind, namespace, name)


def render_region(region: str, root: Path, out_dir: Path) -> RegionRender:
    """The region rendered offline, written one object per file as `voxplane render` writes it."""
    from ..manifest.problems import ManifestError
    from ..deploy.render import render, write

    try:
        result = render(region, root)
        files = write(result, out_dir)
    except ManifestError as exc:
        raise ScanError(f"region {region} does not validate: " + "; ".join(map(str, exc.problems))) from exc
    except Exception as exc:  # the render's own failure, told in one line (`voxplane render` shows more)
        raise ScanError(f"rendering {region} failed: {type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
                        f" (run `voxplane render {region}` for more)") from exc
    objects = {}
    for obj, path in zip(result.kubernetes, files):
        meta = obj.get("metadata", {})
        objects[path.resolve()] = (str(obj["kind"]), str(meta.get("namespace") or ""), str(meta["name"]))
    return RegionRender(region, (out_dir / "kubernetes").resolve(), objects)


def run_checkov(binary: Path, rendered: RegionRender) -> tuple[list[Finding], dict[str, Any]]:
    """checkov's kubernetes framework over the region's objects; (findings, checkov's summary).
    --skip-download: no call home for guidelines or severities (this runs offline)."""
    cmd = [str(binary), "-d", str(rendered.kubernetes_dir), "--framework", "kubernetes", "-o", "json",
           "--quiet", "--skip-download", "--compact"]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
                          env={**os.environ, "LOG_LEVEL": "WARNING"})
    if proc.returncode not in (0, 1):
        raise ScanError(f"checkov exited {proc.returncode} on {rendered.region}: {_tail(proc.stderr or proc.stdout)}")
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise ScanError(f"checkov printed no JSON on {rendered.region}: {_tail(proc.stdout + proc.stderr)}") from None
    reports = data if isinstance(data, list) else [data]
    findings: list[Finding] = []
    summary: dict[str, Any] = {}
    for rep in reports:
        if "check_type" in rep and rep["check_type"] != "kubernetes":
            continue
        summary = rep.get("summary", rep)
        for f in rep.get("results", {}).get("failed_checks", []):
            kind, ns, name = _checkov_object(f, rendered)
            findings.append(Finding("checkov", f["check_id"], kind, ns, name, f.get("check_name") or f["check_id"],
                                    rendered.region))
    if summary.get("parsing_errors"):
        raise ScanError(f"checkov could not parse {summary['parsing_errors']} rendered file(s) of {rendered.region}")
    return findings, summary


def _checkov_object(f: dict[str, Any], rendered: RegionRender) -> tuple[str, str, str]:
    """The object of a checkov finding, from the file it names (one object per file). Not parsed from
    checkov's resource id `Kind.namespace.name`: names may hold dots."""
    path = f.get("file_abs_path")
    if path and Path(path).resolve() in rendered.objects:
        return rendered.objects[Path(path).resolve()]
    raise ScanError(f"checkov finding {f.get('check_id')} on {f.get('resource')} names {path!r}, not a rendered file")


def run_kube_score(binary: Path, rendered: RegionRender) -> tuple[list[Finding], int]:
    """kube-score over the region's objects; (findings, number of objects it scored)."""
    files = sorted(str(p) for p in rendered.objects)
    cmd = [str(binary), "score", "-o", "json", "--color", "never",
           "--kubernetes-version", KUBE_SCORE_KUBERNETES_VERSION]
    for test in KUBE_SCORE_OPTIONAL_TESTS:
        cmd += ["--enable-optional-test", test]
    proc = subprocess.run(cmd + files, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    # Exit 1 when something is critical (and 123 from older releases); the JSON says what.
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise ScanError(f"kube-score exited {proc.returncode} on {rendered.region} without JSON: "
                        f"{_tail(proc.stderr or proc.stdout)}") from None
    if not isinstance(data, list):
        raise ScanError(f"kube-score printed {type(data).__name__}, not a list of objects, on {rendered.region}")
    findings: list[Finding] = []
    for obj in data:
        kind = obj["type_meta"]["kind"]
        ns = obj["object_meta"].get("namespace") or ""
        name = obj["object_meta"]["name"]
        for c in obj.get("checks") or []:
            if c.get("skipped") or c.get("grade", KUBE_SCORE_OK) >= KUBE_SCORE_OK:
                continue
            level = "critical" if c["grade"] <= 1 else "warning"
            comments = c.get("comments") or [{"path": "", "summary": c["check"].get("name") or c["check"]["id"]}]
            for text in sorted({(f"({x['path']}) " if x.get("path") else "") + (x.get("summary") or "") for x in comments}):
                findings.append(Finding("kube-score", c["check"]["id"], kind, ns, name, f"{level}: {text}",
                                        rendered.region))
    return findings, len(data)


def _tail(text: str, n: int = 6) -> str:
    return " | ".join(text.strip().splitlines()[-n:]) or "(no output)"


@dataclass
class ScanResult:
    findings: list[Finding]
    checkov_summaries: dict[str, dict[str, Any]]
    kube_score_counts: dict[str, int]
    renders: dict[str, RegionRender]

    def regions_of(self) -> dict[tuple[str, str, str, str], list[str]]:
        out: dict[tuple[str, str, str, str], list[str]] = {}
        for f in self.findings:
            if f.region not in out.setdefault(f.key, []):
                out[f.key].append(f.region)
        return out


def scan(regions: Sequence[str], root: Path, work: Path, scanners: Scanners) -> ScanResult:
    """Render each region under `work` and run both scanners on it (regions in parallel)."""
    renders = {r: render_region(r, root, work / r) for r in regions}  # the mock engine: one at a time

    def one(region: str) -> tuple[str, list[Finding], dict[str, Any], int]:
        ck, summary = run_checkov(scanners.checkov, renders[region])
        ks, count = run_kube_score(scanners.kube_score, renders[region])
        return region, ck + ks, summary, count

    findings: list[Finding] = []
    summaries: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(len(regions), os.cpu_count() or 1))) as pool:
        for region, fs, summary, count in pool.map(one, regions):
            findings += fs
            summaries[region] = summary
            counts[region] = count
    return ScanResult(findings, summaries, counts, renders)


def example_regions(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "regions").glob("*.yaml"))


# ---------------------------------------------------------------------------------------------
# Command line.

def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m voxplane.devtools.scan",
        description="Run checkov (kubernetes) and kube-score on rendered regions and compare their findings with "
                    "the deliberate exceptions. Exit 0 when they match exactly, 1 on a new finding, a stale or "
                    "double-listed exception, or an error.")
    parser.add_argument("regions", nargs="*", metavar="REGION", help="regions to scan (default: every regions/*.yaml)")
    parser.add_argument("--root", type=Path, default=None, help="repository root (default: nearest Pulumi.yaml up)")
    parser.add_argument("--exceptions", type=Path, default=None, help=f"exceptions file (default: ROOT/{EXCEPTIONS_FILE})")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--all", action="store_true", help="also print every finding and the exception covering it")
    parser.add_argument("--keep", type=Path, default=None, help="render into this folder and keep it (default: a temporary one)")
    args = parser.parse_args(argv)

    from ..manifest.loader import find_root

    root = (args.root or find_root(Path.cwd())).resolve()
    known = example_regions(root)
    regions = list(args.regions) or known
    unknown = [r for r in regions if r not in known]
    if unknown:
        from ..manifest.loader import UnknownRegion

        print(f"error: {UnknownRegion(unknown[0], known)}", file=sys.stderr)
        return 1
    exceptions_path = args.exceptions or root / EXCEPTIONS_FILE
    try:
        exceptions = load_exceptions(exceptions_path, known)
    except ExceptionsFileError as exc:
        for line in exc.problems:
            print(f"error: {line}", file=sys.stderr)
        return 1
    try:
        scanners = ensure_scanners(root)
        print(f"scanning {', '.join(regions)} with checkov and kube-score...", file=sys.stderr)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            result = scan(regions, root, args.keep.resolve(), scanners)
        else:
            with tempfile.TemporaryDirectory(prefix="voxplane-scan-") as tmp:
                result = scan(regions, root, Path(tmp), scanners)
    except ScanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    judged = [e for e in exceptions if e.regions is None or set(e.regions) & set(regions)]
    cmp = compare(result.findings, judged)
    if set(regions) != set(known):
        cmp.stale = []  # an exception may match only in a region not scanned now
    regions_of = result.regions_of()
    if args.format == "json":
        print(json.dumps({
            "regions": regions,
            "ok": cmp.ok,
            "findings": [{"scanner": f.scanner, "check": f.check, "object": f.object, "message": f.message,
                          "regions": regions_of[f.key]} for f in _dedupe(result.findings)],
            "new": [f.line() for f in _dedupe(cmp.new)],
            "stale": [e.label(p) for e, p in cmp.stale],
            "twice": [f.line() for f, _ in cmp.twice],
        }, indent=2))
    else:
        if args.all:
            for f in _dedupe(result.findings):
                by = [f"exceptions[{e.index}]" for e in judged for p in e.objects if e.matches(f, p)]
                print(f"{f.line()} [{','.join(regions_of[f.key])}] {'<- ' + ', '.join(by) if by else 'NEW'}")
        for line in report_lines(cmp, regions_of):
            print(line)
        n = len(_dedupe(result.findings))
        print(f"{'ok' if cmp.ok else 'FAILED'}: {n} finding(s) over {len(regions)} region(s), "
              f"{n - len(_dedupe(cmp.new))} covered by {len(judged)} exception entr{'y' if len(judged) == 1 else 'ies'}",
              file=sys.stderr)
    return 0 if cmp.ok else 1


if __name__ == "__main__":
    sys.exit(main())
