"""Kubernetes drift of a region: the rendered objects (desired) against the cluster (live), each
finding in terms of the manifest file, line and field that owns it.

JSON shape (`to_json`; stable keys, lists sorted by kind, namespace, name, field)::

    {
      "region": "local",
      "target": "kubernetes",
      "server": "https://127.0.0.1:6443",
      "context": "voxplane-local",          # null: the kubeconfig's current context
      "drift": true,                        # changed, missing or unexpected is non-empty
      "summary": {"changed": 1, "missing": 1, "unexpected": 0, "unowned": 1, "unchecked": 0},
      "api_calls": 31,                      # list calls made; constant in the number of objects
      "changed": [                          # one entry per drifted field
        {"kind": "ScaledObject", "namespace": "vox-t-northwind", "name": "support",
         "field": "spec.maxReplicaCount",   # path in the object; list items by name: env[FOO]
         "declared": 40,                    # "(unset)" where one side lacks the field
         "live": 80,                        # Secret values: "<secret>" placeholders, never values
         "source": {"file": "agents/support.yaml", "line": 20, "column": 16,
                    "field": "scaling.max_workers"}}
      ],
      "missing": [                          # declared, not in the cluster
        {"kind": "NetworkPolicy", "namespace": "…", "name": "…", "source": {…, "field": "tenants.northwind"}}
      ],
      "unexpected": [                       # voxplane's labels, no longer declared
        {"kind": "…", "namespace": "…", "name": "…", "source": {"file": "agents/old.yaml"}, "reason": "…"}
      ],
      "unowned": [                          # info only, never touched: no voxplane labels, in a region namespace
        {"kind": "ConfigMap", "namespace": "vox-t-northwind", "name": "…", "reason": "…"}
      ],
      "unchecked": [                        # compared partly: Secret values not available here, built image digests
        {"kind": "Secret", "namespace": "…", "name": "…", "field": "data.KEY", "reason": "…"}
      ],
      "notes": ["…"]                        # e.g. kinds the cluster does not serve
    }

Exit codes of `voxplane drift`: 0 no drift, 2 drift (changed, missing or unexpected), 1 error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

from .. import report as render
from ...desired.common import ANNOTATION_SECRET_FINGERPRINT, inference_namespace, tenant_namespace
from ...desired.deletion_cost import NAME as DELETION_COST
from ...desired.inference import PREFLIGHT_CONTAINER, WORKLOAD_KIND
from ...desired.llm_router import COMPONENT as ROUTER_COMPONENT
from ...livekit.desired import Origin
from ...manifest.model import Agent, Region
from ..attribution import Attribution
from .compare import IGNORED, FieldDiff, Path, diff_object, format_path, secret_diffs, shown
from .live import KINDS, KindRef, LiveReader, NotServed, kind_ref, object_key
from .secrets import ConfigLookup, SecretPayload, declared_payloads, no_lookup

#: What the control plane puts in every namespace: the root CA ConfigMap, the default ServiceAccount.
SYSTEM_OBJECTS = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}


@dataclass(frozen=True)
class ChangedField:
    kind: str
    namespace: str
    name: str
    field: str
    declared: Any
    live: Any
    source: Origin


@dataclass(frozen=True)
class MissingObject:
    kind: str
    namespace: str
    name: str
    source: Origin


@dataclass(frozen=True)
class UnexpectedObject:
    kind: str
    namespace: str
    name: str
    source_file: Optional[str]
    reason: str


@dataclass(frozen=True)
class UnownedObject:
    kind: str
    namespace: str
    name: str
    reason: str


@dataclass(frozen=True)
class UncheckedField:
    kind: str
    namespace: str
    name: str
    field: str
    reason: str


@dataclass
class KubeDriftReport:
    region: str
    server: str
    context: Optional[str] = None
    changed: list[ChangedField] = field(default_factory=list)
    missing: list[MissingObject] = field(default_factory=list)
    unexpected: list[UnexpectedObject] = field(default_factory=list)
    unowned: list[UnownedObject] = field(default_factory=list)
    unchecked: list[UncheckedField] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    api_calls: int = 0

    @property
    def drift(self) -> bool:
        return bool(self.changed or self.missing or self.unexpected)

    def summary(self) -> dict[str, int]:
        return {
            "changed": len(self.changed),
            "missing": len(self.missing),
            "unexpected": len(self.unexpected),
            "unowned": len(self.unowned),
            "unchecked": len(self.unchecked),
        }

    def sort(self) -> None:
        self.changed.sort(key=lambda c: (c.kind, c.namespace, c.name, c.field))
        self.missing.sort(key=lambda m: (m.kind, m.namespace, m.name))
        self.unexpected.sort(key=lambda u: (u.kind, u.namespace, u.name))
        self.unowned.sort(key=lambda u: (u.kind, u.namespace, u.name))
        self.unchecked.sort(key=lambda u: (u.kind, u.namespace, u.name, u.field))


# --- what is compared ------------------------------------------------------------------------------


def ignored_paths(region: Region, agents: Sequence[Agent]) -> dict[tuple[str, str, str], tuple[Path, ...]]:
    """(kind, namespace, name) -> paths KEDA owns: `spec.replicas` of every agent Deployment and
    model workload (the components register them with `ignore_changes=["spec.replicas"]`)."""
    out: dict[tuple[str, str, str], tuple[Path, ...]] = {}
    for agent in agents:
        out[("Deployment", tenant_namespace(region, agent.tenant), agent.name)] = IGNORED["Deployment"]
    for model in region.models.values():
        out[(WORKLOAD_KIND, inference_namespace(region), model.name)] = IGNORED[WORKLOAD_KIND]
    return out


def _image_repository(image: str) -> str:
    """`registry/org/name:tag@sha256:…` -> `registry/org/name`."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


#: Platform components whose image the stack builds, and the folder it builds them from.
_BUILT_COMPONENTS = {"gateway": "voxplane/gateway", "recovery": "voxplane/controllers/recovery",
                     ROUTER_COMPONENT: "voxplane/llm_router"}


def _built_image(obj: Mapping[str, Any], agent: Optional[Agent]) -> Optional[tuple[str, Optional[str]]]:
    """What the stack builds an image of the workload from, and the one container that runs it
    (None: every container of the Deployment); None when every image is prebuilt, compared as is."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if obj.get("kind") == WORKLOAD_KIND and labels.get("app.kubernetes.io/component") == "inference":
        # The model server's image is the manifest's (compared as is); the preflight's is built.
        return "voxplane/gpu_preflight", PREFLIGHT_CONTAINER
    if obj.get("kind") != "Deployment":
        return None
    if agent is not None and agent.code.build is not None:
        return "code.build", None
    component = labels.get("app.kubernetes.io/component", "")
    if (component, labels.get("app.kubernetes.io/name")) == ("controller", DELETION_COST):
        return "voxplane/controllers/deletion_cost", None
    folder = _BUILT_COMPONENTS.get(component)
    return (folder, None) if folder is not None else None


def _containers(obj: Mapping[str, Any], field: str = "containers") -> list[dict[str, Any]]:
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [c for c in spec.get(field) or [] if isinstance(c, dict)]


def _settle_built_images(desired: dict[str, Any], live: Mapping[str, Any], only: Optional[str] = None) -> list[str]:
    """An image the stack builds is deployed by the digest the registry returned on push, which
    only the Pulumi state knows (render shows a stand-in). Its repository is compared; the digest
    is reported unchecked. `only`: the one container (init containers included) that runs such an
    image. Returns the field path of each container whose digest was not compared."""
    settled = []
    for field in ("initContainers", "containers"):
        live_images = {c.get("name"): c.get("image") for c in _containers(live, field)}
        for container in _containers(desired, field):
            if only is not None and container.get("name") != only:
                continue
            image, got = container.get("image"), live_images.get(container.get("name"))
            if isinstance(image, str) and "@sha256:" in image and isinstance(got, str) and got != image \
                    and _image_repository(image) == _image_repository(got):
                container["image"] = got
                settled.append(f"spec.template.spec.{field}[{container.get('name')}].image")
    return settled


def _settle_secret_fingerprint(desired: dict[str, Any], live: Mapping[str, Any]) -> bool:
    """The pod template's secret fingerprint (components/secrets.py) is keyed by the stack's root
    secret, which drift does not read (render uses placeholders): when both sides carry one, the
    live value is taken and the field reported unchecked. A fingerprint missing live still differs."""
    def annotations(obj: Mapping[str, Any]) -> Any:
        return (((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("annotations")

    want, got = annotations(desired), annotations(live)
    if not (isinstance(want, dict) and isinstance(got, dict)):
        return False
    if ANNOTATION_SECRET_FINGERPRINT not in want or ANNOTATION_SECRET_FINGERPRINT not in got:
        return False
    if want[ANNOTATION_SECRET_FINGERPRINT] == got[ANNOTATION_SECRET_FINGERPRINT]:
        return False  # the same root secret (or the same placeholders): compared, equal
    want[ANNOTATION_SECRET_FINGERPRINT] = got[ANNOTATION_SECRET_FINGERPRINT]
    return True


# --- detect ------------------------------------------------------------------------------------------


def detect(
    region: Region,
    agents: Sequence[Agent],
    desired: Sequence[Mapping[str, Any]],
    reader: LiveReader,
    *,
    secrets: ConfigLookup = no_lookup,
    context: Optional[str] = None,
) -> KubeDriftReport:
    """Compare the rendered objects of a region with the cluster: a constant number of list calls
    (one per kind, plus one metadata-only list per namespaced kind for the unowned ones)."""
    import copy

    report = KubeDriftReport(region.name, reader.server, context)
    start = reader.calls
    where = Attribution(region, agents)
    ignored = ignored_paths(region, agents)
    payloads = declared_payloads(region, agents, secrets)

    desired_by_key = {object_key(dict(o)): o for o in desired}
    refs: dict[tuple[str, str], KindRef] = {(k.api_version, k.kind): k for k in KINDS}
    for obj in desired:
        api_version, kind = str(obj["apiVersion"]), str(obj["kind"])
        if (api_version, kind) not in refs:
            refs[(api_version, kind)] = kind_ref(api_version, kind, bool(obj["metadata"].get("namespace")))
    declared_kinds = {(str(o["apiVersion"]), str(o["kind"])) for o in desired}
    namespaces = {str(o["metadata"]["name"]) for o in desired if o["kind"] == "Namespace"}
    namespaces |= {str(o["metadata"]["namespace"]) for o in desired if o["metadata"].get("namespace")}

    live_by_key: dict[tuple[str, str, str], dict[str, Any]] = {}
    not_served: set[tuple[str, str]] = set()
    for kind_key, ref in sorted(refs.items()):
        try:
            items = reader.owned(ref, region.name)
        except NotServed:
            not_served.add(kind_key)
            if kind_key in declared_kinds:
                report.notes.append(f"the cluster does not serve {ref} (is its CRD installed?)")
            continue
        for item in items:
            live_by_key[object_key(item)] = item
        if ref.namespaced and kind_key in declared_kinds:
            for item in reader.unowned(ref):
                meta = item.get("metadata") or {}
                ns, name = str(meta.get("namespace") or ""), str(meta.get("name"))
                if ns not in namespaces or (ref.kind, name) in SYSTEM_OBJECTS or meta.get("ownerReferences"):
                    continue
                if (ref.kind, ns, name) in desired_by_key:
                    continue  # declared, but its labels were removed: reported as a changed field
                report.unowned.append(UnownedObject(ref.kind, ns, name, "no voxplane labels (app.kubernetes.io/managed-by); "
                                                                         "info only, left alone"))

    for key, obj in desired_by_key.items():
        kind, ns, name = key
        live = live_by_key.pop(key, None)
        if live is None:
            report.missing.append(MissingObject(kind, ns, name, where.object_origin(obj)))
            continue
        target = copy.deepcopy(dict(obj))
        built = _built_image(target, where.agent_of(obj))
        if built is not None:
            built_from, only = built
            for path in _settle_built_images(target, live, only):
                report.unchecked.append(UncheckedField(
                    kind, ns, name, path,
                    f"built from {built_from}: the pushed digest is known to the Pulumi state only; the repository "
                    f"was compared"))
        if _settle_secret_fingerprint(target, live):
            report.unchecked.append(UncheckedField(
                kind, ns, name, format_path(("spec", "template", "metadata", "annotations", ANNOTATION_SECRET_FINGERPRINT)),
                "keyed by the stack's root secret, which drift does not read"))
        for d in diff_object(target, live, ignored.get(key, ())):
            report.changed.append(_changed(where, obj, key, d))
        if kind == "Secret":
            payload = payloads.get((ns, name), SecretPayload())
            declared_keys = set((obj.get("stringData") or {})) | set((obj.get("data") or {}))
            unknown = dict(payload.unknown)
            for k in declared_keys - set(payload.digests) - set(unknown):
                unknown[k] = "the declared value is not known here"
            diffs, checks = secret_diffs(declared_keys, payload.digests, live, unknown)
            for d in diffs:
                report.changed.append(_changed(where, obj, key, d))
            for c in checks:
                report.unchecked.append(UncheckedField(kind, ns, name, f"data.{c.key}", c.reason))

    for key, live in live_by_key.items():
        kind, ns, name = key
        source = where.source_file(live)
        report.unexpected.append(UnexpectedObject(kind, ns, name, source, _unexpected_reason(region, source)))
    report.api_calls = reader.calls - start
    report.sort()
    return report


def _changed(where: Attribution, obj: Mapping[str, Any], key: tuple[str, str, str], d: FieldDiff) -> ChangedField:
    kind, ns, name = key
    return ChangedField(kind, ns, name, format_path(d.path), shown(d.declared), shown(d.live), where.field_origin(obj, d.path))


def _unexpected_reason(region: Region, source: Optional[str]) -> str:
    if source and source.startswith("agents/"):
        return f"{source} no longer declares it in region {region.name}"
    return f"region {region.name} no longer declares it"


# --- renderers -------------------------------------------------------------------------------------


def _namespaced(namespace: str, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def to_dict(rep: KubeDriftReport) -> dict[str, Any]:
    return {
        "region": rep.region,
        "target": "kubernetes",
        "server": rep.server,
        "context": rep.context,
        "drift": rep.drift,
        "summary": rep.summary(),
        "api_calls": rep.api_calls,
        "changed": [
            {"kind": c.kind, "namespace": c.namespace, "name": c.name, "field": c.field,
             "declared": c.declared, "live": c.live, "source": c.source.as_dict()}
            for c in rep.changed
        ],
        "missing": [
            {"kind": m.kind, "namespace": m.namespace, "name": m.name, "source": m.source.as_dict()}
            for m in rep.missing
        ],
        "unexpected": [
            {"kind": u.kind, "namespace": u.namespace, "name": u.name, "source": {"file": u.source_file},
             "reason": u.reason}
            for u in rep.unexpected
        ],
        "unowned": [{"kind": u.kind, "namespace": u.namespace, "name": u.name, "reason": u.reason} for u in rep.unowned],
        "unchecked": [
            {"kind": u.kind, "namespace": u.namespace, "name": u.name, "field": u.field, "reason": u.reason}
            for u in rep.unchecked
        ],
        "notes": list(rep.notes),
    }


def to_json(rep: KubeDriftReport) -> str:
    return json.dumps(to_dict(rep), indent=2)


#: Longer values are cut in text and markdown (json carries them whole).
MAX_SHOWN = 160


def _v(value: Any) -> str:
    text = value if isinstance(value, str) and value.startswith(("<", "(")) else json.dumps(value, sort_keys=True)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def _wording(rep: KubeDriftReport) -> render.Wording:
    return render.Wording(
        title="Kubernetes drift", place="in the cluster", value=_v, owned=" with voxplane's labels",
        name=lambda o: f"{o.kind} {_namespaced(o.namespace, o.name)}",
        name_md=lambda o: f"{o.kind} `{_namespaced(o.namespace, o.name)}`",
        where=rep.server + (f" (context {rep.context})" if rep.context else ""), tail=f"; {rep.api_calls} API calls",
        extras=(render.Extra("note", "Notes", rep.notes),))


def verdict(rep: KubeDriftReport) -> str:
    return render.verdict(rep, _wording(rep))


def to_text(rep: KubeDriftReport) -> str:
    return render.to_text(rep, _wording(rep))


def to_markdown(rep: KubeDriftReport) -> str:
    return render.to_markdown(rep, _wording(rep))


RENDERERS = {"text": to_text, "json": to_json, "markdown": to_markdown}


def names(items: Iterable[Any]) -> list[str]:
    """`kind namespace/name` of findings (tests, messages)."""
    return [f"{i.kind} {_namespaced(i.namespace, i.name)}" for i in items]
