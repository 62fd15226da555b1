"""A caller for the worker tests: a real LiveKit participant (the `livekit` rtc package of the
agents' own environment), joining a room with a token and reporting what it sees as JSON lines.

Run by tests/agents/conftest.py with the agents venv's Python (the project's venv has no rtc
package):  python caller.py URL TOKEN
      or:  python caller.py URL -     (started ahead: reports `ready`, then joins with the token
                                       read as the first line of stdin; bench/dispatch.py uses
                                       this so the interpreter's start-up is outside its timings)

stdout, one JSON object a line, each with `t` (time.time()):
  {"event": "ready"}                                       (only with TOKEN `-`: imports done)
  {"event": "connected", "room": ..., "connect_ms": ...}   (how long room.connect() took)
  {"event": "participant_connected", "identity": ..., "kind": "AGENT"|"STANDARD"|...}
  {"event": "participant_disconnected", "identity": ...}
  {"event": "track_subscribed", "identity": ..., "kind": "audio"}
  {"event": "text_chunk", "topic": ..., "identity": ..., "stream": ..., "text": ...}  (as it streams)
  {"event": "text", "topic": ..., "identity": ..., "stream": ..., "text": ...}        (the whole stream)
  {"event": "reconnecting"}, {"event": "reconnected"}   (the SDK lost its server and got a new one)
  {"event": "disconnected", "reason": ...}     (the server ended it: room deleted, ...)
  {"event": "left"}                            (we hung up)
stdin: a line `say TEXT` sends TEXT as a chat message (topic lk.chat: the agent takes it as the
caller's turn); a line `leave` (or end of input) hangs up and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from livekit import rtc


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


def kind(p: rtc.RemoteParticipant) -> str:
    return rtc.ParticipantKind.Name(p.kind).removeprefix("PARTICIPANT_KIND_")


async def main(url: str, token: str) -> None:
    if token == "-":
        emit("ready")
        token = (await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)).strip()
    room = rtc.Room()
    done = asyncio.Event()

    room.on("participant_connected", lambda p: emit("participant_connected", identity=p.identity, kind=kind(p)))
    room.on("participant_disconnected", lambda p: emit("participant_disconnected", identity=p.identity, kind=kind(p)))
    room.on("track_subscribed", lambda track, pub, p: emit(
        "track_subscribed", identity=p.identity, kind="audio" if track.kind == rtc.TrackKind.KIND_AUDIO else "video"))

    def disconnected(reason: object) -> None:
        emit("disconnected", reason=rtc.DisconnectReason.Name(reason) if isinstance(reason, int) else str(reason))
        done.set()

    room.on("disconnected", disconnected)
    room.on("reconnecting", lambda: emit("reconnecting"))
    room.on("reconnected", lambda: emit("reconnected"))

    def on_text(reader: rtc.TextStreamReader, identity: str) -> None:
        async def read() -> None:
            info = reader.info
            chunks = []
            async for chunk in reader:
                chunks.append(chunk)
                emit("text_chunk", topic=info.topic, identity=identity, stream=info.stream_id, text=chunk)
            emit("text", topic=info.topic, identity=identity, stream=info.stream_id, text="".join(chunks))

        asyncio.ensure_future(read())

    for topic in ("lk.chat", "lk.transcription"):
        room.register_text_stream_handler(topic, on_text)

    started = time.time()
    await room.connect(url, token, rtc.RoomOptions(auto_subscribe=True))
    emit("connected", room=room.name, connect_ms=1000 * (time.time() - started))
    for p in room.remote_participants.values():
        emit("participant_connected", identity=p.identity, kind=kind(p))

    loop = asyncio.get_running_loop()
    stdin = asyncio.ensure_future(loop.run_in_executor(None, sys.stdin.readline))
    while not done.is_set():
        finished, _ = await asyncio.wait({stdin, asyncio.ensure_future(done.wait())}, return_when=asyncio.FIRST_COMPLETED)
        if stdin in finished:
            line = stdin.result()
            if line.strip() == "leave" or line == "":
                await room.disconnect()
                emit("left")
                break
            if line.startswith("say "):
                await room.local_participant.send_text(line[4:].rstrip("\n"), topic="lk.chat")
                emit("said", text=line[4:].rstrip("\n"))
            stdin = asyncio.ensure_future(loop.run_in_executor(None, sys.stdin.readline))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
    # The executor thread may still block on stdin; do not wait for it.
    sys.stdout.flush()
    import os

    os._exit(0)
