"""Pulumi entry point of every region stack (`pulumi up -s <region>`); the work is in voxplane.program."""

from pathlib import Path

from voxplane.program import run

# The manifests of the checkout this program runs from (not the one voxplane was installed from).
run(root=Path(__file__).resolve().parents[1])
