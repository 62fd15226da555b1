"""Kubernetes drift: a region's rendered objects against the cluster, in terms of the manifests.

- `compare`: the comparison rules (declared paths only, lists by name, quantities, secrets by hash);
- `attribution`: the manifest file, line and field owning each path;
- `secrets`: declared Secret payloads as digests;
- `live`: list calls (a constant number per kind);
- `report`: `detect`, the report and its text/json/markdown renderers.
"""

from .report import KubeDriftReport, detect

__all__ = ["KubeDriftReport", "detect"]
