"""Pulumi ComponentResources of a region stack (installed as voxplane.components)."""
