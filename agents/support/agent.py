"""Northwind Health patient support: answers billing and clinic questions, escalates to a human.

A livekit-agents worker with explicit dispatch: it registers under LIVEKIT_AGENT_NAME
(`<tenant>-support`, set by the platform) and only joins rooms dispatched to that name.
Speech and language models come from the VOXPLANE_<ROLE>_* variables the platform injects
(wired by voxplane_agent, the platform's glue from the base image agents/_platform, with the
load, drain, metrics and health endpoint); for this agent the LLM is an external provider, so
VOXPLANE_LLM_API_KEY is required.
"""

from __future__ import annotations

import logging
import os
from urllib.parse import quote

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

logger = logging.getLogger("support")


def _caller_number() -> str | None:
    """The caller's number from the SIP participant, when the call came in by phone."""
    for p in get_job_context().room.remote_participants.values():
        if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP:
            return p.attributes.get("sip.phoneNumber")
    return None


async def _call(url_env: str, method: str, path: str, *, params: dict | None = None, json: dict | None = None) -> str:
    """Call one of Northwind's APIs (base URL in `url_env`); its JSON reply is the tool's result."""
    base = os.environ.get(url_env, "").rstrip("/")
    if not base:
        raise ToolError(
            f"That system is not connected ({url_env} is not set), so nothing was looked up or "
            "changed. Tell the caller plainly and offer a human callback."
        )
    headers = {}
    if token := os.environ.get("NORTHWIND_API_TOKEN"):
        headers["Authorization"] = f"Bearer {token}"
    try:
        async with http_context.http_session().request(
            method, f"{base}{path}", params=params, json=json, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
        ) as resp:
            body = await resp.text()
            if resp.status == 404:
                raise ToolError("No matching record was found.")
            if resp.status >= 400:
                logger.error("%s %s %s -> %s: %s", url_env, method, path, resp.status, body[:500])
                raise ToolError(f"The system refused the request ({resp.status}).")
            return body
    except aiohttp.ClientError as e:
        logger.exception("%s unreachable", url_env)
        raise ToolError("That system is not answering right now.") from e


class SupportAgent(Agent):
    def __init__(self) -> None:
        super().__init__(
            instructions=(
                "You are the patient support line of Northwind Health. You answer questions about "
                "bills and about Northwind's clinics. Speak briefly and naturally: no lists, no "
                "markdown. Before discussing a bill, get the account number and the patient's date "
                "of birth and look the bill up; never guess amounts, dates or policies. You give no "
                "medical advice: for anything clinical, urgent, or that you cannot resolve, or when "
                "the caller asks for a person, escalate to a human and tell the caller what happens next."
            )
        )

    @function_tool
    async def lookup_bill(self, context: RunContext, account_number: str, date_of_birth: str) -> str:
        """Look up the current balance, recent statements and payment plan of a patient account.

        Args:
            account_number: The account number printed on the statement.
            date_of_birth: The patient's date of birth, YYYY-MM-DD, to verify the caller.
        """
        path = f"/accounts/{quote(account_number, safe='')}/statement"
        return await _call("BILLING_API_URL", "GET", path, params={"date_of_birth": date_of_birth})

    @function_tool
    async def find_clinic(self, context: RunContext, query: str) -> str:
        """Find a Northwind clinic's address, opening hours and services.

        Args:
            query: A town, clinic name or service, e.g. "Cambridge" or "pediatrics".
        """
        return await _call("CLINIC_API_URL", "GET", "/clinics", params={"q": query})

    @function_tool
    async def escalate_to_human(self, context: RunContext, reason: str, account_number: str | None = None) -> str:
        """Put the caller in the human escalation queue for a callback.

        Args:
            reason: One or two sentences on what the caller needs and what was already tried.
            account_number: The caller's account number, if known.
        """
        queue = os.environ.get("ESCALATION_QUEUE", "")
        if not queue:
            raise ToolError("No escalation queue is configured (ESCALATION_QUEUE); nobody was notified.")
        ticket = {
            "reason": reason,
            "account_number": account_number,
            "callback_number": _caller_number(),
            "room": get_job_context().room.name,
        }
        return await _call("ESCALATION_API_URL", "POST", f"/queues/{quote(queue, safe='')}/tickets", json=ticket)


def prewarm(proc: JobProcess) -> None:
    proc.userdata["vad"] = silero.VAD.load()


AGENT_NAME = platform.agent_name("support", example="northwind-support")
# Load (sessions / sessions_per_worker), drain, metrics and the health endpoint are the platform's.
server = platform.agent_server(setup_fnc=prewarm)


@server.rtc_session(agent_name=AGENT_NAME)
async def support(ctx: JobContext) -> None:
    session = AgentSession(
        vad=ctx.proc.userdata["vad"],
        stt=platform.stt(),
        llm=platform.llm(),
        tts=platform.tts(),
    )
    platform.end_call_with_session(ctx, session)
    await session.start(agent=SupportAgent(), room=ctx.room)
    # A call the platform recovered (its first agent was lost) opens with an apology, not a greeting.
    await session.generate_reply(instructions=platform.opening(
        ctx, "Greet the caller as Northwind Health patient support."))


if __name__ == "__main__":
    platform.run(server)
