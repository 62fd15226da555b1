"""The LLM router's image: a build context only (Dockerfile, requirements.txt), no code of ours.

The router is vllm-router (the vLLM project's router, github.com/vllm-project/router), pinned in
requirements.txt with hashes. voxplane/desired/llm_router.py renders its Deployment and arguments;
components/llm_router.py builds this folder into the image, as the gateway's is built.
"""

from __future__ import annotations

import os

#: The build context: this folder.
FOLDER = os.path.dirname(os.path.abspath(__file__))
#: The vllm-router release requirements.txt locks (tests/desired hold the two together).
VERSION = "0.1.17"
