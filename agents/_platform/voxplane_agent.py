"""voxplane's platform glue for a livekit-agents 1.8 worker: the part of the contract every agent
program shares, so each agent.py holds only its own conversation.

It lives once, in the platform's base image (agents/_platform, image `voxplane-agent-base`, on
PYTHONPATH at /opt/voxplane); every agent image built from source starts FROM that image, so each
agent's build context stays its own folder. Tests and local runs put agents/_platform on
PYTHONPATH instead (README "The agent contract"; agents/_platform/README.md).

What it does, from the environment the platform renders into the agent's Deployment
(voxplane/desired/agent_pool.py; README "The agent contract"):

- `agent_name()`: LIVEKIT_AGENT_NAME, or exit (without it the worker would take every room).
- `inference(role)`, `stt()`, `llm()`, `tts()`: the VOXPLANE_<ROLE>_* wiring, OpenAI-compatible
  clients for the region's model servers or the manifest's external provider. Built while the job
  process idles (below), not while the caller waits: built in the entrypoint, their TLS contexts
  held the job's event loop 0.4-0.65 s (p50, a loaded 2-core machine) before the agent could join.
  The in-region LLM gets the call's key with every request (`x-session-id: <job id>`): a model
  with several replicas sits behind a router that keeps a call on one replica (its prefix cache
  holds the call's history there), and when the call ends the glue ends its session there
  (VOXPLANE_LLM_SESSION_END_URL, set by the platform when the model has a router).
- `agent_server()`: an AgentServer whose load is active sessions / VOXPLANE_SESSIONS_PER_WORKER,
  full at VOXPLANE_LOAD_THRESHOLD (so the worker refuses jobs exactly when the autoscaler counts it
  full), draining for VOXPLANE_DRAIN_TIMEOUT on SIGTERM, exporting metrics on VOXPLANE_METRICS_PORT
  (with `lk_agents_active_job_count` at 0 from the start), VOXPLANE_IDLE_PROCESSES job processes
  kept prewarmed (default and at most the sessions per worker; the program's own setup, then the
  inference clients; livekit-agents' default is one per CPU the container sees, the node's whole
  count when the pod sets no CPU limit, and fewer than the sessions per worker drops calls of a
  burst: see `idle_processes`), and the
  platform's health endpoint on VOXPLANE_HEALTH_PORT: `/ready` (registered with LiveKit and not
  draining), `/live` (fails once LiveKit has been lost for VOXPLANE_LIVEKIT_LOST_TIMEOUT seconds;
  never while draining), `/worker` (the state as JSON). livekit-agents' own `/` answers 200 unless
  its 16 reconnect attempts are exhausted, so it is no readiness signal; its server moves to a
  free port.
- `end_call_with_session(ctx, session)`: the job ends when the caller hangs up (not after the
  room's departure timeout), and when inference fails for good the caller hears (or reads) why
  and the call ends, with the endpoint in the log. It also logs one `dispatch timeline` line per
  call once the agent is in the room: room created, job request received, accepted, assigned,
  process assigned, entrypoint, room connected (unix seconds) and the gaps between them in ms.
- `end_call(ctx, reason)`: the program hangs up (the room is deleted). Every end the glue makes
  (this, the session closing, inference failing for good) first sets the agent's participant
  attribute `voxplane.call_ended`: the platform's recovery controller (voxplane/controllers/
  recovery) dispatches the agent of a call again when it leaves without it while the caller is
  still in the room (its worker killed, its pod or node gone). A job that ends any other way
  with its caller still there counts as lost.
- `recovery(ctx)`, `opening(ctx, greeting)`: a job dispatched to replace a lost agent carries the
  dispatch attribute `voxplane.recovery` (`{attempt, lost_at}`); `opening` then asks the model
  to say sorry, the line was cut off, instead of greeting the caller again. What was said before
  the loss is not carried over: the new agent starts with an empty conversation.
- `run(server)`: LOG_LEVEL, a refusal to start without inference or platform settings, the CLI.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib
import json
import logging
import os
import sys
import time
from typing import Any, Callable, cast

import aiohttp
from aiohttp import web
from livekit.agents import AgentServer, AgentSession, JobContext, JobProcess, cli, get_job_context, utils
from livekit.agents.telemetry import metrics as lk_metrics
from livekit.plugins import openai

logger = logging.getLogger("voxplane.agent")

ROLES = ("STT", "TTS", "LLM")

#: Defaults for a local run (`python agent.py dev`); the platform always sets these.
DEFAULTS = {
    "VOXPLANE_SESSIONS_PER_WORKER": "1",
    "VOXPLANE_LOAD_THRESHOLD": "1.0",
    "VOXPLANE_HEALTH_PORT": "8081",
    "VOXPLANE_METRICS_PORT": "0",
    "VOXPLANE_DRAIN_TIMEOUT": "3600",
    "VOXPLANE_LIVEKIT_LOST_TIMEOUT": "60",
}
#: What a production worker (`start`, as the platform runs it) refuses to start without.
PLATFORM_ENV = tuple(DEFAULTS)
#: Platform settings with a default here (not required: a pool rendered before they existed
#: still starts). VOXPLANE_PREWARM_INFERENCE=0 builds the inference clients per call instead
#: (what the glue did before; bench/dispatch.py measures both).
OPTIONAL_ENV = ("VOXPLANE_IDLE_PROCESSES", "VOXPLANE_PREWARM_INFERENCE")
#: Modules the first call would import on the job's event loop (livekit-agents' "event loop
#: blocked ... importing" warnings name them): imported while the process idles instead.
WARM_IMPORTS = ("anyio.streams.memory", "anyio._backends._asyncio", "openai.resources.audio",
                "openai.resources.chat")

#: The header the in-region LLM's router reads a call's key from (voxplane/desired/llm_router.py).
SESSION_HEADER = "x-session-id"
#: Participant attribute set before the agent leaves a call on purpose (the recovery controller's
#: voxplane/controllers/recovery/decide.py ENDED_ATTRIBUTE): a departure without it is a loss.
ENDED_ATTRIBUTE = "voxplane.call_ended"
#: Job attribute of a dispatch that replaces a lost agent (decide.py RECOVERY_ATTRIBUTE).
RECOVERY_ATTRIBUTE = "voxplane.recovery"
#: What the model is asked to open a recovered call with (`opening`).
RECOVERED_OPENING = (
    "The call was cut off for a moment and has just been reconnected; you do not know what was said before. "
    "In one short sentence, say sorry that the line was cut off, and ask the caller to tell you again how you "
    "can help. Do not greet them as if the call had just started."
)

#: What the caller hears when inference fails for good, before the call ends.
UNAVAILABLE_MESSAGE = (
    "Sorry, our assistant cannot answer right now because a service it depends on is unavailable. "
    "Please call again later. Goodbye."
)


# --- environment ---------------------------------------------------------------------------------


def agent_name(agent: str = "<name>", example: str = "acme-agent") -> str:
    """LIVEKIT_AGENT_NAME (`<tenant>-<agent>`, set by the platform), or exit with the reason."""
    name = os.environ.get("LIVEKIT_AGENT_NAME", "").strip()
    if not name:
        sys.exit(
            f"LIVEKIT_AGENT_NAME is not set. The platform sets it to <tenant>-{agent}; for a "
            f"local run export it yourself, e.g. LIVEKIT_AGENT_NAME={example}. "
            "Without it the worker would take every room (automatic dispatch)."
        )
    return name


def setting(name: str) -> str:
    return os.environ.get(name, "").strip() or DEFAULTS[name]


def _number(name: str, kind: Callable[[str], Any], minimum: float) -> Any:
    raw = setting(name)
    try:
        value = kind(raw)
    except ValueError:
        sys.exit(f"{name}={raw!r} is not a {kind.__name__}")
    if value < minimum:
        sys.exit(f"{name}={raw!r} must be at least {minimum}")
    return value


def inference(role: str) -> dict[str, str]:
    """base_url, model and api_key for one role (STT, TTS, LLM) from VOXPLANE_<ROLE>_*."""
    keys = ("BASE_URL", "MODEL", "PROVIDER", "API_KEY")
    env = {k: os.environ.get(f"VOXPLANE_{role}_{k}", "").strip() for k in keys}
    missing = [f"VOXPLANE_{role}_{k}" for k in ("BASE_URL", "MODEL") if not env[k]]
    if env["PROVIDER"] and not env["API_KEY"]:
        missing.append(f"VOXPLANE_{role}_API_KEY (provider {env['PROVIDER']!r} needs a key)")
    if missing:
        raise RuntimeError(f"{role} inference is not configured: {', '.join(missing)} not set")
    # In-region model servers take no key, but the OpenAI client refuses an empty one.
    return {"base_url": env["BASE_URL"], "model": env["MODEL"], "api_key": env["API_KEY"] or "unused"}


def endpoint(role: str) -> str:
    """Where `role`'s requests go, for log lines: `<base_url> (model <model>)`."""
    base = os.environ.get(f"VOXPLANE_{role}_BASE_URL", "").strip() or "(no VOXPLANE_%s_BASE_URL)" % role
    model = os.environ.get(f"VOXPLANE_{role}_MODEL", "").strip() or "?"
    return f"{base} (model {model})"


def _new_stt() -> openai.STT:
    return openai.STT(**inference("STT"))


class CallLLM(openai.LLM):
    """The openai plugin's LLM, with `call_headers`: the dict it sends as extra headers with every
    request (the plugin keeps the dict it is given), filled with the call's key when the call
    starts (`llm()`), so the LLM can be built while the process idles."""

    def __init__(self, **kwargs: Any) -> None:
        self.call_headers: dict[str, str] = {}
        super().__init__(extra_headers=self.call_headers, **kwargs)


def _new_llm() -> CallLLM:
    return CallLLM(**inference("LLM"))


def _new_tts() -> openai.TTS:
    """Kokoro names its voices differently from OpenAI; TTS_VOICE overrides either default. Raw
    PCM (both Kokoro's OpenAI-compatible server and OpenAI serve it): no encode on the model
    server, no decode in the worker."""
    external = bool(os.environ.get("VOXPLANE_TTS_PROVIDER"))
    voice = os.environ.get("TTS_VOICE") or ("ash" if external else "af_heart")
    return openai.TTS(voice=voice, response_format="pcm", **inference("TTS"))


_BUILDERS: dict[str, Callable[[], Any]] = {"STT": _new_stt, "LLM": _new_llm, "TTS": _new_tts}
_PREWARMED = "voxplane.prewarmed"


def _client(role: str) -> Any:
    """The client the job process built while it idled (each is used by one call: a job process
    serves one job), else a new one. Also marks the entrypoint's start for the dispatch timeline."""
    ctx = _job_context()
    if ctx is None:
        return _BUILDERS[role]()
    _mark(ctx, "entrypoint")
    prewarmed = ctx.proc.userdata.get(_PREWARMED) or {}
    return prewarmed.pop(role, None) or _BUILDERS[role]()


def stt() -> openai.STT:
    return cast(openai.STT, _client("STT"))


def llm() -> openai.LLM:
    """The call's LLM (built while the process idled); in a job, an in-region LLM's requests carry
    the job's id as the call's key, and the call's end ends the key's session on the router."""
    model = cast(CallLLM, _client("LLM"))
    ctx = _job_context()
    if ctx is None or os.environ.get("VOXPLANE_LLM_PROVIDER", "").strip():
        return model
    session = ctx.job.id
    model.call_headers[SESSION_HEADER] = session
    end_url = os.environ.get("VOXPLANE_LLM_SESSION_END_URL", "").strip()
    if end_url:
        async def end_session() -> None:  # a plain coroutine function: livekit-agents reads its arity
            await _end_llm_session(end_url, session)

        ctx.add_shutdown_callback(end_session)
    return model


async def _end_llm_session(url: str, session: str) -> None:
    """Tell the router the call is over, so it stops counting it on its replica (best effort:
    an unended session expires on its own)."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
            async with http.post(url, params={"session_id": session}) as resp:
                if resp.status != 200:
                    logger.warning("ending the LLM session %s at %s: HTTP %d", session, url, resp.status)
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        logger.warning("ending the LLM session %s at %s failed: %s", session, url, e)


def tts() -> openai.TTS:
    """Kokoro names its voices differently from OpenAI; TTS_VOICE overrides either default."""
    return cast(openai.TTS, _client("TTS"))


def _job_context() -> JobContext | None:
    try:
        return get_job_context()
    except RuntimeError:  # not inside a job (a test, a script)
        return None


def prewarm_inference() -> bool:
    return os.environ.get("VOXPLANE_PREWARM_INFERENCE", "1").strip().lower() not in ("0", "false", "no", "off")


def idle_processes(sessions_per_worker: int) -> int:
    """VOXPLANE_IDLE_PROCESSES, else the sessions per worker; never more than those (a prewarmed
    process is a session's process in waiting, ~140 MB of its own).

    Fewer than the sessions per worker loses calls in a burst: livekit-agents 1.8 reserves a slot
    per accepted job request and, while the worker has no job yet, prices each reservation at
    load_threshold / num_idle_processes, so an idle worker with N prewarmed processes refuses the
    (N+1)th simultaneous request, and with no other worker the server drops that call
    (bench/dispatch.py's bursts of 4 simultaneous calls: 3 of 40 lost with 1 and with 2, none with
    8). With N equal to the sessions per worker the price is 1/N, this glue's load per session
    exactly."""
    wanted = sessions_per_worker
    if os.environ.get("VOXPLANE_IDLE_PROCESSES", "").strip():
        wanted = int(_number("VOXPLANE_IDLE_PROCESSES", int, 0))
    return min(wanted, sessions_per_worker)


def _setup_process(agent_setup: Callable[[JobProcess], Any] | None, proc: JobProcess) -> None:
    """A job process's warm-up, before any job is given to it: the program's own setup (e.g. the
    VAD), then what the platform's calls need first (the inference clients, lazy imports)."""
    started = time.perf_counter()
    if agent_setup is not None:
        agent_setup(proc)
    if prewarm_inference():
        built: dict[str, Any] = {}
        for role, build in _BUILDERS.items():
            try:
                built[role] = build()
            except RuntimeError:  # this role is not configured; the program may not use it
                continue
        proc.userdata[_PREWARMED] = built
        for module in WARM_IMPORTS:
            try:
                importlib.import_module(module)
            except ImportError:
                pass
    proc.userdata["voxplane.setup_s"] = time.perf_counter() - started


# --- the worker: load, drain, metrics, health ----------------------------------------------------


class _Health:
    """The platform's view of one worker, served on VOXPLANE_HEALTH_PORT."""

    def __init__(self, server: AgentServer, sessions_per_worker: int, threshold: float, lost_timeout: float):
        self.server = server
        self.sessions_per_worker = sessions_per_worker
        self.threshold = threshold
        self.lost_timeout = lost_timeout
        self.registered_once = False
        #: monotonic time since which LiveKit is lost (process start until the first registration)
        self.lost_since: float | None = time.monotonic()
        self._runner: web.AppRunner | None = None
        self._watch: asyncio.Task[None] | None = None

    def connected(self) -> bool:
        # livekit-agents 1.8 has no public connection state: `_connecting` is set at each
        # (re)connect attempt and cleared once the server acknowledged the registration
        # (AgentServer._connection_task); the worker tests pin this against a real server.
        s = self.server
        return (
            self.registered_once
            and not getattr(s, "_connecting", True)
            and not getattr(s, "_connection_failed", False)
            and not getattr(s, "_closed", True)
        )

    def state(self) -> dict[str, Any]:
        s = self.server
        jobs = len(s.active_jobs) if not getattr(s, "_closed", True) else 0
        load = jobs / self.sessions_per_worker
        connected = self.connected()
        lost_for = 0.0 if self.lost_since is None else time.monotonic() - self.lost_since
        return {
            "agent_name": getattr(s, "_agent_name", ""),
            "worker_id": s.id,
            "registered": connected,
            "draining": s.draining,
            "ready": connected and not s.draining,
            "live": s.draining or connected or lost_for <= self.lost_timeout,
            "livekit_lost_for": round(lost_for, 1) if not connected else 0.0,
            "livekit_lost_timeout": self.lost_timeout,
            "active_jobs": jobs,
            "sessions_per_worker": self.sessions_per_worker,
            "load": load,
            "load_threshold": self.threshold,
            "available": connected and not s.draining and load < self.threshold,
            # Job processes initialized and waiting for a job (VOXPLANE_IDLE_PROCESSES is the target;
            # livekit-agents lowers it as the worker fills). livekit-agents 1.8 keeps them private.
            "prewarmed_processes": _prewarmed(s),
            "prewarmed_target": getattr(getattr(s, "_proc_pool", None), "target_idle_processes", None),
        }

    async def _ready(self, _: web.Request) -> web.Response:
        st = self.state()
        if st["ready"]:
            return web.Response(text="ready")
        why = "draining" if st["draining"] else "not registered with LiveKit"
        return web.Response(status=503, text=why)

    async def _live(self, _: web.Request) -> web.Response:
        st = self.state()
        if st["live"]:
            return web.Response(text="live")
        return web.Response(
            status=503, text=f"LiveKit lost for {st['livekit_lost_for']:.0f}s (limit {self.lost_timeout:.0f}s)"
        )

    async def _worker(self, _: web.Request) -> web.Response:
        return web.Response(text=json.dumps(self.state()), content_type="application/json")

    async def _watch_connection(self) -> None:
        while True:
            if self.connected():
                self.lost_since = None
            elif self.lost_since is None:
                self.lost_since = time.monotonic()
                logger.warning("lost the connection to LiveKit at %s", os.environ.get("LIVEKIT_URL", "?"))
            await asyncio.sleep(0.25)

    async def start(self, port: int) -> None:
        app = web.Application()
        app.add_routes([web.get("/ready", self._ready), web.get("/live", self._live), web.get("/worker", self._worker)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host=None, port=port).start()
        self._watch = asyncio.create_task(self._watch_connection(), name="voxplane_health_watch")
        logger.info("platform health endpoint on :%d (/ready, /live, /worker)", port)

    def on_registered(self, *_: Any) -> None:
        self.registered_once = True
        self.lost_since = None


def _prewarmed(server: AgentServer) -> int | None:
    queue = getattr(getattr(server, "_proc_pool", None), "_warmed_proc_queue", None)
    return queue.qsize() if queue is not None else None


def agent_server(**kwargs: Any) -> AgentServer:
    """An AgentServer wired to the platform's settings (see the module docstring). `kwargs` go to
    AgentServer; `setup_fnc` (the program's per-process warm-up, e.g. loading the VAD) runs first
    in each job process, before the platform's. Load, drain, ports, metrics and the number of
    prewarmed processes are the platform's."""
    for owned in ("load_fnc", "load_threshold", "drain_timeout", "prometheus_port", "port", "num_idle_processes"):
        if owned in kwargs:
            raise TypeError(f"{owned} is set by the platform (voxplane_agent), not by the agent program")
    agent_setup = kwargs.pop("setup_fnc", None)
    spw = _number("VOXPLANE_SESSIONS_PER_WORKER", int, 1)
    threshold = _number("VOXPLANE_LOAD_THRESHOLD", float, 0.01)
    metrics_port = _number("VOXPLANE_METRICS_PORT", int, 0)
    health_port = _number("VOXPLANE_HEALTH_PORT", int, 1)
    lost_timeout = _number("VOXPLANE_LIVEKIT_LOST_TIMEOUT", float, 1)

    def load(server: AgentServer) -> float:
        return len(server.active_jobs) / spw

    server = AgentServer(
        load_fnc=load,
        load_threshold=threshold,
        drain_timeout=_number("VOXPLANE_DRAIN_TIMEOUT", int, 1),
        prometheus_port=metrics_port or None,
        num_idle_processes=idle_processes(spw),
        # A partial of module-level functions: job processes get it pickled (forkserver).
        setup_fnc=functools.partial(_setup_process, agent_setup),
        # livekit-agents' own health server (`/` is 200 unless reconnecting gave up) moves to a
        # free port: the platform's endpoint below owns VOXPLANE_HEALTH_PORT.
        port=0,
        **kwargs,
    )
    health = _Health(server, spw, threshold, lost_timeout)
    server.on("worker_registered", health.on_registered)

    def started() -> None:
        # A pool that has had no job yet still reports 0 (the gauge has no sample until then).
        lk_metrics.RUNNING_JOB_GAUGE.labels(nodename=utils.nodename()).inc(0)
        task = asyncio.get_event_loop().create_task(health.start(health_port))
        task.add_done_callback(_fatal_if_failed)

    server.on("worker_started", started)
    return server


def _fatal_if_failed(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.critical("platform health endpoint failed to start: %s", exc)
        os._exit(3)  # no health endpoint: the pod would never turn ready; fail loudly instead


# --- one call --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Recovery:
    """This job replaces the agent a call lost (set by the platform's recovery controller).

    Attributes:
        attempt: 1 for the first replacement of the call's agent, 2 for a replacement's replacement...
        lost_at: When livekit-server reported the lost agent gone (unix seconds).
    """

    attempt: int
    lost_at: float


def recovery(ctx: JobContext) -> Recovery | None:
    """The recovery this job is, or None for a call's first agent."""
    raw = ctx.job.attributes.get(RECOVERY_ATTRIBUTE)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return Recovery(attempt=int(data["attempt"]), lost_at=float(data["lost_at"]))
    except (ValueError, TypeError, KeyError):
        logger.warning("unreadable %s attribute %r: treating the call as new", RECOVERY_ATTRIBUTE, raw)
        return None


def opening(ctx: JobContext, greeting: str) -> str:
    """The instructions for the agent's first reply: `greeting` on a new call; on a call the
    platform recovered (`recovery(ctx)`), an apology that the line was cut off and a request to
    hear again what the caller needs, since what was said before is lost."""
    return RECOVERED_OPENING if recovery(ctx) is not None else greeting


async def end_call(ctx: JobContext, reason: str) -> None:
    """Hang up: mark the call ended on purpose (`voxplane.call_ended`, so the platform does not
    replace the agent), delete the room (a phone caller is hung up), end the job."""
    await _mark_ended(ctx, reason)
    try:
        await asyncio.wait_for(ctx.delete_room(), timeout=10)
    except Exception as e:  # the room may be gone already; ending the job is not optional
        logger.warning("could not delete room %s: %s", ctx.room.name, e)
    ctx.shutdown(reason=reason)


async def _mark_ended(ctx: JobContext, reason: str) -> None:
    """Set `voxplane.call_ended` on the agent's participant before it leaves (livekit-server sends
    the attribute in the participant's `participant_left` webhook). Best effort: a room already
    gone has nobody to replace an agent for."""
    try:
        await asyncio.wait_for(ctx.room.local_participant.set_attributes({ENDED_ATTRIBUTE: reason[:200]}), 3)
    except Exception as e:
        logger.warning("could not mark the call ended (%s): %s", reason, e, extra={"room": ctx.room.name})


#: The glue's own tasks, kept referenced until done (the event loop holds only weak references).
_BACKGROUND: set[asyncio.Task[None]] = set()


def _spawn(coro: Any, name: str) -> None:
    task = asyncio.get_event_loop().create_task(coro, name=name)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


async def _end_job(ctx: JobContext, reason: str) -> None:
    await _mark_ended(ctx, reason)
    ctx.shutdown(reason=reason)


def end_call_with_session(ctx: JobContext, session: AgentSession) -> None:
    """Tie the job to the call: the caller hanging up ends the job at once (livekit-agents closes
    the session but keeps the job until the room's departure timeout); an unrecoverable inference
    error is told to the caller, logged with its endpoint, and ends the call (the room is deleted,
    so a phone caller is hung up) instead of leaving a silent agent in the room. Either end is
    marked deliberate first (`voxplane.call_ended`); a session closed because the job itself is
    shutting down (the worker stopping) is not, so a caller still in the room gets an agent again."""
    ending = False

    def on_close(ev: Any) -> None:
        if not ending:
            reason = getattr(getattr(ev, "reason", None), "value", str(getattr(ev, "reason", "")))
            logger.info("session closed (%s): ending the job", reason, extra={"room": ctx.room.name})
            if reason == "job_shutdown":
                ctx.shutdown(reason=f"session closed: {reason}")
            else:
                _spawn(_end_job(ctx, f"session closed: {reason}"), "voxplane_end_job")

    def on_error(ev: Any) -> None:
        nonlocal ending
        error = ev.error
        if getattr(error, "recoverable", True) or ending:
            return
        ending = True
        role = {"llm_error": "LLM", "stt_error": "STT", "tts_error": "TTS"}.get(getattr(error, "type", ""), "?")
        logger.error(
            "%s inference failed for good at %s: %s; telling the caller and ending the call",
            role, endpoint(role) if role != "?" else "?", getattr(error, "error", error),
            extra={"room": ctx.room.name},
        )
        asyncio.get_event_loop().create_task(_give_up(ctx, session, role))

    session.on("close", on_close)
    session.on("error", on_error)
    _mark(ctx, "entrypoint")
    _mark(ctx, "session_wired")
    _spawn(_log_dispatch_timeline(ctx), "voxplane_dispatch_timeline")


# --- the dispatch timeline ---------------------------------------------------------------------------

#: Stages of one call's dispatch, in order (unix seconds): the room's creation (the server's
#: clock), the worker's availability request, its acceptance, the server's assignment, a job
#: process given the job (livekit-agents' RunningJobInfo), the program's entrypoint reaching the
#: glue, the session wired (`end_call_with_session`), the agent connected to the room (by
#: session.start(), which livekit-agents connects late in; starting the connection from the glue
#: instead measured no faster: bench/dispatch.py).
STAGES = ("room_created", "job_received", "job_accepted", "job_assigned", "process_assigned", "entrypoint",
          "session_wired", "room_connected")
#: The gaps the timeline reports, in ms: (name, from stage, to stage).
GAPS = (("server", "room_created", "job_received"), ("accept", "job_received", "job_accepted"),
        ("assign", "job_accepted", "job_assigned"), ("launch", "job_assigned", "process_assigned"),
        ("to_entrypoint", "process_assigned", "entrypoint"), ("entrypoint", "entrypoint", "session_wired"),
        ("connect", "session_wired", "room_connected"), ("total", "room_created", "room_connected"))


def _mark(ctx: JobContext, stage: str) -> None:
    """The first time `stage` is reached in this job (later calls keep the first time)."""
    marks = ctx.proc.userdata.setdefault("voxplane.timeline", {}).setdefault(ctx.job.id, {})
    marks.setdefault(stage, time.time())


def dispatch_timeline(ctx: JobContext) -> dict[str, Any]:
    """{"t": {stage: unix seconds}, "ms": {gap: milliseconds}} of this job, so far."""
    info = getattr(ctx, "_info", None)  # livekit-agents 1.8 keeps the worker's timestamps here
    room = ctx.job.room
    t: dict[str, float] = {}
    created = (room.creation_time_ms / 1000.0) if getattr(room, "creation_time_ms", 0) else float(room.creation_time or 0)
    for stage, value in (("room_created", created),
                         ("job_received", getattr(info, "received_at", 0.0)),
                         ("job_accepted", getattr(info, "accepted_at", 0.0)),
                         ("job_assigned", getattr(info, "assigned_at", 0.0)),
                         ("process_assigned", getattr(info, "launched_at", 0.0))):
        if value:
            t[stage] = float(value)
    t.update(ctx.proc.userdata.get("voxplane.timeline", {}).get(ctx.job.id, {}))
    ms = {name: round(1000 * (t[b] - t[a]), 1) for name, a, b in GAPS if a in t and b in t}
    return {"t": {k: round(t[k], 4) for k in STAGES if k in t}, "ms": ms}


async def _log_dispatch_timeline(ctx: JobContext, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ctx.room.isconnected():
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.005)
    _mark(ctx, "room_connected")
    timeline = dispatch_timeline(ctx)
    recovered = recovery(ctx)
    logger.info("dispatch timeline", extra={"room": ctx.room.name, "job_id": ctx.job.id, **timeline,
                                             "setup_s": round(ctx.proc.userdata.get("voxplane.setup_s", 0.0), 3),
                                             "recovery": dataclasses.asdict(recovered) if recovered else None})


async def _give_up(ctx: JobContext, session: AgentSession, role: str) -> None:
    try:
        if role != "TTS":
            try:
                handle = session.say(UNAVAILABLE_MESSAGE, allow_interruptions=False, add_to_chat_ctx=False)
                await asyncio.wait_for(handle.wait_for_playout(), timeout=15)
            except Exception as e:  # the apology is best effort; ending the call is not
                logger.warning("could not say the unavailable message: %s", e)
        # Also as text (a browser caller reads it; a TTS outage leaves no other way).
        try:
            await asyncio.wait_for(ctx.room.local_participant.send_text(UNAVAILABLE_MESSAGE, topic="lk.chat"), 5)
        except Exception as e:
            logger.warning("could not send the unavailable message as text: %s", e)
    finally:
        await end_call(ctx, f"{role} inference unavailable")


# --- the program -----------------------------------------------------------------------------------


def run(server: AgentServer, roles: tuple[str, ...] = ROLES) -> None:
    """Run the CLI. A production worker (`start`, as the platform runs it) or a dev run refuses to
    register without inference wiring it would need for every call, and `start` without the
    platform's settings (a missing one would silently fall back to a local default)."""
    if os.environ.get("LOG_LEVEL"):
        os.environ.setdefault("LIVEKIT_LOG_LEVEL", os.environ["LOG_LEVEL"].upper())
    command = sys.argv[1] if sys.argv[1:2] else ""
    if command in ("start", "dev", "console", "connect"):
        try:
            for role in roles:
                inference(role)
        except RuntimeError as e:
            sys.exit(str(e))
    if command == "start":
        unset = [name for name in PLATFORM_ENV if not os.environ.get(name, "").strip()]
        if unset:
            sys.exit(f"{', '.join(unset)} not set: the platform sets them in the agent's Deployment "
                     "(for a local run use `python agent.py dev`)")
    cli.run_app(server)
