"""`voxplane livekit sync|route`: a region's SIP trunks and dispatch rules on its LiveKit server
(voxplane/livekit/ does the work).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import CommandError
from ..manifest.loader import load_region
from ..manifest.problems import ManifestError, plural
from . import term
from .common import FORMATS, fail, livekit_options, print_problems, root_option
from .completion import complete_numbers, complete_regions


@click.group()
def livekit() -> None:
    """LiveKit control plane: SIP inbound trunks and dispatch rules of a region.

    One trunk and one dispatch rule per agent with `telephony:`, owned through metadata; objects
    voxplane does not own are never changed. Secrets (digest password, PIN) declared as
    `{config: KEY}` are read from the environment variable VOXPLANE_SECRET_<KEY>.
    """


@livekit.command("sync")
@click.argument("region", shell_complete=complete_regions)
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("-y", "--yes", is_flag=True, help="Apply without asking (a terminal on stdin is asked first).")
@livekit_options
@root_option
def livekit_sync(region: str, dry_run: bool, yes: bool, url: str | None, api_key: str | None, api_secret: str | None,
                 root: Path) -> None:
    """Make REGION's LiveKit trunks and dispatch rules match the manifests.

    Prints the plan, then each change as it is made. When stdin is a terminal it asks before
    applying (--yes skips the question); from a pipe or CI it never asks. Secrets declared as
    `{config: KEY}` (digest password, PIN) are read from VOXPLANE_SECRET_<KEY>. Exit 0 on
    success, 1 on any error (manifest problems, missing secrets, unreachable server, rejected
    credentials, conflicts with objects voxplane does not own) or when the answer is no;
    nothing is written unless the whole plan can be.
    """
    from ..livekit import commands as lk

    try:
        loaded = load_region(root, region)
        reg, agents = loaded.region, loaded.agents
        with lk.connect(reg, url, api_key, api_secret) as client:
            plan = lk.plan_sync(reg, agents, client, strict=not dry_run)
            for line in lk.plan_lines(plan):
                click.echo(line)
            if not dry_run and plan.steps:
                if not yes and term.interactive() and not term.confirm(
                        f"apply {plural(len(plan.steps), 'change')} to region {region}'s LiveKit?"):
                    click.echo("cancelled: nothing was changed", err=True)
                    sys.exit(1)
                term.info(f"applying {len(plan.steps)} changes ...")
                applied = lk.apply_plan(plan, client, lambda step, oid: click.echo(lk.done_line(step, oid)))
                term.info(f"done: {len(applied)} changes applied")
    except ManifestError as exc:
        print_problems(exc.problems)
        sys.exit(1)
    except CommandError as exc:
        fail(exc.lines)


@livekit.command("route")
@click.argument("region", shell_complete=complete_regions)
@click.option("--to", "to", required=True, metavar="NUMBER", shell_complete=complete_numbers, help="Called number (the trunk number), e.g. +13125550142.")
@click.option("--from", "from_", default=None, metavar="NUMBER", help="Caller number [default: +15550100199].")
@click.option("--address", default=None, metavar="IP",
              help="Source IP of the INVITE, without port [default: the first address of the region's carrier allow-list].")
@click.option("--username", default=None, metavar="U", help="Digest user name the caller presents.")
@click.option("--password", default=None, metavar="P", help="Digest password the caller presents.")
@click.option("--pin", default=None, metavar="PIN", help="PIN the caller enters when the rule asks for one.")
@click.option("--redis", "redis", envvar="VOXPLANE_LIVEKIT_REDIS", metavar="HOST:PORT",
              help="Redis of the livekit-server deployment [env VOXPLANE_LIVEKIT_REDIS; default: the dev servers "
                   "of `make livekit-up`].")
@click.option("--redis-password", envvar="VOXPLANE_LIVEKIT_REDIS_PASSWORD", metavar="PASSWORD",
              help="Its password [env VOXPLANE_LIVEKIT_REDIS_PASSWORD].")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True, help="Output format.")
@root_option
def livekit_route(region: str, to: str, from_: str | None, address: str | None, username: str | None,
                  password: str | None, pin: str | None, redis: str | None, redis_password: str | None,
                  fmt: str, root: Path) -> None:
    """Ask REGION's running livekit-server how it routes a call to NUMBER, as livekit-sip asks.

    Sends IOInfo.GetSIPTrunkAuthentication and EvaluateSIPDispatchRules over the server's Redis
    bus (the questions livekit-sip asks for every INVITE) and prints the trunk, dispatch rule,
    room and agents. The server never sees digest credentials or decides what the bridge does
    with its answers: those parts (credentials check, PIN prompt, 404/503/drop) follow
    livekit-sip's documented handling and are marked as the bridge's. Nothing is written.
    Exit 0 accepted, 2 refused, 1 error.
    """
    from ..livekit import route as rt

    try:
        loaded = load_region(root, region)
        reg, agents = loaded.region, loaded.agents
        where = rt.check_address(address) if address is not None else rt.default_address(reg)
        call = rt.Call(to=to, from_=from_ or rt.DEFAULT_CALLER, address=where,
                       to_host=reg.sip.public_host if reg.sip else "localhost")
        addr, _ = rt.redis_address(redis)
        with rt.RouteProbe(addr, password=redis_password) as probe:
            decision = rt.decide(probe, call, username=username, password=password, pin=pin)
        rt.check_against_manifests(decision, rt.expected_route(reg, agents, to, where))
    except ManifestError as exc:
        print_problems(exc.problems)
        sys.exit(1)
    except CommandError as exc:
        fail(exc.lines)
    except rt.RouteError as exc:
        fail([f"error: {exc}"])
    if fmt == "json":
        click.echo(json.dumps(decision.as_dict(region), indent=2))
    else:
        for line in rt.text_lines(decision, region):
            click.echo(line)
    sys.exit(0 if decision.accepted else 2)
