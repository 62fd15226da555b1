"""Pure builders: the typed model in, Kubernetes objects (plain dicts) out. No I/O, no Pulumi.

Each module builds one concept; `region.build_region()` gathers them into the desired state the
components register and `voxplane render` writes.
"""
