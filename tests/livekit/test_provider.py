"""The Pulumi dynamic provider against a real server, and LiveKitControlPlane under Pulumi mocks."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pulumi
import pytest
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

from voxplane.desired.common import ADMIN_KEY
from voxplane.components.livekit_objects import (
    LiveKitControlPlane,
    LiveKitControlPlaneArgs,
    LiveKitSIPProvider,
)
from voxplane.components.secrets import SecretResolver
from voxplane.dev.livekit import DEFAULT_CONFIG, LiveKitServer
from voxplane.livekit.keys import derive_api_secret
from voxplane.livekit.client import LiveKitAdmin
from voxplane.livekit.desired import RULE_KIND, TRUNK_KIND, desired_objects

from ..support.pulumi_mocks import mocked
from ..support.servers import livekit_with_redis
from .conftest import Tree

ROOT_SECRET = "provider-test-root-secret-0123456789"
PASSWORD = "trunk-password-in-config"


@pytest.fixture
def admin_server() -> Iterator[LiveKitServer]:
    """A server whose only key is vx-admin with the secret derived from ROOT_SECRET for `local`."""
    config = {**DEFAULT_CONFIG, "keys": {ADMIN_KEY: derive_api_secret(ROOT_SECRET, "local", ADMIN_KEY)}}
    with livekit_with_redis(config) as lk:
        yield lk.livekit


def provider(lk: LiveKitServer) -> LiveKitSIPProvider:
    p = LiveKitSIPProvider()
    p.configure(ConfigureRequest(Config({"voxplane:livekitApiUrl": lk.url, "voxplane:livekitRootSecret": ROOT_SECRET}, "voxplane")))
    return p


def specs(tree: Tree) -> dict[tuple[str, str], dict[str, Any]]:
    region, agents = tree.project()
    return {(o.kind, o.owner.agent): o.spec(None, {"auth_password": PASSWORD}) if o.kind == RULE_KIND
            else o.spec({"auth_password": PASSWORD}) for o in desired_objects(region, agents)}


def admin(lk: LiveKitServer) -> LiveKitAdmin:
    return LiveKitAdmin(lk.url, ADMIN_KEY, derive_api_secret(ROOT_SECRET, "local", ADMIN_KEY))


@pytest.mark.integration
def test_provider_crud_against_real_server(tree: Tree, admin_server: LiveKitServer) -> None:
    """create/read/update/diff/delete with the admin key derived from stack config; a deleted
    object reads as a blank ID."""
    p = provider(admin_server)
    trunk_spec = specs(tree)[(TRUNK_KIND, "support")]
    assert p.check({}, trunk_spec).failures == []
    made = p.create(trunk_spec)
    assert made.id.startswith("ST_")
    assert made.outs["auth_password"] == rpc.wrap_rpc_secret(PASSWORD)  # stays a secret in state

    rule_spec = {**specs(tree)[(RULE_KIND, "support")], "trunk_ids": [made.id]}
    rule = p.create(rule_spec)
    assert rule.id.startswith("SDR_")
    with admin(admin_server) as c:
        live_rule = c.get_rule(rule.id)
    assert live_rule is not None and list(live_rule.trunk_ids) == [made.id]

    read = p.read(made.id, made.outs)
    assert read.id == made.id and read.inputs == read.outs
    assert p.diff(made.id, read.outs, trunk_spec).changes is False

    changed = {**trunk_spec, "numbers": ["+16175550111"]}
    assert p.diff(made.id, read.outs, changed).changes is True
    updated = p.update(made.id, read.outs, changed)
    assert updated.outs["numbers"] == ["+16175550111"]
    with admin(admin_server) as c:
        after = c.get_trunk(made.id)
    assert after is not None and list(after.numbers) == ["+16175550111"] and after.auth_password == PASSWORD

    p.delete(rule.id, rule.outs)
    p.delete(made.id, updated.outs)
    gone = p.read(made.id, updated.outs)
    assert (gone.id, gone.outs) == ("", {})
    assert p.read(rule.id, rule.outs).id == ""


@pytest.mark.integration
def test_provider_read_sees_out_of_band_change_so_refresh_then_up_repairs(tree: Tree, admin_server: LiveKitServer) -> None:
    """read returns live state as inputs; diff against desired then reports the change, update fixes it."""
    p = provider(admin_server)
    spec = specs(tree)[(TRUNK_KIND, "reservations")]
    made = p.create(spec)
    with admin(admin_server) as c:
        info = c.get_trunk(made.id)
        assert info is not None
        info.allowed_numbers.append("+15550000000")
        info.krisp_enabled = True
        c.update_trunk(made.id, info)
    read = p.read(made.id, made.outs)
    assert read.inputs is not None
    assert read.inputs["krisp_enabled"] is True and read.inputs["extra"] == {"allowed_numbers": ["+15550000000"]}
    assert p.diff(made.id, read.inputs, spec).changes is True
    p.update(made.id, read.inputs, spec)
    again = p.read(made.id, made.outs)
    assert again.inputs is not None and "extra" not in again.inputs and again.inputs["krisp_enabled"] is False


@pytest.mark.integration
def test_provider_create_adopts_owned_object_instead_of_duplicating(tree: Tree, admin_server: LiveKitServer) -> None:
    """A create whose object already exists (e.g. made by `voxplane livekit sync`) takes it over in place."""
    p = provider(admin_server)
    spec = specs(tree)[(TRUNK_KIND, "scheduler")]
    first = p.create(spec)
    second = p.create(spec)
    assert second.id == first.id
    with admin(admin_server) as c:
        assert [t.sip_trunk_id for t in c.list_trunks()] == [first.id]


@pytest.mark.integration
def test_provider_update_of_deleted_object_says_refresh(tree: Tree, admin_server: LiveKitServer) -> None:
    """Updating an object deleted out of band fails with a message that says what to run."""
    p = provider(admin_server)
    spec = specs(tree)[(TRUNK_KIND, "scheduler")]
    made = p.create(spec)
    with admin(admin_server) as c:
        c.delete_trunk(made.id)
    with pytest.raises(ValueError, match="deleted outside Pulumi; run `pulumi refresh`"):
        p.update(made.id, made.outs, {**spec, "numbers": ["+442079460999"]})


def test_provider_check_rejects_catch_all_objects() -> None:
    """A rule without trunk_ids (all trunks) or a trunk without numbers (all numbers) is refused."""
    p = LiveKitSIPProvider()
    rule = p.check({}, {"kind": RULE_KIND, "name": "r", "region": "local", "trunk_ids": []})
    assert [f.property for f in rule.failures] == ["trunk_ids"]
    trunk = p.check({}, {"kind": TRUNK_KIND, "name": "t", "region": "local", "numbers": []})
    assert [f.property for f in trunk.failures] == ["numbers"]
    assert p.check({}, {"kind": RULE_KIND, "name": "r", "region": "local", "trunk_ids": [rpc.UNKNOWN]}).failures == []


def test_pickled_provider_holds_no_credentials() -> None:
    """The dill-pickled provider (stored in state) never contains what configure() read."""
    from pulumi.dynamic.dynamic import serialize_provider

    p = LiveKitSIPProvider()
    blob = base64.b64decode(serialize_provider(p))
    assert ROOT_SECRET.encode() not in blob
    p.configure(ConfigureRequest(Config({"voxplane:livekitRootSecret": ROOT_SECRET}, "voxplane")))
    assert p._config is not None and p._config["root"] == ROOT_SECRET


# --- registration under mocks ---------------------------------------------------------------------


def test_control_plane_registration_under_mocks(tree: Tree) -> None:
    """One trunk + one rule per telephony agent; rule depends on (and lists) its trunk; the trunk
    password is a secret input; no credential anywhere in the inputs."""
    region, agents = tree.project()
    outputs: dict[str, Any] = {}
    secrets = {"voxplane:northwindTrunkPassword": PASSWORD, "voxplane:livekitRootSecret": ROOT_SECRET}
    with mocked(stack="local", secrets=secrets) as recorder:

        @pulumi_mocks.test
        def program() -> Any:
            cp = LiveKitControlPlane("local-livekit", LiveKitControlPlaneArgs(
                region=region, agents=agents, secrets=SecretResolver("local", [ADMIN_KEY])))
            return pulumi.Output.all(cp.trunk_ids, cp.rule_ids).apply(lambda ids: outputs.update(trunks=ids[0], rules=ids[1]))

        program()
        registered = recorder.registered()
    requests = recorder.request_by_urn()

    by_name = {urn.rsplit("::", 1)[1]: (urn, reg) for urn, reg in registered.items()}
    component = by_name["local-livekit"][0]
    assert "voxplane:livekit:LiveKitControlPlane" in component
    trunks = {n: v for n, v in by_name.items() if "pulumi-python:dynamic/livekit:SIPInboundTrunk" in v[0]}
    rules = {n: v for n, v in by_name.items() if "pulumi-python:dynamic/livekit:SIPDispatchRule" in v[0]}
    assert sorted(trunks) == ["local-livekit-trunk-bellavista-reservations", "local-livekit-trunk-northwind-scheduler",
                              "local-livekit-trunk-northwind-support"]
    assert sorted(rules) == [n.replace("-trunk-", "-rule-") for n in sorted(trunks)]
    assert outputs["trunks"]["northwind-support"] == "local-livekit-trunk-northwind-support-id"

    for name, (urn, reg) in rules.items():
        trunk_name = name.replace("-rule-", "-trunk-")
        trunk_urn = trunks[trunk_name][0]
        assert reg.state["kind"] == "SIPDispatchRule" and reg.state["name"].startswith("vx-")
        assert reg.state["trunk_ids"] == [f"{trunk_name}-id"]
        request = requests[urn]
        assert trunk_urn in request.dependencies
        assert trunk_urn in request.propertyDependencies["trunk_ids"].urns
        assert "LiveKitControlPlane$pulumi-python:dynamic/livekit:SIPDispatchRule" in urn  # child of the component

    support = trunks["local-livekit-trunk-northwind-support"][1].state
    assert support["kind"] == "SIPInboundTrunk" and support["auth_username"] == "northwind-trunk"
    assert rpc.is_rpc_secret(support["auth_password"]) and rpc.unwrap_rpc_secret(support["auth_password"]) == PASSWORD
    assert set(requests[trunks["local-livekit-trunk-northwind-support"][0]].additionalSecretOutputs) >= {"auth_password", "pin"}
    for _name, (_urn, reg) in {**trunks, **rules}.items():
        plain = {k: v for k, v in reg.state.items() if not rpc.is_rpc_secret(v)}
        text = json.dumps(plain)
        assert PASSWORD not in text and ROOT_SECRET not in text
        provider_blob = rpc.unwrap_rpc_secret(reg.state["__provider"])
        assert ROOT_SECRET.encode() not in base64.b64decode(provider_blob)
        assert not {"url", "api_key", "api_secret", "livekitApiUrl"} & set(reg.state)


def test_control_plane_refuses_kubernetes_secret_refs(tree: Tree) -> None:
    """A trunk password in a Kubernetes Secret cannot be written by the deployer: validation says so
    at the manifest line, and the component refuses one too if it is ever handed one."""
    from voxplane.components.livekit_objects import _secret
    from voxplane.manifest.loader import load
    from voxplane.manifest.model import SecretRef

    tree.edit("agents/support.yaml", "password: { config: northwindTrunkPassword }", "password: { secret: nw-trunk, key: password }")
    [problem] = load((), tree.root).problems
    assert (problem.file, problem.field) == ("agents/support.yaml", "telephony.auth.password.secret")
    assert "is written into LiveKit, not the cluster" in problem.message
    with pytest.raises(ValueError, match=r"agents/support.yaml:28:15 \(telephony.auth.password\): secret:nw-trunk/password is a Kubernetes Secret"):
        _secret(SecretResolver("local", []), SecretRef(secret="nw-trunk", key="password"),
                "agents/support.yaml:28:15 (telephony.auth.password)")


def test_registering_dynamic_resources_does_not_nest_the_sdk_pickler_patch(monkeypatch) -> None:
    """pulumi's serialize_provider wraps pickle._Pickler._batch_setitems on every call; without the
    guard ~1,000 trunks and rules in one process end in RecursionError (found by bench/render.py)."""
    import pickle

    from voxplane.components.livekit_objects import SIPInboundTrunk
    from voxplane.deploy.render import run_mocked

    before = pickle._Pickler._batch_setitems  # type: ignore[attr-defined]

    def program() -> None:
        for i in range(1200):
            SIPInboundTrunk(f"trunk-{i}", {"name": f"t{i}", "region": "local", "numbers": [f"+1555{i:07d}"]})

    run_mocked(program, stack="local", config={}, secret_keys=[])
    assert pickle._Pickler._batch_setitems is before  # type: ignore[attr-defined]
