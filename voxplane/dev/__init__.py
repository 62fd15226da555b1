"""Local stand-ins for a region's infrastructure, loopback only; for demos and tests.

- `paths`: where their state lives (the cache, the dev state), and the one writer of private files;
- `process`: process supervision (start with a log, wait until ready, stop; pid + create time);
- `ports`: free loopback ports;
- the servers, each on loopback from the config a region renders: `redis`, `livekit`
  (livekit-server), `gateway` (the tenant gateway), `sip` (livekit-sip, for `make e2e`);
- `region`: a region's livekit-server and gateway configs with dev keys;
- `servers`: Redis + livekit-server (+ gateway) in the background (`voxplane dev servers`);
- `cluster`, `nodes`: a Kubernetes control plane with simulated nodes from the region;
- `stack`: the engine env of a dev stack (`voxplane dev pulumi`), its dev secrets;
- `credentials`: a dev region's tenant credentials;
- `voxplane dev` itself is voxplane/cli/dev.py.
"""
