"""speaches (0.8.3) serves a model only once it is installed and loaded through its own API.

Its settings (`src/speaches/config.py`) name no model to load at start, so a fresh pod answers
transcriptions with 404 "not installed locally" (500 on an empty cache) while `/health` says 200.
The pod therefore installs and loads the model itself, before it can turn Ready:

- a `postStart` hook, run by the kubelet beside the server's start: wait for `/health`; install
  the model unless `GET /v1/models/{id}` finds it in the cache (`POST /v1/models/{id}` downloads
  it from the Hugging Face Hub into HF_HOME, the replica's own cache volume: one download per
  replica and volume, none on a restart); load it into memory with `POST /api/ps/{id}` (201, or
  409 when it is loaded already). If loading fails, the cached copy is incomplete: install again
  (speaches fetches only the missing files) and load. A failed hook restarts the container.
- readiness: the model is in `GET /api/ps` (the models loaded in memory), not just "process up";
- `WHISPER__TTL=-1`: speaches unloads a model 300 s after its last use by default; a replica
  that is Ready keeps it loaded, so the first call after a quiet spell does not wait for a load.

Routes from `src/speaches/routers/models.py` and `misc.py`; the image has `curl` and `sh`.
"""

from __future__ import annotations

import shlex
from typing import Any

#: WhisperConfig.ttl through pydantic-settings' nested delimiter `__`: -1 never unloads.
TTL_ENV = ("WHISPER__TTL", "-1")
#: Where the server's address comes from: the settings' alias, which uvicorn's CLI also reads.
PORT_ENV = "UVICORN_PORT"
POLL_SECONDS = 2


def install_hook(model_id: str, port: int, budget_seconds: int) -> dict[str, Any]:
    """The postStart exec hook: wait for the server, install the model, load it; at most
    `budget_seconds` (the model's startup budget) for each download and load."""
    script = "\n".join([
        "set -u",
        f"base=http://127.0.0.1:{port} model={shlex.quote(model_id)} budget={budget_seconds}",
        "i=0",
        "until curl -fsS -o /dev/null --max-time 5 \"$base/health\"; do",
        f"  i=$((i + {POLL_SECONDS})); [ \"$i\" -lt \"$budget\" ] || exit 1; sleep {POLL_SECONDS}",
        "done",
        "installed() { curl -fsS -o /dev/null --max-time 30 \"$base/v1/models/$model\"; }",
        "install() { curl -fsS -o /dev/null --max-time \"$budget\" -X POST \"$base/v1/models/$model\"; }",
        "load() {",
        "  code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time \"$budget\" -X POST \"$base/api/ps/$model\")",
        "  [ \"$code\" = 201 ] || [ \"$code\" = 409 ]",
        "}",
        "{ installed || install; } && { load || { install && load; }; }",
    ])
    return {"exec": {"command": ["sh", "-c", script]}}


def loaded_probe(model_id: str, port: int) -> dict[str, Any]:
    """Succeeds while the model is loaded in memory (`GET /api/ps` lists it)."""
    quoted = shlex.quote(f'"{model_id}"')
    script = f"curl -fsS --max-time 4 http://127.0.0.1:{port}/api/ps | grep -qF {quoted}"
    return {"exec": {"command": ["sh", "-c", script]}}
