"""Per-tenant limits against the real livekit-server (issue #19 item 3). Each test starts the
gateway, as its image runs it, from a copy of the repository's manifests in which tenant A
(northwind) has small limits in `regions/local.yaml`; tenant B (bellavista) keeps the defaults.
Over a limit, A gets LiveKit's own answer for an exhausted resource (what livekit-api's client
raises, a 429 upgrade refusal), the gateway counts it, and B goes on as before. Rates refill one
token in a thousand seconds: none comes back while a test runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from livekit import api
from livekit.protocol import agent_dispatch as dispatch_pb
from livekit.protocol import room as room_pb

from voxplane.dev.servers import GatewayServer, LiveKitServer, RedisServer, region_config, region_gateway

from tests.support.repo import copy_manifests
from ._image import gateway_image_python, stage_image_context
from ._lk import HandshakeRefused, Worker, join, metric, token, twirp
from .conftest import A, A_AGENT, A_ROOM, B, B_AGENT, B_ROOM, REGION, REPO, Creds, Stack

pytestmark = pytest.mark.integration

#: Where tenant A's limits go in the copied regions/local.yaml (under its quotas line).
A_QUOTAS = '    quotas: { cpu: "96", memory: 192Gi, pods: 60 }\n'


@dataclass
class Servers:
    redis: RedisServer
    livekit: LiveKitServer
    python: str
    context: Path


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    python = gateway_image_python()
    context = stage_image_context(tmp_path_factory.mktemp("gateway-image") / "opt-voxplane")
    with RedisServer() as redis, LiveKitServer(region_config(REGION, REPO), redis=redis) as lk:
        yield Servers(redis, lk, python, context)


@pytest.fixture
def limited(servers: Servers, tmp_path: Path) -> Iterator[Callable[[str], Stack]]:
    """`limited(yaml)`: a gateway rendered from manifests where tenant A's `limits` are `yaml`
    (indented under the tenant), in front of the module's livekit-server."""
    started: list[GatewayServer] = []

    def start(limits_yaml: str) -> Stack:
        root = copy_manifests(tmp_path / f"repo{len(started)}")
        region = root / "regions" / f"{REGION}.yaml"
        text = region.read_text()
        assert A_QUOTAS in text, "regions/local.yaml changed: update A_QUOTAS"
        region.write_text(text.replace(A_QUOTAS, A_QUOTAS + "    limits:\n" + limits_yaml))
        config, keys = region_gateway(REGION, root, upstream=servers.livekit.http_url)
        gateway = GatewayServer(config, keys, python=servers.python, pythonpath=servers.context).start()
        started.append(gateway)
        return Stack(servers.redis, servers.livekit, gateway)

    try:
        yield start
    finally:
        for gateway in started:
            gateway.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def _tok(creds: Creds, **claims: Any) -> str:
    return token(creds.key, creds.secret, **claims)


def _metrics_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.gateway.metrics_port}"


async def _limited_count(stack: Stack, route: str, tenant: str, limit: str) -> float:
    return await metric(_metrics_url(stack), "voxplane_gateway_limited_total", route=route, tenant=tenant, limit=limit)


async def _validate(stack: Stack, tok: str) -> tuple[int, str, str | None]:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{stack.gateway_url}/rtc/validate", params={"access_token": tok}) as r:
            return r.status, await r.text(), r.headers.get("Retry-After")


def test_api_calls_over_the_limit_get_resource_exhausted(limited: Callable[[str], Stack]) -> None:
    """A's fourth API call, with three allowed: livekit-api's own client raises its error for Twirp
    `resource_exhausted` (HTTP 429, returned at once, not retried); the body is Twirp's error shape,
    as livekit-server's own errors are; B's calls all go through."""
    stack = limited("      api_calls: { per_second: 0.001, burst: 3 }\n")
    a, b = stack.tenant(A), stack.tenant(B)

    async def go() -> None:
        async with api.LiveKitAPI(stack.gateway_url, a.key, a.secret) as lk_a, \
                api.LiveKitAPI(stack.gateway_url, b.key, b.secret) as lk_b:
            for _ in range(3):
                await lk_a.room.list_rooms(api.ListRoomsRequest())
            with pytest.raises(api.TwirpError) as over:
                await lk_a.room.list_rooms(api.ListRoomsRequest())
            assert (over.value.code, over.value.status) == (api.TwirpErrorCode.RESOURCE_EXHAUSTED, 429)
            assert "over its limit of API calls" in over.value.message
            for _ in range(10):
                await lk_b.room.list_rooms(api.ListRoomsRequest())
        # The raw answer: Twirp's error object, as the server's own Twirp refusals are.
        list_a = _tok(a, video={"roomList": True})
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{stack.gateway_url}/twirp/livekit.RoomService/ListRooms",
                              data=room_pb.ListRoomsRequest().SerializeToString(),
                              headers={"Authorization": f"Bearer {list_a}",
                                       "Content-Type": "application/protobuf"}) as r:
                assert r.status == 429 and r.content_type == "application/json"
                assert int(r.headers["Retry-After"]) >= 1
                body = await r.json()
        no_grant = token(stack.admin.key, stack.admin.secret, video={})
        status, server_error = await twirp(stack.server_url, "RoomService", "ListRooms", room_pb.ListRoomsRequest(),
                                           no_grant)
        assert status in (401, 403), server_error
        assert set(body) == set(server_error) == {"code", "msg"}
        assert body["code"] == "resource_exhausted"
        assert await _limited_count(stack, "twirp", A, "api_calls") == 2
        assert await _limited_count(stack, "twirp", B, "api_calls") == 0

    run(go())


def test_joins_over_the_limit_get_429_at_the_upgrade_and_at_validate(limited: Callable[[str], Stack]) -> None:
    """A's third join, with two allowed, is refused at the WebSocket upgrade with 429 and the reason;
    /rtc/validate (where SDKs read why) answers the same without spending a join; B joins."""
    stack = limited("      joins: { per_second: 0.001, burst: 2 }\n")
    a, b = stack.tenant(A), stack.tenant(B)

    async def go() -> None:
        async with aiohttp.ClientSession() as s:
            for i in range(2):
                ws, joined = await join(s, stack.gateway_url, _tok(a, sub=f"c{i}", video={"roomJoin": True, "room": A_ROOM}))
                assert joined.room.name == A_ROOM
                await ws.close()
            third = _tok(a, sub="c2", video={"roomJoin": True, "room": A_ROOM})
            with pytest.raises(HandshakeRefused) as refused:
                await join(s, stack.gateway_url, third)
            assert refused.value.status == 429
            for _ in range(2):
                status, text, retry_after = await _validate(stack, third)
                assert status == 429 and "over its limit of room joins" in text and retry_after
            for i in range(5):
                ws, joined = await join(s, stack.gateway_url, _tok(b, sub=f"b{i}", video={"roomJoin": True, "room": B_ROOM}))
                assert joined.room.name == B_ROOM
                await ws.close()
        assert await _limited_count(stack, "rtc", A, "joins") == 3
        assert await _limited_count(stack, "rtc", B, "joins") == 0

    run(go())


def test_an_agents_job_join_counts_against_the_rooms_tenant(limited: Callable[[str], Stack]) -> None:
    """The server-issued job token names no tenant: its join counts against the tenant whose room
    it joins. With one join allowed and spent by A's caller, A's agent is refused its job join."""
    stack = limited("      joins: { per_second: 0.001, burst: 1 }\n")
    a = stack.tenant(A)
    room = A_ROOM + "job"

    async def go() -> None:
        async with aiohttp.ClientSession() as s:
            caller, _ = await join(s, stack.gateway_url, _tok(a, sub="caller", video={"roomJoin": True, "room": room}))
            worker = await Worker.connect(s, stack.gateway_url, _tok(a, video={"agent": True}))
            try:
                await worker.register(A_AGENT)
                status, body = await twirp(stack.gateway_url, "AgentDispatchService", "CreateDispatch",
                                           dispatch_pb.CreateAgentDispatchRequest(agent_name=A_AGENT, room=room),
                                           _tok(a, video={"roomAdmin": True, "room": room}), dispatch_pb.AgentDispatch)
                assert status == 200, body
                assignment = await worker.take_job("agent-support")
                with pytest.raises(HandshakeRefused) as refused:
                    await join(s, stack.gateway_url, assignment.token)
                assert refused.value.status == 429
            finally:
                await worker.close()
                await caller.close()
        assert await _limited_count(stack, "rtc", A, "joins") == 1

    run(go())


def test_worker_registrations_over_the_limit_are_refused_at_the_upgrade(limited: Callable[[str], Stack]) -> None:
    stack = limited("      worker_registrations: { per_second: 0.001, burst: 2 }\n")
    a, b = stack.tenant(A), stack.tenant(B)

    async def go() -> None:
        async with aiohttp.ClientSession() as s:
            workers = []
            try:
                for _ in range(2):
                    workers.append(await Worker.connect(s, stack.gateway_url, _tok(a, video={"agent": True})))
                    assert (await workers[-1].register(A_AGENT)).worker_id
                with pytest.raises(HandshakeRefused) as refused:
                    await Worker.connect(s, stack.gateway_url, _tok(a, video={"agent": True}))
                assert refused.value.status == 429
                for _ in range(3):
                    workers.append(await Worker.connect(s, stack.gateway_url, _tok(b, video={"agent": True})))
                    assert (await workers[-1].register(B_AGENT)).worker_id
            finally:
                for w in workers:
                    await w.close()
        assert await _limited_count(stack, "agent", A, "worker_registrations") == 1
        assert await _limited_count(stack, "agent", B, "worker_registrations") == 0

    run(go())


def test_open_connections_are_capped_per_tenant(limited: Callable[[str], Stack]) -> None:
    """With two connections allowed, A's worker and caller hold both: A's next join is refused with
    429 until one closes; B's joins are not."""
    stack = limited("      connections: 2\n")
    a, b = stack.tenant(A), stack.tenant(B)

    async def go() -> None:
        url = _metrics_url(stack)
        async with aiohttp.ClientSession() as s:
            worker = await Worker.connect(s, stack.gateway_url, _tok(a, video={"agent": True}))
            await worker.register(A_AGENT)
            caller, _ = await join(s, stack.gateway_url, _tok(a, sub="c0", video={"roomJoin": True, "room": A_ROOM}))
            assert await metric(url, "voxplane_gateway_websockets", route="rtc", tenant=A) == 1
            assert await metric(url, "voxplane_gateway_websockets", route="agent", tenant=A) == 1
            with pytest.raises(HandshakeRefused) as refused:
                await join(s, stack.gateway_url, _tok(a, sub="c1", video={"roomJoin": True, "room": A_ROOM}))
            assert refused.value.status == 429
            others = [await join(s, stack.gateway_url, _tok(b, sub=f"b{i}", video={"roomJoin": True, "room": B_ROOM}))
                      for i in range(3)]
            await worker.close()
            # The gateway frees A's slot once it has seen the worker's socket close.
            for _ in range(100):
                if await metric(url, "voxplane_gateway_websockets", route="agent", tenant=A) == 0:
                    break
                await asyncio.sleep(0.05)
            again, joined = await join(s, stack.gateway_url, _tok(a, sub="c1", video={"roomJoin": True, "room": A_ROOM}))
            assert joined.room.name == A_ROOM
            for ws in [caller, again] + [ws for ws, _ in others]:
                await ws.close()
        assert await _limited_count(stack, "rtc", A, "connections") == 1
        assert await _limited_count(stack, "rtc", B, "connections") == 0

    run(go())


def test_forwarded_requests_are_timed_per_tenant(limited: Callable[[str], Stack]) -> None:
    """Each join, worker registration and API call the gateway forwards is one observation in its
    tenant's `voxplane_gateway_forward_seconds`, taking as long as the request took at least in
    part; a refused one is not observed, and no other tenant's series moves."""
    stack = limited("      joins: { per_second: 0.001, burst: 1 }\n")
    a, b = stack.tenant(A), stack.tenant(B)

    async def observed(route: str, tenant: str) -> tuple[float, float]:
        url = _metrics_url(stack)
        return (await metric(url, "voxplane_gateway_forward_seconds_count", route=route, tenant=tenant),
                await metric(url, "voxplane_gateway_forward_seconds_sum", route=route, tenant=tenant))

    async def go() -> None:
        async with aiohttp.ClientSession() as s:
            ws, _ = await join(s, stack.gateway_url, _tok(a, sub="c0", video={"roomJoin": True, "room": A_ROOM}))
            await ws.close()
            with pytest.raises(HandshakeRefused):
                await join(s, stack.gateway_url, _tok(a, sub="c1", video={"roomJoin": True, "room": A_ROOM}))
            worker = await Worker.connect(s, stack.gateway_url, _tok(b, video={"agent": True}))
            await worker.register(B_AGENT)
            await worker.close()
        loop = asyncio.get_running_loop()
        started = loop.time()
        status, _ = await twirp(stack.gateway_url, "RoomService", "ListRooms", room_pb.ListRoomsRequest(),
                                _tok(b, video={"roomList": True}))
        took = loop.time() - started
        assert status == 200
        joins, join_seconds = await observed("rtc", A)
        assert joins == 1 and join_seconds > 0  # the refused join is not a forward
        calls, call_seconds = await observed("twirp", B)
        assert calls == 1 and 0 < call_seconds <= took
        assert (await observed("agent", B))[0] == 1
        assert await observed("rtc", B) == await observed("twirp", A) == await observed("agent", A) == (0, 0)

    run(go())
