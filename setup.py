"""The package list, found rather than listed, so a new sub-package of voxplane/ ships without an
edit here; everything else is in pyproject.toml (which maps voxplane.schemas to the top-level
schemas/)."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["voxplane", "voxplane.*"]), "voxplane.schemas"])
