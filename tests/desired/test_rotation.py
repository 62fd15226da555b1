"""Rotating `livekitRootSecret` rolls every workload whose pods read a value derived from it (the
SFU, the SIP bridge, the gateway, the agents, the in-cluster Redis), through a keyed fingerprint
annotation that reveals nothing (issue #8, item 10). The real program under the SDK's mock engine
(`voxplane.deploy.render.render`, the code `pulumi up` runs), once per root secret."""

from __future__ import annotations

import json
from functools import cache
from typing import Any, Iterator

import pytest

from voxplane.components.secrets import FINGERPRINT_LENGTH, fingerprint
from voxplane.desired.common import ADMIN_KEY, ANNOTATION_SECRET_FINGERPRINT, platform_api_keys, tenant_api_key
from voxplane.livekit.keys import derive_api_secret, keys_file
from voxplane.deploy.render import render

from ..support.pulumi_mocks import mocked
from ..support.repo import REPO
from ._helpers import REGIONS, region

ROOTS = ("first-root-secret-0123456789abcdef0123", "second-root-secret-fedcba9876543210fedc")
WORKLOADS = ("Deployment", "StatefulSet")


@cache
def objects(name: str, root: str, **config: str) -> tuple[dict[str, Any], ...]:
    extra = {"voxplane:livekitRootSecret": root, **{f"voxplane:{k}": v for k, v in config.items()}}
    return tuple(render(name, REPO, extra_config=extra).kubernetes)


def keyed(objs: tuple[dict[str, Any], ...]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objs}


def templates(objs: tuple[dict[str, Any], ...]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {k: o["spec"]["template"] for k, o in keyed(objs).items() if k[0] in WORKLOADS}


def rolled(name: str) -> set[str]:
    """Workloads of `name` whose pods read root-derived values (what a rotation must roll)."""
    r = region(name)
    out = {"livekit", "livekit-gateway", "agent-recovery"} | {a.name for a in _agents(name)}
    if r.sip is not None:
        out.add("livekit-sip")
    if r.livekit.redis.mode == "in-cluster":
        out.add("livekit-redis")
    return out


def _agents(name: str) -> tuple[Any, ...]:
    from ._helpers import project

    return project().agents_in(name)


def derived_values(name: str, root: str) -> dict[str, str]:
    """Every value derived from `root` in region `name`, and the root itself."""
    r = region(name)
    keys = platform_api_keys() + [tenant_api_key(t) for t in r.tenants] + ["redis"]
    out = {k: derive_api_secret(root, name, k) for k in keys}
    out["keys file"] = keys_file(root, name, platform_api_keys())
    out["root"] = root
    return out


def metadata_strings(obj: Any) -> Iterator[tuple[str, str]]:
    """(where, text) of every name, label and annotation key and value, at any depth (pod templates,
    volume claim templates included)."""
    if isinstance(obj, dict):
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            for field in ("name", "generateName", "namespace"):
                if isinstance(meta.get(field), str):
                    yield f"metadata.{field}", meta[field]
            for field in ("labels", "annotations"):
                for k, v in (meta.get(field) or {}).items():
                    yield f"metadata.{field}", k
                    yield f"metadata.{field}[{k}]", str(v)
        for v in obj.values():
            yield from metadata_strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from metadata_strings(v)


@pytest.mark.parametrize("name", REGIONS)
def test_a_new_root_secret_changes_the_pod_templates_of_exactly_its_readers(name):
    first, second = templates(objects(name, ROOTS[0])), templates(objects(name, ROOTS[1]))
    assert first.keys() == second.keys()
    changed = {k[2] for k in first if first[k] != second[k]}
    assert changed == rolled(name)
    for key in first:
        if key[2] in changed:
            a, b = first[key], second[key]
            fa = a["metadata"]["annotations"][ANNOTATION_SECRET_FINGERPRINT]
            fb = b["metadata"]["annotations"][ANNOTATION_SECRET_FINGERPRINT]
            assert fa != fb and len(fa) == len(fb) == FINGERPRINT_LENGTH
            # The fingerprint is all that differs: the pods' spec is the same.
            assert a["spec"] == b["spec"]
    # Nothing else in the region differs but the (redacted) Secrets.
    rest_a = {k: o for k, o in keyed(objects(name, ROOTS[0])).items() if k[0] not in WORKLOADS}
    rest_b = {k: o for k, o in keyed(objects(name, ROOTS[1])).items() if k[0] not in WORKLOADS}
    assert rest_a == rest_b


@pytest.mark.parametrize("name", REGIONS)
def test_the_same_root_secret_gives_the_same_pod_templates(name):
    """No rollout without a rotation: the fingerprint depends on the values alone."""
    assert templates(objects(name, ROOTS[0])) == templates(tuple(render(
        name, REPO, extra_config={"voxplane:livekitRootSecret": ROOTS[0]}).kubernetes))


@pytest.mark.parametrize("name", REGIONS)
def test_no_name_label_or_annotation_holds_secret_material(name):
    """No derived secret, key file or root in any name, label or annotation (of any object, pod
    templates included), and no fingerprint is a piece of one."""
    for root in ROOTS:
        secrets = derived_values(name, root)
        for obj in objects(name, root):
            for where, text in metadata_strings(obj):
                for what, value in secrets.items():
                    assert value not in text, f"{obj['kind']}/{obj['metadata']['name']} {where} holds the {what}"
                    # The keys file's secrets are each checked as such; the rest of it is the key
                    # names, which are no secret (a label may well be `recovery`).
                    if len(text) >= 8 and what != "keys file":
                        assert text not in value, f"{obj['kind']}/{obj['metadata']['name']} {where} is part of the {what}"


def test_the_fingerprint_is_keyed_by_the_root_and_covers_each_value():
    base = fingerprint(ROOTS[0], "us-east", ["a", "b"])
    assert len(base) == FINGERPRINT_LENGTH and int(base, 16) >= 0
    assert fingerprint(ROOTS[1], "us-east", ["a", "b"]) != base
    assert fingerprint(ROOTS[0], "eu-west", ["a", "b"]) != base
    assert fingerprint(ROOTS[0], "us-east", ["a", "c"]) != base
    assert fingerprint(ROOTS[0], "us-east", ["ab", ""]) != base  # length-prefixed: no shifting
    # Never a derived secret's input: the purpose label has a ':', region names cannot.
    assert base not in derive_api_secret(ROOTS[0], "us-east", ADMIN_KEY)


def test_a_new_config_secret_rolls_only_the_agent_that_reads_it():
    """northwind/support reads northwindOpenaiKey (its provider key): a new value rolls it alone."""
    first = templates(objects("us-east", ROOTS[0], northwindOpenaiKey="sk-one"))
    second = templates(objects("us-east", ROOTS[0], northwindOpenaiKey="sk-two"))
    assert {k[2] for k in first if first[k] != second[k]} == {"support"}
    assert "sk-one" not in json.dumps([list(metadata_strings(o)) for o in objects("us-east", ROOTS[0],
                                                                                  northwindOpenaiKey="sk-one")])


def registration_requests(config: dict[str, str], secret_keys: list[str]) -> list[Any]:
    """Every RegisterResource request the real program sends under the mocks (options included:
    the dependencies)."""
    from pulumi.runtime import mocks as pulumi_mocks

    from voxplane.deploy.program import StackConfig, run

    plain = {k: v for k, v in config.items() if k not in secret_keys}
    with mocked(stack="us-east", config=plain, secrets={k: config[k] for k in secret_keys}) as recorder:
        pulumi_mocks.test(lambda: run(StackConfig()))()
    return recorder.requests


def test_workloads_wait_for_the_secrets_their_pods_read():
    """Each workload depends on the Secrets (and ConfigMaps) registered beside it, and the SIP
    bridge on the SFU's (the Redis password): a rollout never starts pods against old values. The
    fingerprint annotation is registered in plain text, never as a secret."""
    from google.protobuf import json_format

    secret_keys = ["voxplane:livekitRootSecret", "voxplane:hfToken", "voxplane:northwindOpenaiKey",
                   "voxplane:northwindTrunkPassword"]
    requests = registration_requests({
        "voxplane:region": "us-east", "voxplane:repoRoot": str(REPO), "voxplane:renderYamlTo": "/tmp/unused-render",
        "voxplane:imageRegistry": "registry.example/agents", "voxplane:livekitRootSecret": ROOTS[0],
        "voxplane:hfToken": "hf-x", "voxplane:northwindOpenaiKey": "k", "voxplane:northwindTrunkPassword": "p",
    }, secret_keys)
    by_name = {req.name: req for req in requests}

    def deps(name: str) -> set[str]:
        return {_name(u) for u in by_name[name].dependencies}

    assert {"us-east-sfu-secret-livekit-keys", "us-east-sfu-secret-livekit-redis-auth",
            "us-east-sfu-configmap-livekit-config"} <= deps("us-east-sfu-deployment-livekit")
    assert "us-east-sfu-secret-livekit-redis-auth" in deps("us-east-sfu-statefulset-livekit-redis")
    assert "us-east-sfu-secret-livekit-redis-auth" in deps("us-east-sip")  # the component waits
    assert "us-east-sip-secret-livekit-sip-api" in deps("us-east-sip-deployment-livekit-sip")
    assert "us-east-gateway-secret-livekit-gateway-keys" in deps("us-east-gateway-deployment-livekit-gateway")
    body = json_format.MessageToDict(by_name["us-east-sfu-deployment-livekit"].object)
    value = body["spec"]["template"]["metadata"]["annotations"][ANNOTATION_SECRET_FINGERPRINT]
    assert isinstance(value, str) and len(value) == FINGERPRINT_LENGTH


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[1]
