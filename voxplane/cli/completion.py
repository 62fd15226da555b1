"""Shell completion for the CLI's arguments: region, tenant and agent names, phone numbers.

Click asks these while completing (`voxplane completion bash|zsh|fish` prints the script). They
read the manifests' names cheaply and never fail: a broken file simply offers nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import click
import yaml
from click.shell_completion import CompletionItem

from .common import find_root


def _root(ctx: click.Context) -> Path:
    given = ctx.params.get("root")
    if given:
        return Path(given)
    return find_root(Path.cwd())


def _documents(root: Path, folder: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(relative path, parsed mapping) of each manifest in `folder`, skipping what does not parse."""
    base = root / folder
    if not base.is_dir():
        return
    for path in sorted(base.iterdir()):
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        try:
            doc = yaml.safe_load(path.read_text(errors="replace"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(doc, dict):
            yield f"{folder}/{path.name}", doc


def region_names(root: Path) -> dict[str, str]:
    return {str(doc.get("name") or Path(rel).stem): str(doc.get("description") or "").strip()
            for rel, doc in _documents(root, "regions")}


def complete_regions(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(name, help=(about[:60] or None)) for name, about in sorted(region_names(_root(ctx)).items())
            if name.startswith(incomplete)]


def complete_tenants(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    found: dict[str, list[str]] = {}
    for _rel, doc in _documents(_root(ctx), "regions"):
        tenants = doc.get("tenants")
        if isinstance(tenants, dict):
            for tenant in tenants:
                found.setdefault(str(tenant), []).append(str(doc.get("name")))
    return [CompletionItem(t, help="in " + ", ".join(sorted(regions))) for t, regions in sorted(found.items())
            if t.startswith(incomplete)]


def agent_manifests(root: Path) -> list[tuple[str, str]]:
    """(path, `tenant/name`) of each agent manifest."""
    return [(rel, f"{doc.get('tenant')}/{doc.get('name')}") for rel, doc in _documents(root, "agents")]


def complete_manifests(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Manifest files, matched by path or by agent or region name (`supp` -> agents/support.yaml);
    anything else falls back to the shell's file completion."""
    root = _root(ctx)
    items: list[CompletionItem] = []
    for rel, owner in agent_manifests(root):
        name = owner.split("/", 1)[-1]
        if rel.startswith(incomplete) or name.startswith(incomplete) or owner.startswith(incomplete):
            items.append(CompletionItem(_relative(root, rel), help=f"agent {owner}"))
    for rel, doc in _documents(root, "regions"):
        name = str(doc.get("name"))
        if rel.startswith(incomplete) or name.startswith(incomplete):
            items.append(CompletionItem(_relative(root, rel), help=f"region {name}"))
    return items or [CompletionItem(incomplete, type="file")]


def _relative(root: Path, rel: str) -> str:
    """`rel` (from the root) as the user types it from the current folder."""
    try:
        return os.path.relpath(root / rel, Path.cwd())
    except ValueError:
        return str(root / rel)


def complete_numbers(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The phone numbers the agents of the chosen region (else of any region) declare."""
    region = ctx.params.get("region")
    items = []
    for _rel, doc in _documents(_root(ctx), "agents"):
        regions = doc.get("regions") or []
        telephony = doc.get("telephony") if isinstance(doc.get("telephony"), dict) else {}
        if region and isinstance(regions, list) and region not in regions:
            continue
        for number in (telephony or {}).get("numbers") or []:
            if str(number).startswith(incomplete):
                items.append(CompletionItem(str(number), help=f"agent {doc.get('tenant')}/{doc.get('name')}"))
    return items


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the completion script for SHELL: commands, options, and region, tenant and agent names.

    bash: eval "$(voxplane completion bash)" in ~/.bashrc; zsh: the same in ~/.zshrc;
    fish: voxplane completion fish > ~/.config/fish/completions/voxplane.fish
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(click.get_current_context().find_root().command, {}, "voxplane", "_VOXPLANE_COMPLETE").source())
