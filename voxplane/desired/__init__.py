"""Pure builders: the typed model in, Kubernetes objects (plain dicts) out. No I/O, no Pulumi.

Each module builds one concept (`sfu`, `sip`, `redis`, `media` for what the SFU and SIP bridge
share, `gateway`, `tenant`, `agent_pool`, `inference` and `speaches`, `llm_router` for the router
in front of an LLM's replicas, `gpu`, `network`, `deletion_cost` for the controller that ranks agent
pods for scale-down, `livekit_config` for the servers' own config files, `common` for labels and
object shapes);
`region.build_region()` gathers them into the desired state of a region, which the components
register, `voxplane render` writes and drift compares.
"""
