"""The one reconciler of LiveKit SIP objects, used by `voxplane livekit sync`, `voxplane drift` and
the Pulumi dynamic provider (per-object operations at the bottom).

    live  = read_live(client)                            # 2 list calls, whatever the object count
    plan  = make_plan(region, desired, live, values)     # pure: compare + order
    done  = apply(plan, client)                          # writes, in plan order

Identity is the ownership key in each object's metadata (`desired.Owner`), never the name or ID.
Objects without voxplane's key — or with another region's — are never changed or deleted; they
are reported as unowned, and one that holds a number voxplane needs blocks the sync before any
write.

Ordering, so the server's conflict checks (protocol sip.go, run on every create and replace) pass:
1. Deletes first — they only free numbers. An agent's trunk is deleted before its rule: the
   server deletes a trunk without looking at rules (measured), a rule whose trunk is gone matches
   no call, while a trunk left without its rule would hand calls to any catch-all rule (empty
   `trunk_ids`), possibly another tenant's.
2. Trunk creates/updates, each only once every number it claims is free. A swap of numbers between
   two trunks is a cycle; it is broken by a `release` step that first replaces one trunk with the
   numbers it can keep (or a placeholder no carrier can dial, `+0…`, when none), then finishes it.
3. Rule updates/creates, after their trunk exists (a rule's `trunk_ids` is exactly its trunk's ID).

Updates use the replace APIs (`update_inbound_trunk`, `update_dispatch_rule`), so IDs stay stable
and out-of-band extras are reset. A run that dies half way leaves objects that carry ownership
metadata from their first write, so the next run finds them and converges.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Optional, Sequence

from ..manifest.model import Agent, Region
from .client import LiveKitAdmin, LiveKitError
from .desired import (
    RULE_KIND,
    TRUNK_KIND,
    Desired,
    DesiredTrunk,
    Owner,
    desired_objects,
    parse_owner,
)
from .objects import FieldDiff, compare, conflict_keys, info_of, kind_of, live_spec, object_id, secret_label_map
from .secrets import SecretSource, SecretUnavailable

Action = Literal["create", "update", "delete", "release"]
Progress = Callable[["Step", Optional[str]], None]


# --- live state ---------------------------------------------------------------------------------


@dataclass
class LiveObject:
    """A trunk or rule as the server has it. `spec` may hold secret values: kept out of repr."""

    kind: str
    id: str
    spec: dict[str, Any] = field(repr=False)
    owner: Optional[Owner] = None
    source: Optional[str] = None

    @property
    def name(self) -> str:
        return str(self.spec.get("name") or "")

    @classmethod
    def of(cls, info: Any) -> "LiveObject":
        owner, source = parse_owner(info.metadata)
        return cls(kind_of(info), object_id(info), live_spec(info), owner, source)


@dataclass
class LiveState:
    trunks: list[LiveObject]
    rules: list[LiveObject]

    @property
    def objects(self) -> list[LiveObject]:
        return self.trunks + self.rules


def read_live(client: LiveKitAdmin) -> LiveState:
    """All trunks and rules: one `list_*` call each on livekit-server, whatever the count."""
    return LiveState(
        trunks=[LiveObject.of(t) for t in client.list_trunks()],
        rules=[LiveObject.of(r) for r in client.list_rules()],
    )


# --- secrets ------------------------------------------------------------------------------------


class SecretsMissing(Exception):
    """Secrets needed to write are unavailable; one line per secret, with the manifest field."""

    def __init__(self, lines: Sequence[str]):
        self.lines = list(lines)
        super().__init__("; ".join(self.lines))


SecretValues = dict[Owner, dict[str, Optional[str]]]


def resolve_secrets(
    desired: Sequence[Desired], source: SecretSource
) -> tuple[SecretValues, dict[tuple[Owner, str], str]]:
    """Values of every secret the desired objects declare (None where unavailable), and for each
    unavailable one the line to show: `FILE:LINE:COL: field: how to provide it`."""
    values: SecretValues = {}
    problems: dict[tuple[Owner, str], str] = {}
    for obj in desired:
        values[obj.owner] = {}
        for prop, ref in obj.secret_refs().items():
            try:
                values[obj.owner][prop] = source.resolve(ref)
            except SecretUnavailable as e:
                values[obj.owner][prop] = None
                o = obj.origin(prop)
                problems[(obj.owner, prop)] = f"{o.file}:{o.line}:{o.column}: {o.field}: {e}"
    return values, problems


# --- plan ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unowned:
    """A live object voxplane does not own here (info only; never changed)."""

    kind: str
    id: str
    name: str
    reason: str


@dataclass
class Step:
    """One write. `spec` holds secret values and is never printed; `describe()` is safe to print."""

    action: Action
    kind: str
    name: str
    owner: Owner
    id: Optional[str] = None
    changes: tuple[FieldDiff, ...] = ()
    spec: Optional[dict[str, Any]] = field(default=None, repr=False)
    #: For rules: the trunk whose (possibly new) ID goes into `trunk_ids` at apply time.
    trunk: Optional[Owner] = None
    reason: str = ""

    def describe(self) -> str:
        sign = {"create": "+", "update": "~", "delete": "-", "release": "~"}[self.action]
        head = f"{sign} {self.action} {self.kind} {self.name}" + (f" {self.id}" if self.id else "")
        if self.changes:
            fields = ", ".join(c.field for c in self.changes)
            return f"{head}: {fields}" + (f" ({self.reason})" if self.reason else "")
        return head + (f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True)
class Changed:
    """A desired object whose live counterpart differs."""

    desired: Desired
    live: LiveObject
    diffs: tuple[FieldDiff, ...]


@dataclass(frozen=True)
class Unexpected:
    """An owned live object that is not declared any more (or a duplicate of one that is)."""

    live: LiveObject
    reason: str


@dataclass(frozen=True)
class Unchecked:
    desired: Desired
    id: str
    field: str
    reason: str


@dataclass
class Plan:
    region: str
    steps: list[Step] = field(default_factory=list)
    changed: list[Changed] = field(default_factory=list)
    missing: list[Desired] = field(default_factory=list)
    unexpected: list[Unexpected] = field(default_factory=list)
    unowned: list[Unowned] = field(default_factory=list)
    unchecked: list[Unchecked] = field(default_factory=list)
    #: Conflicts with objects voxplane must not touch; a plan with blockers is never applied.
    blockers: list[str] = field(default_factory=list)
    in_sync: list[Owner] = field(default_factory=list)
    #: Live ID of each desired trunk that exists and is kept (rules created or updated use it).
    trunk_ids: dict[Owner, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.steps and not self.blockers

    def counts(self) -> dict[str, int]:
        out = {"create": 0, "update": 0, "delete": 0}
        for s in self.steps:
            out["update" if s.action == "release" else s.action] += 1
        return out


def make_plan(
    region: str,
    desired: Sequence[Desired],
    live: LiveState,
    values: Optional[SecretValues] = None,
    unavailable: Optional[Mapping[tuple[Owner, str], str]] = None,
) -> Plan:
    """Compare and order. Pure: reads nothing, writes nothing. `values` are the resolved secrets
    (see `resolve_secrets`); a None value means unavailable: compared as unchecked, and such a
    plan cannot be applied."""
    values = values or {}
    plan = Plan(region)

    owned: dict[Owner, list[LiveObject]] = {}
    for obj in live.objects:
        if obj.owner is None:
            plan.unowned.append(Unowned(obj.kind, obj.id, obj.name, "no voxplane ownership in metadata"))
        elif obj.owner.region != region:
            plan.unowned.append(Unowned(obj.kind, obj.id, obj.name, f"owned by voxplane region {obj.owner.region!r}"))
        elif obj.owner.kind != obj.kind:
            plan.unowned.append(Unowned(obj.kind, obj.id, obj.name, f"metadata says role {obj.owner.role!r} on a {obj.kind}"))
        else:
            owned.setdefault(obj.owner, []).append(obj)

    wanted = {d.owner: d for d in desired}
    canonical = _pick_canonical(owned)
    deletes: list[tuple[LiveObject, str]] = []
    for owner, objs in sorted(owned.items()):
        keep = canonical.get(owner)
        for obj in objs:
            if owner not in wanted:
                why = f"{obj.source or 'its manifest'} no longer declares it"
                deletes.append((obj, why))
            elif obj is not keep:
                deletes.append((obj, f"duplicate of {keep.id if keep else '?'}"))
    # Trunks before rules (see module docstring), each by name for a stable order.
    deletes.sort(key=lambda d: (d[0].kind != TRUNK_KIND, d[0].name, d[0].id))
    for obj, why in deletes:
        assert obj.owner is not None
        plan.unexpected.append(Unexpected(obj, why))
        plan.steps.append(Step("delete", obj.kind, obj.name, obj.owner, obj.id, reason=why))

    # Desired state, compared with the canonical live object.
    trunk_writes: list[_Write] = []
    rule_writes: list[_Write] = []
    for d in desired:
        secrets = values.get(d.owner, {})
        current = canonical.get(d.owner)
        labels = secret_label_map(d.secret_refs())
        pending: dict[str, str] = {}
        if isinstance(d, DesiredTrunk):
            spec = d.spec(secrets)
            trunk_ref = None
        else:
            trunk_live = canonical.get(d.trunk)
            spec = d.spec(trunk_live.id if trunk_live else None, secrets)
            trunk_ref = d.trunk
            if trunk_live is None:
                pending["trunk_ids"] = f"<ID of new trunk {d.name}>"
        if current is None:
            plan.missing.append(d)
            step = Step("create", d.kind, d.name, d.owner, spec=spec, trunk=trunk_ref)
        else:
            diffs, unchecked = compare(spec, current.spec, secret_labels=labels, pending=pending)
            for f in unchecked:
                plan.unchecked.append(Unchecked(d, current.id, f, _unavailable_reason(unavailable, d.owner, f)))
            if not diffs:
                plan.in_sync.append(d.owner)
                continue
            plan.changed.append(Changed(d, current, tuple(diffs)))
            step = Step("update", d.kind, d.name, d.owner, current.id, tuple(diffs), spec=spec, trunk=trunk_ref)
        (trunk_writes if d.kind == TRUNK_KIND else rule_writes).append(_Write(step, current, spec))

    gone = {obj.id for obj, _ in deletes}
    plan.trunk_ids = {o: obj.id for o, obj in canonical.items() if o.role == "trunk" and o in wanted}
    survivors = [o for o in live.objects if o.id not in gone]
    plan.steps.extend(_schedule(trunk_writes, [o for o in survivors if o.kind == TRUNK_KIND], plan))
    plan.steps.extend(_schedule(rule_writes, [o for o in survivors if o.kind == RULE_KIND], plan))
    return plan


def _unavailable_reason(unavailable: Optional[Mapping[tuple[Owner, str], str]], owner: Owner, prop: str) -> str:
    if unavailable and (owner, prop) in unavailable:
        return unavailable[(owner, prop)]
    return "secret value not available here"


def _pick_canonical(owned: Mapping[Owner, list[LiveObject]]) -> dict[Owner, LiveObject]:
    """One live object per owner: rules by lowest ID; trunks prefer the one the rule points at."""
    out: dict[Owner, LiveObject] = {}
    for owner, objs in owned.items():
        if owner.role == "rule":
            out[owner] = min(objs, key=lambda o: o.id)
    for owner, objs in owned.items():
        if owner.role == "trunk":
            rule = out.get(Owner(owner.region, owner.tenant, owner.agent, "rule"))
            referenced = [o for o in objs if rule is not None and o.id in rule.spec.get("trunk_ids", [])]
            out[owner] = min(referenced or objs, key=lambda o: o.id)
    return out


@dataclass
class _Write:
    step: Step
    current: Optional[LiveObject]
    spec: dict[str, Any]

    @property
    def ident(self) -> str:
        return self.current.id if self.current else f"<new {self.step.owner}>"

    def keys(self, spec: Optional[Mapping[str, Any]] = None) -> set[tuple[str, ...]]:
        s = dict(spec or self.spec)
        if s.get("kind") == RULE_KIND and not s.get("trunk_ids"):
            # A rule whose trunk is created in this plan: its future ID collides with nothing.
            s["trunk_ids"] = [f"<new {self.step.trunk}>"]
        return conflict_keys(s)


def _schedule(writes: list[_Write], live: list[LiveObject], plan: Plan) -> list[Step]:
    """Order writes so that each claims only keys nobody else holds at that moment."""
    holders: dict[tuple[str, ...], str] = {}
    names: dict[str, LiveObject] = {}
    for obj in live:
        names[obj.id] = obj
        for k in conflict_keys(obj.spec, obj.spec.get("extra")):
            holders.setdefault(k, obj.id)

    def release(ident: str) -> None:
        for k in [k for k, h in holders.items() if h == ident]:
            del holders[k]

    out: list[Step] = []
    pending = list(writes)
    released: set[str] = set()
    while pending:
        ready = next((w for w in pending if all(holders.get(k) in (None, w.ident) for k in w.keys())), None)
        if ready is not None:
            pending.remove(ready)
            release(ready.ident)
            holders.update({k: ready.ident for k in ready.keys()})
            out.append(ready.step)
            continue
        # Nothing can go. A key held by an object with no pending write will never be freed:
        # a blocker (an unowned object, or two declarations claiming the same thing)...
        waiting = {w.ident for w in pending}
        blocked = False
        for w in list(pending):
            foreign = {holders[k] for k in w.keys() if holders.get(k) not in (None, w.ident) and holders[k] not in waiting}
            if foreign:
                blocked = True
                pending.remove(w)
                for h in sorted(foreign):
                    plan.blockers.append(_blocker_text(w, names.get(h), h))
        if blocked:
            continue
        # ...otherwise a cycle among our own writes (e.g. two trunks swap numbers): let one
        # trunk give up what the others wait for, once.
        releasable = next((w for w in pending if w.current is not None and w.step.kind == TRUNK_KIND and w.ident not in released), None)
        if releasable is None:
            for w in pending:
                plan.blockers.append(f"{w.step.kind} {w.step.name}: cannot order its write against the others; resolve by hand")
            break
        r = releasable
        released.add(r.ident)
        keep = [n for n in r.spec["numbers"] if all(holders.get(k) in (None, r.ident) for k in conflict_keys({**r.spec, "numbers": [n]}))]
        interim = {**r.spec, "numbers": keep or [placeholder_number(r.step.owner)]}
        release(r.ident)
        holders.update({k: r.ident for k in conflict_keys(interim)})
        out.append(Step("release", r.step.kind, r.step.name, r.step.owner, r.step.id, spec=interim,
                        reason="frees numbers another trunk takes over; finished below"))
    return out


def _blocker_text(w: _Write, holder: Optional[LiveObject], holder_id: str) -> str:
    what = f"{holder.kind} {holder_id} {holder.name!r}" if holder else holder_id
    who = "not managed by voxplane" if holder is None or holder.owner is None else f"owned by {holder.owner}"
    if w.step.kind == TRUNK_KIND:
        theirs = set(holder.spec.get("numbers", [])) if holder else set()
        numbers = sorted(set(w.spec["numbers"]) & theirs) or w.spec["numbers"]
        return f"{w.step.kind} {w.step.name}: number(s) {', '.join(numbers)} already used by {what} ({who})"
    return f"{w.step.kind} {w.step.name}: trunk already has a dispatch rule with the same PIN: {what} ({who})"


def placeholder_number(owner: Owner) -> str:
    """A number no carrier can dial (E.164 country codes never start with 0), unique per trunk:
    a trunk keeps one number while it waits, as a trunk without numbers accepts every number."""
    digest = int(hashlib.sha256(str(owner).encode()).hexdigest(), 16) % 10**12
    return f"+0{digest:012d}"


# --- apply --------------------------------------------------------------------------------------


@dataclass
class Applied:
    step: Step
    id: str


class PlanBlocked(Exception):
    def __init__(self, blockers: Sequence[str]):
        self.blockers = list(blockers)
        super().__init__("; ".join(self.blockers))


class ApplyFailed(Exception):
    """A write failed after `done` writes of `total` succeeded; re-running sync converges."""

    def __init__(self, error: LiveKitError, step: Step, done: int, total: int):
        self.error, self.step, self.done, self.total = error, step, done, total
        super().__init__(f"{step.action} {step.kind} {step.name}: {error} ({done} of {total} changes applied; run sync again to converge)")


def apply(plan: Plan, client: LiveKitAdmin, progress: Optional[Progress] = None) -> list[Applied]:
    """Run the plan's steps in order. Raises `PlanBlocked` (before any write) or `ApplyFailed`."""
    if plan.blockers:
        raise PlanBlocked(plan.blockers)
    trunk_ids = dict(plan.trunk_ids)
    done: list[Applied] = []
    for step in plan.steps:
        try:
            new_id = _apply_step(step, client, trunk_ids)
        except LiveKitError as e:
            raise ApplyFailed(e, step, len(done), len(plan.steps)) from None
        done.append(Applied(step, new_id))
        if progress is not None:
            progress(step, new_id)
    return done


def _apply_step(step: Step, client: LiveKitAdmin, trunk_ids: dict[Owner, str]) -> str:
    if step.action == "delete":
        assert step.id is not None
        delete_object(client, step.kind, step.id)
        return step.id
    assert step.spec is not None
    spec = step.spec
    if step.kind == RULE_KIND:
        assert step.trunk is not None
        spec = {**spec, "trunk_ids": [trunk_ids[step.trunk]]}
    if step.action == "create":
        new_id, _ = create_object(client, spec, adopt=False)  # the plan already looked
        if step.kind == TRUNK_KIND:
            trunk_ids[step.owner] = new_id
        return new_id
    assert step.id is not None
    update_object(client, step.id, spec)
    return step.id


# --- the whole flow -----------------------------------------------------------------------------


@dataclass
class SyncResult:
    plan: Plan
    applied: list[Applied]
    dry_run: bool


def plan_region(
    region: Region,
    agents: Sequence[Agent],
    client: LiveKitAdmin,
    secrets: SecretSource,
    *,
    strict: bool,
) -> tuple[Plan, LiveState]:
    """Resolve secrets (strict: all must resolve, else `SecretsMissing` before any API call), read
    the live objects, and plan."""
    desired = desired_objects(region, agents)
    values, unavailable = resolve_secrets(desired, secrets)
    if unavailable and strict:
        raise SecretsMissing(sorted(set(unavailable.values())))
    live = read_live(client)
    return make_plan(region.name, desired, live, values, unavailable), live


def sync(
    region: Region,
    agents: Sequence[Agent],
    client: LiveKitAdmin,
    secrets: SecretSource,
    *,
    dry_run: bool = False,
    progress: Optional[Progress] = None,
) -> SyncResult:
    """Make the server match the manifests (or, with `dry_run`, only plan)."""
    plan, _ = plan_region(region, agents, client, secrets, strict=True)
    if plan.blockers:
        raise PlanBlocked(plan.blockers)
    applied = [] if dry_run else apply(plan, client, progress)
    return SyncResult(plan, applied, dry_run)


# --- per-object operations (the Pulumi dynamic provider) -----------------------------------------


def create_object(client: LiveKitAdmin, spec: Mapping[str, Any], *, adopt: bool = True) -> tuple[str, dict[str, Any]]:
    """Create one object from its spec; (ID, live spec).

    With `adopt`, an existing object carrying the same ownership key (made by `voxplane livekit
    sync`, or by a create whose result never reached Pulumi state) is replaced in place and its
    ID returned, instead of creating a duplicate that the server would reject for its numbers."""
    if adopt:
        owner, _ = parse_owner(str(spec.get("metadata") or ""))
        if owner is not None:
            listed = client.list_trunks() if spec["kind"] == TRUNK_KIND else client.list_rules()
            mine = sorted((o for o in map(LiveObject.of, listed) if o.owner == owner and o.kind == spec["kind"]), key=lambda o: o.id)
            if mine:
                return mine[0].id, update_object(client, mine[0].id, spec)
    info = info_of(spec)
    made = client.create_trunk(info) if spec["kind"] == TRUNK_KIND else client.create_rule(info)
    return object_id(made), live_spec(made)


def read_object(client: LiveKitAdmin, kind: str, object_id_: str) -> Optional[dict[str, Any]]:
    """The live spec of one object, or None when it no longer exists."""
    info = client.get_trunk(object_id_) if kind == TRUNK_KIND else client.get_rule(object_id_)
    return live_spec(info) if info is not None else None


def update_object(client: LiveKitAdmin, object_id_: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Replace one object in place (same ID); the live spec after the write."""
    info = info_of(spec)
    made = client.update_trunk(object_id_, info) if spec["kind"] == TRUNK_KIND else client.update_rule(object_id_, info)
    return live_spec(made)


def delete_object(client: LiveKitAdmin, kind: str, object_id_: str) -> None:
    """Delete one object; deleting one that is already gone is not an error."""
    if kind == TRUNK_KIND:
        client.delete_trunk(object_id_)
    else:
        client.delete_rule(object_id_)


def diff_specs(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    """Names of the spec fields that differ between two specs (secrets compared, never shown)."""
    if olds.get("kind") != news.get("kind"):
        return ["kind"]
    labels = {k: "" for k in ("auth_password", "pin") if news.get(k)}
    diffs, _ = compare(news, {**olds, "extra": olds.get("extra") or {}}, secret_labels=labels)
    return [d.field for d in diffs]
