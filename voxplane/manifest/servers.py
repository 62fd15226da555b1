"""The third-party model servers a region runs, at the release voxplane's render was checked against.

Each fact here is one the render or the loader relies on; tests/upstream holds each against the
pinned release's own definition (vLLM's parser and settings, run for real) or, for servers that
cannot be installed here, against a recorded fact with its source file (tests/upstream/facts/).
Changing a version here without re-checking fails those tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .model import ModelKind, ServerName


@dataclass(frozen=True)
class Server:
    name: ServerName
    #: The project, as its README names it.
    project: str
    #: The release whose source the render was checked against (the example regions' image tag).
    version: str
    #: Model kinds it may serve.
    kinds: tuple[ModelKind, ...]
    #: The repository its project publishes images to.
    repository: str
    #: A port the image binds whatever is configured, or None when voxplane sets it.
    fixed_port: Optional[int] = None
    #: The model names it accepts as a request's `model`, when it has a fixed list.
    model_names: Optional[tuple[str, ...]] = None


SERVERS: dict[ServerName, Server] = {
    "vllm": Server(
        name="vllm", project="vLLM", version="v0.11.0", kinds=("llm",), repository="vllm/vllm-openai"),
    # docker/scripts/entrypoint.sh starts uvicorn with `--port 8880`; the settings' `port` is
    # not read. api/src/routers/openai_compatible.py answers 400 for a model not in
    # api/src/core/openai_mappings.json.
    "kokoro-fastapi": Server(
        name="kokoro-fastapi", project="Kokoro-FastAPI", version="v0.2.4", kinds=("tts",),
        repository="ghcr.io/remsky/kokoro-fastapi-gpu", fixed_port=8880, model_names=("kokoro", "tts-1", "tts-1-hd")),
    # Only Whisper models: /api/ps (what the readiness probe reads) lists the Whisper model
    # manager's loaded models alone in 0.8.3 ("FIX: support non-whisper models").
    "speaches": Server(
        name="speaches", project="speaches", version="0.8.3", kinds=("stt",), repository="ghcr.io/speaches-ai/speaches"),
}
