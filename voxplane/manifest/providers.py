"""External inference providers an agent can name: the ones the platform glue can talk to.

The glue (agents/_platform/voxplane_agent.py) builds every role's client from livekit-plugins-openai
(`openai.STT`, `openai.LLM`, `openai.TTS`) with the provider's `endpoint` as base URL, its `model`
and its key: a provider works only when it serves the OpenAI API for that role. These are the
providers livekit-plugins-openai 1.8 (the version the base image pins) itself reaches that way
(its `LLM.with_*` and `STT.with_*` helpers: base URL, key and model, nothing else), plus
`openai-compatible` for any other endpoint that serves the OpenAI API (a self-hosted vLLM or a
gateway). Left out: Azure OpenAI (its client needs an API version and a deployment) and Ollama (a
local, plain-HTTP server; an endpoint here is HTTPS). A provider with an API of its own (Deepgram,
ElevenLabs, Cartesia, Anthropic ...) needs its own livekit plugin in the agent's program, which the
glue does not build.
"""

from __future__ import annotations

#: Any endpoint that serves the OpenAI API for the role.
GENERIC = "openai-compatible"

OPENAI_COMPATIBLE: dict[str, tuple[str, ...]] = {
    "llm": ("openai", "cerebras", "cometapi", "deepseek", "fireworks", "nebius", "octoai", "openrouter", "ovhcloud",
            "perplexity", "sambanova", "telnyx", "together", "xai", GENERIC),
    "stt": ("openai", "ovhcloud", GENERIC),
    "tts": ("openai", GENERIC),
}
