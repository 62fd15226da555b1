"""Pulumi entry point of every region stack (`pulumi up -s <region>`); the work is in voxplane.program."""

from voxplane.program import run

run()
