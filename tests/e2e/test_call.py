"""A real SIP call, placed with sipp from 127.0.0.1, through a real livekit-sip bridge into a real
livekit-server, after `voxplane livekit sync` (the reconciler) wrote the local region's trunks and
dispatch rules. Proves that a call reaches the right tenant's agent, that the agent program (a
real livekit-agents worker with its rendered environment) gets the job and answers the call, and
that a call the trunks do not let in creates nothing.

What the bridge (livekit-sip v1.11.0) really does, and so what these tests assert:
- Accepted call with no agent worker registered: 100 Processing, then 180 Ringing every second.
  It creates the rule's room, joins it as the SIP participant and records the agent dispatch, but
  answers 200 only once a participant's track is subscribed (pkg/sip/inbound.go waitSubscribe,
  default ringing timeout 3 min). So the caller hangs up with CANCEL: 200 (CANCEL), 487 (INVITE).
- Accepted call with the agent's worker registered: the room's dispatch reaches the worker, the
  agent joins and subscribes to the caller's audio (RoomIO), and that subscription is what makes
  the bridge answer 200; the caller ACKs, stays on the line, and hangs up with BYE (200), which
  ends the job (the platform glue ends it when the caller leaves).
- Call the trunks do not let in (number of no trunk, or a trunk whose allowed_addresses exclude
  the caller): 100 Processing and one 180 Ringing, then the dispatch answer "drop" (reason
  "flood"): no final response at all, no room, no participant.

Never skipped: servers, bridge and sipp failing to start fail the test with the reason.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from livekit import api

from voxplane.dev.ports import LOOPBACK, free_port

from ..agents.conftest import Worker
from ..agents.standin import StandIn
from ..support.wait import wait_until
from .conftest import Platform

# Opt-in (`make e2e`): livekit-sip is not served by the Go module proxy, so `make test` cannot
# build it; point VOXPLANE_LIVEKIT_SIP_BIN at a binary built from source to run these.
pytestmark = [pytest.mark.integration, pytest.mark.e2e]

RESERVATIONS_NUMBER = "+13125550142"  # agents/reservations.yaml (bellavista), no digest auth
SUPPORT_NUMBER = "+16175550188"  # agents/support.yaml (northwind): allows only its carrier IPs
UNKNOWN_NUMBER = "+15550000000"  # on no trunk
CALLER = "+15550001111"

#: How long the accepted call stays up (ringing) before the caller hangs up, in ms.
RING_MS = 8000
#: How long a call that must not be let in waits for any final response, in ms.
DROP_WAIT_MS = 4000

_INVITE = f"""\
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "voxplane e2e" <sip:{CALLER}@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:{CALLER}@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=sendrecv

    ]]>"""

# CANCEL and the ACK of the 487 reuse the INVITE's Via branch (RFC 3261 9.1, 17.1.1.3):
# [branch-N] is the branch of the scenario element N places back (the INVITE is element 0).
CALL_SCENARIO = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="voxplane inbound call: INVITE, ring, CANCEL">
  <send retrans="500" start_txn="invite">
{_INVITE}
  </send>
  <recv response="100" optional="true" response_txn="invite"/>
  <recv response="180" response_txn="invite"/>
  <!-- Ringing repeats every second; sipp takes the identical 180s as retransmissions. -->
  <pause milliseconds="{RING_MS}"/>
  <send start_txn="cancel">
    <![CDATA[
      CANCEL sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-4]
      From: "voxplane e2e" <sip:{CALLER}@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="180" optional="true" response_txn="invite"/>
  <recv response="200" response_txn="cancel"/>
  <recv response="487" response_txn="invite"/>
  <send ack_txn="invite">
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-8]
      From: "voxplane e2e" <sip:{CALLER}@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""

#: How long an answered call stays up before the caller hangs up (BYE), in ms.
TALK_MS = 6000
#: How long the caller waits for the 200: dispatch, the agent's join and its subscription.
ANSWER_WAIT_MS = 30000

# An answered call, as sipp's built-in uac scenario: INVITE, 200, ACK, talk, BYE. The 2xx's ACK and
# the BYE are requests of their own (new branches) to the bridge's Contact ([next_url], RFC 3261
# 12.2.1.1); [peer_tag_param] is the bridge's To tag.
ANSWER_SCENARIO = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="voxplane inbound call an agent answers: INVITE, 200, ACK, talk, BYE">
  <send retrans="500">
{_INVITE}
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <!-- Ringing repeats every second until the agent has subscribed; then the bridge answers. -->
  <!-- rrs: keep the 200's Contact, which [next_url] names (sipp fills it only with rrs). -->
  <recv response="200" rtd="true" rrs="true" timeout="{ANSWER_WAIT_MS}"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "voxplane e2e" <sip:{CALLER}@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:{CALLER}@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="{TALK_MS}"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "voxplane e2e" <sip:{CALLER}@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:{CALLER}@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""

# A call that must not be let in: wait for an answer that never comes. Any final response
# (2xx or an error) shows in the message trace; the test asserts there is none.
DROP_SCENARIO = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="voxplane inbound call that must not be let in">
  <send retrans="500">
{_INVITE}
  </send>
  <recv response="100" optional="true" timeout="{DROP_WAIT_MS}" ontimeout="waited"/>
  <recv response="180" optional="true" timeout="{DROP_WAIT_MS}" ontimeout="waited"/>
  <recv response="200" timeout="{DROP_WAIT_MS}" ontimeout="waited"/>
  <label id="waited"/>
</scenario>
"""


class Sipp:
    """One sipp UAC call from 127.0.0.1 to the bridge, with its message trace."""

    def __init__(self, workdir: Path, scenario: str, number: str, target: str):
        workdir.mkdir(parents=True, exist_ok=True)
        self.trace = workdir / "messages.log"
        self.errors = workdir / "errors.log"
        (workdir / "scenario.xml").write_text(scenario)
        self.output = workdir / "sipp.out"
        with self.output.open("w") as out:
            self.proc = subprocess.Popen(
                ["sipp", "-sf", "scenario.xml", "-s", number, "-i", LOOPBACK, "-p", str(free_port("udp")),
                 "-mp", str(free_port("udp")), "-m", "1", "-nostdin", "-timeout", "40s",
                 "-trace_msg", "-message_file", str(self.trace), "-trace_err", "-error_file", str(self.errors),
                 target],
                cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )

    def wait(self, timeout: float = 45.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"sipp still running after {timeout}s:\n{self.describe()}") from None

    def first_lines(self) -> list[str]:
        """Start line of every SIP message sent or received, in order."""
        text = self.trace.read_text() if self.trace.exists() else ""
        return re.findall(r"^(?:SIP/2\.0 \d{3} .*|[A-Z]+ sip:\S+ SIP/2\.0)$", text, re.MULTILINE)

    def statuses(self) -> list[int]:
        return [int(line.split()[1]) for line in self.first_lines() if line.startswith("SIP/2.0")]

    def describe(self) -> str:
        errors = self.errors.read_text()[-1500:] if self.errors.exists() else ""
        return "messages: " + " | ".join(self.first_lines()) + f"\nsipp errors: {errors}"


def lk(platform: Platform, call: Any) -> Any:
    """Run one livekit-api call (`call(LiveKitAPI)` -> awaitable) with the admin key."""

    async def go() -> Any:
        client = api.LiveKitAPI(platform.livekit.http_url, platform.livekit.api_key, platform.livekit.api_secret)
        try:
            return await call(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def room_names(platform: Platform) -> list[str]:
    return sorted(r.name for r in lk(platform, lambda c: c.room.list_rooms(api.ListRoomsRequest())).rooms)


def test_call_to_reservations_number_reaches_bellavista_agent(platform: Platform, tmp_path: Path) -> None:
    """An INVITE to +13125550142 from the carrier address opens a bv-call_ room that dispatches
    bellavista-reservations; with no worker registered, nobody answers (the caller cancels)."""
    assert room_names(platform) == []
    call = Sipp(tmp_path / "call", CALL_SCENARIO, RESERVATIONS_NUMBER, platform.sip.sip_address)
    try:
        rooms = wait_until("the call's room", lambda: room_names(platform), timeout=6, interval=0.2)
        assert len(rooms) == 1 and rooms[0].startswith("bv-call_"), rooms
        room = rooms[0]

        dispatches = wait_until("the room's agent dispatch", lambda: lk(platform, lambda c: c.agent_dispatch.list_dispatch(room)),
                                timeout=6, interval=0.2)
        assert [d.agent_name for d in dispatches] == ["bellavista-reservations"]
        assert dispatches[0].room == room

        participants = wait_until(
            "the SIP participant",
            lambda: lk(platform, lambda c: c.room.list_participants(api.ListParticipantsRequest(room=room))).participants,
            timeout=6, interval=0.2,
        )
        (caller,) = participants
        assert caller.kind == api.ParticipantInfo.Kind.SIP
        # The rule's ownership attributes reach the participant: the agent sees tenant and agent.
        assert caller.attributes["voxplane.io/tenant"] == "bellavista"
        assert caller.attributes["voxplane.io/agent"] == "reservations"
        assert caller.attributes["sip.trunkPhoneNumber"] == RESERVATIONS_NUMBER
        assert caller.attributes["sip.phoneNumber"] == CALLER

        # All of the above happened while the call was up (ringing; the caller has not hung up).
        assert call.proc.poll() is None, call.describe()
    finally:
        rc = call.wait()
    statuses = call.statuses()
    assert rc == 0, call.describe()
    assert statuses[0] in (100, 180) and 180 in statuses, call.describe()
    assert statuses[-2:] == [200, 487], call.describe()  # 200 for the CANCEL, 487 for the INVITE
    assert not any(200 <= s < 300 for s in statuses[:-2]), call.describe()  # never answered


def participants(platform: Platform, room: str) -> list[Any]:
    return list(lk(platform, lambda c: c.room.list_participants(api.ListParticipantsRequest(room=room))).participants)


def test_a_call_to_reservations_is_answered_by_the_bellavista_agent_worker(
        platform: Platform, agent_workers: Any, tmp_path: Path) -> None:
    """With the reservations program registered as a real worker (and another tenant's beside it):
    the INVITE's room gets the job, the agent joins and subscribes, the bridge answers 200; the
    other tenant's worker never sees the call; the caller's BYE ends the job within seconds."""
    with StandIn() as model:
        inference = {"STT": model.base_url, "TTS": model.base_url, "LLM": model.base_url}
        bella: Worker = agent_workers("reservations", inference)
        other: Worker = agent_workers("support", inference)
        for w in (bella, other):
            w.wait_registered()
        assert room_names(platform) == []
        call = Sipp(tmp_path / "call", ANSWER_SCENARIO, RESERVATIONS_NUMBER, platform.sip.sip_address)
        try:
            rooms = wait_until("the call's room", lambda: room_names(platform), timeout=15, interval=0.2)
            assert len(rooms) == 1 and rooms[0].startswith("bv-call_"), rooms
            room = rooms[0]
            bella.wait("the call's job", lambda: (s := bella.state()) and s["active_jobs"] == 1, 30)
            agents = wait_until("the agent in the room", lambda: [p for p in participants(platform, room)
                                                                if p.kind == api.ParticipantInfo.Kind.AGENT],
                                timeout=30, interval=0.2)
            # livekit-agents tags its participant with the name it registered under (lk.agent.name).
            assert [a.attributes.get("lk.agent.name") for a in agents] == [bella.env["LIVEKIT_AGENT_NAME"]], agents
            (sip,) = [p for p in participants(platform, room) if p.kind == api.ParticipantInfo.Kind.SIP]
            assert sip.attributes["voxplane.io/tenant"] == "bellavista"
            assert sip.attributes["sip.phoneNumber"] == CALLER
            # The agent's own account of its dispatch (the platform glue's log line).
            timeline = bella.wait("the dispatch timeline", lambda: next(
                (ln for ln in bella.log().splitlines() if '"dispatch timeline"' in ln and room in ln), None), 30)
            print(f"\n{room}: {timeline[:400]}")
            assert call.proc.poll() is None, call.describe()  # still on the line
        finally:
            rc = call.wait(ANSWER_WAIT_MS / 1000 + TALK_MS / 1000 + 20)
        statuses = call.statuses()
        assert rc == 0, call.describe()
        assert 200 in statuses and 487 not in statuses, call.describe()  # answered, never cancelled
        assert call.first_lines()[-2].startswith("BYE ") and statuses[-1] == 200, call.describe()
        bella.wait("the job to end after the BYE", lambda: (s := bella.state()) and s["active_jobs"] == 0, 15)
        state = other.state()
        assert state is not None and state["active_jobs"] == 0, state
        assert room not in other.log()


@pytest.mark.parametrize(
    "number",
    [
        pytest.param(SUPPORT_NUMBER, id="other-tenant-number-from-disallowed-address"),
        pytest.param(UNKNOWN_NUMBER, id="unknown-number"),
    ],
)
def test_call_the_trunks_do_not_admit_creates_no_room(platform: Platform, tmp_path: Path, number: str) -> None:
    """An INVITE the trunks do not admit gets no final answer and creates no room or participant."""
    call = Sipp(tmp_path / "call", DROP_SCENARIO, number, platform.sip.sip_address)
    seen: set[str] = set()
    try:
        while call.proc.poll() is None:
            seen.update(room_names(platform))
            time.sleep(0.2)
    finally:
        call.wait()
    seen.update(room_names(platform))
    assert seen == set()
    statuses = call.statuses()
    # The bridge acknowledged the INVITE, then dropped it once the server's dispatch said no.
    assert statuses and set(statuses) <= {100, 180}, call.describe()
    assert call.first_lines()[0] == f"INVITE sip:{number}@{platform.sip.sip_address} SIP/2.0"
