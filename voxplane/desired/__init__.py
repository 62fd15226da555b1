"""Pure builders: the typed model in, Kubernetes objects (plain dicts) out. No I/O, no Pulumi.

Each module builds one concept (`sfu`, `sip`, `redis`, `media` for what the SFU and SIP bridge
share, `gateway`, `tenant`, `agent_pool`, `inference` and `speaches`, `gpu`, `network`,
`livekit_config` for the servers' own config files, `common` for labels and object shapes);
`region.build_region()` gathers them into the desired state of a region, which the components
register, `voxplane render` writes and drift compares.
"""
