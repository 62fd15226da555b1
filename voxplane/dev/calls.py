"""`voxplane dev calls`: phone calls on demand, through the real routing, as livekit-sip would
place them, without a phone network.

Each call:
1. is routed by the server: the trunk and dispatch rule livekit-server picks for the number, asked
   over its Redis bus exactly as livekit-sip asks (`voxplane.livekit.route`, psrpc `IOInfo`);
   a call the bridge would not join (no trunk, DROP, REJECT, PIN, server error) is refused there;
2. gets its room as livekit-sip has the server create it: the rule's room name and `room_config`
   (its agent dispatches, timeouts, metadata);
3. is joined by its caller: a real rtc participant (`callers.py`, in the agents' venv) with the
   identity, name, metadata and attributes the rule gives the SIP participant, and kind `sip`,
   publishing audio, who stays `duration` seconds and hangs up.

States, as the caller and the server see them:
- **waiting**: placed, no agent in the room yet;
- **answered**: an agent participant joined the room;
- **refused**: the routing refused it, or the server has no job for the room's dispatch
  `REFUSED_AFTER` seconds after the room was created: livekit-server asks the workers once, when
  the room is created, and never again (pkg/agent/client.go `LaunchJob`; a job a worker took
  appears in the dispatch's state at once), so a dispatch without a job by then is lost for good;
- **dropped**: answered, then the agent left (or the room closed) before the caller hung up.

Endpoints: the dev servers (`voxplane dev servers up`) unless --url/--api-key/--api-secret and
--redis (or LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET, VOXPLANE_LIVEKIT_REDIS) say
otherwise; the server's own key signs the callers' tokens, as the bridge's key does.
"""

from __future__ import annotations

import json
import math
import os
import queue
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Optional

from ..livekit.route import Call as RoutedCall, Decision, RouteProbe, decide

__all__ = ["CallRun", "Endpoints", "REFUSED_AFTER", "caller_token", "room_request"]

#: Seconds after the room's creation without a job for its dispatch: refused (see the docstring).
REFUSED_AFTER = 10.0
_CALLERS = Path(__file__).with_name("callers.py")
_ENSURE_VENV = Path(__file__).resolve().parents[2] / "scripts" / "ensure-agents-venv.sh"


class CallsError(RuntimeError):
    """Calls could not be placed at all (no server, no route probe, no caller); one line."""


@dataclass(frozen=True)
class Endpoints:
    """Where the calls go: livekit-server's API (http) and rtc (ws) URLs, a key of its own, its Redis."""

    http_url: str
    ws_url: str
    api_key: str
    api_secret: str
    redis: str


def room_request(decision: Decision) -> Any:
    """The CreateRoomRequest livekit-sip has the server make for an accepted call: the rule's
    room name and its `room_config` (agent dispatches and the settings it carries)."""
    from livekit import api

    config = decision.server["dispatch"][-1].get("room_config") or {}
    agents = [api.RoomAgentDispatch(agent_name=a["agent_name"], metadata=a.get("metadata", ""))
              for a in config.get("agents", [])]
    extra = {k: config[k] for k in ("empty_timeout", "departure_timeout", "max_participants", "metadata") if config.get(k)}
    return api.CreateRoomRequest(name=decision.room, agents=agents, **extra)


def caller_token(endpoints: Endpoints, decision: Decision, room: str) -> str:
    """The SIP participant's token as the bridge makes it: the rule's identity, name, metadata and
    attributes, kind `sip`."""
    from livekit import api

    resp = decision.server["dispatch"][-1]
    attributes = {str(k): str(v) for k, v in (resp.get("participant_attributes") or {}).items()}
    attributes.setdefault("sip.phoneNumber", decision.call.from_)
    attributes.setdefault("sip.trunkPhoneNumber", decision.call.to)
    attributes.setdefault("sip.callID", decision.call.call_id)
    identity = str(resp.get("participant_identity") or f"sip_{decision.call.from_}")
    token = (api.AccessToken(endpoints.api_key, endpoints.api_secret).with_identity(identity)
             .with_name(str(resp.get("participant_name") or identity)).with_kind("sip").with_attributes(attributes)
             .with_grants(api.VideoGrants(room_join=True, room=room)))
    if resp.get("participant_metadata"):
        token = token.with_metadata(str(resp["participant_metadata"]))
    return str(token.to_jwt())


# --------------------------------------------------------------------------- the callers' process


class CallerProcess:
    """callers.py running in the agents' venv: join/leave requests in, events out."""

    def __init__(self, python: Path, log: Path):
        self._log = log.open("w")
        # -P: callers.py's own folder stays off sys.path (voxplane/dev/livekit.py would shadow the SDK).
        self.proc = subprocess.Popen([str(python), "-P", str(_CALLERS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(log.parent)})
        self.events: "queue.Queue[dict[str, Any]]" = queue.Queue()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                first = self.events.get(timeout=0.5)
            except queue.Empty:
                first = {}
            if first.get("event") == "ready":
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise CallsError(f"the callers' process did not start; see {log}")

    def _read(self) -> None:
        out: Optional[IO[str]] = self.proc.stdout
        assert out is not None
        for line in out:
            try:
                self.events.put(json.loads(line))
            except json.JSONDecodeError:
                continue

    def send(self, **msg: Any) -> None:
        with self._lock:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()  # hangs every caller up
            except OSError:
                pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._reader.join(5)  # the child is gone: its stdout is at its end
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def agents_python(root: Path) -> Path:
    """The agents' venv Python (scripts/ensure-agents-venv.sh), for the callers."""
    folders = sorted(p for p in (root / "agents").iterdir() if (p / "requirements.txt").is_file() and p.name != "_platform")
    if not folders:
        raise CallsError(f"no agent program folder under {root / 'agents'} to build the callers' venv from")
    proc = subprocess.run(["bash", str(_ENSURE_VENV), "--print-path", str(folders[0])], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    python = Path(proc.stdout.strip()) / "bin" / "python"
    if proc.returncode != 0 or not python.is_file():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CallsError(f"cannot build the agents' venv for the callers: {last}")
    return python


# --------------------------------------------------------------------------- one run of calls


@dataclass
class PlacedCall:
    index: int
    caller: str
    placed: float
    hang_up_at: float
    room: Optional[str] = None
    state: str = "waiting"
    reason: str = ""
    answered: Optional[float] = None
    ended: Optional[float] = None
    agent: str = ""
    job: bool = False
    hung_up: bool = False

    def as_dict(self, start: float) -> dict[str, Any]:
        return {"index": self.index, "caller": self.caller, "room": self.room, "state": self.state,
                "reason": self.reason, "agent": self.agent,
                "answer_ms": round(1000 * (self.answered - self.placed)) if self.answered else None,
                "placed_s": round(self.placed - start, 3)}


@dataclass
class CallRun:
    """`count` calls to `to`, `rate` a second (None: all at once), each `duration` seconds long."""

    region: Any
    endpoints: Endpoints
    probe: RouteProbe
    callers: CallerProcess
    to: str
    count: int
    duration: float
    rate: Optional[float] = None
    address: str = "127.0.0.1"
    first_caller: int = 100
    calls: list[PlacedCall] = field(default_factory=list)
    start: float = field(default_factory=time.monotonic)

    # -- placing --------------------------------------------------------------------------------

    def _admin(self) -> Any:
        from ..livekit.client import LiveKitAdmin

        return LiveKitAdmin(self.endpoints.http_url, self.endpoints.api_key, self.endpoints.api_secret)

    def place(self, index: int) -> PlacedCall:
        from ..livekit.client import LiveKitError

        number = f"+1555{self.first_caller + index:07d}"
        now = time.monotonic()
        call = PlacedCall(index, number, now, now + self.duration)
        self.calls.append(call)
        host = self.region.sip.public_host if self.region.sip else "localhost"
        try:
            decision = decide(self.probe, RoutedCall(to=self.to, from_=number, address=self.address, to_host=host))
        except Exception as e:  # the probe's own failure: this call is refused, the others go on
            call.state, call.reason = "refused", f"routing failed: {e}"
            return call
        if not decision.accepted or not decision.room:
            call.state, call.reason = "refused", decision.reason
            return call
        try:
            with self._admin() as admin:
                room = admin.call("CreateRoom", lambda lk: lk.room.create_room(room_request(decision)))
        except LiveKitError as e:
            call.state, call.reason = "refused", f"room not created: {e}"
            return call
        call.room = room.name
        self.callers.send(op="join", id=self._caller_id(index), url=self.endpoints.ws_url,
                          token=caller_token(self.endpoints, decision, room.name))
        return call

    def _caller_id(self, index: int) -> str:
        """The id the callers' process knows call `index` by: runs sharing one process (their
        `first_caller` numbers differ) never read each other's events."""
        return f"{self.first_caller}:{index}"

    # -- watching -------------------------------------------------------------------------------

    def _events(self) -> None:
        while True:
            try:
                event = self.callers.events.get_nowait()
            except queue.Empty:
                return
            run, _, index = str(event.get("id", "")).partition(":")
            if run != str(self.first_caller) or not index.isdigit() or int(index) >= len(self.calls):
                continue  # another run's caller on the same callers' process, or no call's event
            call = self.calls[int(index)]
            kind = event["event"]
            if call.hung_up:
                continue
            if kind == "agent" and call.state == "waiting":
                call.state, call.answered, call.agent = "answered", time.monotonic(), str(event.get("identity", ""))
            elif kind in ("agent_left", "disconnected") and call.state == "answered":
                call.state, call.reason = "dropped", f"{kind} {event.get('reason') or event.get('identity') or ''}".strip()
            elif kind == "error" and call.state == "waiting":
                call.state, call.reason = "refused", f"the caller could not join: {event.get('error')}"

    def _check_jobs(self, admin: Any, now: float) -> None:
        """A waiting call whose dispatch still has no job REFUSED_AFTER seconds on: refused."""
        for call in self.calls:
            if call.state != "waiting" or call.room is None or call.job or now - call.placed < REFUSED_AFTER:
                continue
            room = call.room
            dispatches = admin.call("ListDispatch", lambda lk: lk.agent_dispatch.list_dispatch(room))
            call.job = any(d.state and d.state.jobs for d in dispatches)
            if not call.job and dispatches:
                call.state, call.reason = "refused", f"no worker took the job within {REFUSED_AFTER:g}s (server dispatch)"

    def _hang_up(self, now: float) -> None:
        for call in self.calls:
            if not call.hung_up and now >= call.hang_up_at:
                call.hung_up, call.ended = True, now
                if call.room is not None:
                    self.callers.send(op="leave", id=self._caller_id(call.index))

    def counts(self) -> dict[str, int]:
        states = [c.state for c in self.calls]
        return {"placed": len(self.calls), "answered": sum(1 for c in self.calls if c.answered is not None),
                "refused": states.count("refused"), "waiting": states.count("waiting"),
                "in_call": sum(1 for c in self.calls if c.state == "answered" and not c.hung_up),
                "dropped": states.count("dropped"), "ended": sum(1 for c in self.calls if c.hung_up)}

    def step(self, admin: Any, *, check_jobs: bool = True) -> None:
        """Take in what the callers saw, hang up the calls that are due, and (`check_jobs`) ask the
        server about the dispatches of calls still waiting."""
        now = time.monotonic()
        self._events()
        self._hang_up(now)
        if check_jobs:
            self._check_jobs(admin, now)

    def end(self, index: int) -> None:
        """Hang call `index` up at the next step."""
        self.calls[index].hang_up_at = time.monotonic()

    @property
    def done(self) -> bool:
        return len(self.calls) == self.count and all(c.hung_up or c.room is None for c in self.calls)

    def run(self, report: Callable[[int, dict[str, int]], None]) -> None:
        """Place every call, keep each `duration` seconds, `report(second, counts)` each second."""
        self.start = time.monotonic()
        second = 0
        with self._admin() as admin:
            while True:
                now = time.monotonic()
                due = self.count if self.rate is None else min(self.count, 1 + math.floor((now - self.start) * self.rate))
                while len(self.calls) < due:
                    self.place(len(self.calls))
                tick = now - self.start >= second + 1
                self.step(admin, check_jobs=tick)
                if tick:
                    second += 1
                    report(second, self.counts())
                if self.done:
                    self._events()
                    break
                time.sleep(0.05)

    @property
    def never_answered(self) -> list[PlacedCall]:
        return [c for c in self.calls if c.answered is None]


def endpoints_from(url: Optional[str], api_key: Optional[str], api_secret: Optional[str],
                   redis: Optional[str]) -> Endpoints:
    """Options, else the environment, else the running dev servers."""
    from ..livekit.client import api_url
    from .servers import running_state

    url = url or os.environ.get("LIVEKIT_URL")
    api_key = api_key or os.environ.get("LIVEKIT_API_KEY")
    api_secret = api_secret or os.environ.get("LIVEKIT_API_SECRET")
    redis = redis or os.environ.get("VOXPLANE_LIVEKIT_REDIS")
    state = running_state() if not (url and api_key and api_secret and redis) else None
    if state is not None:
        url = url or state["livekit"]["http_url"]
        api_key = api_key or state["livekit"]["api_key"]
        api_secret = api_secret or state["livekit"]["api_secret"]
        redis = redis or state["redis"]["address"]
    missing = [name for name, value in (("--url/LIVEKIT_URL", url), ("--api-key/LIVEKIT_API_KEY", api_key),
                                        ("--api-secret/LIVEKIT_API_SECRET", api_secret),
                                        ("--redis/VOXPLANE_LIVEKIT_REDIS", redis)) if not value]
    if missing:
        raise CallsError(f"no {', '.join(missing)}: start the dev servers (`voxplane dev servers up --region REGION`) "
                         "or pass them")
    assert url and api_key and api_secret and redis
    http = api_url(url)
    ws = "ws" + http[len("http"):] if http.startswith("http") else http
    return Endpoints(http, ws, api_key, api_secret, redis)
