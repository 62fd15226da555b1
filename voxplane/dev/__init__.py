"""Local stand-ins for a region's infrastructure: a Kubernetes control plane with simulated nodes
(`cluster`, `nodes`) and the `voxplane dev` commands. Loopback only; for demos and tests."""
