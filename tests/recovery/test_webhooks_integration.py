"""Bad input at recovery's surfaces (issue #19 item 5) gets a clear refusal and changes nothing:
the recovery controller's webhook endpoint and the gateway's dispatch API, against the real
livekit-server, the controller and the gateway as their images run them (tests/recovery/conftest.py).

The stage: a bellavista room with a caller in it and a dispatch of its agent whose job a worker
holds (protocol-level clients: tests/gateway/_lk.py). A webhook saying that job's agent left, signed
by livekit-server's webhook key, makes the controller dispatch the agent again (the control case,
last); every forged, mis-signed or malformed version of it before is refused, and the room still
has its one dispatch.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import urllib.error
import urllib.request
from typing import Any, Optional

import aiohttp
import jwt
import pytest
from google.protobuf import json_format
from livekit.protocol import agent_dispatch as dispatch_pb
from livekit.protocol import models as models_pb
from livekit.protocol import room as room_pb
from livekit.protocol import webhook as webhook_pb

from voxplane.desired.common import ADMIN_KEY, RECOVERY_KEY
from voxplane.dev.stack import dev_root_secret
from voxplane.livekit.keys import derive_api_secret

from ..gateway._lk import Worker, join, token, twirp
from ..support.wait import wait_until
from .conftest import REGION, Faults

pytestmark = pytest.mark.integration

ROOM = "bv-call_+15550190001_forged"
EARLY_ROOM = "bv-call_+15550190004_early"
FOREIGN_ROOM = "bv-call_+15550190002_foreign"
AGENT, FOREIGN_AGENT = "bellavista-reservations", "northwind-support"


def secret_of(key: str) -> str:
    return derive_api_secret(dev_root_secret(REGION), REGION, key)


def event_body(room: str, identity: str) -> bytes:
    """livekit-server's `participant_left` for an agent that lost its connection, as it sends it."""
    event = webhook_pb.WebhookEvent(
        event="participant_left", id=f"EV_{identity}", created_at=int(time.time()), room=models_pb.Room(name=room),
        participant=models_pb.ParticipantInfo(identity=identity, kind=models_pb.ParticipantInfo.Kind.AGENT,
                                              disconnect_reason=models_pb.DisconnectReason.CONNECTION_TIMEOUT,
                                              attributes={"lk.agent_name": AGENT}))
    return json_format.MessageToJson(event).encode()


def sign(body: bytes, key: str = RECOVERY_KEY, secret: Optional[str] = None, **claims: Any) -> str:
    """What livekit-server puts in a webhook's Authorization header: a JWT of `key` whose `sha256`
    is the body's (protocol webhook/resource_url_notifier.go)."""
    now = int(time.time())
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    return jwt.encode({"iss": key, "nbf": now - 5, "exp": now + 300, "sha256": digest, **claims},
                      secret if secret is not None else secret_of(key), algorithm="HS256")


def post(faults: Faults, body: bytes, authorization: Optional[str]) -> tuple[int, str]:
    headers = {"Content-Type": "application/webhook+json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    request = urllib.request.Request(faults.recovery.webhook_url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def stage(faults: Faults, session: aiohttp.ClientSession, room: str, agent: str,
                listed: bool = True) -> tuple[str, Any]:
    """`room` with a caller in it and a dispatch of `agent` whose job a worker holds: the job's
    participant identity, and the caller's socket (keep it open). With `listed`, once livekit-server
    lists the job on the dispatch."""
    admin = secret_of(ADMIN_KEY)
    status, _ = await twirp(faults.livekit.http_url, "RoomService", "CreateRoom", room_pb.CreateRoomRequest(name=room),
                            token(ADMIN_KEY, admin, video={"roomCreate": True}))
    assert status == 200
    caller, _ = await join(session, faults.livekit.http_url,
                           token(ADMIN_KEY, admin, sub="caller", video={"roomJoin": True, "room": room}))
    worker = await Worker.connect(session, faults.livekit.http_url, token(ADMIN_KEY, admin, video={"agent": True}))
    await worker.register(agent)
    status, _ = await twirp(faults.livekit.http_url, "AgentDispatchService", "CreateDispatch",
                            dispatch_pb.CreateAgentDispatchRequest(agent_name=agent, room=room),
                            token(ADMIN_KEY, admin, video={"roomAdmin": True, "room": room}))
    assert status == 200
    identity = f"agent-{room}"
    assignment = await worker.take_job(identity)
    assert assignment.job.room.name == room
    await worker.close()
    # livekit-server records the job (with the identity its worker claimed) on the room's dispatch
    # only once its dispatch round ends: after the worker-discovery RPC it makes on a cold cache
    # (pkg/agent/client.go, CheckEnabledTimeout), seconds after the assignment. A loss is only
    # recognised as the dispatch's once the room lists its job.
    if listed:
        await wait_listed(faults, room, identity)
    return identity, caller


async def wait_listed(faults: Faults, room: str, identity: str) -> None:
    await asyncio.to_thread(wait_until, f"room {room!r} to list the job of {identity}",
                            lambda: job_listed(faults, room, identity), timeout=30)


def job_listed(faults: Faults, room: str, identity: str) -> bool:
    return any(job.state.participant_identity == identity for d in faults.dispatches(room) for job in d.state.jobs)


async def dispatch_count(faults: Faults, room: str) -> int:
    """The room's dispatches of a named agent (livekit-server also lists the unnamed dispatch it
    makes for every room it creates), asked from a thread: the admin client runs a loop of its own."""
    return len([d for d in await asyncio.to_thread(faults.dispatches, room) if d.agent_name])


def test_forged_and_malformed_webhooks_are_refused_and_change_nothing(faults: Faults) -> None:
    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            identity, caller = await stage(faults, session, ROOM, AGENT)
            body = event_body(ROOM, identity)
            tenant_key = "vxt-northwind"
            refused = {
                "no signature": (body, None, 401, "no Authorization header"),
                "a signature by nobody's secret": (body, sign(body, secret="x" * 64), 401, "does not verify"),
                "a tenant's key (its token naming another tenant's room)":
                    (body, sign(body, key=tenant_key, secret=secret_of(tenant_key)), 401, "does not verify"),
                "a key livekit-server knows, not its webhook key":
                    (body, sign(body, key=ADMIN_KEY), 401, "does not verify"),
                "a body other than the one signed":
                    (body.replace(b"CONNECTION_TIMEOUT", b"SIGNAL_CLOSE"), sign(body), 401, "hash mismatch"),
                "an expired signature": (body, sign(body, exp=int(time.time()) - 3600), 401, "does not verify"),
                "no sha256 claim": (body, jwt.encode({"iss": RECOVERY_KEY, "exp": int(time.time()) + 60},
                                                     secret_of(RECOVERY_KEY), algorithm="HS256"), 401, "sha256"),
                "garbage for a token": (body, "not.a.jwt", 401, "does not verify"),
                "a signed body that is no JSON": (b"{not json", sign(b"{not json"), 400, "not a LiveKit webhook event"),
                "a signed event of the wrong shape":
                    (b'{"event": 7, "participant": "x"}', sign(b'{"event": 7, "participant": "x"}'), 400,
                     "not a LiveKit webhook event"),
                "a signed body that is not UTF-8": (b"\xff\xfe", sign(b"\xff\xfe"), 400, "not UTF-8"),
                "an oversized body": (b"x" * (1024 * 1024 + 1), sign(b"x"), 413, "at most"),
            }
            for what, (payload, authorization, status, says) in refused.items():
                got = await asyncio.to_thread(post, faults, payload, authorization)
                assert got[0] == status and says in got[1], (what, got)
                assert "\n" not in got[1].strip() and "Traceback" not in got[1], (what, got)
            assert await dispatch_count(faults, ROOM) == 1, "a refused webhook changed nothing"
            log = faults.recovery.log_path.read_text()
            assert "Traceback" not in log and f"room {ROOM!r}" not in log
            # The same event, signed as livekit-server signs it: the lost agent is dispatched again.
            status, text = await asyncio.to_thread(post, faults, body, sign(body))
            assert status == 200 and text.startswith("dispatched "), text
            assert await dispatch_count(faults, ROOM) == 2
            # Once: the same event again (a retry, a replay within its validity) is a no-op.
            status, text = await asyncio.to_thread(post, faults, body, sign(body))
            assert (status, text) == (200, "refused duplicate") and await dispatch_count(faults, ROOM) == 2
            await caller.close()

    asyncio.run(go())


def test_a_loss_reported_before_livekit_server_lists_its_job_is_asked_for_again(faults: Faults) -> None:
    """A worker's fresh registration empties livekit-server's worker cache, so the next dispatch
    round waits for its worker-discovery RPC (seconds) before the room lists the job, while the
    agent may already have joined and gone. That loss is answered 503, which livekit-server's
    notifier retries; the retry, once the job is listed, dispatches the agent again."""

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            identity, caller = await stage(faults, session, EARLY_ROOM, AGENT, listed=False)
            assert not await asyncio.to_thread(job_listed, faults, EARLY_ROOM, identity), "the stage is too late"
            body = event_body(EARLY_ROOM, identity)
            status, text = await asyncio.to_thread(post, faults, body, sign(body))
            assert status == 503 and "lists no job yet" in text and "\n" not in text.strip(), (status, text)
            assert await dispatch_count(faults, EARLY_ROOM) == 1
            await wait_listed(faults, EARLY_ROOM, identity)
            status, text = await asyncio.to_thread(post, faults, body, sign(body))
            assert status == 200 and text.startswith("dispatched "), text
            assert await dispatch_count(faults, EARLY_ROOM) == 2
            await caller.close()

    asyncio.run(go())


def test_a_lost_agent_is_never_dispatched_into_a_room_of_another_tenant(faults: Faults) -> None:
    """A bellavista room whose dispatch names northwind's agent (only a platform key could make it):
    a correctly signed loss of that agent dispatches nothing there."""

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            identity, caller = await stage(faults, session, FOREIGN_ROOM, FOREIGN_AGENT)
            body = event_body(FOREIGN_ROOM, identity)
            status, text = await asyncio.to_thread(post, faults, body, sign(body))
            assert (status, text) == (200, "refused foreign_agent"), text
            assert await dispatch_count(faults, FOREIGN_ROOM) == 1
            await caller.close()

    asyncio.run(go())


def test_a_tenant_cannot_forge_a_recovery_through_the_gateway(faults: Faults) -> None:
    """`voxplane.recovery` is the platform's: a tenant's dispatch carrying it is refused by the
    gateway, in another tenant's room and in its own."""
    key, secret = faults.tenant_key("northwind")
    attributes = {"voxplane.recovery": json.dumps({"attempt": 1, "lost_at": 1, "lost_job": "AJ_x"})}

    async def dispatch(room: str, agent: str) -> tuple[int, Any]:
        return await twirp(faults.balancer.http_url, "AgentDispatchService", "CreateDispatch",
                           dispatch_pb.CreateAgentDispatchRequest(agent_name=agent, room=room, attributes=attributes),
                           token(key, secret, video={"roomAdmin": True, "room": room}))

    own = "nw-support_+15550190003_own"
    for room, agent, says in ((ROOM, FOREIGN_AGENT, "is not one of tenant 'northwind'"),
                              (own, FOREIGN_AGENT, "dispatch attribute 'voxplane.recovery' is the platform's")):
        status, body = asyncio.run(dispatch(room, agent))
        assert status == 403 and body["code"] == "permission_denied" and says in body["msg"], body
    assert own not in faults.rooms()
