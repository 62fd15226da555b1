"""Protocol-level LiveKit clients for the gateway tests: tokens, raw Twirp calls, a /rtc join
(until the server's JoinResponse) and an /agent worker (register, take a job). livekit-agents and
the rtc SDK are not dependencies; these speak the same protobuf messages over the same sockets."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Optional

import aiohttp
import jwt
from google.protobuf.message import Message
from livekit.protocol import agent as agent_pb
from livekit.protocol import models as models_pb
from livekit.protocol import rtc as rtc_pb
from prometheus_client.parser import text_string_to_metric_families

TIMEOUT = aiohttp.ClientTimeout(total=15)


def token(key: str, secret: str, *, ttl: int = 600, **claims: Any) -> str:
    """A LiveKit access token with exactly `claims` (video=..., sub=..., sip=...)."""
    now = int(time.time())
    return jwt.encode({"iss": key, "nbf": now - 5, "exp": now + ttl, **claims}, secret, algorithm="HS256")


class HandshakeRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status


async def twirp(base: str, service: str, method: str, request: Message, tok: str,
                response: Optional[type[Message]] = None) -> tuple[int, Any]:
    """POST one Twirp call (protobuf); (status, parsed response or the JSON error)."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
        async with s.post(f"{base}/twirp/livekit.{service}/{method}", data=request.SerializeToString(),
                          headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/protobuf"}) as r:
            body = await r.read()
            if r.status == 200:
                return 200, response.FromString(body) if response is not None else body
            try:
                return r.status, await r.json(content_type=None)
            except ValueError:
                return r.status, body.decode(errors="replace")


async def metric(metrics_url: str, name: str, **labels: str) -> float:
    """The value of sample `name` with exactly `labels` on the gateway's /metrics (0 when absent)."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
        async with s.get(f"{metrics_url}/metrics") as r:
            assert r.status == 200, r.status
            text = await r.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def _ws_url(base: str, path: str) -> str:
    return "ws" + base[len("http"):] + path


async def join(session: aiohttp.ClientSession, base: str, tok: str,
               path: str = "/rtc") -> tuple[aiohttp.ClientWebSocketResponse, rtc_pb.JoinResponse]:
    """Open a signalling socket and read up to the JoinResponse (the participant is in the room)."""
    url = _ws_url(base, path) + "?" + "&".join(
        f"{k}={v}" for k, v in {"access_token": tok, "protocol": "16", "sdk": "python", "auto_subscribe": "1"}.items())
    try:
        ws = await session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_receive=10))
    except aiohttp.WSServerHandshakeError as e:
        raise HandshakeRefused(e.status, e.message) from e
    while True:
        msg = await asyncio.wait_for(ws.receive(), 10)
        if msg.type != aiohttp.WSMsgType.BINARY:
            raise AssertionError(f"join: unexpected {msg.type} {msg.data!r}")
        resp = rtc_pb.SignalResponse.FromString(msg.data)
        if resp.WhichOneof("message") == "join":
            return ws, resp.join


class Worker:
    """An /agent socket speaking the worker protocol."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws

    @classmethod
    async def connect(cls, session: aiohttp.ClientSession, base: str, tok: str) -> "Worker":
        try:
            ws = await session.ws_connect(_ws_url(base, "/agent") + "?protocol=1",
                                          headers={"Authorization": f"Bearer {tok}"})
        except aiohttp.WSServerHandshakeError as e:
            raise HandshakeRefused(e.status, e.message) from e
        return cls(ws)

    async def send(self, **message: Any) -> None:
        await self.ws.send_bytes(agent_pb.WorkerMessage(**message).SerializeToString())

    async def receive(self, timeout: float = 10) -> agent_pb.ServerMessage:
        """The next server message; raises ConnectionError with the close code when closed."""
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            raise ConnectionError(self.ws.close_code, msg.extra)
        assert msg.type == aiohttp.WSMsgType.BINARY, (msg.type, msg.data)
        return agent_pb.ServerMessage.FromString(msg.data)

    async def register(self, agent_name: str) -> agent_pb.RegisterWorkerResponse:
        await self.send(register=agent_pb.RegisterWorkerRequest(
            type=agent_pb.JT_ROOM, agent_name=agent_name, version="voxplane-test",
            allowed_permissions=models_pb.ParticipantPermission(can_publish=True, can_subscribe=True,
                                                                can_publish_data=True)))
        while True:
            msg = await self.receive()
            if msg.WhichOneof("message") == "register":
                return msg.register

    async def take_job(self, identity: str, timeout: float = 15) -> agent_pb.JobAssignment:
        """Accept the next job offered; the server's JobAssignment (with its token)."""
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.receive(max(0.1, deadline - time.monotonic()))
            which = msg.WhichOneof("message")
            if which == "availability":
                await self.send(availability=agent_pb.AvailabilityResponse(
                    job_id=msg.availability.job.id, available=True, participant_identity=identity,
                    participant_name=identity))
            elif which == "assignment":
                return msg.assignment

    async def close(self) -> None:
        await self.ws.close()
