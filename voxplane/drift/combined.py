"""`voxplane drift REGION`: one report over the targets it compares — Kubernetes (the cluster) and
LiveKit (SIP trunks and dispatch rules) — with one exit code.

A target either produced its report (voxplane/drift/kubernetes/report.py, voxplane/drift/livekit.py) or
failed with error lines (unreachable server, rejected credentials); the others still report.
Exit code: 1 when any target failed, else 2 when any found drift, else 0.

Combined JSON shape (with a single target, `--only`, that target's own shape is printed instead)::

    {
      "region": "local",
      "drift": true,
      "error": false,
      "targets": {
        "kubernetes": {…the Kubernetes report…},
        "livekit": {"error": ["error: …"]}        # a target that failed
      }
    }
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

#: Targets in the order they are reported.
TARGETS = ("kubernetes", "livekit")


@dataclass
class TargetResult:
    """One target's report (with its renderers), or the lines saying why it failed."""

    target: str
    report: Any = None
    renderers: dict[str, Callable[[Any], str]] = field(default_factory=dict)
    to_dict: Optional[Callable[[Any], dict[str, Any]]] = None
    error: list[str] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        return self.report is not None and bool(self.report.drift)


def exit_code(results: Sequence[TargetResult]) -> int:
    if any(r.error for r in results):
        return 1
    return 2 if any(r.drift for r in results) else 0


def to_dict(region: str, results: Sequence[TargetResult]) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    for r in results:
        if r.error:
            targets[r.target] = {"error": list(r.error)}
        elif r.to_dict is not None:
            targets[r.target] = r.to_dict(r.report)
    return {"region": region, "drift": any(r.drift for r in results), "error": any(r.error for r in results),
            "targets": targets}


def to_json(region: str, results: Sequence[TargetResult]) -> str:
    return json.dumps(to_dict(region, results), indent=2)


def _verdict(region: str, results: Sequence[TargetResult]) -> str:
    parts = []
    for r in results:
        parts.append(f"{r.target} {'error' if r.error else 'drift' if r.drift else 'no drift'}")
    code = exit_code(results)
    word = {0: "no drift", 1: "error", 2: "drift"}[code]
    return f"{word}: region {region}: {', '.join(parts)}"


def to_text(region: str, results: Sequence[TargetResult]) -> str:
    """Each target's own lines under a `== target ==` header, then one verdict line."""
    out: list[str] = []
    for r in results:
        out.append(f"== {r.target} ==")
        out.extend(r.error if r.error else [r.renderers["text"](r.report).rstrip("\n")])
        out.append("")
    out.append(_verdict(region, results))
    return "\n".join(out)


def to_markdown(region: str, results: Sequence[TargetResult]) -> str:
    """A heading with the verdict, then each target's section (its own tables)."""
    out = [f"## Drift — region `{region}`", "", f"**{_verdict(region, results)}**", ""]
    for r in results:
        if r.error:
            title = {"kubernetes": "Kubernetes", "livekit": "LiveKit"}.get(r.target, r.target)
            out += [f"### {title} drift — region `{region}`", "", "**Not compared**:", ""]
            out += [f"- {line.replace('|', chr(92) + '|')}" for line in r.error] + [""]
        else:
            out.append(r.renderers["markdown"](r.report).rstrip("\n"))
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


RENDERERS: dict[str, Callable[[str, Sequence[TargetResult]], str]] = {
    "text": to_text, "json": to_json, "markdown": to_markdown,
}
