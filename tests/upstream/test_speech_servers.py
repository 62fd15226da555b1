"""Every setting voxplane renders for Kokoro-FastAPI and speaches, held against the recorded
facts of their pinned releases (facts/<server>.yaml: neither can be installed here, so each fact
names the file of the release's source that shows it).

Held: the image's repository, the uid, every environment variable, the port, every HTTP route
the probes, the install hook and the readiness script call, the writable paths, and every metric
name a PodMonitor or ScaledObject of the model uses.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from voxplane.manifest.servers import SERVERS

from .conftest import REGIONS, facts, rendered

#: Metric names rendered for speech models that their servers do not export: issue #22 item 0
#: replaces them (scale on the calls of the agents that use the model). An entry no render uses
#: any more fails too: remove it then.
PENDING_METRICS = {
    ("kokoro-fastapi", "kokoro_requests_in_flight"): "pending #22.0: Kokoro-FastAPI v0.2.4 exports no metrics",
    ("speaches", "speaches_requests_in_flight"): "pending #22.0: speaches 0.8.3 exports no metrics",
    ("kokoro-fastapi", "queue_depth"): "pending #22.0: the default queue metric of a speech model",
    ("speaches", "queue_depth"): "pending #22.0: the default queue metric of a speech model",
}
PENDING_PATHS = {("kokoro-fastapi", "GET /metrics"): "pending #22.0: the PodMonitor scrapes a route it does not serve",
                 ("speaches", "GET /metrics"): "pending #22.0: the PodMonitor scrapes a route it does not serve"}


def _speech_models() -> list[tuple[str, str, str, dict[str, Any]]]:
    """(region, model, server, StatefulSet) of every speech model in the example regions."""
    from ..desired._helpers import project

    out = []
    for region in REGIONS:
        for name, model in project().regions[region].models.items():
            if model.server_name != "vllm":
                sts = next(o for o in rendered(region) if o["kind"] == "StatefulSet" and o["metadata"]["name"] == name)
                out.append((region, name, model.server_name, sts))
    return out


MODELS = _speech_models()
IDS = [f"{r}/{m}" for r, m, _, _ in MODELS]


def test_examples_run_both_speech_servers_at_their_recorded_release():
    assert {s for _, _, s, _ in MODELS} == {"kokoro-fastapi", "speaches"}
    for server in ("kokoro-fastapi", "speaches"):
        assert facts(server)["version"] == SERVERS[server].version


@pytest.mark.parametrize("region,name,server,sts", MODELS, ids=IDS)
def test_image_user_and_command_are_the_releases(region, name, server, sts):
    f = facts(server)
    c = sts["spec"]["template"]["spec"]["containers"][0]
    repository, _, tag = c["image"].split("@")[0].rpartition(":")
    assert repository == f["image"]["repository"] == SERVERS[server].repository
    assert tag.lstrip("v").startswith(f["version"].lstrip("v"))
    assert sts["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == f["user"]["uid"]
    assert "command" not in c and "args" not in c  # the image's own, recorded above


@pytest.mark.parametrize("region,name,server,sts", MODELS, ids=IDS)
def test_every_environment_variable_is_one_the_server_reads(region, name, server, sts):
    f = facts(server)
    c = sts["spec"]["template"]["spec"]["containers"][0]
    names = [e["name"] for e in c["env"]]
    unread = [n for n in names if n not in f["env"]]
    assert unread == [], f"{server} {f['version']} reads none of {unread} (facts/{server}.yaml)"
    assert not set(names) & set(f["not_read"])


@pytest.mark.parametrize("region,name,server,sts", MODELS, ids=IDS)
def test_ports_routes_and_paths_are_the_servers(region, name, server, sts):
    f = facts(server)
    spec = sts["spec"]["template"]["spec"]
    c = spec["containers"][0]
    [port] = c["ports"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    if "port" in f:
        assert port["containerPort"] == f["port"]["number"]
    else:
        assert env["UVICORN_PORT"] == str(port["containerPort"])
    called = set()
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if "httpGet" in c[probe]:
            called.add(f"GET {c[probe]['httpGet']['path']}")
            assert c[probe]["httpGet"]["port"] == port["name"]
    for script in [c[p]["exec"]["command"][2] for p in ("readinessProbe",) if "exec" in c[p]] + (
            [c["lifecycle"]["postStart"]["exec"]["command"][2]] if "lifecycle" in c else []):
        called |= _routes(script, port["containerPort"])
    monitor = next((o for o in rendered(region) if o["kind"] == "PodMonitor" and o["metadata"]["name"] == name), None)
    if monitor is not None:
        called |= {f"GET {e['path']}" for e in monitor["spec"]["podMetricsEndpoints"]}
    known = set(f["routes"])
    unknown = {r for r in called if r not in known and (server, r) not in PENDING_PATHS}
    assert unknown == set(), f"{server} {f['version']} serves none of {unknown} (facts/{server}.yaml)"
    for mount in c["volumeMounts"]:
        if mount["mountPath"].startswith("/app"):
            assert mount["mountPath"] in f["writable_paths"]["paths"]


def _routes(script: str, port: int) -> set[str]:
    """`METHOD /path` of every URL a rendered shell script calls, the model id as `{model_id}`."""
    assert f"127.0.0.1:{port}" in script
    found = set()
    for line in script.splitlines():
        for m in re.finditer(r'"\$base(/[^"]*)"|127\.0\.0\.1:\d+(/\S*)', line):
            path = (m.group(1) or m.group(2)).replace("$model", "{model_id}")
            method = "POST" if re.search(r"-X POST[^|;]*" + re.escape(m.group(0)), line) else "GET"
            found.add(f"{method} {path}")
    return found


def test_the_script_reader_sees_every_call():
    """The route reader itself: a script's GET and POST calls, the model as {model_id}."""
    script = ('curl -fsS "$base/health"\ncurl -X POST "$base/v1/models/$model"\n'
              'curl -fsS http://127.0.0.1:8000/api/ps | grep')
    assert _routes(script, 8000) == {"GET /health", "POST /v1/models/{model_id}", "GET /api/ps"}


def test_speaches_install_hook_and_readiness_call_its_install_and_load_routes():
    """The install hook installs (GET then POST /v1/models/{id}) and loads (POST /api/ps/{id}); the
    readiness reads GET /api/ps: each a route of speaches 0.8.3."""
    _, _, _, sts = next(m for m in MODELS if m[2] == "speaches")
    c = sts["spec"]["template"]["spec"]["containers"][0]
    port = c["ports"][0]["containerPort"]
    assert _routes(c["lifecycle"]["postStart"]["exec"]["command"][2], port) == {
        "GET /health", "GET /v1/models/{model_id}", "POST /v1/models/{model_id}", "POST /api/ps/{model_id}"}
    assert _routes(c["readinessProbe"]["exec"]["command"][2], port) == {"GET /api/ps"}


def _metric_names(region: str, name: str) -> set[str]:
    scaled = next(o for o in rendered(region) if o["kind"] == "ScaledObject" and o["metadata"]["name"] == name)
    names = set()
    for trigger in scaled["spec"]["triggers"]:
        query = trigger["metadata"]["query"]
        if "livekit_room_total" in query:
            continue  # the wake trigger: livekit-server's metric (test_livekit_server.py)
        names |= set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", query))
    return names


@pytest.mark.parametrize("region,name,server,sts", MODELS, ids=IDS)
def test_every_metric_name_is_one_the_server_exports(region, name, server, sts):
    exported = set(facts(server)["metrics"])
    missing = {m for m in _metric_names(region, name) if m not in exported and (server, m) not in PENDING_METRICS}
    assert missing == set(), f"{server} {facts(server)['version']} exports none of {missing}"


def test_pending_entries_are_still_rendered():
    """A pending entry that no render uses any more is stale: remove it."""
    assert set(PENDING_METRICS) <= {(s, m) for r, n, s, _ in MODELS for m in _metric_names(r, n)}
    monitored = {m[2] for m in MODELS if any(o["kind"] == "PodMonitor" and o["metadata"]["name"] == m[1] for o in rendered(m[0]))}
    assert {s for s, _ in PENDING_PATHS} <= monitored
