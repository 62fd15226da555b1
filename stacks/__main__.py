"""Pulumi entry point of every region stack (`pulumi up -s <region>`); the work is in voxplane.deploy.program."""

from pathlib import Path

from voxplane.deploy.program import run

# The manifests of the checkout this program runs from (not the one voxplane was installed from).
run(root=Path(__file__).resolve().parents[1])
