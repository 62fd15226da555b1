"""The error every stage raises for a failure the user can fix outside the manifests (an unreachable
server, rejected credentials, a missing kubeconfig context, secrets not set): `CommandError`,
lines the CLI prints as they are before it exits 1. Problems in the manifests themselves are
`manifest.problems.ManifestError`; a region name that names none is `manifest.loader.UnknownRegion`.
"""

from __future__ import annotations

from typing import Sequence


class CommandError(Exception):
    """A problem to print as-is (each line on its own), then exit 1. Nothing was changed unless
    the message says so."""

    def __init__(self, lines: Sequence[str]):
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))
