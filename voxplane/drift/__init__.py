"""Drift: the desired state against what runs, told in terms of the manifests (`voxplane drift`).

- `kubernetes/`: a region's rendered objects against the cluster;
- `livekit`: SIP trunks and dispatch rules against the LiveKit server;
- `attribution`: the manifest file, line and field that owns each object path (plan uses it too);
- `report`: text and markdown for a drift report, one shape for every target;
- `combined`: one report and one exit code over the targets.
"""
