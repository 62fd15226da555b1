"""Property: for random manifest edits, every object the plan finds changed is attributed to a
changed field, and only to fields that were edited (no object left unexplained, none blamed on a
file nobody touched)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from voxplane.plan.output import touch_text
from voxplane.plan import plan as plan_module
from voxplane.plan.plan import plan_between
from voxplane.plan.sides import render_here
from voxplane.manifest.loader import load

from .support.repo import copy_manifests


REGION = "local"
Edit = tuple[str, Callable[[dict[str, Any]], None]]


def _set(*path: Any, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        node = doc
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return apply


def _drop(*path: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        node = doc
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    return apply


AGENTS = {"support": "agents/support.yaml", "reservations": "agents/reservations.yaml",
          "scheduler": "agents/scheduler.yaml"}


@st.composite
def edits(draw: st.DrawFn) -> Edit:
    agent = draw(st.sampled_from(sorted(AGENTS)))
    file = AGENTS[agent]
    choice = draw(st.sampled_from(["max_workers", "min_workers", "sessions", "env_set", "env_drop", "memory",
                                   "number", "room_prefix", "drain", "quota_pods", "model_replicas",
                                   "log_level", "carrier", "leave_region", "nodes_selector", "code"]))
    if choice == "max_workers":
        return file, _set("scaling", "max_workers", value=draw(st.integers(3, 12)))
    if choice == "min_workers":
        return file, _set("scaling", "min_workers", value=draw(st.integers(1, 3)))
    if choice == "sessions":
        return file, _set("scaling", "sessions_per_worker", value=draw(st.integers(1, 20)))
    if choice == "env_set":
        name = draw(st.sampled_from(["LOG_LEVEL", "FEATURE_FLAG", "GREETING"]))
        return file, _set("env", name, value=draw(st.sampled_from(["debug", "on", "hello there"])))
    if choice == "env_drop":
        return file, _drop("env", "LOG_LEVEL")
    if choice == "memory":
        return file, _set("resources", "memory", value=draw(st.sampled_from(["1Gi", "1536Mi", "2Gi"])))
    if choice == "number":
        number = f"+1617555{draw(st.integers(1000, 9999))}"
        return file, lambda doc: doc["telephony"]["numbers"].append(number)
    if choice == "room_prefix":
        return file, _set("telephony", "dispatch", "room_prefix", value=draw(st.sampled_from(["rx-a", "rx-b"])) + agent[:3])
    if choice == "drain":
        return file, _set("scaling", "drain_timeout", value=draw(st.sampled_from([600, 1200, 2400])))
    if choice == "quota_pods":
        tenant = draw(st.sampled_from(["bellavista", "northwind"]))
        return "regions/local.yaml", _set("tenants", tenant, "quotas", "pods", value=draw(st.integers(60, 90)))
    if choice == "model_replicas":
        model = draw(st.sampled_from(["chat", "kokoro", "whisper"]))
        return "regions/local.yaml", _set("models", model, "startup_seconds", value=draw(st.sampled_from([600, 1200])))
    if choice == "log_level":
        return "regions/local.yaml", _set("livekit", "log_level", value=draw(st.sampled_from(["info", "warn"])))
    if choice == "carrier":
        return "regions/local.yaml", lambda doc: doc["sip"]["carrier_addresses"].append("127.0.0.2/32")
    if choice == "leave_region":
        return file, lambda doc: doc.__setitem__("regions", [r for r in doc["regions"] if r != REGION] or ["us-east"])
    if choice == "nodes_selector":
        return "regions/local.yaml", _set("agents", "node_pool", "selector", value={"voxplane.io/pool": "agents-2"})
    return f"agents/{agent}/agent.py", lambda doc: None  # a code edit (see _apply)


def _apply(head: Path, chosen: list[Edit]) -> set[str]:
    """Apply the edits to the head copy; the manifest files they change."""
    touched: set[str] = set()
    docs: dict[str, Any] = {}
    for rel, change in chosen:
        if rel.endswith(".py"):
            with (head / rel).open("a") as f:
                f.write("\n# edited\n")
            touched.add(AGENTS[rel.split("/")[1]])
            continue
        doc = docs.setdefault(rel, yaml.safe_load((head / rel).read_text()))
        change(doc)
        touched.add(rel)
    for rel, doc in docs.items():
        (head / rel).write_text(yaml.safe_dump(doc, sort_keys=False))
    return touched


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's manifests, unedited (the plan's base; rendered once, see _cached)."""
    return copy_manifests(tmp_path_factory.mktemp("plan-base"))


_real_render = render_here
_base_cache: dict[tuple[str, str], Any] = {}


def _cached(base: Path) -> Callable[..., Any]:
    def render(root: Path, regions: Any, project: Any) -> Any:
        if Path(root) != base:
            return _real_render(root, regions, project)
        key = (str(root), ",".join(regions))  # the base never changes: render it once
        if key not in _base_cache:
            _base_cache[key] = _real_render(root, regions, project)
        return _base_cache[key]
    return render


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(edits(), min_size=1, max_size=3))
def test_every_changed_object_is_attributed_to_an_edited_field(base: Path, chosen: list[Edit]) -> None:
    with tempfile.TemporaryDirectory(prefix="voxplane-plan-prop-head-") as tmp:
        head = Path(tmp)
        shutil.copytree(base, head, dirs_exist_ok=True)
        touched = _apply(head, chosen)
        assume(load((), head).ok)  # edits that make the repository invalid plan nothing
        with mock.patch.object(plan_module, "render_here", _cached(base)):
            result = plan_between(base, head, [REGION])
        (region,) = result.regions
        assert result.unattributed == [], [touch_text(t) for t in result.unattributed]
        attributed = {t.ref for c in result.changes for t in c.touches}
        for ref in region.added + region.removed + region.changed:
            assert ref in attributed, f"{ref} changed but no field change names it"
        for change in result.changes:
            assert change.file in touched, f"{change.file} was not edited, yet the plan lists {change.field}"
            for touch in change.touches:
                assert touch.via in ("field", "file", "region"), touch
        # An edit of a field the attribution maps is found at that field, not by a fallback.
        for change in result.changes:
            if change.field in ("scaling.max_workers", "scaling.sessions_per_worker", "resources.memory",
                                "telephony.numbers", "scaling.drain_timeout"):
                assert all(t.via == "field" for t in change.touches), (change.field, [t.via for t in change.touches])
