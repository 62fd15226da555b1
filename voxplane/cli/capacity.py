"""`voxplane capacity REGION`: GPU pools and agent workers sized for the region's peak
(voxplane/plan/capacity.py does the work).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .common import FORMATS, print_table, region_model, root_option
from .completion import complete_regions


@click.command()
@click.argument("region", shell_complete=complete_regions)
@root_option
@click.option("--duty-cycle", type=click.FloatRange(0, 1, min_open=True), default=0.25, show_default=True,
              help="Share of a call's time its LLM stream is active.")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True, help="Output format.")
@click.option("--fail-on", type=click.Choice(["never", "short"]), default="never", show_default=True,
              help="`short`: exit 2 when the plan falls short of the peak (for CI gates).")
def capacity(region: str, root: Path, duty_cycle: float, fmt: str, fail_on: str) -> None:
    """Size REGION's GPU pools and agent workers for its peak_concurrent_calls.

    Per llm with a `profile`: KV-cache budget per replica, concurrent streams and calls per
    replica, replicas and GPUs needed at peak, against max_replicas and the node group; agent
    pools at max_workers against the peak and each tenant's quota. An analytic plan: compare
    with vLLM's logged "GPU KV cache size" and a load test. With --fail-on short, a plan that
    falls short (a model, the agent pools or a tenant quota) exits 2 and says what is short.
    """
    from ..plan.capacity import plan, shortfalls

    loaded = region_model(root, region)
    report = plan(loaded.project, region, duty_cycle)
    short = shortfalls(report)
    if fmt == "json":
        click.echo(json.dumps({**report.as_dict(), "short": short}, indent=2))
    else:
        _print_capacity(report, duty_cycle)
    if fail_on == "short" and short:
        click.echo(f"short: {'; '.join(short)}", err=True)
        sys.exit(2)
    sys.exit(1 if loaded.problems else 0)


def _print_capacity(report: Any, duty_cycle: float) -> None:
    region = report.region
    click.echo(f"region {region}: peak {report.peak_calls} concurrent calls, LLM duty cycle {duty_cycle:g}")
    rows = []
    for m in report.models:
        def show(value: object) -> str:
            return "-" if value is None else str(value)
        rows.append([m.model, m.kind, f"{m.gpus_per_replica}x {m.gpu}", show(m.kv_budget_gib), show(m.kv_tokens),
                     show(m.streams_per_replica), show(m.calls_per_replica), show(m.replicas_needed),
                     str(m.max_replicas), m.status])
    print_table(["model", "kind", "gpus/replica", "kv GiB", "kv tokens", "streams", "calls", "replicas", "max", "status"], rows)
    agents_ok = "ok" if report.agent_sessions >= report.peak_calls else "short"
    click.echo(f"\nagent pools at max_workers: {report.agent_sessions} sessions for {report.peak_calls} peak calls ({agents_ok})")
    print_table(
        ["tenant", "cpu at max", "quota", "memory GiB at max", "quota", "pods at max", "quota", "status"],
        [[t.tenant, f"{t.cpu_at_max:g}", f"{t.cpu_quota:g}", f"{t.memory_gib_at_max:g}", f"{t.memory_gib_quota:g}",
          str(t.pods_at_max), str(t.pods_quota), t.status] for t in report.tenants],
    )
