"""Bella Vista reservations line: books, moves and cancels tables, reads out opening hours.

A livekit-agents worker with explicit dispatch: it registers under LIVEKIT_AGENT_NAME
(`<tenant>-reservations`, set by the platform) and only joins rooms dispatched to that name.
Speech and language models come from the VOXPLANE_<ROLE>_* variables the platform injects;
voxplane_agent (the platform's glue, from the base image agents/_platform) wires them, the
load, drain, metrics and health endpoint.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp
from livekit import rtc
from livekit.agents import (
    Agent,
    AgentSession,
    JobContext,
    JobProcess,
    RunContext,
    ToolError,
    function_tool,
    get_job_context,
)
from livekit.agents.utils import http_context
from livekit.plugins import silero

import voxplane_agent as platform

logger = logging.getLogger("reservations")


def _local_now() -> datetime:
    tz_name = os.environ.get("RESTAURANT_TIMEZONE", "UTC")
    try:
        return datetime.now(ZoneInfo(tz_name))
    except ZoneInfoNotFoundError:
        logger.warning("unknown RESTAURANT_TIMEZONE %r, using UTC", tz_name)
        return datetime.now(ZoneInfo("UTC"))


def _caller_number() -> str | None:
    """The caller's number from the SIP participant, when the call came in by phone."""
    for p in get_job_context().room.remote_participants.values():
        if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP:
            return p.attributes.get("sip.phoneNumber")
    return None


async def _booking(method: str, path: str, *, params: dict | None = None, json: dict | None = None) -> str:
    """Call the booking API; its JSON reply goes to the model as the tool's result."""
    base = os.environ.get("BOOKING_API_URL", "").rstrip("/")
    token = os.environ.get("BOOKING_API_TOKEN", "")
    if not base or not token:
        raise ToolError(
            "The booking system is not connected (BOOKING_API_URL or BOOKING_API_TOKEN is missing), "
            "so nothing was checked or changed. Tell the caller, and offer to have the restaurant call back."
        )
    try:
        async with http_context.http_session().request(
            method,
            f"{base}{path}",
            params=params,
            json=json,
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=10),
        ) as resp:
            body = await resp.text()
            if resp.status == 404:
                raise ToolError(f"The booking system found no match: {body[:200]}")
            if resp.status >= 400:
                logger.error("booking API %s %s -> %s: %s", method, path, resp.status, body[:500])
                raise ToolError(f"The booking system refused the request ({resp.status}); nothing was changed.")
            return body
    except aiohttp.ClientError as e:
        logger.exception("booking API unreachable")
        raise ToolError("The booking system is not answering right now; nothing was changed.") from e


class Receptionist(Agent):
    def __init__(self) -> None:
        now = _local_now()
        super().__init__(
            instructions=(
                "You answer the phone for Bella Vista, an Italian restaurant. You book, move and "
                "cancel tables and tell callers the opening hours. Keep answers short and spoken: "
                "no lists, no markdown. Confirm date, time, party size and name before booking, and "
                "read the confirmation code back. Only state availability, hours or bookings that a "
                "tool returned; if a tool fails, say so plainly. "
                f"It is now {now:%A %d %B %Y, %H:%M} at the restaurant ({now.tzname()}). "
                "Pass dates as YYYY-MM-DD and times as 24-hour HH:MM."
            )
        )

    @function_tool
    async def check_availability(self, context: RunContext, date: str, time: str, party_size: int) -> str:
        """Check whether a table is free, and nearby alternatives if it is not.

        Args:
            date: Day of the visit, YYYY-MM-DD.
            time: Requested time, 24-hour HH:MM.
            party_size: Number of guests.
        """
        return await _booking("GET", "/availability", params={"date": date, "time": time, "party_size": party_size})

    @function_tool
    async def book_table(
        self, context: RunContext, date: str, time: str, party_size: int, name: str, phone: str | None = None
    ) -> str:
        """Book a table once the caller has confirmed the details. Returns a confirmation code.

        Args:
            date: Day of the visit, YYYY-MM-DD.
            time: Time of the booking, 24-hour HH:MM.
            party_size: Number of guests.
            name: Name the booking is under.
            phone: Contact number; leave empty to use the number the caller is calling from.
        """
        phone = phone or _caller_number()
        if not phone:
            raise ToolError("No contact number: ask the caller for one.")
        booking = {"date": date, "time": time, "party_size": party_size, "name": name, "phone": phone}
        return await _booking("POST", "/bookings", json=booking)

    @function_tool
    async def move_booking(self, context: RunContext, confirmation_code: str, date: str, time: str) -> str:
        """Move an existing booking to another date or time.

        Args:
            confirmation_code: The code the caller was given when booking.
            date: New day, YYYY-MM-DD.
            time: New time, 24-hour HH:MM.
        """
        code = quote(confirmation_code, safe="")
        return await _booking("PATCH", f"/bookings/{code}", json={"date": date, "time": time})

    @function_tool
    async def cancel_booking(self, context: RunContext, confirmation_code: str) -> str:
        """Cancel a booking after the caller has confirmed they want to cancel.

        Args:
            confirmation_code: The code the caller was given when booking.
        """
        return await _booking("DELETE", f"/bookings/{quote(confirmation_code, safe='')}")

    @function_tool
    async def opening_hours(self, context: RunContext) -> str:
        """Look up the restaurant's opening hours, including holiday closures."""
        return await _booking("GET", "/hours")


def prewarm(proc: JobProcess) -> None:
    proc.userdata["vad"] = silero.VAD.load()


AGENT_NAME = platform.agent_name("reservations", example="bellavista-reservations")
# Load (sessions / sessions_per_worker), drain, metrics and the health endpoint are the platform's.
server = platform.agent_server(setup_fnc=prewarm)


@server.rtc_session(agent_name=AGENT_NAME)
async def reservations(ctx: JobContext) -> None:
    session = AgentSession(
        vad=ctx.proc.userdata["vad"],
        stt=platform.stt(),
        llm=platform.llm(),
        tts=platform.tts(),
    )
    platform.end_call_with_session(ctx, session)
    await session.start(agent=Receptionist(), room=ctx.room)
    # A call the platform recovered (its first agent was lost) opens with an apology, not a greeting.
    await session.generate_reply(instructions=platform.opening(
        ctx, "Greet the caller as Bella Vista reservations and ask how you can help."))


if __name__ == "__main__":
    platform.run(server)
