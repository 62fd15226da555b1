"""The gateway process: an aiohttp server in front of livekit-server's API and signalling.

Routes (everything else answers 404):

- `POST /twirp/<service>/<method>`: checked by `policy.authorize_twirp`, forwarded with a token
  minted for that one call; list responses filtered to the tenant's objects.

While livekit-server does not answer (restarting, its node gone), API calls get Twirp's
`unavailable` (503, retryable for LiveKit's SDKs), `/rtc/validate` a 503 and WebSocket upgrades a
502; the gateway logs the outage once, when it starts, and once when the server answers again.
- `GET /rtc`, `/rtc/v1` (WebSocket) and `/rtc/validate`, `/rtc/v1/validate`: room joins, checked
  by `policy.authorize_join`. Signalling only: media (ICE/UDP, TCP, TURN) goes to the SFU nodes
  directly, at the addresses the server puts in its answer. The refresh tokens the server sends
  are signed again with the platform key (`refresh.py`), so a participant can resume with them.
- `GET /agent` (WebSocket): worker registration; every worker message is read and checked
  (`policy.check_worker_message`) before it goes on.
- `GET /`: "OK" (the listener is up), for load balancers.

Every call, join and registration a tenant makes first passes its limits (`limits.Limits`): API
calls, joins and registrations spend a token of their rate; a WebSocket holds one of the tenant's
connections while it is open. Server-issued tokens (an agent's job, a signalling refresh) count
against the tenant whose room they name.

A token is parsed and verified once, then remembered (`policy.VerifiedTokens`), so a tenant
presenting one token over and over, within its limits or far past them, costs little more than the
limit's check and the answer.

An agent whose signalling connection ends without a close frame (its process killed, its pod
gone: the kernel ends the connection, nothing says goodbye) would stay in its room for livekit-server
until ICE gives up on it, ~20 s in which its caller hears nothing and the recovery controller
hears nothing either. A LiveKit SDK closes its socket with a close frame before it resumes or
leaves, so after `LOST_AGENT_GRACE_SECONDS` without a resume the gateway sends livekit-server the
agent's leave (reason `AGENT_ERROR`): the server removes it at once and the recovery controller
dispatches the agent again. A resume through either replica makes the server close this session,
and then nothing is sent.

On the metrics port: `/metrics` (`metrics.Metrics`), `/healthz`, `/readyz`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path
from typing import Optional
from urllib.parse import urlencode

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from livekit.protocol import models as models_pb
from livekit.protocol import rtc as rtc_pb

from .limits import Limited, Limits, RateName
from .metrics import CONTENT_TYPE, Metrics
from .policy import Denied, KeyRing, Principal, VerifiedTokens, authenticate, authorize_join, authorize_twirp, \
    authorize_worker, check_worker_message
from .refresh import resign_refresh
from .scope import GatewayConfig, TenantScope

log = logging.getLogger("voxplane.gateway")

#: livekit-server's own limits (config `limit.signal_message_size_limit`, `max_api_request_body_size`).
MAX_SIGNAL_MESSAGE = 2 * 1024 * 1024
MAX_API_BODY = 10 * 1024 * 1024
#: WebSocket close code for a message the policy refuses (RFC 6455 "policy violation").
CLOSE_POLICY = 1008
#: What a request livekit-server could not be reached for gets (the server restarting, its node gone).
UNAVAILABLE = "livekit-server is unavailable; retry shortly"
#: Errors of a request to livekit-server that mean it did not answer (refused, reset, timed out).
UPSTREAM_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)
#: Seconds between SIGTERM and closing the listeners: readiness fails first, so load balancers and
#: Service endpoints stop sending new connections; open ones reconnect elsewhere (LiveKit clients
#: resume signalling with their refresh token, workers re-register).
DRAIN_SECONDS = float(os.environ.get("VOXPLANE_GATEWAY_DRAIN_SECONDS", "10"))
#: Seconds an agent's session stays open at livekit-server after its connection ended abruptly,
#: for a resume (which closes it) before the gateway says the agent left.
LOST_AGENT_GRACE_SECONDS = 2.0
#: What livekit-server is told when an agent's connection ended abruptly and was not resumed.
LOST_AGENT_LEAVE = rtc_pb.SignalRequest(leave=rtc_pb.LeaveRequest(
    reason=models_pb.DisconnectReason.AGENT_ERROR, action=rtc_pb.LeaveRequest.DISCONNECT)).SerializeToString()


def load_keys(config: GatewayConfig) -> KeyRing:
    """The platform secret and every tenant's, one file per key name in `config.keys_dir`."""
    folder = Path(config.keys_dir)

    def read(name: str) -> str:
        path = folder / name
        try:
            value = path.read_text().strip()
        except OSError as e:
            raise ValueError(f"gateway: cannot read the secret of key {name!r} ({path}): {e.strerror}") from e
        if len(value) < 32:
            raise ValueError(f"gateway: the secret of key {name!r} is shorter than 32 characters")
        return value

    return KeyRing(
        platform_key=config.platform_key,
        platform_secret=read(config.platform_key),
        tenants={t.api_key: (t, read(t.api_key)) for t in config.tenants.values()},
    )


def _token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header:
        return header[len("Bearer "):] if header.startswith("Bearer ") else ""
    return request.query.get("access_token", "")


def _is_agent(principal: Principal) -> bool:
    """Whether a join is an agent's, as livekit-server decides it (participant kind, or the `agent` grant)."""
    return principal.claims.get("kind") == "agent" or principal.video.get("agent") is True


def _twirp_error(denied: Denied) -> web.Response:
    return web.json_response({"code": denied.code, "msg": denied.message}, status=denied.status)


def _twirp_unavailable() -> web.Response:
    """livekit-server did not answer: Twirp's `unavailable` (HTTP 503), which LiveKit's SDKs treat
    as retryable, with `Retry-After`."""
    return web.json_response({"code": "unavailable", "msg": UNAVAILABLE}, status=503, headers={"Retry-After": "1"})


def _twirp_limited(limited: Limited) -> web.Response:
    """Twirp's error body with code `resource_exhausted` (HTTP 429), as livekit-server answers."""
    return web.json_response({"code": limited.code, "msg": limited.message}, status=limited.status,
                             headers={"Retry-After": str(limited.retry_after)})


def _http_limited(limited: Limited) -> web.Response:
    """A refused upgrade or /rtc/validate: the status and the reason as text, as livekit-server's
    HandleError writes them."""
    return web.Response(status=limited.status, text=limited.message, headers={"Retry-After": str(limited.retry_after)})


class Gateway:
    """One gateway: `await start()`, `await stop()`; or `run()` to serve until SIGTERM."""

    def __init__(self, config: GatewayConfig, keys: Optional[KeyRing] = None):
        self.config = config
        self.keys = keys or load_keys(config)
        self.limits = Limits(config.limits)
        self.verified = VerifiedTokens()
        self.metrics = Metrics()
        self.ready = False
        self._session: Optional[aiohttp.ClientSession] = None
        self._runners: list[web.AppRunner] = []
        self._sockets: set[web.WebSocketResponse] = set()
        #: livekit-server failed to answer the last request sent to it (logged once per outage).
        self._upstream_down = False
        upstream = config.upstream
        self._ws_upstream = "ws" + upstream[len("http"):] if upstream.startswith("http") else upstream

    # --- lifecycle ---

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
            timeout=aiohttp.ClientTimeout(total=None, connect=5, sock_read=None),
            auto_decompress=False,
        )
        for app, port in ((self.app(), self.config.listen_port), (self.metrics_app(), self.config.metrics_port)):
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, self.config.listen_host, port, reuse_address=True).start()
            self._runners.append(runner)
        self.ready = True
        log.info("gateway: listening on %s:%d (metrics %d), upstream %s, %d tenants", self.config.listen_host,
                 self.config.listen_port, self.config.metrics_port, self.config.upstream, len(self.config.tenants))

    async def stop(self) -> None:
        self.ready = False
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"gateway shutting down")
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT; then fail readiness, wait `DRAIN_SECONDS` (a second signal
        cuts it short), close."""
        await self.start()
        stop, force = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            (force if stop.is_set() else stop).set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        await stop.wait()
        self.ready = False
        log.info("gateway: draining for %.0fs", DRAIN_SECONDS)
        try:
            await asyncio.wait_for(force.wait(), DRAIN_SECONDS)
        except asyncio.TimeoutError:
            pass
        await self.stop()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "Gateway.start() first"
        return self._session

    # --- apps ---

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_API_BODY)
        app.router.add_get("/", self._root)
        app.router.add_post("/twirp/{service}/{method}", self._twirp)
        for path in ("/rtc", "/rtc/v1"):
            app.router.add_get(path, self._rtc)
            app.router.add_get(path + "/validate", self._rtc_validate)
        app.router.add_get("/agent", self._agent)
        return app

    def metrics_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def _root(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def _readyz(self, request: web.Request) -> web.Response:
        return web.Response(text="OK") if self.ready else web.Response(status=503, text="draining")

    # --- Twirp ---

    async def _twirp(self, request: web.Request) -> web.StreamResponse:
        received = time.perf_counter()
        service, method = request.match_info["service"], request.match_info["method"]
        json_body = request.content_type == "application/json"
        route = "twirp"
        try:
            principal = authenticate(_token(request), self.keys, verified=self.verified)
        except Denied as d:
            self.metrics.deny(route, "", d.reason)
            return _twirp_error(d)
        limited = self._spend(route, principal, "api_calls")
        if limited is not None:
            return _twirp_limited(limited)
        try:
            if request.content_type not in ("application/json", "application/protobuf"):
                raise Denied("bad_route", f"unexpected Content-Type {request.content_type!r}", "request")
            body = await request.read()
            decision = authorize_twirp(principal, service, method, body, json_body)
        except Denied as d:
            self.metrics.deny(route, principal.label, d.reason)
            log.info("gateway: refused %s/%s for %s: %s", service, method, principal.label, d.message)
            return _twirp_error(d)
        token = self.keys.mint(decision.claims, ttl=self.config.token_ttl_seconds, not_after=principal.expires)
        started = time.perf_counter()
        try:
            async with self.session.post(
                f"{self.config.upstream}/twirp/{service}/{method}", data=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": request.content_type},
            ) as resp:
                data = await resp.read()
        except UPSTREAM_ERRORS as e:
            self._upstream_lost(route, principal.label, e)
            return _twirp_unavailable()
        self._upstream_back()
        self.metrics.upstream(route, time.perf_counter() - started)
        if resp.status == 200 and decision.filter_response is not None:
            data = decision.filter_response(data, json_body)
        self.metrics.forwarded(route, principal.label, time.perf_counter() - received)
        return web.Response(status=resp.status, body=data,
                            headers={"Content-Type": resp.headers.get("Content-Type", request.content_type)})

    # --- livekit-server unreachable ---

    def _upstream_lost(self, route: str, label: str, error: BaseException) -> None:
        """Count a request livekit-server did not answer; log the first of an outage only (a
        restart of the server must not become a line per request, nor a traceback)."""
        self.metrics.request(route, label, "upstream_error")
        if not self._upstream_down:
            self._upstream_down = True
            log.warning("gateway: livekit-server at %s unreachable (%s); answering 503 unavailable until it is back",
                        self.config.upstream, error or type(error).__name__)

    def _upstream_back(self) -> None:
        if self._upstream_down:
            self._upstream_down = False
            log.info("gateway: livekit-server at %s answers again", self.config.upstream)

    # --- limits ---

    def _tenant_of(self, principal: Principal) -> Optional[str]:
        """The tenant a request counts against: the token's own; for a server-issued token, the
        tenant whose room it names (None: no tenant's, no tenant limit)."""
        if principal.tenant is not None:
            return principal.tenant.name
        room = principal.video.get("room")
        owner = self.config.room_owner(room) if isinstance(room, str) else None
        return owner.name if owner is not None else None

    def _spend(self, route: str, principal: Principal, rate: RateName,
               check: Optional[RateName] = None) -> Optional[Limited]:
        """Spend a token of the principal's tenant's `rate` (and see that `check` has one left);
        the refusal, counted, when over. Every authenticated request counts, whatever the policy
        says of it next: refusing costs the gateway too."""
        tenant = self._tenant_of(principal)
        if tenant is None:
            return None
        try:
            self.limits.take(tenant, rate)
            if check is not None:
                self.limits.check(tenant, check)
        except Limited as limited:
            self.metrics.limit(route, tenant, limited.limit)
            # Debug: a flood of refusals must not become a flood of log lines.
            log.debug("gateway: limited %s of %s: %s", route, tenant, limited.message)
            return limited
        return None

    # --- signalling ---

    def _authenticate(self, request: web.Request, route: str) -> Principal | web.Response:
        try:
            return authenticate(_token(request), self.keys, verified=self.verified)
        except Denied as d:
            self.metrics.deny(route, "", d.reason)
            return web.Response(status=d.status, text=d.message)

    def _join_token(self, principal: Principal, route: str) -> str | web.Response:
        try:
            claims = authorize_join(principal)
        except Denied as d:
            self.metrics.deny(route, principal.label, d.reason)
            return web.Response(status=d.status, text=d.message)
        return self.keys.mint(claims, ttl=self.config.token_ttl_seconds, not_after=principal.expires)

    async def _rtc_validate(self, request: web.Request) -> web.StreamResponse:
        route = "rtc"
        principal = self._authenticate(request, route)
        if isinstance(principal, web.Response):
            return principal
        # An SDK asks here why its upgrade failed: the join limit answers as the upgrade did,
        # without spending a join; the request itself is an API call.
        limited = self._spend(route, principal, "api_calls", check="joins")
        if limited is not None:
            return _http_limited(limited)
        token = self._join_token(principal, route)
        if isinstance(token, web.Response):
            return token
        query = [(k, v) for k, v in request.query.items() if k != "access_token"]
        try:
            async with self.session.get(f"{self.config.upstream}{request.path}?{urlencode(query)}",
                                        headers={"Authorization": f"Bearer {token}"}) as resp:
                status, data = resp.status, await resp.read()
        except UPSTREAM_ERRORS as e:
            self._upstream_lost(route, principal.label, e)
            return web.Response(status=503, text=UNAVAILABLE, headers={"Retry-After": "1"})
        self._upstream_back()
        return web.Response(status=status, body=data, headers={"Access-Control-Allow-Origin": "*"})

    async def _rtc(self, request: web.Request) -> web.StreamResponse:
        received, route = time.perf_counter(), "rtc"
        principal = self._authenticate(request, route)
        if isinstance(principal, web.Response):
            return principal
        limited = self._spend(route, principal, "joins")
        if limited is not None:
            return _http_limited(limited)
        token = self._join_token(principal, route)
        if isinstance(token, web.Response):
            return token
        return await self._proxy_ws(request, route, principal, token, received)

    async def _agent(self, request: web.Request) -> web.StreamResponse:
        received, route = time.perf_counter(), "agent"
        principal = self._authenticate(request, route)
        if isinstance(principal, web.Response):
            return principal
        limited = self._spend(route, principal, "worker_registrations")
        if limited is not None:
            return _http_limited(limited)
        try:
            claims = authorize_worker(principal)
        except Denied as d:
            self.metrics.deny(route, principal.label, d.reason)
            return web.Response(status=d.status, text=d.message)
        token = self.keys.mint(claims, ttl=self.config.token_ttl_seconds, not_after=principal.expires)
        return await self._proxy_ws(request, route, principal, token, received)

    async def _proxy_ws(self, request: web.Request, route: str, principal: Principal,
                        token: str, received: float) -> web.StreamResponse:
        """Forward the upgrade; the socket holds one of its tenant's connections while open
        (refused with 429 at the tenant's cap)."""
        client = web.WebSocketResponse(max_msg_size=MAX_SIGNAL_MESSAGE, autoping=True)
        if not client.can_prepare(request).ok:
            return web.Response(status=404, text="expected a WebSocket upgrade")
        tenant = self._tenant_of(principal)
        if tenant is None:
            return await self._forward_ws(request, client, route, principal, principal.label, token, received)
        try:
            self.limits.open(tenant)
        except Limited as limited:
            self.metrics.limit(route, tenant, limited.limit)
            # Debug: a flood of refusals must not become a flood of log lines.
            log.debug("gateway: limited %s of %s: %s", route, tenant, limited.message)
            return _http_limited(limited)
        try:
            return await self._forward_ws(request, client, route, principal, tenant, token, received)
        finally:
            self.limits.close(tenant)

    async def _forward_ws(self, request: web.Request, client: web.WebSocketResponse, route: str,
                          principal: Principal, label: str, token: str, received: float) -> web.StreamResponse:
        query = [(k, v) for k, v in request.query.items() if k != "access_token"]
        url = f"{self._ws_upstream}{request.path}" + (f"?{urlencode(query)}" if query else "")
        forwarded = ", ".join(x for x in (request.headers.get("X-Forwarded-For"), request.remote) if x)
        headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": forwarded}
        if "User-Agent" in request.headers:
            headers["User-Agent"] = request.headers["User-Agent"]
        try:
            upstream = await self.session.ws_connect(url, headers=headers, max_msg_size=MAX_SIGNAL_MESSAGE,
                                                     autoping=True)
        except aiohttp.WSServerHandshakeError as e:
            # The server's own refusal (401, 404, ...), passed on as it gave it.
            self._upstream_back()
            self.metrics.request(route, label, f"upstream_{e.status}")
            return web.Response(status=e.status, text=e.message or "refused by livekit-server")
        except UPSTREAM_ERRORS as e:
            self._upstream_lost(route, label, e)
            return web.Response(status=502, text=f"livekit-server unreachable: {e}")
        self._upstream_back()

        try:
            await client.prepare(request)
        except BaseException:
            await upstream.close()
            raise
        self._sockets.add(client)
        self.metrics.forwarded(route, label, time.perf_counter() - received)
        self.metrics.opened(route, label)
        scope = principal.tenant if route == "agent" else None
        try:
            await self._pump(client, upstream, route, principal, label, scope)
        finally:
            self._sockets.discard(client)
            if not upstream.closed:
                await upstream.close()
            if not client.closed:
                await client.close()
            # Last, with no await after it: the caller frees the tenant's connection in the same step.
            self.metrics.closed(route, label)
        return client

    async def _pump(self, client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse, route: str,
                    principal: Principal, label: str, scope: Optional[TenantScope]) -> None:
        async def client_to_server() -> None:
            async for msg in client:
                if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                    if scope is not None:
                        try:
                            check_worker_message(scope, msg.data)
                        except Denied as d:
                            self.metrics.deny(route, principal.label, d.reason)
                            log.info("gateway: closed %s socket of %s: %s", route, principal.label, d.message)
                            await client.close(code=CLOSE_POLICY, message=d.message[:120].encode())
                            return
                    if msg.type == WSMsgType.BINARY:
                        await upstream.send_bytes(msg.data)
                    else:
                        await upstream.send_str(msg.data)
                elif msg.type == WSMsgType.ERROR:
                    return

        # A participant's refresh tokens are signed again with the platform key (refresh.py), so
        # its resume through either replica is honoured.
        joined = (principal.video.get("room"), principal.claims.get("sub")) if route == "rtc" else None

        async def server_to_client() -> None:
            async for msg in upstream:
                if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                    data = msg.data
                    if joined is not None:
                        data = resign_refresh(data, self.keys, room=str(joined[0]), identity=str(joined[1]))
                        if data is None:
                            log.warning("gateway: dropped a refresh token for another room or identity than "
                                        "the connection's (%s in %r)", joined[1], joined[0])
                            continue
                    if client.closed:
                        continue  # gone abruptly: the session waits for a resume (below)
                    if isinstance(data, bytes):
                        await client.send_bytes(data)
                    else:
                        await client.send_str(data)
                elif msg.type == WSMsgType.ERROR:
                    return
            await client.close(code=upstream.close_code or 1000)

        from_client, from_server = asyncio.ensure_future(client_to_server()), asyncio.ensure_future(server_to_client())
        tasks = [from_client, from_server]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if from_client.done() and not upstream.closed:
                if joined is not None and client.close_code == WSCloseCode.ABNORMAL_CLOSURE and _is_agent(principal):
                    await self._agent_gone(upstream, from_server, label, joined)
                await upstream.close(code=client.close_code or 1000)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _agent_gone(self, upstream: aiohttp.ClientWebSocketResponse, from_server: asyncio.Future[None],
                          label: str, joined: tuple[object, object]) -> None:
        """An agent's connection ended without a close frame: unless a resume closes this session
        within the grace, tell livekit-server the agent left."""
        done, _ = await asyncio.wait([from_server], timeout=LOST_AGENT_GRACE_SECONDS)
        if done or upstream.closed:
            return
        try:
            await upstream.send_bytes(LOST_AGENT_LEAVE)
        except UPSTREAM_ERRORS + (ConnectionError,):
            return
        self.metrics.agent_gone(label)
        log.info("gateway: agent %s of room %r lost its connection and did not resume in %.0f s; told "
                 "livekit-server it left", joined[1], joined[0], LOST_AGENT_GRACE_SECONDS)
