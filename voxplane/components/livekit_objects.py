"""LiveKit SIP inbound trunks and dispatch rules as Pulumi resources (dynamic provider), and the
`LiveKitControlPlane` component that declares one trunk + one rule per telephony agent.

The provider is a thin shell over `voxplane.livekit.reconcile`'s per-object operations, so
`pulumi up`, `voxplane livekit sync` and `voxplane drift` read, compare and write objects the
same way (same specs, same ownership metadata, same replace-in-place updates).

Dynamic-provider rules followed (reference/pulumi.md §3):
- Credentials never travel as resource inputs: `configure()` reads stack config
  (`voxplane:livekitApiUrl`, and `voxplane:livekitRootSecret` from which the admin key's secret is
  derived; `voxplane:livekitApiKey`/`voxplane:livekitApiSecret` override for servers with their
  own keys). The provider object is dill-pickled into state before `configure()` ever runs, so the
  pickle holds no credential; the client is built inside each method.
- `read` returns the live object (a deleted one reads as a blank ID), and returns it as `inputs`
  too, so after `pulumi refresh` the next `pulumi up` diffs desired against live and repairs it.
- Secret fields (`auth_password`, `pin`) are `Output.secret` inputs and are returned as secrets.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional, Sequence

import pulumi
import pulumi.dynamic as dyn
from pulumi.runtime import rpc

from voxplane.desired.common import ADMIN_KEY, SecretValue
from voxplane.livekit.keys import ROOT_SECRET_CONFIG, derive_api_secret
from voxplane.manifest.model import Agent, Region, SecretRef

from .secrets import SecretResolver

TRUNK_KIND = "SIPInboundTrunk"
RULE_KIND = "SIPDispatchRule"
_SECRET_FIELDS = ("auth_password", "pin")


def _is_unknown(value: Any) -> bool:
    return value == rpc.UNKNOWN or type(value).__name__ == "Unknown"


def _plain(props: Mapping[str, Any]) -> dict[str, Any]:
    """Engine properties -> a spec: secrets unwrapped, the pickled provider dropped."""
    return {k: rpc.unwrap_rpc_secret(v) for k, v in props.items() if k != dyn.dynamic.PROVIDER_KEY}


def _outs(spec: Mapping[str, Any], region: str) -> dict[str, Any]:
    """A spec as resource state: secret fields marked secret, `extra` only when non-empty."""
    out = {k: v for k, v in spec.items() if k != "extra"}
    out["region"] = region
    if spec.get("extra"):
        out["extra"] = dict(spec["extra"])
    for key in _SECRET_FIELDS:
        if out.get(key):
            out[key] = rpc.wrap_rpc_secret(out[key])
    return out


class LiveKitSIPProvider(dyn.ResourceProvider):
    """CRUD + diff for `SIPInboundTrunk` and `SIPDispatchRule` (the `kind` input says which)."""

    def __init__(self) -> None:
        # Filled by configure() in the provider process; None when pickled.
        self._config: Optional[dict[str, Optional[str]]] = None

    def configure(self, req: dyn.ConfigureRequest) -> None:
        cfg = req.config
        self._config = {
            "url": cfg.get("voxplane:livekitApiUrl"),
            "key": cfg.get("voxplane:livekitApiKey"),
            "secret": cfg.get("voxplane:livekitApiSecret"),
            "root": cfg.get(f"voxplane:{ROOT_SECRET_CONFIG}"),
        }

    def _client(self, props: Mapping[str, Any]) -> Any:
        from voxplane.livekit.client import LiveKitAdmin

        cfg = self._config or {}
        url = cfg.get("url") or os.environ.get("LIVEKIT_URL")
        if not url:
            raise ValueError("no LiveKit API URL: `pulumi config set livekitApiUrl https://…` (or LIVEKIT_URL)")
        key = cfg.get("key") or ADMIN_KEY
        secret = cfg.get("secret")
        if not secret:
            root = cfg.get("root")
            if not root:
                raise ValueError(f"no LiveKit credentials: `pulumi config set --secret {ROOT_SECRET_CONFIG} …`")
            secret = derive_api_secret(root, str(props["region"]), key)
        return LiveKitAdmin(url, key, secret)

    # -- engine methods ---------------------------------------------------------------------

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.CheckResult:
        failures = []
        if news.get("kind") not in (TRUNK_KIND, RULE_KIND):
            failures.append(dyn.CheckFailure("kind", f"kind must be {TRUNK_KIND} or {RULE_KIND}"))
        if not news.get("name"):
            failures.append(dyn.CheckFailure("name", "name is required"))
        if not news.get("region"):
            failures.append(dyn.CheckFailure("region", "region is required (it selects the API key)"))
        if news.get("kind") == TRUNK_KIND and not news.get("numbers"):
            failures.append(dyn.CheckFailure("numbers", "an inbound trunk without numbers accepts calls to every number"))
        if news.get("kind") == RULE_KIND:
            ids = news.get("trunk_ids")
            if not _is_unknown(ids) and not ids:
                failures.append(dyn.CheckFailure("trunk_ids", "a rule without trunk_ids matches every trunk (every tenant)"))
        return dyn.CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        from voxplane.livekit.reconcile import create_object

        spec = _plain(props)
        with self._client(spec) as client:
            object_id, live = create_object(client, spec)
        return dyn.CreateResult(object_id, _outs(live, spec["region"]))

    def read(self, id_: str, props: dict[str, Any]) -> dyn.ReadResult:
        from voxplane.livekit.reconcile import read_object

        spec = _plain(props)
        with self._client(spec) as client:
            live = read_object(client, spec["kind"], id_)
        if live is None:
            return dyn.ReadResult("", {})  # gone: refresh drops it from state
        outs = _outs(live, spec["region"])
        return dyn.ReadResult(id_, outs, inputs=dict(outs))

    def update(self, id_: str, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        from voxplane.livekit.client import LiveKitError
        from voxplane.livekit.reconcile import update_object

        spec = _plain(news)
        with self._client(spec) as client:
            try:
                live = update_object(client, id_, spec)
            except LiveKitError as e:
                if e.code == "not_found":
                    raise ValueError(f"{spec['kind']} {id_} was deleted outside Pulumi; run `pulumi refresh`, then `pulumi up`") from None
                raise
        return dyn.UpdateResult(_outs(live, spec["region"]))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        from voxplane.livekit.reconcile import delete_object

        spec = _plain(props)
        with self._client(spec) as client:
            delete_object(client, spec["kind"], id_)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        from voxplane.livekit.reconcile import diff_specs

        old, new = _plain(olds), _plain(news)
        if old.get("kind") != new.get("kind"):
            return dyn.DiffResult(changes=True, replaces=["kind"], delete_before_replace=True)
        if any(_is_unknown(v) or (isinstance(v, list) and any(_is_unknown(x) for x in v)) for v in new.values()):
            return dyn.DiffResult(changes=True)
        changed = diff_specs(old, new)
        return dyn.DiffResult(changes=bool(changed) or old.get("region") != new.get("region"))


_SECRET_OUTPUTS = pulumi.ResourceOptions(additional_secret_outputs=list(_SECRET_FIELDS))


@contextlib.contextmanager
def _sdk_pickler_restored() -> Iterator[None]:
    """Undo the SDK's pickler patch after each dynamic resource.

    `pulumi.dynamic.serialize_provider` (pulumi 3.272) wraps `pickle._Pickler._batch_setitems` in
    a sorting wrapper on every call and never restores it, so the wrappers nest: after ~1,000
    dynamic resources in one process (one big region, or several renders) pickling the next
    provider raises RecursionError. Restoring the original after each registration keeps the
    nesting at one level; the serialized bytes are the same.
    """
    original = pickle._Pickler._batch_setitems  # type: ignore[attr-defined]
    try:
        yield
    finally:
        pickle._Pickler._batch_setitems = original  # type: ignore[attr-defined]


class SIPInboundTrunk(dyn.Resource, module="livekit", name="SIPInboundTrunk"):
    """A LiveKit SIP inbound trunk. `props` is `DesiredTrunk.spec()` (plain JSON; `auth_password`
    an `Output.secret`); the resource ID is the trunk ID (`ST_…`)."""

    def __init__(self, name: str, props: Mapping[str, Any], opts: Optional[pulumi.ResourceOptions] = None):
        with _sdk_pickler_restored():
            super().__init__(LiveKitSIPProvider(), name, {**props, "kind": TRUNK_KIND},
                             pulumi.ResourceOptions.merge(_SECRET_OUTPUTS, opts))


class SIPDispatchRule(dyn.Resource, module="livekit", name="SIPDispatchRule"):
    """A LiveKit SIP dispatch rule. `props` is `DesiredRule.spec()` with `trunk_ids` set to its
    trunk's ID (an Output: that is also the dependency); the resource ID is `SDR_…`."""

    def __init__(self, name: str, props: Mapping[str, Any], opts: Optional[pulumi.ResourceOptions] = None):
        with _sdk_pickler_restored():
            super().__init__(LiveKitSIPProvider(), name, {**props, "kind": RULE_KIND},
                             pulumi.ResourceOptions.merge(_SECRET_OUTPUTS, opts))


# --- component ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LiveKitControlPlaneArgs:
    """Inputs of a `LiveKitControlPlane`.

    Attributes:
        region: The region whose LiveKit deployment holds the objects.
        agents: Agents deployed in the region; those with `telephony:` get a trunk and a rule.
        secrets: Resolves `SecretValue("config", key)` to a Pulumi secret (the region stack's
            `SecretResolver`); digest passwords and PINs must be stack config secrets.
    """

    region: Region
    agents: Sequence[Agent]
    secrets: SecretResolver


class LiveKitControlPlane(pulumi.ComponentResource):
    """One `SIPInboundTrunk` and one `SIPDispatchRule` per telephony agent of the region, named
    `<name>-trunk-<tenant>-<agent>` / `<name>-rule-<tenant>-<agent>`; each rule lists exactly its
    own trunk (and so depends on it). Outputs map `<tenant>-<agent>` to the LiveKit IDs."""

    trunk_ids: pulumi.Output[dict]
    rule_ids: pulumi.Output[dict]

    def __init__(self, name: str, args: LiveKitControlPlaneArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("voxplane:livekit:LiveKitControlPlane", name, None, opts)
        from voxplane.livekit.desired import DesiredRule, DesiredTrunk, desired_objects

        child = pulumi.ResourceOptions(parent=self)
        self.trunks: dict[str, SIPInboundTrunk] = {}
        self.rules: dict[str, SIPDispatchRule] = {}
        by_owner: dict[Any, SIPInboundTrunk] = {}
        for obj in desired_objects(args.region, args.agents):
            scoped = f"{obj.owner.tenant}-{obj.owner.agent}"
            secrets = {prop: _secret(args.secrets, ref, obj.origin(prop)) for prop, ref in obj.secret_refs().items()}
            if isinstance(obj, DesiredTrunk):
                trunk = SIPInboundTrunk(f"{name}-trunk-{scoped}", obj.spec(secrets), child)
                self.trunks[scoped] = by_owner[obj.owner] = trunk
            else:
                assert isinstance(obj, DesiredRule)
                trunk = by_owner[obj.trunk]
                props = {**obj.spec(None, secrets), "trunk_ids": [trunk.id]}
                self.rules[scoped] = SIPDispatchRule(
                    f"{name}-rule-{scoped}", props,
                    pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[trunk])),
                )
        self.trunk_ids = _id_map(self.trunks)
        self.rule_ids = _id_map(self.rules)
        self.register_outputs({"trunk_ids": self.trunk_ids, "rule_ids": self.rule_ids})


def _secret(resolver: SecretResolver, ref: SecretRef, origin: Any) -> pulumi.Output[str]:
    if ref.config:
        return pulumi.Output.secret(resolver.resolve(SecretValue("config", ref.config)))
    raise ValueError(
        f"{origin}: {ref.describe()} is a Kubernetes Secret; LiveKit trunk passwords and PINs are "
        "written by the deployer, which cannot read it: use a stack config secret ({config: KEY})"
    )


def _id_map(resources: Mapping[str, pulumi.CustomResource]) -> pulumi.Output[dict]:
    if not resources:
        return pulumi.Output.from_input({})
    return pulumi.Output.all(**{k: r.id for k, r in resources.items()}).apply(dict)
