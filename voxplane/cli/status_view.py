"""The text of `voxplane status`: one frame per reading, as plain aligned text (pipes, files,
tests) or rich tables (a terminal), and the `--watch` loop that redraws it.

A frame is a list of blocks (a line, or a table) so both renderings come from one place.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

import click

from ..manifest.problems import plural
from ..status.kube import Workload
from ..status.report import RegionStatus
from . import term


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


Block = Union[str, Table]
#: Longest autoscaler reason in the text (the JSON has it whole).
NOTE_WIDTH = 200


def _nodes(w: Optional[Workload]) -> str:
    if w is None or not w.nodes:
        return "-"
    counts = Counter(w.nodes)
    return ",".join(f"{n}({c})" if c > 1 else n for n, c in sorted(counts.items()))


def _ready(w: Optional[Workload]) -> str:
    return f"{w.ready}/{w.desired}" if w is not None else "not deployed"


def _count(value: Optional[int]) -> str:
    return "?" if value is None else str(value)


def frame(st: RegionStatus) -> list[Block]:
    head = [f"region {st.region}", f"read {st.read_at}"]
    if st.kube_server:
        head.append(f"cluster {st.kube_server}" + (f" (context {st.kube_context})" if st.kube_context else ""))
    if st.livekit_url:
        head.append(f"livekit {st.livekit_url}")
    out: list[Block] = ["  ·  ".join(head), ""]

    agent_rows = []
    for a in st.agents:
        w = a.workload
        act = a.activity
        agent_rows.append([
            f"{a.tenant}/{a.agent}" + ("" if a.declared else " (not in manifests)"), a.namespace, _ready(w),
            w.autoscaler.bounds if w is not None and w.autoscaler.state != "absent" else "-",
            w.autoscaler.cell() if w is not None else "-",
            _count(act.rooms if act else None), _count(act.participants if act else None),
            _count(act.sip_calls if act else None), _nodes(w),
        ])
    out.append(Table(["agent pool", "namespace", "ready", "autoscaler", "target", "rooms", "participants",
                      "sip calls", "nodes"], agent_rows))
    out.append("")
    model_rows = []
    for m in st.models:
        w = m.workload
        model_rows.append([
            m.model + ("" if m.declared else " (not in manifests)"), m.kind or "?", m.namespace, _ready(w),
            w.autoscaler.bounds if w is not None and w.autoscaler.state != "absent" else "-",
            w.autoscaler.cell() if w is not None else "-", _nodes(w),
        ])
    out.append(Table(["model", "kind", "namespace", "ready", "autoscaler", "target", "nodes"], model_rows))
    out.append("")
    out.append(Table(["platform", "namespace", "component", "ready", "nodes"],
                     [[w.ref, w.namespace, w.component or "-", _ready(w), _nodes(w)] for w in st.platform]))
    out.append("")

    others = st.other_rooms
    if others:
        out.append(Table(["other room", "participants", "sip calls", "dispatched agents"],
                         [[r.name, str(r.participants), str(r.sip_calls),
                           ", ".join(n for n in r.dispatched or () if n) or "-"] for r in others]))
        out.append("")
    if st.livekit_objects:
        out.append(Table(["livekit object", "name", "owner", "detail"],
                         [[o.kind, o.name, o.owner, o.detail] for o in st.livekit_objects]))
        out.append("")

    totals = st.totals()
    if totals is not None:
        attributed = totals["rooms"] - len(others)
        out.append(f"rooms: {totals['rooms']} active, {plural(totals['participants'], 'participant')}, "
                   f"{plural(totals['sip_calls'], 'SIP call')} ({attributed} attributed to the region's agents, "
                   f"{len(others)} other)")
    out.extend(_autoscaler_notes(st))
    for line in st.errors:
        out.append(f"not read: {line}")
    out.append(st.drift.line(st.region))
    return out


def _autoscaler_notes(st: RegionStatus) -> list[str]:
    workloads = [a.workload for a in st.agents] + [m.workload for m in st.models] + list(st.platform)
    scalers = [w.autoscaler for w in workloads if w is not None and w.autoscaler.state not in ("absent", "running")]
    idle = [a for a in scalers if a.state == "not-running"]
    out = []
    if idle:
        names = ", ".join(a.name for a in idle)
        which = f"ScaledObject {names} has" if len(idle) == 1 else f"the {len(idle)} ScaledObjects ({names}) have"
        out.append(f"no autoscaler running: {which} no status and no keda-hpa-* HPA exists: no KEDA operator "
                   f"reconciles them here, so replicas stay as the workloads' specs say")
    for a in scalers:
        if a.state != "not-running":
            reason = a.reason if len(a.reason) <= NOTE_WIDTH else a.reason[:NOTE_WIDTH - 1] + "…"
            out.append(f"{a.name}: {reason}")
    return out


# --- rendering -------------------------------------------------------------------------------


def plain(blocks: Sequence[Block]) -> str:
    lines: list[str] = []
    for b in blocks:
        if isinstance(b, Table):
            lines.extend(term.plain_table(b.header, b.rows))
        else:
            lines.append(b)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def renderable(blocks: Sequence[Block], color: bool) -> Any:
    from rich.console import Group
    from rich.text import Text

    parts: list[Any] = []
    for b in blocks:
        if isinstance(b, Table):
            parts.append(term.rich_table(b.header, b.rows, color=color))
        elif b.startswith("drift: ") and color:
            drifted = "for details" in b
            parts.append(Text(b, style="yellow" if drifted else "green"))
        elif b.startswith("not read: ") and color:
            parts.append(Text(b, style="red"))
        else:
            parts.append(Text(b, style="bold" if b.startswith("region ") and color else ""))
    return Group(*parts)


def show(st: RegionStatus, fmt: str) -> None:
    """One reading on stdout: JSON, plain text (not a terminal) or rich (a terminal)."""
    if fmt == "json":
        click.echo(json.dumps(st.as_dict(), indent=2))
    elif not term.is_terminal():
        click.echo(plain(frame(st)))
    else:
        term.console().print(renderable(frame(st), term.color()))


def _exit_on_ctrl_c(terminal: bool) -> Any:
    """Ctrl-C ends the watch at once, wherever the read is: unwinding from the middle of a read
    (a Kubernetes or LiveKit client call, their pools and event loops) could wait on those for
    minutes, and there is nothing left to write. On a terminal the cursor the live view hid is
    shown again."""
    def leave(_signum: int, _frame: Any) -> None:
        try:
            if terminal:
                sys.stdout.write("\x1b[?25h\n")
            sys.stdout.flush()
        finally:
            os._exit(0)

    return signal.signal(signal.SIGINT, leave)


def watch(read: Callable[[], RegionStatus], interval: float, fmt: str,
          sleep: Callable[[float], None] = time.sleep) -> None:
    """Read and show a frame every `interval` seconds until Ctrl-C, which ends the process at once
    (exit 0); a KeyboardInterrupt from `read` or `sleep` (tests) reaches the caller. On a terminal
    the text redraws in place (rich Live); to a pipe or file each frame follows the last (text:
    each starts with its `region …` line; JSON: one object a line)."""
    from ..status.reader import pace

    previous = _exit_on_ctrl_c(fmt != "json" and term.is_terminal())
    try:
        if fmt == "json" or not term.is_terminal():
            while True:
                started = time.monotonic()
                st = read()
                if fmt == "json":
                    click.echo(json.dumps(st.as_dict(), separators=(",", ":")))
                else:
                    click.echo(plain(frame(st)) + "\n")
                sys.stdout.flush()
                sleep(pace(started, interval))
        from rich.live import Live

        color = term.color()
        with Live(console=term.console(), auto_refresh=False, transient=False) as live:
            while True:
                started = time.monotonic()
                live.update(renderable(frame(read()), color), refresh=True)
                sleep(pace(started, interval))
    finally:
        signal.signal(signal.SIGINT, previous)  # a caller in-process (tests) gets its own back
