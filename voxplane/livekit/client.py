"""A small synchronous client for the SIP admin API, on top of `livekit-api`.

- Synchronous: the CLI, the drift command and the Pulumi dynamic provider (gRPC worker threads)
  are all synchronous; each `LiveKitAdmin` owns a private event loop, and the
  aiohttp session is created inside it.
- Counts every API call per method (`calls`), so tests can assert "no writes" and the benchmark
  can report calls made.
- Turns every failure into `LiveKitError` with one line that says what to fix: unreachable
  server, rejected credentials, or the server's own message (conflict errors name the object).
- Lists return everything: livekit-server v1.13.5 pages internally and answers one
  `ListSIP*` call with all items, sorted by ID, ignoring `page.limit` (measured: 25 trunks with
  limit 10 -> 25 items). `list_*` still follows `after_id` if a server does honour the limit.
"""

from __future__ import annotations

import asyncio
import warnings
from collections import Counter
from types import TracebackType
from typing import Any, Awaitable, Callable, Optional, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from jwt import warnings as jwt_warnings
from livekit import api

T = TypeVar("T")

#: Page size asked for; a reply shorter than this (or longer: limit ignored) is the last page.
PAGE_SIZE = 1000
WRITE_METHODS = frozenset({
    "CreateSIPInboundTrunk", "UpdateSIPInboundTrunk", "DeleteSIPTrunk",
    "CreateSIPDispatchRule", "UpdateSIPDispatchRule", "DeleteSIPDispatchRule",
})


class LiveKitError(Exception):
    """A LiveKit API call failed; `str()` is one line meant for people. `code` is the Twirp code
    ("not_found", "invalid_argument", ...) when the server answered, else "unavailable"."""

    def __init__(self, message: str, code: str = "unknown", status: int = 0):
        super().__init__(message)
        self.code = code
        self.status = status


def api_url(url: str) -> str:
    """The HTTP(S) URL of the server API for a ws(s):// or http(s):// LiveKit URL."""
    parts = urlsplit(url.strip())
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https") or not parts.netloc:
        raise LiveKitError(f"not a LiveKit URL: {url!r} (want ws://, wss://, http:// or https://HOST[:PORT])", "invalid_argument")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


class LiveKitAdmin:
    """SIP admin calls against one server. Use as a context manager, or call `close()`."""

    def __init__(self, url: str, api_key: str, api_secret: str, *, timeout: float = 10.0):
        if not api_key or not api_secret:
            raise LiveKitError("no LiveKit API key/secret given (--api-key/--api-secret or LIVEKIT_API_KEY/LIVEKIT_API_SECRET)", "invalid_argument")
        self.url = api_url(url)
        self.api_key = api_key
        self._secret = api_secret
        self.timeout = timeout
        self.calls: Counter[str] = Counter()
        # A private loop, never installed as the thread's current loop: asyncio.run()/Runner
        # would reset the thread's loop on close and break other asyncio users (Pulumi).
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._api: Optional[api.LiveKitAPI] = None

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> "LiveKitAdmin":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._loop is not None:
            try:
                if self._api is not None:
                    self._loop.run_until_complete(self._api.aclose())
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            finally:
                self._api = None
                self._loop.close()
                self._loop = None

    def _lk(self) -> api.LiveKitAPI:
        if self._api is None:
            self._loop = asyncio.new_event_loop()

            async def open_api() -> api.LiveKitAPI:
                # failover only engages for LiveKit Cloud hosts; off keeps one attempt per call.
                return api.LiveKitAPI(
                    url=self.url, api_key=self.api_key, api_secret=self._secret,
                    timeout=aiohttp.ClientTimeout(total=self.timeout), failover=False,
                )

            self._api = self._loop.run_until_complete(open_api())
        return self._api

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def write_calls(self) -> int:
        return sum(n for m, n in self.calls.items() if m in WRITE_METHODS)

    def call(self, method: str, fn: Callable[[api.LiveKitAPI], Awaitable[T]]) -> T:
        """One server API call (`method`, as counted in `calls`), `fn` given the API client; the
        server's and the network's failures come back as one-line LiveKitErrors."""
        lk = self._lk()
        assert self._loop is not None
        self.calls[method] += 1
        try:
            with warnings.catch_warnings():
                # pyjwt warns about secrets under 32 bytes (`livekit-server --dev` uses one);
                # a wrong secret shows up as the server's 401 instead.
                warnings.simplefilter("ignore", jwt_warnings.InsecureKeyLengthWarning)
                return self._loop.run_until_complete(fn(lk))
        except api.TwirpError as e:
            raise self._server_error(method, e) from None
        except aiohttp.ClientConnectorError as e:
            reason = e.os_error.strerror if e.os_error and e.os_error.strerror else str(e.os_error or e)
            raise LiveKitError(f"cannot reach LiveKit at {self.url}: {reason}", "unavailable") from None
        except (asyncio.TimeoutError, TimeoutError):
            raise LiveKitError(f"LiveKit at {self.url} did not answer {method} within {self.timeout:g}s", "unavailable") from None
        except aiohttp.ClientError as e:
            raise LiveKitError(f"cannot talk to LiveKit at {self.url}: {type(e).__name__}: {e}", "unavailable") from None

    def _server_error(self, method: str, e: api.TwirpError) -> LiveKitError:
        if e.status == 401:
            return LiveKitError(
                f"LiveKit at {self.url} rejected API key {self.api_key!r} (401 unauthenticated): wrong key or secret",
                "unauthenticated", 401)
        if e.status == 403:
            return LiveKitError(
                f"LiveKit at {self.url}: API key {self.api_key!r} may not administer SIP (403): {e.message}",
                "permission_denied", 403)
        if e.status == 404 and e.code in ("unknown", "bad_route"):
            return LiveKitError(f"no LiveKit API at {self.url} (HTTP 404 for {method}): is this a LiveKit server URL?", e.code, 404)
        msg = e.message or f"HTTP {e.status}"
        return LiveKitError(f"LiveKit {method} failed ({e.code}): {msg}", e.code, e.status)

    # -- reads ------------------------------------------------------------------------------

    def list_trunks(self) -> list[api.SIPInboundTrunkInfo]:
        """Every inbound trunk, in as few calls as the server allows (one on livekit-server)."""
        return self._paged(
            "ListSIPInboundTrunk",
            lambda lk, page: lk.sip.list_inbound_trunk(api.ListSIPInboundTrunkRequest(page=page)),
            lambda t: t.sip_trunk_id,
        )

    def list_rules(self) -> list[api.SIPDispatchRuleInfo]:
        """Every dispatch rule, in as few calls as the server allows (one on livekit-server)."""
        return self._paged(
            "ListSIPDispatchRule",
            lambda lk, page: lk.sip.list_dispatch_rule(api.ListSIPDispatchRuleRequest(page=page)),
            lambda r: r.sip_dispatch_rule_id,
        )

    def _paged(self, method: str, fetch: Callable[[api.LiveKitAPI, Any], Awaitable[Any]], ident: Callable[[Any], str]) -> list[Any]:
        items: list[Any] = []
        after = ""
        while True:
            page = api.Pagination(after_id=after, limit=PAGE_SIZE)
            def fetch_page(lk: api.LiveKitAPI, page: Any = page) -> Awaitable[Any]:
                return fetch(lk, page)

            resp = self.call(method, fetch_page)
            batch = list(resp.items)
            items.extend(batch)
            # Shorter than asked: last page. Longer: the server ignored the limit and sent all.
            if len(batch) != PAGE_SIZE:
                return items
            after = ident(batch[-1])

    def get_trunk(self, trunk_id: str) -> Optional[api.SIPInboundTrunkInfo]:
        """One trunk by ID (no Get RPC in livekit-api: list filtered by ID), None when gone."""
        resp = self.call("ListSIPInboundTrunk", lambda lk: lk.sip.list_inbound_trunk(
            api.ListSIPInboundTrunkRequest(trunk_ids=[trunk_id])))
        return next((t for t in resp.items if t.sip_trunk_id == trunk_id), None)

    def get_rule(self, rule_id: str) -> Optional[api.SIPDispatchRuleInfo]:
        """One dispatch rule by ID, None when gone."""
        resp = self.call("ListSIPDispatchRule", lambda lk: lk.sip.list_dispatch_rule(
            api.ListSIPDispatchRuleRequest(dispatch_rule_ids=[rule_id])))
        return next((r for r in resp.items if r.sip_dispatch_rule_id == rule_id), None)

    # -- writes -----------------------------------------------------------------------------

    def create_trunk(self, info: api.SIPInboundTrunkInfo) -> api.SIPInboundTrunkInfo:
        return self.call("CreateSIPInboundTrunk", lambda lk: lk.sip.create_inbound_trunk(
            api.CreateSIPInboundTrunkRequest(trunk=info)))

    def update_trunk(self, trunk_id: str, info: api.SIPInboundTrunkInfo) -> api.SIPInboundTrunkInfo:
        """Replace the whole trunk; the ID stays (server: `val.SipTrunkId = info.SipTrunkId`)."""
        return self.call("UpdateSIPInboundTrunk", lambda lk: lk.sip.update_inbound_trunk(trunk_id, info))

    def delete_trunk(self, trunk_id: str) -> None:
        # livekit-server deletes without checking existence or referencing rules (measured).
        self.call("DeleteSIPTrunk", lambda lk: lk.sip.delete_trunk(api.DeleteSIPTrunkRequest(sip_trunk_id=trunk_id)))

    def create_rule(self, info: api.SIPDispatchRuleInfo) -> api.SIPDispatchRuleInfo:
        # The `dispatch_rule=` form: the request's top-level rule fields are deprecated.
        return self.call("CreateSIPDispatchRule", lambda lk: lk.sip.create_dispatch_rule(
            api.CreateSIPDispatchRuleRequest(dispatch_rule=info)))

    def update_rule(self, rule_id: str, info: api.SIPDispatchRuleInfo) -> api.SIPDispatchRuleInfo:
        """Replace the whole rule; the ID stays."""
        return self.call("UpdateSIPDispatchRule", lambda lk: lk.sip.update_dispatch_rule(rule_id, info))

    def delete_rule(self, rule_id: str) -> None:
        """Delete a rule; an already-deleted rule is not an error (the server says not_found)."""
        try:
            self.call("DeleteSIPDispatchRule", lambda lk: lk.sip.delete_dispatch_rule(
                api.DeleteSIPDispatchRuleRequest(sip_dispatch_rule_id=rule_id)))
        except LiveKitError as e:
            if e.code != "not_found":
                raise
