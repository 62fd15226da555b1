"""`voxplane status` against a region really deployed (the `deployment` fixture: `pulumi up` on the
local control plane + a dev livekit-server), with a real worker of the reservations agent and
real rtc callers (tests/agents) in rooms, so counts are non-zero and must land on the right agent.

SIP callers are rtc participants whose token carries participant kind `sip`: what livekit-sip's
token gives the participant it joins for each call (the server reports them as kind SIP), without
the bridge (tests/e2e, opt-in, has the bridge itself). Rooms are created with the dispatch their
rule's `room_config` carries and named as the server names a rule's rooms, as livekit-sip has the
server create them for a call.

One deployment for the module (`local` only); each test reads what the command prints, polling
with a deadline where it waits for the cluster or the next frame.
"""

from __future__ import annotations

import json
import os
import pty
import queue
import re
import secrets
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fcntl
import pytest
from livekit import api

from voxplane.livekit.client import LiveKitAdmin

from ..agents.conftest import Caller, join_caller, launch_worker
from ..agents.standin import StandIn
from ..support.wait import wait_until
from .conftest import Deployment

pytestmark = [pytest.mark.integration, pytest.mark.engine]
LOCAL = pytest.mark.parametrize("deployment", ["local"], indirect=True)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BELLA, SCHED, SUPPORT = "bellavista-reservations", "northwind-scheduler", "northwind-support"


@dataclass
class Server:
    """The deployment's livekit-server, as tests/agents' workers and callers need it."""

    livekit: Any

    def admin(self) -> LiveKitAdmin:
        return LiveKitAdmin(self.livekit.http_url, self.livekit.api_key, self.livekit.api_secret)

    def token(self, room: str, identity: str) -> str:
        """A participant token; identities `sip-…` get kind `sip`, as livekit-sip's callers do."""
        tok = (api.AccessToken(self.livekit.api_key, self.livekit.api_secret).with_identity(identity)
               .with_grants(api.VideoGrants(room_join=True, room=room)))
        if identity.startswith("sip-"):
            tok = tok.with_kind("sip").with_attributes({"sip.phoneNumber": "+15550100199"})
        return tok.to_jwt()

    def create_room(self, name: str, *agents: str) -> None:
        req = api.CreateRoomRequest(name=name, agents=[api.RoomAgentDispatch(agent_name=a) for a in agents])
        with self.admin() as c:
            c.call("CreateRoom", lambda lk: lk.room.create_room(req))

    def delete_rooms(self) -> None:
        with self.admin() as c:
            for room in c.call("ListRooms", lambda lk: lk.room.list_rooms(api.ListRoomsRequest())).rooms:
                c.call("DeleteRoom", lambda lk, r=room.name: lk.room.delete_room(api.DeleteRoomRequest(room=r)))

    def participants(self, room: str) -> list[api.ParticipantInfo]:
        with self.admin() as c:
            return list(c.call("ListParticipants", lambda lk: lk.room.list_participants(
                api.ListParticipantsRequest(room=room))).participants)


def env(dep: Deployment) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("VOXPLANE_SECRET_", "LIVEKIT_"))}
    out.update({"KUBECONFIG": str(dep.kubeconfig), "LIVEKIT_URL": dep.livekit.http_url,
                "LIVEKIT_API_KEY": dep.livekit.api_key, "LIVEKIT_API_SECRET": dep.livekit.api_secret,
                "PYTHONUNBUFFERED": "1"})
    return out


def argv(dep: Deployment, *args: str) -> list[str]:
    return [sys.executable, "-m", "voxplane.cli", "status", dep.region, "--root", str(dep.root), *args]


def status_json(dep: Deployment) -> dict[str, Any]:
    proc = subprocess.run(argv(dep, "--format", "json"), env=env(dep), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr}\n{proc.stdout[-3000:]}"
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def room_name(prefix: str, number: str) -> str:
    """A room as the server names an individual rule's room: `<prefix>_<caller>_<random>`."""
    return f"{prefix}_{number}_{secrets.token_hex(5)}"


@pytest.fixture
def server(deployment: Deployment) -> Iterator[Server]:
    s = Server(deployment.livekit)
    yield s
    s.delete_rooms()


def keda_hpas_with_targets(dep: Deployment) -> dict[str, dict[str, Any]] | None:
    """KEDA's HPA of each of the 6 ScaledObjects, once each has a target (the HPA controller's
    first sync), by ScaledObject name; None until then."""
    hpas = json.loads(dep.kubectl("get", "hpa", "-A", "-o", "json").stdout)["items"]
    found = {h["metadata"]["labels"].get("scaledobject.keda.sh/name"): h for h in hpas
             if (h.get("status") or {}).get("desiredReplicas")}
    return found if len(found) == 6 else None


@LOCAL
def test_status_counts_each_agents_rooms_and_calls_and_reports_the_autoscalers_running(
        deployment: Deployment, server: Server, tmp_path: Path) -> None:
    dep = deployment
    # KEDA's operator reconciles each ScaledObject into its HPA; the HPA controller gives it a target.
    wait_until("KEDA's HPAs with their targets", lambda: keda_hpas_with_targets(dep), timeout=180, interval=1)
    started: list[Any] = []
    try:
        with StandIn() as model:
            worker = launch_worker("reservations", server, tmp_path / "worker",
                                   {"STT": model.base_url, "TTS": model.base_url, "LLM": model.base_url})
            started.append(worker)
            worker.wait_registered()

            def caller(room: str, identity: str) -> Caller:
                c = join_caller(server, room, identity, tmp_path)
                started.append(c)
                return c

            # bellavista's call, answered by its agent.
            bella_room = room_name("bv-call", "+15550100199")
            server.create_room(bella_room, BELLA)
            bella_caller = caller(bella_room, "sip-caller-a")
            bella_caller.agent_joined(30)
            # northwind's support call (no support worker here: dispatched, not answered).
            support_room = room_name("nw-support", "+15550100188")
            server.create_room(support_room, SUPPORT)
            caller(support_room, "sip-caller-b")
            # bellavista's room naming, northwind's agent dispatched: northwind's room.
            lookalike = room_name("bv-call", "+15550100177")
            server.create_room(lookalike, SUPPORT)
            caller(lookalike, "web-c")
            # a room of no agent.
            lobby = f"lobby-{secrets.token_hex(4)}"
            server.create_room(lobby)
            caller(lobby, "web-d")

            kinds = {r: sorted(api.ParticipantInfo.Kind.Name(p.kind) for p in server.participants(r))
                     for r in (bella_room, support_room, lookalike, lobby)}
            assert kinds == {bella_room: ["AGENT", "SIP"], support_room: ["SIP"], lookalike: ["STANDARD"],
                             lobby: ["STANDARD"]}

            doc = status_json(dep)
            agents = {a["livekit_agent"]: a for a in doc["agents"]}
            assert set(agents) == {BELLA, SCHED, SUPPORT}
            assert agents[BELLA]["activity"] == {"rooms": 1, "participants": 2, "sip_calls": 1, "agent_participants": 1,
                                                 "room_names": [bella_room]}
            assert agents[SUPPORT]["activity"] == {"rooms": 2, "participants": 2, "sip_calls": 1,
                                                   "agent_participants": 0,
                                                   "room_names": sorted([support_room, lookalike])}
            assert agents[SCHED]["activity"] == {"rooms": 0, "participants": 0, "sip_calls": 0,
                                                 "agent_participants": 0, "room_names": []}
            assert [r["room"] for r in doc["other_rooms"]] == [lobby]
            assert doc["livekit"] == {"url": dep.livekit.http_url, "error": None, "rooms": 4, "participants": 5,
                                      "sip_calls": 2}

            text = subprocess.run(argv(dep), env=env(dep), capture_output=True, text=True, timeout=120)
            assert text.returncode == 0, text.stderr
    finally:
        for thing in reversed(started):
            (thing.close if isinstance(thing, Caller) else thing.stop)()

    # Replicas and autoscalers: what the cluster says, object by object.
    deployed = {(o["metadata"]["namespace"], o["metadata"]["name"]): o
                for kind in ("deployments", "statefulsets") for o in dep.objects(kind)}
    rows = [*(a for a in doc["agents"]), *doc["models"]]
    assert len(rows) == 6
    for row in rows:
        w = row["workload"]
        live = deployed[(w["namespace"], w["name"])]
        assert (w["desired"], w["ready"]) == (live["spec"]["replicas"], live["status"].get("readyReplicas", 0)), row
        assert len(w["nodes"]) == w["ready"] and "(pending)" not in w["nodes"]
    # KEDA's operator runs on the dev cluster: every ScaledObject is Ready, its HPA exists, and the
    # target status reports is that HPA's, read the same way here.
    scaled = dep.objects("scaledobjects")
    assert len(scaled) == 6
    assert all(next(c for c in so["status"]["conditions"] if c["type"] == "Ready")["status"] == "True" for so in scaled)
    hpas = keda_hpas_with_targets(dep)
    assert hpas is not None
    for row in rows:
        a = row["autoscaler"]
        live = hpas[a["name"]]["status"]
        assert (a["state"], a["target"], a["current"], a["hpa"]) == \
            ("running", live["desiredReplicas"], live["currentReplicas"], f"keda-hpa-{a['name']}"), row
        assert a["target"] == row["workload"]["desired"]
    # The GPU preflight of each model pod, as the API server has it: kwok marks init containers
    # Completed without running them, so no verdict exists, and status never calls that "ok".
    for row in doc["models"]:
        assert [r["state"] for r in row["gpu_check"]] == ["no-report"] * row["workload"]["ready"], row
    so = {s["metadata"]["name"]: s["spec"] for s in scaled}
    assert (agents[SUPPORT]["autoscaler"]["min"], agents[SUPPORT]["autoscaler"]["max"]) == \
        (so["support"]["minReplicaCount"], so["support"]["maxReplicaCount"])

    # The drift line counts what `voxplane drift` lists, per target.
    proc = subprocess.run([sys.executable, "-m", "voxplane.cli", "drift", dep.region, "--root", str(dep.root),
                           "--format", "json"], env=env(dep), capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 2), proc.stderr
    targets = json.loads(proc.stdout)["targets"]
    found = {t: sum(len(targets[t][k]) for k in ("changed", "missing", "unexpected")) for t in targets}
    assert (doc["drift"]["kubernetes"], doc["drift"]["livekit"]) == (found["kubernetes"], found["livekit"]), targets
    assert doc["errors"] == []

    lines = text.stdout.splitlines()
    row_of = {ln.split()[0]: ln.split() for ln in lines if ln.startswith(("bellavista/", "northwind/"))}
    # agent pool, namespace, ready, autoscaler (2 words), target (2 words), rooms, participants, sip calls, nodes
    assert row_of["bellavista/reservations"][5:10] == ["target", "1", "1", "2", "1"]
    assert row_of["northwind/support"][5:10] == ["target", "2", "2", "2", "1"]
    assert row_of["northwind/scheduler"][5:10] == ["target", "1", "0", "0", "0"]
    assert any(ln.startswith(lobby + " ") for ln in lines)
    assert ("autoscalers running: 6 (target replicas: reservations 1, scheduler 1, support 2, chat 1, kokoro 1, "
            "whisper 1): KEDA keeps each ScaledObject's keda-hpa-* HPA, the HPA controller sets the replicas") in lines
    assert not any(ln.startswith("no autoscaler running") for ln in lines)
    assert lines[-1] == doc["drift"]["summary"]
    assert doc["drift"]["summary"].startswith(f"drift: {found['kubernetes']} kubernetes, {found['livekit']} livekit")


@LOCAL
def test_the_target_reported_is_what_kedas_hpa_wants(deployment: Deployment) -> None:
    """KEDA keeps `keda-hpa-support` for the support pool's ScaledObject; scaled by hand below its
    minimum, the HPA controller's next sync counts 1 replica, wants 2 and scales back up, and its
    status says so (target 2, current 1) until the sync after. `status` reports that HPA's target
    and count, not numbers of its own: it is read between two identical readings of the HPA and of
    KEDA's Ready condition. KEDA restores a workload below its minimum itself too, on its own 15 s
    poll: most pushes it restores first (the HPA then never counts 1), and when the HPA wins, KEDA's
    write conflicts and it reports the ScaledObject not Ready until its next poll, which is most of
    the HPA's (2, 1) window; `status` says `not-ready` then, still with the HPA's numbers. So either
    state counts, as long as it is the one KEDA's condition gives."""
    dep = deployment
    ns, name = "vox-t-northwind", "keda-hpa-support"
    wait_until("KEDA's HPAs with their targets", lambda: keda_hpas_with_targets(dep), timeout=180, interval=1)

    def hpa_counts() -> tuple[int, int]:
        st = json.loads(dep.kubectl("get", "hpa", name, "-n", ns, "-o", "json").stdout)["status"]
        return st.get("desiredReplicas"), st.get("currentReplicas")

    def replicas() -> int:
        return int(json.loads(dep.kubectl("get", "deployment", "support", "-n", ns, "-o", "json").stdout)["spec"]["replicas"])

    def keda_ready() -> str | None:
        """The status ("True", "False", "Unknown") of KEDA's Ready condition on the ScaledObject."""
        so = json.loads(dep.kubectl("get", "scaledobject", "support", "-n", ns, "-o", "json").stdout)
        return next((c["status"] for c in (so.get("status") or {}).get("conditions", []) if c["type"] == "Ready"), None)

    def reported_while_the_hpa_counted_one() -> Any:
        before = hpa_counts()
        if before == (2, 2):
            # Settled at the minimum (the first push, or KEDA restored it first): push it below.
            if replicas() == 2:
                dep.kubectl("scale", "deployment", "support", "-n", ns, "--replicas=1")
            return None
        if before != (2, 1):
            return None
        ready = keda_ready()
        row = next(r for r in status_json(dep)["agents"] if r["agent"] == "support")
        return (row, ready) if hpa_counts() == (2, 1) and keda_ready() == ready else None

    try:
        row, ready = wait_until("status read while the HPA counted 1 replica and wanted 2",
                                reported_while_the_hpa_counted_one, timeout=360, interval=0.2)
        a = row["autoscaler"]
        state = "not-ready" if ready == "False" else "running"
        assert (a["state"], a["hpa"], a["target"], a["current"], a["min"]) == (state, name, 2, 1, 2), (ready, row)
        wait_until("the HPA scaling back to 2", lambda: replicas() == 2, timeout=90, interval=1)
        events = json.loads(dep.kubectl("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}",
                                        "-o", "json").stdout)["items"]
        assert any(e["reason"] == "SuccessfulRescale" and "New size: 2" in e["message"] for e in events), events
    finally:
        dep.kubectl("scale", "deployment", "support", "-n", ns, "--replicas=2", check=False)


def bella_counts(frame: str) -> tuple[int, int, int] | None:
    """bellavista/reservations' rooms, participants and SIP calls in a text frame: the cells under
    the header's `rooms` to `nodes` (the target cell before them can be any state's words)."""
    lines = frame.splitlines()
    header = next((ln for ln in lines if ln.startswith("agent pool ")), None)
    row = next((ln for ln in lines if ln.startswith("bellavista/reservations ")), None)
    if header is None or row is None or "rooms" not in header or "nodes" not in header:
        return None
    cells = row[header.index("rooms"):header.index("nodes")].split()
    return (int(cells[0]), int(cells[1]), int(cells[2])) if len(cells) == 3 and all(c.isdigit() for c in cells) else None


@LOCAL
def test_watch_redraws_in_place_on_a_terminal_until_ctrl_c(deployment: Deployment, server: Server) -> None:
    dep = deployment
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 120, 250, 0, 0))
    proc = subprocess.Popen(argv(dep, "--watch", "--interval", "0.5"), stdin=slave, stdout=slave, stderr=slave,
                            env={**env(dep), "TERM": "xterm-256color"})
    os.close(slave)
    raw = bytearray()

    def read_some() -> None:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                raw.extend(os.read(master, 1 << 16))
            except OSError:  # the child closed the terminal
                pass

    def frames() -> list[str]:
        text = ANSI.sub("", raw.decode("utf-8", "replace")).replace("\r", "")
        parts = text.split("region local  ·  read ")[1:]
        return [p for p in parts if "\ndrift: " in p]  # complete frames only

    def frame_with(check: Callable[[str], bool]) -> Callable[[], Any]:
        def look() -> Any:
            read_some()
            return next((f for f in reversed(frames()) if check(f)), None)
        return look

    try:
        def last_output() -> str:
            return "last output:\n" + ANSI.sub("", raw.decode("utf-8", "replace"))[-3000:]

        first = wait_until("a first frame with no bellavista room", frame_with(lambda f: bella_counts(f) == (0, 0, 0)),
                           timeout=90, interval=0, details=last_output)
        n_first = len(frames())
        room = room_name("bv-call", "+15550100166")
        server.create_room(room, BELLA)
        wait_until("a frame with the new room", frame_with(lambda f: bella_counts(f) == (1, 0, 0)), timeout=90, interval=0,
                   details=last_output)
        assert re.search(r"^drift: \d+ kubernetes, \d+ livekit", first, re.M)
        assert len(frames()) > n_first
        # In place: rich moves the cursor back up over the last frame before drawing the next.
        assert b"\x1b[1A" in raw and b"\x1b[2K" in raw
        proc.send_signal(signal.SIGINT)
        wait_until("exit after Ctrl-C", lambda: (read_some(), proc.poll() is not None)[1], timeout=120, interval=0)  # a frame mid-render finishes first; slow under load
        assert proc.returncode == 0
        read_some()
        tail = ANSI.sub("", raw.decode("utf-8", "replace"))
        assert "Traceback" not in tail and "Aborted" not in tail
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)


@LOCAL
def test_watch_as_json_streams_a_frame_per_line_and_sees_drift(deployment: Deployment, server: Server) -> None:
    dep = deployment
    proc = subprocess.Popen(argv(dep, "--watch", "--interval", "0.5", "--format", "json"), env=env(dep),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None and proc.stderr is not None
    reader = threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True)
    reader.start()

    def frame_with(check: Callable[[dict[str, Any]], bool]) -> Callable[[], Any]:
        def look() -> Any:
            try:
                doc = json.loads(lines.get(timeout=0.5))
            except queue.Empty:
                return None
            return doc if check(doc) else None
        return look

    try:
        before = wait_until("a frame with LiveKit compared", frame_with(lambda d: d["drift"]["livekit"] == 0), timeout=90, interval=0)
        kube = before["drift"]["kubernetes"]
        # Out-of-band: the scheduler's dispatch rule deleted on the server.
        with server.admin() as c:
            (rule,) = [r for r in c.list_rules() if r.name == "vx-northwind-scheduler"]
            c.delete_rule(rule.sip_dispatch_rule_id)
        doc = wait_until("a frame with the drift", frame_with(lambda d: d["drift"]["livekit"] == 1), timeout=90, interval=0)
        assert doc["drift"]["summary"] == f"drift: {kube} kubernetes, 1 livekit (voxplane drift local for details)"
        assert "vx-northwind-scheduler" not in {o["name"] for o in doc["livekit_objects"] if o["kind"] == "SIPDispatchRule"}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(120) == 0  # a frame mid-render finishes first; slow under load
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        reader.join(10)
        proc.stdout.close()
        proc.stderr.close()
