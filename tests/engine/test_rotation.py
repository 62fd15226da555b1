"""Rotating `livekitRootSecret` under the real engine (issue #8, item 10): `pulumi config set
--secret` and `pulumi up` roll the SFU, the SIP bridge, the gateway, the agents and the in-cluster
Redis on the local control plane, and their Secrets hold the values derived from the new root.
The models, which read nothing derived from it, do not restart. The root is put back at the end
(and rolled back), so the fixture's destroy still reaches the dev LiveKit server."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from voxplane.desired.common import ANNOTATION_SECRET_FINGERPRINT, platform_api_keys, tenant_api_key
from voxplane.livekit.keys import derive_api_secret, keys_file
from voxplane.manifest.loader import load

from .conftest import Deployment

pytestmark = [pytest.mark.integration, pytest.mark.engine]

ROOT_KEY = "voxplane:livekitRootSecret"


def _workloads(dep: Deployment) -> dict[tuple[str, str, str], dict[str, Any]]:
    out = {}
    for kind in ("deployments", "statefulsets"):
        for obj in dep.objects(kind):
            out[(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
    return out


def _secret(dep: Deployment, namespace: str, name: str, key: str) -> str:
    data = json.loads(dep.kubectl("get", "secret", name, "-n", namespace, "-o", "json").stdout)["data"]
    return base64.b64decode(data[key]).decode()


def _set_root(dep: Deployment, value: str) -> None:
    proc = dep.pulumi("config", "set", "--secret", ROOT_KEY, value)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("deployment", ["local"], indirect=True)
def test_rotating_the_root_secret_rolls_what_reads_it(deployment: Deployment):
    from voxplane.dev.stack import dev_root_secret

    dep = deployment
    project = load((), dep.root).require_project()
    region = project.regions[dep.region]
    system = f"{region.kubernetes.namespace_prefix}-system"
    old_root, new_root = dev_root_secret(dep.region), "rotated-" + dev_root_secret(dep.region)[::-1]
    readers = {("Deployment", system, "livekit"), ("Deployment", system, "livekit-gateway"),
               ("Deployment", system, "agent-recovery"), ("Deployment", system, "livekit-sip"),
               ("StatefulSet", system, "livekit-redis")}
    readers |= {("Deployment", f"{region.kubernetes.namespace_prefix}-t-{a.tenant}", a.name)
                for a in project.agents_in(dep.region)}
    before = _workloads(dep)
    assert readers <= before.keys()
    try:
        _set_root(dep, new_root)
        dep.up()
        after = _workloads(dep)
        for key, obj in after.items():
            old = before[key]
            fingerprints = [o["spec"]["template"]["metadata"].get("annotations", {}).get(ANNOTATION_SECRET_FINGERPRINT)
                            for o in (old, obj)]
            if key in readers:
                assert fingerprints[0] and fingerprints[1] and fingerprints[0] != fingerprints[1], key
                assert obj["metadata"]["generation"] > old["metadata"]["generation"], f"{key} did not roll"
                status = obj["status"]
                assert status.get("observedGeneration") == obj["metadata"]["generation"], key
                assert status.get("updatedReplicas") == obj["spec"]["replicas"] == status.get("readyReplicas"), key
                if key[0] == "StatefulSet":
                    assert status["updateRevision"] != old["status"]["updateRevision"], key
                    assert status.get("currentRevision") == status["updateRevision"], key
            else:  # the models: nothing they read changed
                assert obj["metadata"]["generation"] == old["metadata"]["generation"], f"{key} rolled for nothing"
        # The Secrets the new pods read hold what the new root derives.
        assert _secret(dep, system, "livekit-keys", "keys.yaml") == keys_file(new_root, dep.region, platform_api_keys())
        assert _secret(dep, system, "livekit-redis-auth", "password") == derive_api_secret(new_root, dep.region, "redis")
        tenant = next(iter(region.tenants))
        tenant_ns = f"{region.kubernetes.namespace_prefix}-t-{tenant}"
        assert _secret(dep, tenant_ns, "livekit-api", "LIVEKIT_API_SECRET") == derive_api_secret(
            new_root, dep.region, tenant_api_key(tenant))
        # Nothing else is left to change: no perpetual diff from the fingerprints.
        proc = dep.pulumi("preview", "--expect-no-changes")
        assert proc.returncode == 0, proc.stdout[-3000:]
    finally:
        _set_root(dep, old_root)
        dep.up()
