"""Northwind clinic scheduler: finds free slots, books, moves and confirms appointments over the phone.

A livekit-agents worker with explicit dispatch: it registers under LIVEKIT_AGENT_NAME
(`<tenant>-scheduler`, set by the platform) and only joins rooms dispatched to that name.
Speech and language models come from the VOXPLANE_<ROLE>_* variables the platform injects;
voxplane_agent (the platform's glue, from the base image agents/_platform) wires them, the
load, drain, metrics and health endpoint.
Appointments live in a FHIR R4 server, reached with the OAuth2 client-credentials grant.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import date, timedelta
from urllib.parse import quote

import aiohttp
from livekit.agents import (
    Agent,
    AgentSession,
    JobContext,
    JobProcess,
    RunContext,
    ToolError,
    function_tool,
)
from livekit.agents.utils import http_context
from livekit.plugins import silero

import voxplane_agent as platform

logger = logging.getLogger("scheduler")

FHIR_JSON = "application/fhir+json"


_token: tuple[str, float] | None = None  # (access token, expiry as time.monotonic())


async def _fhir_token() -> str:
    """An access token from FHIR_TOKEN_URL (client credentials), reused until shortly before expiry."""
    global _token
    if _token and _token[1] > time.monotonic():
        return _token[0]
    needed = ("FHIR_BASE_URL", "FHIR_TOKEN_URL", "FHIR_CLIENT_ID", "FHIR_CLIENT_SECRET")
    if os.environ.get("CALENDAR_PROVIDER", "fhir") != "fhir" or not all(os.environ.get(k) for k in needed):
        raise ToolError(
            "The clinic calendar is not connected (CALENDAR_PROVIDER must be fhir and "
            f"{', '.join(needed)} set), so nothing was looked up or booked. Tell the caller plainly "
            "and offer to have the clinic call back."
        )
    form = {
        "grant_type": "client_credentials",
        "client_id": os.environ["FHIR_CLIENT_ID"],
        "client_secret": os.environ["FHIR_CLIENT_SECRET"],
    }
    if scope := os.environ.get("FHIR_SCOPE"):
        form["scope"] = scope
    async with http_context.http_session().post(
        os.environ["FHIR_TOKEN_URL"], data=form, timeout=aiohttp.ClientTimeout(total=10)
    ) as resp:
        if resp.status >= 400:
            logger.error("FHIR token request -> %s: %s", resp.status, (await resp.text())[:500])
            raise ToolError("The clinic calendar refused our credentials; nothing was booked.")
        grant = await resp.json(content_type=None)
    _token = (grant["access_token"], time.monotonic() + int(grant.get("expires_in", 300)) - 30)
    return _token[0]


async def _fhir(method: str, path: str, *, params: list | None = None, json: dict | None = None) -> dict:
    """One FHIR REST call; returns the resource or Bundle it answers with."""
    try:
        token = await _fhir_token()
        async with http_context.http_session().request(
            method,
            f"{os.environ['FHIR_BASE_URL'].rstrip('/')}/{path}",
            params=params,
            json=json,
            headers={"Authorization": f"Bearer {token}", "Accept": FHIR_JSON, "Content-Type": FHIR_JSON},
            timeout=aiohttp.ClientTimeout(total=10),
        ) as resp:
            if resp.status == 404:
                raise ToolError(f"The clinic calendar has no {path.split('/')[0]} with that id.")
            if resp.status >= 400:
                logger.error("FHIR %s %s -> %s: %s", method, path, resp.status, (await resp.text())[:500])
                raise ToolError(f"The clinic calendar refused the request ({resp.status}); nothing was changed.")
            return await resp.json(content_type=None)
    except aiohttp.ClientError as e:
        logger.exception("FHIR server unreachable")
        raise ToolError("The clinic calendar is not answering right now; nothing was changed.") from e


def _entries(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", []) if "resource" in e]


class Scheduler(Agent):
    def __init__(self) -> None:
        super().__init__(
            instructions=(
                "You book, move and confirm appointments for Northwind Health clinics over the phone. "
                "Speak briefly and naturally: no lists, no markdown. Offer at most three slots at a "
                "time. Before booking, get the patient's full name and date of birth and read the "
                "slot back for confirmation. To move an appointment, book the new slot first, then "
                "cancel the old one. Only state slots and appointments that a tool returned; if a tool "
                f"fails, say so plainly. Today is {date.today():%A %d %B %Y}; pass dates as YYYY-MM-DD."
            )
        )

    @function_tool
    async def find_open_slots(self, context: RunContext, day: str, service: str | None = None) -> str:
        """Find free appointment slots on one day.

        Args:
            day: The day, YYYY-MM-DD.
            service: Kind of appointment, e.g. "general practice" or "blood test", if the caller said.
        """
        try:
            start = date.fromisoformat(day)
        except ValueError:
            raise ToolError(f"{day!r} is not a date in YYYY-MM-DD form.") from None
        params = [("status", "free"), ("start", f"ge{start}"), ("start", f"lt{start + timedelta(days=1)}")]
        params += [("_sort", "start"), ("_count", "10")]
        if service:
            params.append(("service-type:text", service))
        slots = _entries(await _fhir("GET", "Slot", params=params))
        if not slots:
            return f"No free slots on {day}."
        return "\n".join(f"slot {s['id']}: {s['start']} to {s['end']}" for s in slots)

    @function_tool
    async def book_appointment(self, context: RunContext, slot_id: str, full_name: str, date_of_birth: str) -> str:
        """Book a free slot for a patient, after the caller confirmed it.

        Args:
            slot_id: The id of a slot returned by find_open_slots.
            full_name: The patient's full name.
            date_of_birth: The patient's date of birth, YYYY-MM-DD.
        """
        patients = _entries(await _fhir("GET", "Patient", params=[("name", full_name), ("birthdate", date_of_birth)]))
        if len(patients) != 1:
            raise ToolError(
                "No single patient record matches that name and date of birth; ask the caller to spell "
                "their name, or escalate to the front desk."
            )
        slot = await _fhir("GET", f"Slot/{quote(slot_id, safe='')}")
        if slot.get("status") != "free":
            raise ToolError("That slot has just been taken; offer another one.")
        appointment = {
            "resourceType": "Appointment",
            "status": "booked",
            "slot": [{"reference": f"Slot/{slot_id}"}],
            "start": slot["start"],
            "end": slot["end"],
            "participant": [{"actor": {"reference": f"Patient/{patients[0]['id']}"}, "status": "accepted"}],
        }
        booked = await _fhir("POST", "Appointment", json=appointment)
        return f"Booked appointment {booked['id']} from {booked['start']} to {booked['end']}."

    @function_tool
    async def confirm_appointment(self, context: RunContext, appointment_id: str) -> str:
        """Read back an existing appointment: its time and whether it is still booked.

        Args:
            appointment_id: The appointment id the patient was given.
        """
        appt = await _fhir("GET", f"Appointment/{quote(appointment_id, safe='')}")
        return f"Appointment {appointment_id} is {appt['status']}, from {appt.get('start')} to {appt.get('end')}."

    @function_tool
    async def cancel_appointment(self, context: RunContext, appointment_id: str) -> str:
        """Cancel an appointment, after the caller confirmed it (also the second step of a move).

        Args:
            appointment_id: The appointment id the patient was given.
        """
        appt = await _fhir("GET", f"Appointment/{quote(appointment_id, safe='')}")
        appt["status"] = "cancelled"
        await _fhir("PUT", f"Appointment/{quote(appointment_id, safe='')}", json=appt)
        return f"Appointment {appointment_id} is cancelled."


def prewarm(proc: JobProcess) -> None:
    proc.userdata["vad"] = silero.VAD.load()


AGENT_NAME = platform.agent_name("scheduler", example="northwind-scheduler")
# Load (sessions / sessions_per_worker), drain, metrics and the health endpoint are the platform's.
server = platform.agent_server(setup_fnc=prewarm)


@server.rtc_session(agent_name=AGENT_NAME)
async def scheduler(ctx: JobContext) -> None:
    session = AgentSession(
        vad=ctx.proc.userdata["vad"],
        stt=platform.stt(),
        llm=platform.llm(),
        tts=platform.tts(),
    )
    platform.end_call_with_session(ctx, session)
    await session.start(agent=Scheduler(), room=ctx.room)
    # A call the platform recovered (its first agent was lost) opens with an apology, not a greeting.
    await session.generate_reply(instructions=platform.opening(
        ctx, "Greet the caller as the Northwind Health appointments line."))


if __name__ == "__main__":
    platform.run(server)
