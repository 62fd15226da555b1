"""Deploy: the Pulumi program of a region stack, and the same program run offline.

- `program`: stack config -> validated manifests -> `RegionStack` (components/) -> outputs;
  `stacks/__main__.py` runs it under the engine;
- `render`: the program under the SDK's mock engine, its objects written as YAML (`voxplane render`);
- `output_dir`: the folder render may write into without destroying anything;
- `agent_base`: the platform's agent base image (agents/_platform) and who counts its changes.
"""
