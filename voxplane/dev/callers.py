"""Callers for `voxplane dev calls`: real LiveKit rtc participants, one room each, many in one
process, each publishing an audio track (a quiet 440 Hz tone, 48 kHz mono, 20 ms frames) for as
long as it stays, and reporting what it sees.

Run with the agents' venv Python (the `livekit` rtc package; scripts/ensure-agents-venv.sh), never
imported by voxplane:   python callers.py

stdin, one JSON object a line:
  {"op": "join", "id": ID, "url": WS_URL, "token": TOKEN}    join a room as a caller
  {"op": "leave", "id": ID}                                  hang up
stdout, one JSON object a line, each with `t` (time.time()):
  {"event": "ready"}                                         imports done
  {"id": ID, "event": "connected", "connect_ms": ...}
  {"id": ID, "event": "published"}                           the audio track is up
  {"id": ID, "event": "agent", "identity": ...}              an agent participant is in the room
  {"id": ID, "event": "agent_left", "identity": ...}
  {"id": ID, "event": "disconnected", "reason": ...}         the server ended it (room deleted, ...)
  {"id": ID, "event": "left"}                                we hung up
  {"id": ID, "event": "error", "error": ...}
End of input hangs every caller up and exits.
"""

from __future__ import annotations

import asyncio
import json
import math
from array import array
import sys
import time
from typing import Any

from livekit import rtc  # type: ignore[attr-defined]  # the agents' venv has it, voxplane's does not

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms
AMPLITUDE = 1500  # of 32767: a quiet tone
#: One second of the tone (440 whole periods), sliced into frames: no per-sample work while calling.
TONE = array("h", (int(AMPLITUDE * math.sin(2 * math.pi * 440 * i / SAMPLE_RATE)) for i in range(SAMPLE_RATE)))


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


class Caller:
    def __init__(self, call_id: str):
        self.id = call_id
        self.room = rtc.Room()
        self.source = rtc.AudioSource(SAMPLE_RATE, 1)
        self.stop = asyncio.Event()

    def _agent(self, p: rtc.RemoteParticipant) -> bool:
        return bool(p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT)

    async def run(self, url: str, token: str) -> None:
        room = self.room
        def joined(p: rtc.RemoteParticipant) -> None:
            if self._agent(p):
                emit("agent", id=self.id, identity=p.identity)

        def left(p: rtc.RemoteParticipant) -> None:
            if self._agent(p):
                emit("agent_left", id=self.id, identity=p.identity)

        room.on("participant_connected", joined)
        room.on("participant_disconnected", left)

        def disconnected(reason: object) -> None:
            if not self.stop.is_set():
                emit("disconnected", id=self.id,
                     reason=rtc.DisconnectReason.Name(reason) if isinstance(reason, int) else str(reason))
                self.stop.set()

        room.on("disconnected", disconnected)
        started = time.time()
        try:
            await room.connect(url, token, rtc.RoomOptions(auto_subscribe=True))
        except Exception as e:  # the caller's own failure: reported, never fatal to the others
            emit("error", id=self.id, error=f"{type(e).__name__}: {e}")
            return
        emit("connected", id=self.id, connect_ms=round(1000 * (time.time() - started), 1))
        for p in room.remote_participants.values():
            if self._agent(p):
                emit("agent", id=self.id, identity=p.identity)
        track = rtc.LocalAudioTrack.create_audio_track("caller-audio", self.source)
        await room.local_participant.publish_track(track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        emit("published", id=self.id)
        sent = 0
        t0 = time.monotonic()
        while not self.stop.is_set():
            frame = rtc.AudioFrame.create(SAMPLE_RATE, 1, FRAME_SAMPLES)
            offset = sent % SAMPLE_RATE
            frame.data[:] = memoryview(TONE)[offset:offset + FRAME_SAMPLES]
            sent += FRAME_SAMPLES
            await self.source.capture_frame(frame)
            # Real time: never ahead of the clock by more than a frame.
            ahead = sent / SAMPLE_RATE - (time.monotonic() - t0)
            if ahead > 0.02:
                await asyncio.sleep(ahead - 0.02)

    async def leave(self) -> None:
        if not self.stop.is_set():
            self.stop.set()
            await self.room.disconnect()
            emit("left", id=self.id)


async def main() -> None:
    loop = asyncio.get_running_loop()
    callers: dict[str, Caller] = {}
    tasks: set[asyncio.Task[None]] = set()
    emit("ready")
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("op") == "join":
            caller = callers[msg["id"]] = Caller(msg["id"])
            task = asyncio.ensure_future(caller.run(msg["url"], msg["token"]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        elif msg.get("op") == "leave" and msg.get("id") in callers:
            await callers[msg["id"]].leave()
    await asyncio.gather(*(c.leave() for c in callers.values()), return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    import os

    os._exit(0)  # the executor thread may still block on stdin
