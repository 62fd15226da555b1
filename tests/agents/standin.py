"""A local stand-in for the region's OpenAI-compatible model servers (vLLM chat, Kokoro TTS,
Whisper STT), for the worker tests that need a call to get past its greeting: it answers the three
endpoints the agents' openai plugin calls with a fixed reply, silence and an empty transcript,
and records every request so a test can see what the agent asked for (e.g. what it said).

It is not a model: no test here judges a conversation, only the platform's handling of the call.
Listens on 127.0.0.1 only, in a thread of the test process.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from voxplane.dev.ports import free_port

REPLY = "Hello, this is the stand-in model."
#: 24 kHz 16-bit mono silence (the openai plugin's PCM format), 0.4 s per answer.
SILENCE = b"\x00\x00" * (24000 * 4 // 10)


@dataclass
class Request:
    t: float
    path: str
    body: dict[str, Any]


@dataclass
class StandIn:
    port: int = 0
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="inference-standin", daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def spoken(self) -> list[str]:
        """What the agent had the TTS say, in order."""
        return [str(r.body.get("input", "")) for r in self.requests if r.path.endswith("/audio/speech")]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Request(time.time(), request.path, body))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        base = {"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": body.get("model", "")}
        chunks = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": REPLY}, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {**base, "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 8, "total_tokens": 18}},
        ]
        try:
            for chunk in chunks:
                await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except ConnectionResetError:  # the agent's call ended mid-reply and it dropped the request
            pass
        return resp

    async def _speech(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(Request(time.time(), request.path, body))
        return web.Response(body=SILENCE, content_type="audio/pcm")

    async def _transcribe(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests.append(Request(time.time(), request.path, {}))
        return web.json_response({"text": ""})

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    async def _start(self) -> None:
        app = web.Application()
        app.add_routes([
            web.post("/v1/chat/completions", self._chat),
            web.post("/v1/audio/speech", self._speech),
            web.post("/v1/audio/transcriptions", self._transcribe),
            web.get("/v1/models", self._models),
        ])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def __enter__(self) -> StandIn:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
