"""Kubernetes drift: a region's rendered objects against the cluster, in terms of the manifests.

- `compare`: the comparison rules (declared paths only, lists by name, quantities, secrets by hash);
- `commands`: `voxplane drift`'s Kubernetes side (the stack's context, the run);
- `secrets`: declared Secret payloads as digests;
- `live`: list calls (a constant number per kind);
- `report`: `detect`, the report and its text/json/markdown renderers.

The manifest file, line and field owning each path: voxplane/drift/attribution.py (plan uses it too).
"""
