"""The recovery controller's process: livekit-server's webhooks in, agent dispatches out.

- `POST /webhook` (the listen port): one webhook event, verified with livekit-api's
  `WebhookReceiver` against the controller's own key (livekit-server signs every event with the key
  its `webhook.api_key` names: a JWT whose `sha256` claim is the body's hash). No or a forged
  signature: 401; a signed body that is no event: 400; over `MAX_BODY`: 413. None changes anything.
  An agent's departure goes through `decide` (`screen`, then what the server lists of the room);
  a loss is dispatched again (`voxplane.recovery` on the new dispatch). Answered 200 once decided
  (dispatched or refused); 503 when livekit-server did not answer the controller, or does not list
  the lost agent's job on the room's dispatch yet (`decide.JobNotListed`), so livekit-server sends
  the event again (its notifier retries 5xx) and the retry finds the state as it is then.
- An agent joining a room the controller dispatched into closes that recovery: its time from the
  loss, in `voxplane_recovery_seconds`.
- On the metrics port: `/metrics` (`metrics.Metrics`), `/healthz`, `/readyz`.

Every call to livekit-server is signed per request by livekit-api with only the grant it needs
(`roomList`; `roomAdmin` on the one room).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Optional, TypeVar

import aiohttp
from aiohttp import web
from google.protobuf import json_format
from livekit import api
from livekit.protocol import models as models_pb
from livekit.protocol import room as room_pb
from livekit.protocol import webhook as webhook_pb

from .config import Config
from .decide import AGENT_NAME_ATTRIBUTE, JOINED, JobNotListed, Loss, Redispatch, Refused, decide, screen
from .metrics import CONTENT_TYPE, Metrics

log = logging.getLogger("voxplane.recovery")

T = TypeVar("T")

#: Largest webhook body taken (livekit-server's events are a few KiB).
MAX_BODY = 1024 * 1024
#: Seconds a dispatched recovery waits for its agent's join to be timed (metrics only).
PENDING_SECONDS = 300.0
#: Seconds between SIGTERM and closing the listeners (readiness fails first; a webhook livekit-server
#: sends meanwhile is retried by it).
DRAIN_SECONDS = float(os.environ.get("VOXPLANE_RECOVERY_DRAIN_SECONDS", "2"))
#: Errors of a call to livekit-server that mean it did not answer.
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)


def load_secret(config: Config) -> str:
    """The secret of the controller's key, from `config.key_file`; ValueError when unreadable."""
    path = Path(config.key_file)
    try:
        value = path.read_text().strip()
    except OSError as e:
        raise ValueError(f"recovery: cannot read the secret of key {config.api_key!r} ({path}): {e.strerror}") from e
    if len(value) < 32:
        raise ValueError(f"recovery: the secret of key {config.api_key!r} is shorter than 32 characters")
    return value


class LiveKitUnavailable(Exception):
    """livekit-server did not answer a call (or answered 5xx): the event is to be sent again."""


@dataclass
class Pending:
    """A recovery dispatched and not yet joined."""

    tenant: str
    agent_name: str
    noticed: float
    expires: float


class RecoveryController:
    """One controller: `await start()`, `await stop()`; or `run()` to serve until SIGTERM."""

    def __init__(self, config: Config, secret: Optional[str] = None):
        self.config = config
        self._secret = secret if secret is not None else load_secret(config)
        self.metrics = Metrics()
        self.receiver = api.WebhookReceiver(api.TokenVerifier(config.api_key, self._secret))
        self.ready = False
        self._lk: Optional[api.LiveKitAPI] = None
        self._runners: list[web.AppRunner] = []
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._pending: dict[str, Pending] = {}

    # --- lifecycle ---

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout_seconds)
        self._lk = api.LiveKitAPI(self.config.livekit_url, self.config.api_key, self._secret, timeout=timeout,
                                  failover=False)
        for app, port in ((self.app(), self.config.listen_port), (self.metrics_app(), self.config.metrics_port)):
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, self.config.listen_host, port, reuse_address=True).start()
            self._runners.append(runner)
        self.ready = True
        log.info("recovery: listening on %s:%d (metrics %d), livekit-server %s, %d tenants, at most %d recoveries a "
                 "call", self.config.listen_host, self.config.listen_port, self.config.metrics_port,
                 self.config.livekit_url, len(self.config.tenants), self.config.max_attempts)

    async def stop(self) -> None:
        self.ready = False
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self._lk is not None:
            await self._lk.aclose()
            self._lk = None

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT; then fail readiness, wait `DRAIN_SECONDS`, close."""
        await self.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        self.ready = False
        await asyncio.sleep(DRAIN_SECONDS)
        await self.stop()

    @property
    def livekit(self) -> api.LiveKitAPI:
        assert self._lk is not None, "RecoveryController.start() first"
        return self._lk

    # --- apps ---

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/webhook", self._webhook)
        return app

    def metrics_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def _readyz(self, request: web.Request) -> web.Response:
        return web.Response(text="OK") if self.ready else web.Response(status=503, text="draining")

    # --- webhooks ---

    async def _webhook(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return self._reject("too_large", 413, f"a webhook body is at most {MAX_BODY} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._reject("too_large", 413, f"a webhook body is at most {MAX_BODY} bytes")
        header = request.headers.get("Authorization", "")
        token = header[len("Bearer "):] if header.startswith("Bearer ") else header
        if not token:
            return self._reject("unauthenticated", 401, "no Authorization header: webhooks are signed by livekit-server")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return self._reject("malformed", 400, "the body is not UTF-8 JSON")
        try:
            event = self.receiver.receive(text, token)
        except json_format.ParseError as e:
            # Signed and hashed correctly, yet no WebhookEvent: a server we do not understand.
            return self._reject("malformed", 400, f"the body is not a LiveKit webhook event: {e}")
        except Exception as e:  # noqa: BLE001 - livekit-api raises bare Exception for a bad hash
            return self._reject("unauthenticated", 401,
                                f"the signature does not verify with key {self.config.api_key!r}: {e or type(e).__name__}")
        try:
            outcome = await self.handle(event)
        except LiveKitUnavailable as e:
            self.metrics.webhook("failed")
            log.warning("recovery: %s; answering 503 so livekit-server sends event %s again", e, event.id)
            return web.Response(status=503, text=str(e))
        except JobNotListed as e:
            self.metrics.webhook("job_not_listed")
            log.info("recovery: %s; answering 503 so livekit-server sends event %s again", e, event.id)
            return web.Response(status=503, text=str(e))
        self.metrics.webhook("accepted")
        return web.Response(text=outcome)

    def _reject(self, outcome: str, status: int, message: str) -> web.Response:
        self.metrics.webhook(outcome)
        log.info("recovery: refused a webhook (%d): %s", status, message)
        return web.Response(status=status, text=message)

    async def handle(self, event: webhook_pb.WebhookEvent) -> str:
        """Act on one verified event; a short outcome (`dispatched ...`, `refused <reason>`, `ignored`)."""
        if event.event == JOINED:
            return self._joined(event)
        loss = Loss.of(event)
        if loss is None:
            return "ignored"
        try:
            screen(loss)
            async with self._lock(loss.room):
                plan = await self._plan(loss)
                created = await self._call("CreateDispatch", self.livekit.agent_dispatch.create_dispatch(plan.request))
        except Refused as r:
            self.metrics.refused(r.reason)
            log.info("recovery: agent %s left room %r; not dispatched again: %s", loss.identity, loss.room, r.message)
            return f"refused {r.reason}"
        self.metrics.dispatched(plan.tenant)
        now = time.monotonic()
        self._expire(now)
        self._pending[loss.room] = Pending(plan.tenant, plan.request.agent_name, now, now + PENDING_SECONDS)
        log.info("recovery: agent %s (%s) lost from room %r (%s); dispatched again as %s, attempt %d",
                 loss.identity, plan.request.agent_name, loss.room, _reason(loss.reason), created.id, plan.attempt)
        return f"dispatched {created.id}"

    async def _plan(self, loss: Loss) -> Redispatch:
        rooms = await self._call("ListRooms", self.livekit.room.list_rooms(room_pb.ListRoomsRequest(names=[loss.room])))
        if not any(r.name == loss.room for r in rooms.rooms):
            raise Refused("room_gone", f"room {loss.room!r} is gone")
        participants = await self._call(
            "ListParticipants", self.livekit.room.list_participants(room_pb.ListParticipantsRequest(room=loss.room)))
        dispatches = await self._call("ListDispatch", self.livekit.agent_dispatch.list_dispatch(loss.room))
        return decide(loss, self.config, list(participants.participants), dispatches)

    def _joined(self, event: webhook_pb.WebhookEvent) -> str:
        pending = self._pending.get(event.room.name)
        p = event.participant
        if pending is None or p.attributes.get(AGENT_NAME_ATTRIBUTE) != pending.agent_name:
            return "ignored"
        del self._pending[event.room.name]
        seconds = time.monotonic() - pending.noticed
        self.metrics.recovered(pending.tenant, seconds)
        log.info("recovery: room %r has its agent again (%s), %.1f s after the loss was reported", event.room.name,
                 p.identity, seconds)
        return "recovered"

    def _expire(self, now: float) -> None:
        for room in [r for r, p in self._pending.items() if p.expires < now]:
            del self._pending[room]

    def _lock(self, room: str) -> "_RoomLock":
        return _RoomLock(self._locks, room)

    async def _call(self, name: str, call: Awaitable[T]) -> T:
        """One call to livekit-server: a room that vanished meanwhile is a refusal; no answer (or a
        5xx) is `LiveKitUnavailable`."""
        try:
            return await call
        except api.TwirpError as e:
            if e.code == "not_found":
                raise Refused("room_gone", f"{name}: {e.message or 'room not found'}") from e
            self.metrics.livekit_error(name)
            if e.status >= 500:
                raise LiveKitUnavailable(f"livekit-server answered {name} with {e.status} {e.code}") from e
            raise Refused("livekit_refused", f"livekit-server refused {name}: {e.code} {e.message}") from e
        except TRANSPORT_ERRORS as e:
            self.metrics.livekit_error(name)
            raise LiveKitUnavailable(f"livekit-server did not answer {name}: {e or type(e).__name__}") from e


class _RoomLock:
    """One room's decisions in turn (events of one room come in order, but a retry may overlap);
    a room's lock is dropped once nobody holds or waits for it."""

    def __init__(self, locks: dict[str, tuple[asyncio.Lock, int]], room: str):
        self._locks, self._room = locks, room

    async def __aenter__(self) -> None:
        lock, users = self._locks.get(self._room, (asyncio.Lock(), 0))
        self._locks[self._room] = (lock, users + 1)
        await lock.acquire()

    async def __aexit__(self, *exc: Any) -> None:
        lock, users = self._locks[self._room]
        lock.release()
        if users == 1:
            del self._locks[self._room]
        else:
            self._locks[self._room] = (lock, users - 1)


def _reason(reason: int) -> str:
    try:
        return models_pb.DisconnectReason.Name(reason)
    except ValueError:
        return str(reason)
