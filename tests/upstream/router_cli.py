"""vllm-router's own checks of its arguments, stopped before it serves; run by the router venv's
interpreter (scripts/ensure-image-venv.sh voxplane/llm_router):

    python router_cli.py ARGS...

The router's launcher (`vllm-router`: vllm_router.launch_router) parses the arguments into its
RouterArgs and validates them; then the router is built from them (Router.from_args, the Rust
router's own configuration) without starting it. Prints the parsed configuration as JSON and exits
0, or fails as `vllm-router` would (argparse exits 2; a refused configuration raises).
"""

from __future__ import annotations

import dataclasses
import json
import sys

from vllm_router.launch_router import parse_router_args
from vllm_router.router import Router

if __name__ == "__main__":
    args = parse_router_args(sys.argv[1:])
    args._validate_router_args()
    parsed = json.dumps(dataclasses.asdict(args), default=str)  # before from_args, which rewrites args in place
    Router.from_args(args)
    print(parsed)
