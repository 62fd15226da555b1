"""`python -m voxplane.cli`: the `voxplane` command."""

from . import main

main()
