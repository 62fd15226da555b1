"""`voxplane livekit route`: how a running livekit-server routes one inbound call, asked the way
livekit-sip asks it.

When an INVITE arrives, livekit-sip asks livekit-server two questions over the deployment's
Redis bus (psrpc service `IOInfo`): `GetSIPTrunkAuthentication` (which trunk admits this call,
and which digest credentials it demands) and `EvaluateSIPDispatchRules` (which room, which
agents). `tools/routeprobe` (Go, built with livekit-server v1.13.5's own protocol and psrpc
versions by scripts/ensure-tool.sh routeprobe) asks exactly those, with an `rpc.SIPCall` filled as
livekit-sip fills it; this module sends it the requests and turns the answers into a decision.

Two kinds of facts, kept apart in every answer:
- **server**: what livekit-server answered, verbatim (the trunk's password redacted). These
  are the routing decisions voxplane's trunks and dispatch rules produce.
- **bridge**: what livekit-sip does with those answers, per its documented handling
  (its pkg/service/psrpc.go): auth error -> 503, no trunk ->
  404, drop -> silent drop, username+password -> the *bridge* runs the digest challenge (the
  server never sees the caller's credentials, so voxplane compares them here the way the bridge
  would); dispatch ACCEPT joins the room, REQUEST_PIN asks for DTMF digits and asks again with
  them, REJECT -> 404, DROP -> silent drop, error -> 503. The media path itself (RTP, the room
  join) is exercised only by the opt-in `make e2e` with a real livekit-sip.

Nothing here writes: both RPCs are read-only on the server (no rooms created, no state changed).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Mapping, Optional, Sequence

from ..manifest.model import Agent, Region
from .desired import ATTRIBUTE_PREFIX, DesiredTrunk, desired_objects
from .objects import normalize_number

#: An explicit probe binary (skips the build script).
PROBE_BIN_ENV = "VOXPLANE_ROUTEPROBE_BIN"
#: host:port of the livekit-server deployment's Redis.
REDIS_ENV = "VOXPLANE_LIVEKIT_REDIS"
#: Its password, if any; handed to the probe through its environment, never its argv.
REDIS_PASSWORD_ENV = "VOXPLANE_LIVEKIT_REDIS_PASSWORD"
#: Caller number used when none is given.
DEFAULT_CALLER = "+15550100199"

_ENSURE_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ensure-tool.sh"
_REDACTED = "<redacted>"


class RouteError(Exception):
    """The question could not be asked (no binary, no Redis, bad input); `str()` is one line."""


# --- the probe binary ---------------------------------------------------------------------------


def ensure_probe_binary() -> Path:
    """The routeprobe binary: $VOXPLANE_ROUTEPROBE_BIN, else scripts/ensure-tool.sh routeprobe builds
    it once into the cache (a few seconds when livekit-server's build is cached). Raises
    `RouteError` with the reason when it cannot."""
    explicit = os.environ.get(PROBE_BIN_ENV)
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise RouteError(f"{PROBE_BIN_ENV}={explicit}: not an executable file")
        return path
    if not _ENSURE_SCRIPT.is_file():
        raise RouteError(f"{_ENSURE_SCRIPT} not found (voxplane not run from its checkout?); set {PROBE_BIN_ENV}")
    proc = subprocess.run(["bash", str(_ENSURE_SCRIPT), "routeprobe", "--print-path"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        reason = next((ln for ln in reversed(lines) if "error:" in ln), lines[-1] if lines else "no output")
        raise RouteError(f"cannot build the route probe ({_ENSURE_SCRIPT.name} exit {proc.returncode}): {reason}")
    path = Path(proc.stdout.strip())
    if not path.is_file():
        raise RouteError(f"{_ENSURE_SCRIPT.name} printed {proc.stdout.strip()!r}: not a file")
    return path


def redis_address(option: Optional[str]) -> tuple[str, str]:
    """(host:port, where it came from): --redis, else $VOXPLANE_LIVEKIT_REDIS, else the dev
    servers `make livekit-up` started (their state file, only while both still run)."""
    if option:
        return option, "--redis"
    env = os.environ.get(REDIS_ENV)
    if env:
        return env, REDIS_ENV
    from ..dev.servers import running_state, state_path

    state = running_state()  # verifies that the recorded processes still run
    if state is not None:
        return str(state["redis"]["address"]), f"dev servers ({state_path()})"
    raise RouteError(
        f"no Redis address for livekit-server: pass --redis HOST:PORT, set {REDIS_ENV}, or start the dev "
        'servers with `eval "$(make -s livekit-up)"`')


# --- one call -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """An inbound INVITE as livekit-sip sees it: called number, caller number, the source IP of
    the packet (no port) and the host in the request line."""

    to: str
    from_: str = DEFAULT_CALLER
    address: str = "127.0.0.1"
    to_host: str = "localhost"
    call_id: str = field(default_factory=lambda: "SCL_" + secrets.token_hex(6))
    sip_call_id: str = field(default_factory=lambda: secrets.token_hex(12))

    def sip_call(self) -> dict[str, Any]:
        """`rpc.SIPCall` as protojson, filled as livekit-sip's pkg/sip/inbound.go fills it:
        SourceIp without port, From/To/Address as SIP URIs, one Via."""
        return {
            "lk_call_id": self.call_id,
            "sip_call_id": self.sip_call_id,
            "source_ip": self.address,
            "from": {"user": self.from_, "host": self.address, "port": 5060, "transport": "SIP_TRANSPORT_UDP"},
            "to": {"user": self.to, "host": self.to_host},
            "address": {"user": self.to, "host": self.to_host, "port": 5060, "transport": "SIP_TRANSPORT_UDP"},
            "via": [{"host": self.address, "port": 5060, "transport": "SIP_TRANSPORT_UDP"}],
        }


def check_address(address: str) -> str:
    """The source address as livekit-sip sends it: an IP without port. Raises `RouteError`."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise RouteError(f"--address {address!r}: not an IP address (livekit-sip sends the packet's source IP, "
                         "without port)") from None


# --- talking to the probe -----------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One RPC answer: `response` is the server's protojson (proto field names), or `error`."""

    ok: bool
    ms: float
    response: Mapping[str, Any] = field(default_factory=dict)
    error: str = ""
    code: str = ""


class RouteProbe:
    """A running routeprobe process: many requests, one startup (~200 ms settle wait)."""

    def __init__(self, redis: str, *, binary: Optional[Path] = None, password: Optional[str] = None,
                 settle: float = 0.2, timeout: float = 3.0, startup_timeout: float = 10.0):
        self.redis = redis
        self.binary = binary
        self.password = password
        self.settle = settle
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self._proc: Optional[subprocess.Popen[str]] = None
        self._answers: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._next_id = 0
        self._reader: Optional[threading.Thread] = None
        self._errs: Optional[threading.Thread] = None
        self._stderr: list[str] = []
        self._ready = False

    def __enter__(self) -> "RouteProbe":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def start(self) -> "RouteProbe":
        binary = self.binary or ensure_probe_binary()
        env = {k: v for k, v in os.environ.items() if k != REDIS_PASSWORD_ENV}
        if self.password:
            env[REDIS_PASSWORD_ENV] = self.password
        argv = [str(binary), "-redis", self.redis, "-settle", f"{int(self.settle * 1000)}ms",
                "-timeout", f"{int(self.timeout * 1000)}ms"]
        try:
            self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True, env=env, bufsize=1)
        except OSError as e:
            raise RouteError(f"cannot run the route probe {binary}: {e}") from None
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._reader = threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True)
        self._reader.start()
        self._errs = threading.Thread(target=self._drain, args=(self._proc.stderr,), daemon=True)
        self._errs.start()
        deadline = time.monotonic() + self.startup_timeout
        proc = self._proc
        while True:
            with self._cond:
                if self._ready:
                    break
                self._cond.wait(0.1)
            if not self._ready and (proc.poll() is not None or not self._reader.is_alive()):
                code = proc.wait()
                self.close()  # joins the stderr reader: its last line is the reason
                why = self._stderr[-1] if self._stderr else f"exit {code}"
                raise RouteError(f"route probe failed to start: {why.removeprefix('routeprobe: ')}")
            if not self._ready and time.monotonic() > deadline:
                self.close()
                raise RouteError(f"route probe did not get ready within {self.startup_timeout:g}s (Redis {self.redis})")
        return self

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                if msg.get("ready"):
                    self._ready = True
                elif isinstance(msg.get("id"), int):
                    self._answers[msg["id"]] = msg
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _drain(self, stream: IO[str]) -> None:
        for line in stream:
            self._stderr.append(line.rstrip("\n"))

    def ask(self, method: str, call: Call, *, trunk_id: str = "", pin: str = "", no_pin: bool = False) -> Answer:
        return self.ask_many([(method, call, {"trunk_id": trunk_id, "pin": pin, "no_pin": no_pin})])[0]

    def ask_many(self, requests: Sequence[tuple[str, Call, Mapping[str, Any]]]) -> list[Answer]:
        """Send every request at once (the probe serves them concurrently), then wait for all."""
        if self._proc is None or self._proc.stdin is None or self._proc.poll() is not None:
            raise RouteError("route probe is not running")
        ids = []
        lines = []
        for method, call, extra in requests:
            self._next_id += 1
            ids.append(self._next_id)
            lines.append(json.dumps({
                "id": self._next_id, "method": method, "call": call.sip_call(),
                "sip_trunk_id": extra.get("trunk_id", ""), "pin": extra.get("pin", ""),
                "no_pin": bool(extra.get("no_pin", False)),
            }))
        try:
            self._proc.stdin.write("\n".join(lines) + "\n")
            self._proc.stdin.flush()
        except OSError as e:
            raise RouteError(f"route probe stopped: {e}") from None
        deadline = time.monotonic() + self.timeout + 2.0
        with self._cond:
            while not all(i in self._answers for i in ids):
                left = deadline - time.monotonic()
                if left <= 0 or self._reader is None or not self._reader.is_alive():
                    raise RouteError(f"route probe gave no answer within {self.timeout + 2.0:g}s")
                self._cond.wait(min(left, 0.1))
            raw = [self._answers.pop(i) for i in ids]
        return [Answer(ok=bool(m.get("ok")), ms=float(m.get("ms", 0.0)), response=m.get("response") or {},
                       error=str(m.get("error", "")), code=str(m.get("code", ""))) for m in raw]

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.stdin is not None:
                try:
                    self._proc.stdin.close()
                except OSError:
                    pass
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            for thread in (self._reader, self._errs):  # both end at EOF, now the process is gone
                if thread is not None and thread is not threading.current_thread():
                    thread.join(timeout=5)
            for stream in (self._proc.stdout, self._proc.stderr):
                if stream is not None:
                    stream.close()
            self._proc = None


# --- the decision -------------------------------------------------------------------------------


@dataclass
class Decision:
    """The routing of one call. `accepted`/`reason`/`bridge` combine the server's answers with
    livekit-sip's documented handling; `server` holds the answers themselves."""

    call: Call
    accepted: bool
    reason: str
    #: What livekit-sip does: "join", "digest-challenge", "pin-prompt", "404", "503", "drop".
    bridge: str
    trunk: Optional[dict[str, str]] = None
    rule: Optional[dict[str, str]] = None
    room: Optional[str] = None
    agents: list[str] = field(default_factory=list)
    credentials: dict[str, Any] = field(default_factory=dict)
    pin: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    declared: Optional[dict[str, Any]] = None
    notes: list[str] = field(default_factory=list)

    @property
    def latency_ms(self) -> float:
        return float(sum(self.server.get("ms", {}).values()))

    def as_dict(self, region: Optional[str] = None) -> dict[str, Any]:
        return {
            **({"region": region} if region else {}),
            "call": {"to": self.call.to, "from": self.call.from_, "address": self.call.address,
                     "to_host": self.call.to_host, "lk_call_id": self.call.call_id},
            "accepted": self.accepted,
            "reason": self.reason,
            "trunk": self.trunk,
            "rule": self.rule,
            "room": self.room,
            "agents": self.agents,
            "credentials": self.credentials,
            "pin": self.pin,
            "bridge": {
                "action": self.bridge,
                "source": "livekit-sip's documented handling of the server's answers (pkg/service/psrpc.go), "
                          "applied by voxplane; digest credentials are compared here as the bridge compares them",
            },
            "server": {
                "source": "livekit-server's answers over Redis (psrpc IOInfo), as livekit-sip receives them",
                **self.server,
            },
            "declared": self.declared,
            "notes": self.notes,
        }


def _redact(response: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(response)
    if out.get("password"):
        out["password"] = _REDACTED
    return out


def _rule_of(resp: Mapping[str, Any]) -> Optional[dict[str, str]]:
    rid = resp.get("sip_dispatch_rule_id")
    if not rid:
        return None
    attrs = resp.get("participant_attributes") or {}
    out = {"id": str(rid)}
    for key in ("tenant", "agent", "region", "source"):
        if f"{ATTRIBUTE_PREFIX}{key}" in attrs:
            out[key] = str(attrs[f"{ATTRIBUTE_PREFIX}{key}"])
    return out


def _result(resp: Mapping[str, Any]) -> str:
    """The dispatch result name; the legacy 0 means ACCEPT unless `request_pin` (protocol)."""
    result = str(resp.get("result") or "LEGACY_ACCEPT_OR_PIN")
    if result == "LEGACY_ACCEPT_OR_PIN":
        return "REQUEST_PIN" if resp.get("request_pin") else "ACCEPT"
    return result


def decide(
    probe: RouteProbe,
    call: Call,
    *,
    username: Optional[str] = None,
    password: Optional[str] = None,
    pin: Optional[str] = None,
) -> Decision:
    """Ask as livekit-sip asks, then apply its handling of the answers.

    The dispatch question is always asked, even when the bridge would stop after
    authentication, so the whole server decision is visible; `accepted` follows the bridge."""
    auth = probe.ask("auth", call)
    trunk_id = str(auth.response.get("sip_trunk_id") or "") if auth.ok else ""
    # livekit-sip passes the trunk found by auth as a hint; the server re-matches anyway.
    first = probe.ask("dispatch", call, trunk_id=trunk_id)
    dispatches = [first]
    asked_pin = False
    if first.ok and _result(first.response) == "REQUEST_PIN" and pin:
        asked_pin = True
        dispatches.append(probe.ask("dispatch", call, trunk_id=trunk_id, pin=pin))
    final = dispatches[-1]

    server: dict[str, Any] = {
        "auth": _redact(auth.response) if auth.ok else {"error": auth.error, "code": auth.code},
        "dispatch": [d.response if d.ok else {"error": d.error, "code": d.code} for d in dispatches],
        "ms": {"auth": auth.ms, **{f"dispatch{'_pin' if i else ''}": d.ms for i, d in enumerate(dispatches)}},
    }
    provider = auth.response.get("provider_info") or {} if auth.ok else {}
    trunk = {"id": trunk_id, "name": str(provider.get("name") or "")} if trunk_id else None
    demanded_user = str(auth.response.get("username") or "") if auth.ok else ""
    demanded_pass = str(auth.response.get("password") or "") if auth.ok else ""
    needs_digest = bool(demanded_user and demanded_pass)
    creds: dict[str, Any] = {"required": needs_digest, "username": demanded_user or None}
    if not needs_digest:
        creds["given"] = "ignored (trunk demands none)" if (username or password) else "none"
    elif username is None and password is None:
        creds["given"] = "none"
    else:
        ok = hmac.compare_digest((username or "").encode(), demanded_user.encode()) and hmac.compare_digest(
            (password or "").encode(), demanded_pass.encode())
        creds["given"] = "match" if ok else "mismatch"

    d = Decision(call=call, accepted=False, reason="", bridge="", trunk=trunk, credentials=creds, server=server,
                 pin={"required": False, "given": bool(pin)})
    if final.ok:
        d.rule = _rule_of(final.response)
        d.agents = [str(a.get("agent_name")) for a in (final.response.get("room_config") or {}).get("agents", [])]
        if _result(final.response) == "ACCEPT":
            d.room = str(final.response.get("room_name") or "") or None
    if first.ok and _result(first.response) == "REQUEST_PIN":
        d.pin["required"] = True
        d.rule = d.rule or _rule_of(first.response)

    where = f"call to {call.to} from {call.address}"
    # 1. Authentication, as the bridge handles it.
    if not auth.ok:
        d.bridge, d.reason = "503", f"server error on trunk lookup ({auth.error}); livekit-sip answers 503"
        return d
    if auth.response.get("drop"):
        d.bridge, d.reason = "drop", f"server says drop for the {where}; livekit-sip drops it silently"
        return d
    if not trunk_id:
        d.bridge, d.reason = "404", f"no trunk admits the {where}; livekit-sip answers 404"
        return d
    trunk_label = trunk["name"] if trunk and trunk["name"] else trunk_id
    if needs_digest and creds["given"] != "match":
        d.bridge = "digest-challenge"
        if creds["given"] == "none":
            d.reason = (f"trunk {trunk_label} demands digest credentials (user {demanded_user!r}); livekit-sip "
                        "challenges the caller (401), pass --username/--password to check credentials")
        else:
            d.reason = (f"trunk {trunk_label} demands digest credentials (user {demanded_user!r}) and the given ones do "
                        "not match; livekit-sip refuses the digest response (401)")
        return d
    # 2. Dispatch.
    if not first.ok or not final.ok:
        bad = final if not final.ok else first
        d.bridge, d.reason = "503", f"server error on dispatch ({bad.error}); livekit-sip answers 503"
        return d
    result = _result(final.response)
    if result == "REQUEST_PIN":
        d.bridge = "pin-prompt"
        d.reason = (f"rule {final.response.get('sip_dispatch_rule_id', '')} demands a PIN; livekit-sip prompts for "
                    "DTMF digits ending in #, pass --pin to check one")
        return d
    pin_note = " after the PIN" if asked_pin else ""
    if result == "ACCEPT":
        d.accepted, d.bridge = True, "join"
        agents = ", ".join(d.agents) or "no agent"
        d.reason = f"trunk {trunk_label} admits the {where}; livekit-sip joins the caller to room {d.room}{pin_note} ({agents})"
        if pin and not asked_pin:
            d.notes.append("--pin not used: the rule demands none, so livekit-sip never prompts for it")
        return d
    if result == "REJECT":
        d.bridge, d.reason = "404", f"dispatch rejected{pin_note}; livekit-sip answers 404"
        return d
    d.bridge = "drop"
    d.reason = (f"no dispatch rule accepts the {where}{' with that PIN' if asked_pin else ''}; "
                "livekit-sip drops it silently")
    return d


# --- what the manifests say -----------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """The trunk the manifests give a called number in a region, and whether it admits an address."""

    tenant: str
    agent: str
    agent_name: str
    source: Optional[str]
    admits_address: bool
    needs_digest: bool


def expected_route(region: Region, agents: Sequence[Agent], to: str, address: str) -> Optional[Expected]:
    """What the region's manifests declare for a call to `to` from `address` (None: no agent
    claims the number). Numbers compare as LiveKit normalises them; addresses against the
    trunk's allow-list (the agent's, else the region's carrier list)."""
    wanted = normalize_number(to)
    by_owner = {(a.tenant, a.name): a for a in agents}
    for obj in desired_objects(region, agents):
        if not isinstance(obj, DesiredTrunk):
            continue
        if wanted not in {normalize_number(n) for n in obj.numbers}:
            continue
        agent = by_owner[(obj.owner.tenant, obj.owner.agent)]
        return Expected(obj.owner.tenant, obj.owner.agent, agent.scoped_name, obj.source,
                        address_allowed(address, obj.allowed_addresses), obj.auth_password is not None)
    return None


def address_allowed(address: str, allowed: Sequence[str]) -> bool:
    """Whether `address` is in one of the allow-list entries (IPs or CIDRs)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for entry in allowed:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def declared_dict(exp: Optional[Expected], to: str) -> dict[str, Any]:
    if exp is None:
        return {"agent": None, "note": f"no agent of this region declares {to}"}
    return {"tenant": exp.tenant, "agent": exp.agent, "agent_name": exp.agent_name, "source": exp.source,
            "address_allowed": exp.admits_address, "digest": exp.needs_digest}


def check_against_manifests(d: Decision, exp: Optional[Expected]) -> None:
    """Note where the server's decision differs from what the manifests declare (stale sync,
    out-of-band edits): the server is the truth for calls, the manifests for intent."""
    d.declared = declared_dict(exp, d.call.to)
    dispatched = d.agents if d.room else []
    if exp is None:
        if dispatched:
            d.notes.append(f"the server dispatches {', '.join(dispatched)} but no manifest declares {d.call.to}: "
                           "run `voxplane drift` / `voxplane livekit sync`")
        return
    if exp.admits_address and not d.trunk:
        d.notes.append(f"the manifests give {d.call.to} to {exp.tenant}/{exp.agent} but no live trunk admits it: "
                       "run `voxplane livekit sync`")
    if dispatched and dispatched != [exp.agent_name]:
        d.notes.append(f"the server dispatches {', '.join(dispatched)}, the manifests {exp.agent_name}: "
                       "run `voxplane drift`")
    if not exp.admits_address and d.trunk:
        d.notes.append(f"{d.call.address} is outside the declared allow-list but a live trunk admits it: run `voxplane drift`")


def default_address(region: Region) -> str:
    """The first address of the region's carrier allow-list (127.0.0.1 for `local`)."""
    for entry in region.sip.carrier_addresses if region.sip else ():
        try:
            net = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            continue
        return str(net.network_address if net.num_addresses <= 2 else next(net.hosts()))
    return "127.0.0.1"


def text_lines(d: Decision, region: str) -> list[str]:
    """The decision for people: verdict, then the server's answers, then the bridge's part."""
    c = d.call
    verdict = "ACCEPTED" if d.accepted else "REFUSED"
    lines = [f"{verdict}: {d.reason}",
             f"  call        {c.from_} -> {c.to} from {c.address} (region {region})"]
    auth = d.server.get("auth", {})
    ms = d.server.get("ms", {})
    if "error" in auth:
        lines.append(f"  server auth     error: {auth['error']}  ({ms.get('auth', 0):.1f} ms)")
    else:
        t = d.trunk
        what = f"trunk {t['name'] or t['id']} ({t['id']})" if t else "no trunk"
        digest = f", digest user {d.credentials['username']!r}" if d.credentials.get("required") else ", no credentials"
        lines.append(f"  server auth     {what}{digest if t else ''}  ({ms.get('auth', 0):.1f} ms)")
    for i, ans in enumerate(d.server.get("dispatch", [])):
        label = "dispatch+pin" if i else "dispatch"
        key = "dispatch_pin" if i else "dispatch"
        if "error" in ans:
            lines.append(f"  server {label:<9} error: {ans['error']}  ({ms.get(key, 0):.1f} ms)")
            continue
        result = _result(ans)
        extra = ""
        if result == "ACCEPT":
            agents = [a.get("agent_name") for a in (ans.get("room_config") or {}).get("agents", [])]
            extra = f" room {ans.get('room_name')} agents {agents}"
        rid = ans.get("sip_dispatch_rule_id")
        lines.append(f"  server {label:<9}{result}{f' rule {rid}' if rid else ''}{extra}  ({ms.get(key, 0):.1f} ms)")
    if d.credentials.get("required"):
        lines.append(f"  bridge digest   credentials given: {d.credentials['given']} (checked by livekit-sip, not the server)")
    if d.pin.get("required"):
        lines.append(f"  bridge pin      {'given' if d.pin['given'] else 'not given'}")
    lines.append(f"  bridge action   {d.bridge} (livekit-sip's documented handling)")
    if d.declared is not None:
        decl = d.declared
        if decl.get("agent"):
            lines.append(f"  manifests       {c.to} -> {decl['tenant']}/{decl['agent']} ({decl['source']}), "
                         f"address {'allowed' if decl['address_allowed'] else 'not allowed'}")
        else:
            lines.append(f"  manifests       {decl['note']}")
    for note in d.notes:
        lines.append(f"  note: {note}")
    return lines


__all__ = [
    "Answer", "Call", "Decision", "Expected", "RouteError", "RouteProbe", "address_allowed",
    "check_address", "check_against_manifests", "decide", "default_address", "ensure_probe_binary",
    "expected_route", "redis_address", "text_lines",
]
