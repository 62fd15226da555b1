"""Tools for working on a repository of manifests, beside the deploy flow.

- `scaffold`: `voxplane new agent|region`, files to start from;
- `scan`: the policy scanners (checkov, kube-score) on rendered regions (`python -m voxplane.devtools.scan`);
- `docs`: docs/manifest-reference.md from the schemas (`python -m voxplane.devtools.docs`).
"""
