"""What the tests (and bench/) share, one place each:

- `repo`: the repository root (`REPO`) and copies of it (`copy_manifests`, `copy_checkout`);
- `servers`: Redis + livekit-server on loopback (`livekit_with_redis`, the `redis_server` and
  `livekit_local` fixtures in tests/conftest.py);
- `pulumi_mocks`: a program run under Pulumi's mock engine, recording what it registered;
- `wait`: `wait_until`, the one way a test waits for something to happen;
- `stats`: `percentile` (nearest rank), for what the benchmarks report.
"""
