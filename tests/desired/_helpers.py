"""Plain helpers shared by the tests/desired modules: the example project, built objects as the API
server would see them, and what a mocked Pulumi run sent over the wire."""

from __future__ import annotations

from functools import cache
from typing import Any, Iterable

import kubernetes_validate
from google.protobuf import json_format

from voxplane.desired.common import SecretFingerprint, SecretValue
from voxplane.desired.region import RegionObjects, build_region
from voxplane.manifest.loader import load_project
from voxplane.manifest.model import Project, Region

from ..support.repo import REPO

#: The example regions (regions/*.yaml).
REGIONS = ["local", "us-east", "eu-west"]
#: voxplane:livekitRootSecret, the one stack secret every mocked run is given.
LIVEKIT_ROOT_SECRET = "root-secret-for-tests-0123456789abcdef"
#: The key (and value) that marks a secret in Pulumi's serialized inputs.
SECRET_SIG = "4dabf18193072939515e22adb298388d"
_SECRET_SIG_VALUE = "1b47061264138c4ac30d75fd1eb44270"


# --- the example project ---------------------------------------------------------------------------


@cache
def project() -> Project:
    return load_project(REPO)


def region(name: str) -> Region:
    return project().regions[name]


def desired(name: str) -> RegionObjects:
    """Region `name`'s objects as the region stack gets them (`build_region`): what a component
    test hands its component."""
    from voxplane.components.images import IMAGE_PLACEHOLDER

    return build_region(region(name), project().agents_in(name), image=IMAGE_PLACEHOLDER)


# --- built objects ---------------------------------------------------------------------------------


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Objects keyed by kind; there is one object per kind."""
    keyed = {o["kind"]: o for o in objects}
    assert len(keyed) == len(objects), "one object per kind"
    return keyed


def by_kind_and_name(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Objects keyed by (kind, name); object identities are unique."""
    keyed = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    assert len(keyed) == len(objects), "object identities are unique"
    return keyed


def by_name(entries: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Named entries (env vars) keyed by name; names are unique."""
    entries = list(entries)
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names)), f"duplicate env names: {names}"
    return {e["name"]: e for e in entries}


def plain(value: Any) -> Any:
    """The object as the API server would see it: SecretValue and SecretFingerprint markers become a string."""
    if isinstance(value, (SecretValue, SecretFingerprint)):
        return str(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def validate_strict(obj: dict[str, Any]) -> None:
    """`obj` (secret markers as strings) is a valid Kubernetes 1.34 object, strictly: no unknown
    fields. Custom resources (PodMonitor, ScaledObject, NodePool) go against their CRDs."""
    if "/" in obj["apiVersion"] and "." in obj["apiVersion"].split("/", 1)[0] and not obj["apiVersion"].endswith(".k8s.io/v1"):
        from tests.support.k8s_schema import validate_object

        assert validate_object(plain(obj)) == []
        return
    kubernetes_validate.validate(plain(obj), "1.34", strict=True)


# --- mocked Pulumi runs ----------------------------------------------------------------------------


def secret_wrapping(request: Any, secret: str) -> list[bool]:
    """For every occurrence of `secret` in a RegisterResource request's serialized inputs: was it
    inside a secret wrapper?"""
    return _wrapped(json_format.MessageToDict(request.object), secret)


def _wrapped(value: Any, secret: str, inside_secret: bool = False) -> list[bool]:
    if isinstance(value, dict):
        wrapped = inside_secret or value.get(SECRET_SIG) == _SECRET_SIG_VALUE
        return [hit for v in value.values() for hit in _wrapped(v, secret, wrapped)]
    if isinstance(value, list):
        return [hit for v in value for hit in _wrapped(v, secret, inside_secret)]
    return [inside_secret] if isinstance(value, str) and secret in value else []
