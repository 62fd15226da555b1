"""`voxplane status REGION`: what a region runs right now. Read-only.

- per agent pool and per model: desired/ready replicas, the nodes the pods landed on, and the
  autoscaler's bounds and current target (kube.py: the ScaledObject and the HPA KEDA made from it;
  "no autoscaler running" where nothing reconciles the ScaledObject, as on the local control plane);
- per agent: active rooms, participants and SIP calls (rooms.py: each room attributed through its
  agent dispatches, else its name against the region's dispatch rules; never to another tenant);
- the platform's other workloads, the rooms no agent of the region owns, the SIP objects voxplane
  owns in the region;
- one drift line: the findings `voxplane drift REGION` would list, per target.

Objects are selected by voxplane's labels (`managed-by: voxplane`, `part-of: <region>`). The parts:
kube.py and rooms.py read, report.py assembles (`RegionStatus`), reader.py holds the connections
across `--watch` frames; the command draws it (voxplane/cli/status.py, status_view.py).

JSON (`--format json`; with `--watch`, one such object per line per frame). Keys are always
present; a value that could not be read is null (and the reason is in `errors`)::

    {
      "region": "local",
      "read_at": "2026-01-31T12:00:00Z",                 # UTC, when this reading started
      "kubernetes": {"server": "https://127.0.0.1:6443", "context": "voxplane-local", "error": null},
      "livekit": {"url": "http://127.0.0.1:7880", "error": null,
                  "rooms": 3, "participants": 5, "sip_calls": 1},     # every active room on the server
      "agents": [                                          # declared agents, and agent pools found
        {"tenant": "bellavista", "agent": "reservations",  #   in the cluster but not declared
         "livekit_agent": "bellavista-reservations",       # the name its workers register under
         "namespace": "vox-t-bellavista",
         "declared": true,                                 # in the manifests
         "workload": {"namespace": "vox-t-bellavista", "kind": "Deployment", "name": "reservations",
                      "component": "agent", "desired": 1, "ready": 1,   # spec.replicas, readyReplicas
                      "nodes": ["local-agents-1"]},        # one entry per pod ("(pending)": unscheduled)
                                                           # null: not deployed
         "autoscaler": {                                   # null: no ScaledObject targets it
           "state": "not-running",    # running | not-scaling | fallback | idle | no-hpa | not-ready
                                      # | paused | not-running (nothing reconciles the ScaledObject)
           "kind": "ScaledObject", "name": "reservations", "min": 1, "max": 25,
           "target": null,            # replicas the autoscaler wants now (HPA desiredReplicas, the
                                      # paused count, 0 when idle); null when the cluster does not say
           "current": null,           # HPA currentReplicas
           "hpa": null,               # e.g. "keda-hpa-reservations" when it exists
           "reason": "..."},          # one line, what the cluster says
         "activity": {"rooms": 1, "participants": 2, "sip_calls": 1, "agent_participants": 1,
                      "room_names": ["bv-call_+15550100199_Ab3dE"]}}   # null: LiveKit not read
      ],
      "models": [
        {"model": "chat", "kind": "llm", "namespace": "vox-inference", "declared": true,
         "workload": {...}, "autoscaler": {...}}         # as for agents
      ],
      "platform": [{"namespace": "vox-system", "kind": "Deployment", "name": "livekit",
                    "component": "sfu", "desired": 1, "ready": 1, "nodes": [...], "autoscaler": null}],
      "other_rooms": [                                     # active rooms of no agent of the region
        {"room": "lobby", "participants": 1, "sip_calls": 0, "agent_participants": 0,
         "dispatched_agents": []}                          # null: ListDispatch failed for it
      ],
      "livekit_objects": [{"kind": "SIPDispatchRule", "name": "vx-bellavista-reservations",
                           "owner": "local/bellavista/reservations/rule",
                           "detail": "agents: bellavista-reservations"}],
      "drift": {"kubernetes": 0, "livekit": 1,           # changed fields + missing + unexpected objects;
                "errors": {},                              #   null (reason in errors) when not compared
                "summary": "drift: 0 kubernetes, 1 livekit (voxplane drift local for details)"},
      "errors": []                                         # "kubernetes: ...", "livekit: ...", "drift (…): ..."
    }

Exit codes: 0 everything was read (drift or not: `voxplane drift` is the check that fails on
drift); 1 invalid manifests or unknown region, or some part could not be read (the cluster, the
LiveKit server, a drift comparison) — what could be read is still printed, and each failure is a
line on stderr; 2 a usage error. With `--watch`: a part that cannot be read is shown in the frame
and the watch goes on; Ctrl-C (SIGINT) ends it with 0.
"""

from __future__ import annotations

from ..desired.common import MANAGED_BY


def selector(region: str) -> str:
    """The label selector of the objects voxplane owns in `region`."""
    return f"app.kubernetes.io/managed-by={MANAGED_BY},app.kubernetes.io/part-of={region}"
