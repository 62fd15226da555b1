"""The real program under the SDK's mock engine, for every example region (issue #3).

`voxplane.deploy.render.render()` runs `voxplane.deploy.program.run()` — the same code `pulumi up` runs — under
`pulumi.runtime.set_mocks` and records every registration. What the rendered platform must get
right is asserted on those recorded inputs; every Kubernetes object
passes strict schema validation (built-in kinds and custom resources against their CRDs); and the
rendered files are compared with the committed snapshots in tests/golden/.
"""

from __future__ import annotations

import atexit
import difflib
import json
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.support.k8s_schema import validate_objects
from voxplane.deploy.render import PLACEHOLDER_DIGEST, REDACTED, RenderResult, render, write
from voxplane.manifest.servers import scaling_metric

from .support.repo import REPO, copy_manifests

REGIONS = ["local", "us-east", "eu-west"]
GOLDEN = Path(__file__).parent / "golden"


@cache
def _manifests() -> Path:
    """A copy of the repository's manifests: what a checkout holds besides them (a record of
    pushed image digests, `.voxplane/images/`, machine output) never reaches the goldens."""
    folder = Path(tempfile.mkdtemp(prefix="voxplane-golden-"))
    atexit.register(shutil.rmtree, folder, True)
    return copy_manifests(folder / "repo")


@cache
def rendered(region: str) -> RenderResult:
    return render(region, _manifests())


def objects(region: str, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
    return [
        o for o in rendered(region).kubernetes
        if o["kind"] == kind and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]


def one(region: str, kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects(region, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{region}: expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


# --- every object ------------------------------------------------------------------------------


@pytest.mark.parametrize("region", REGIONS)
def test_every_object_passes_strict_schema_validation(region):
    """All rendered Kubernetes objects (CRs included) validate against Kubernetes 1.34 / their CRDs."""
    assert validate_objects(rendered(region).kubernetes) == []


@pytest.mark.parametrize("region", REGIONS)
def test_every_object_carries_the_ownership_contract(region):
    """managed-by voxplane and part-of <region> on every object; tenant/agent objects say so."""
    for obj in rendered(region).kubernetes:
        labels = obj["metadata"].get("labels", {})
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert labels.get("app.kubernetes.io/managed-by") == "voxplane", where
        assert labels.get("app.kubernetes.io/part-of") == region, where
        if "voxplane.io/agent" in labels:
            assert labels.get("voxplane.io/tenant"), where
            assert obj["metadata"]["annotations"]["voxplane.io/source"].startswith("agents/"), where


@pytest.mark.parametrize("region", REGIONS)
def test_no_secret_value_is_rendered(region, tmp_path):
    """Secrets are redacted: no placeholder secret value and no derived key appears in any file."""
    result = rendered(region)
    write(result, tmp_path)
    text = "\n".join(p.read_text() for p in tmp_path.rglob("*.yaml"))
    assert "render-placeholder" not in text
    for secret in objects(region, "Secret"):
        for section in ("data", "stringData"):
            assert all(v == REDACTED for v in secret.get(section, {}).values())
    for cm in objects(region, "ConfigMap"):
        body = str(cm.get("data", {}))
        assert "api_secret" not in body and "keys:" not in body, cm["metadata"]["name"]


# --- SFU ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("region", REGIONS)
def test_sfu_runs_on_host_network_one_pod_per_node(region):
    """livekit-server: hostNetwork, ClusterFirstWithHostNet, media node pool, never two pods on a node."""
    sfu = one(region, "Deployment", "livekit")
    spec = pod_spec(sfu)
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert spec["nodeSelector"] == {"voxplane.io/pool": "media"}
    anti = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"


@pytest.mark.parametrize("region", REGIONS)
def test_sfu_drains_long_with_mesh_off_and_config_checksum(region):
    """Grace period = drain_seconds (>= 5 h by default), no mesh sidecar, config checksum annotation, PDB."""
    sfu = one(region, "Deployment", "livekit")
    declared = rendered_region(region).livekit.drain_seconds
    assert pod_spec(sfu)["terminationGracePeriodSeconds"] == declared
    if region != "local":
        assert declared >= 18000
    annotations = sfu["spec"]["template"]["metadata"]["annotations"]
    assert annotations["sidecar.istio.io/inject"] == "false"
    assert len(annotations["voxplane.io/config-checksum"]) == 64
    assert one(region, "PodDisruptionBudget", "livekit")["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("region", REGIONS)
def test_sfu_keys_come_from_a_secret_never_the_configmap(region):
    """The server reads keys from a Secret-backed key_file; the ConfigMap holds no key."""
    config = one(region, "ConfigMap", "livekit-config")["data"]
    text = "\n".join(config.values())
    assert "key_file" in text and "vx-admin" not in text
    assert one(region, "Secret", "livekit-keys")["stringData"] == {"keys.yaml": REDACTED}


def test_redis_is_dedicated_in_cluster_or_external():
    """us-east/local run their own Redis StatefulSet; eu-west points at its external Redis, no StatefulSet."""
    for region in ("local", "us-east"):
        assert [o["metadata"]["name"] for o in objects(region, "StatefulSet", "vox-system")] == ["livekit-redis"]
    assert objects("eu-west", "StatefulSet", "vox-system") == []
    config = "\n".join(one("eu-west", "ConfigMap", "livekit-config")["data"].values())
    assert "redis-livekit.eu-west.internal:6379" in config


# --- SIP ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("region", REGIONS)
def test_sip_bridge_ready_only_when_not_busy_and_never_liveness_killed(region):
    """livekit-sip: host network, readiness on the health port (429 = busy), no liveness probe, long drain."""
    sip = one(region, "Deployment", "livekit-sip")
    spec = pod_spec(sip)
    container = spec["containers"][0]
    assert spec["hostNetwork"] is True
    port = container["readinessProbe"]["httpGet"]["port"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named.get(port, port) == rendered_region(region).sip.health_port
    assert "livenessProbe" not in container
    assert spec["terminationGracePeriodSeconds"] == rendered_region(region).sip.drain_seconds


@pytest.mark.parametrize("region", REGIONS)
def test_sip_uses_the_same_redis_as_its_sfu(region):
    """SIP and SFU talk over Redis, so both configs name the same Redis address."""
    sfu = "\n".join(one(region, "ConfigMap", "livekit-config")["data"].values())
    sip = "\n".join(one(region, "ConfigMap", "livekit-sip-config")["data"].values())
    address = [line.split("address:")[1].strip() for line in sfu.splitlines() if "address:" in line][0]
    assert address in sip


# --- tenants -----------------------------------------------------------------------------------


@pytest.mark.parametrize("region", REGIONS)
def test_each_tenant_is_isolated(region):
    """Per tenant: namespace, default-deny (ingress+egress), quota, limit range and its own API key Secret."""
    for tenant in rendered_region(region).tenants:
        ns = f"vox-t-{tenant}"
        deny = [p for p in objects(region, "NetworkPolicy", ns) if p["metadata"]["name"] == "default-deny"]
        assert deny and deny[0]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        assert objects(region, "ResourceQuota", ns) and objects(region, "LimitRange", ns)
        [secret] = [s for s in objects(region, "Secret", ns) if s["metadata"]["name"] == "livekit-api"]
        assert set(secret["stringData"]) == {"LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"}


@pytest.mark.parametrize("region", REGIONS)
def test_every_namespace_denies_by_default_and_every_pod_has_its_policy(region):
    """Each namespace voxplane creates has a default-deny NetworkPolicy (ingress and egress), and
    every workload's pods are selected by a policy of their own that states their flows."""
    for ns in objects(region, "Namespace"):
        name = ns["metadata"]["name"]
        [deny] = [p for p in objects(region, "NetworkPolicy", name) if p["metadata"]["name"] == "default-deny"]
        assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, name
    for kind in ("Deployment", "StatefulSet"):
        for workload in objects(region, kind):
            ns, pod_labels = workload["metadata"]["namespace"], workload["spec"]["template"]["metadata"]["labels"]
            own = [p for p in objects(region, "NetworkPolicy", ns) if p["spec"]["podSelector"]
                   and all(pod_labels.get(k) == v for k, v in p["spec"]["podSelector"].get("matchLabels", {}).items())]
            tenant_wide = [p for p in objects(region, "NetworkPolicy", ns)
                           if p["spec"]["podSelector"] == {} and p["metadata"]["name"] != "default-deny"]
            assert own or tenant_wide, f"{kind} {ns}/{workload['metadata']['name']} has no policy of its own"


def test_provider_egress_only_for_the_tenant_that_declares_it():
    """northwind's support agent uses OpenAI: only northwind gets provider egress in us-east."""
    names = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in objects("us-east", "NetworkPolicy")}
    assert ("vox-t-northwind", "allow-providers") in names
    assert ("vox-t-bellavista", "allow-providers") not in names


# --- agent pools -------------------------------------------------------------------------------


@pytest.mark.parametrize("region", REGIONS)
def test_agent_pools_drain_and_roll_without_losing_capacity(region):
    """Per agent: grace >= drain_timeout, maxUnavailable 0, probes on 8081, restricted security, PDB."""
    for agent in rendered_project().agents_in(region):
        ns = f"vox-t-{agent.tenant}"
        [dep] = [d for d in objects(region, "Deployment", ns) if d["metadata"]["name"] == agent.name]
        spec = pod_spec(dep)
        container = spec["containers"][0]
        assert spec["terminationGracePeriodSeconds"] >= agent.scaling.drain_timeout
        assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        named = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("readinessProbe", "livenessProbe"):
            port = container[probe]["httpGet"]["port"]
            assert named.get(port, port) == 8081, probe
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        env = {e["name"]: e for e in container["env"]}
        assert env["LIVEKIT_AGENT_NAME"]["value"] == agent.scoped_name
        assert "valueFrom" in env["LIVEKIT_API_SECRET"]
        assert [p for p in objects(region, "PodDisruptionBudget", ns) if p["metadata"]["name"] == agent.name]


@pytest.mark.parametrize("region", REGIONS)
def test_agent_pools_scale_on_active_jobs_never_cpu(region):
    """KEDA ScaledObject per agent on lk_agents_active_job_count; no cpu/memory trigger anywhere."""
    for agent in rendered_project().agents_in(region):
        [so] = [s for s in objects(region, "ScaledObject", f"vox-t-{agent.tenant}") if s["metadata"]["name"] == agent.name]
        triggers = so["spec"]["triggers"]
        assert [t["type"] for t in triggers] == ["prometheus"]
        assert "lk_agents_active_job_count" in triggers[0]["metadata"]["query"]
        assert triggers[0]["metadata"]["threshold"] == f"{agent.scaling.sessions_per_worker * agent.scaling.target_utilization / 100:g}"
        assert so["spec"]["minReplicaCount"] == agent.scaling.min_workers
        assert so["spec"]["maxReplicaCount"] == agent.scaling.max_workers


def test_built_agents_run_the_pushed_digest():
    """An agent with code.build runs the image pulumi-docker pushed, pinned by digest."""
    [dep] = [d for d in objects("us-east", "Deployment", "vox-t-bellavista") if d["metadata"]["name"] == "reservations"]
    image = pod_spec(dep)["containers"][0]["image"]
    assert "@sha256:" in image and image.startswith("registry.voice.example.com/agents/bellavista-reservations")
    kinds = {(r.component, r.type) for r in rendered("us-east").resources}
    assert ("AgentPool", "docker:index/image:Image") in kinds


# --- inference ---------------------------------------------------------------------------------


@pytest.mark.parametrize("region", REGIONS)
def test_models_run_on_gpus_with_a_service_and_queue_autoscaling(region):
    """Per model: GPU limit, nvidia.com/gpu toleration, GPU affinity, startup probe, Service, KEDA on its queue."""
    reg = rendered_region(region)
    for name, model in reg.models.items():
        workloads = [o for o in rendered(region).kubernetes
                     if o["kind"] in ("Deployment", "StatefulSet") and o["metadata"]["name"] == name
                     and o["metadata"].get("namespace") == "vox-inference"]
        assert len(workloads) == 1, name
        spec = pod_spec(workloads[0])
        container = spec["containers"][0]
        assert str(container["resources"]["limits"]["nvidia.com/gpu"]) == str(model.gpus_per_replica)
        assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
        assert "startupProbe" in container
        terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        keys = {e["key"] for term in terms for e in term["matchExpressions"]}
        assert "nvidia.com/gpu.product" in keys
        assert [s for s in objects(region, "Service", "vox-inference") if s["metadata"]["name"] == name]
        [so] = [s for s in objects(region, "ScaledObject", "vox-inference") if s["metadata"]["name"] == name]
        # Its server's queue gauge, or, for a server without metrics, its agents' calls.
        assert (scaling_metric(model) or "lk_agents_active_job_count") in so["spec"]["triggers"][0]["metadata"]["query"]


def test_karpenter_groups_get_a_nodepool_and_preprovisioned_ones_do_not():
    """us-east declares Karpenter GPU groups (NodePools); eu-west's are pre-provisioned (none)."""
    assert sorted(o["metadata"]["name"] for o in objects("us-east", "NodePool")) == ["vox-h100", "vox-l4"]
    assert objects("eu-west", "NodePool") == []


# --- LiveKit control plane ---------------------------------------------------------------------


@pytest.mark.parametrize("region", REGIONS)
def test_each_telephony_agent_gets_a_trunk_and_a_rule_scoped_to_its_tenant(region):
    """Per telephony agent: one inbound trunk and one dispatch rule, named by tenant, dispatching the
    tenant-scoped agent name, accepting only its own trunk, and owned by voxplane in metadata."""
    agents = [a for a in rendered_project().agents_in(region) if a.telephony is not None]
    objs = {(o["kind"], o["name"]): o for o in rendered(region).livekit}
    assert len(objs) == 2 * len(agents)
    for agent in agents:
        trunk = objs[("SIPInboundTrunk", f"vx-{agent.tenant}-{agent.name}")]
        rule = objs[("SIPDispatchRule", f"vx-{agent.tenant}-{agent.name}")]
        assert trunk["numbers"] == list(agent.telephony.numbers)
        assert rule["agents"] == [agent.scoped_name]
        assert rule["trunk_ids"] == [f"<id of {trunk['name']}>"]
        owner = json.loads(rule["metadata"])
        assert (owner["managed-by"], owner["tenant"], owner["agent"]) == ("voxplane", agent.tenant, agent.name)


def test_trunk_password_is_redacted():
    """The digest password of northwind's trunk is never rendered."""
    [trunk] = [o for o in rendered("us-east").livekit if o["name"] == "vx-northwind-support" and o["kind"] == "SIPInboundTrunk"]
    assert trunk["auth_username"] == "northwind-trunk"
    assert trunk["auth_password"] == REDACTED


# --- outputs, CLI, snapshots -------------------------------------------------------------------


def test_region_outputs_name_public_endpoints():
    """The stack exports the public WebSocket URL, the SIP URI and firewall rules as data."""
    outputs = rendered("us-east").outputs
    assert outputs["livekit_url"] == "wss://rtc.us-east.voice.example.com"
    assert outputs["sip_uri"] == "sip:sip.us-east.voice.example.com:5060"
    ports = {(r["protocol"], str(r["ports"])) for r in outputs["firewall_rules"]}
    assert ("udp", "50000-60000") in {(p.lower(), s) for p, s in ports}


def test_render_cli_writes_files_and_prints_the_table(run_cli, tmp_path, monkeypatch):
    """`voxplane render local --out DIR` exits 0, prints component/kind/count and writes one object per file."""
    monkeypatch.chdir(REPO)
    result = run_cli("render", "local", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == ["component", "kind", "count"]
    assert (tmp_path / "out/kubernetes/vox-system/deployment.livekit.yaml").is_file()
    for path in (tmp_path / "out/kubernetes").rglob("*.yaml"):
        assert path.read_text().count("\nkind: ") + path.read_text().startswith("kind: ") <= 1


def test_render_of_invalid_manifests_deploys_nothing(manifest_tree, run_cli, tmp_path):
    """A bad manifest makes render exit 1 with the validation lines and write nothing."""
    root = manifest_tree(files={"agents/echo.yaml": "name: echo\ntenant: acme\n"})
    result = run_cli("render", "test", "--out", str(tmp_path / "out"), "--root", str(root))
    assert result.exit_code == 1
    assert "agents/echo.yaml:1:1: regions: required field is missing" in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_image_the_stack_builds_shows_a_placeholder_digest_and_says_so(tmp_path):
    """Issue #17 item 4: render cannot know the digest a registry returns on push. Images built
    from source (agents with code.build, the gateway, the LLM router, the deletion-cost controller,
    the recovery controller) carry the pushed tag and an all-zero digest, and the file says it is a
    placeholder; every other digest in the render is a pinned one."""
    result = rendered("us-east")
    files = dict(zip(map(id, result.kubernetes), write(result, tmp_path / "out")))
    built = {"support", "reservations", "livekit-gateway", "chat-router", "pod-deletion-cost", "agent-recovery"}
    seen = set()
    for obj in result.kubernetes:
        for container in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            image = container["image"]
            name = obj["metadata"]["name"]
            if name in built and obj["kind"] == "Deployment":
                seen.add(name)
                tag = image.rsplit("@", 1)[0]
                assert image == f"{tag}@{PLACEHOLDER_DIGEST}" and ":" in tag.rsplit("/", 1)[1], image
                first = files[id(obj)].read_text().splitlines()[0]
                assert first.startswith(f"# placeholder: the digest of {tag} below") and "pulumi up" in first, first
            else:
                assert PLACEHOLDER_DIGEST not in image, (name, image)
    assert seen == built


@pytest.mark.parametrize("region", REGIONS)
def test_rendered_output_matches_the_snapshot(region, tmp_path):
    """Rendered files equal tests/golden/<region>/ (VOXPLANE_UPDATE_GOLDEN=1 rewrites them)."""
    out = tmp_path / region
    write(rendered(region), out)
    golden = GOLDEN / region
    if os.environ.get("VOXPLANE_UPDATE_GOLDEN") == "1":
        shutil.rmtree(golden, ignore_errors=True)
        shutil.copytree(out, golden, ignore=shutil.ignore_patterns(".voxplane-output.json"))
    got = {p.relative_to(out).as_posix(): p.read_text() for p in sorted(out.rglob("*.yaml"))}
    want = {p.relative_to(golden).as_posix(): p.read_text() for p in sorted(golden.rglob("*.yaml"))}
    assert sorted(got) == sorted(want), "files added or removed; rerun with VOXPLANE_UPDATE_GOLDEN=1 and review"
    for name in sorted(got):
        if got[name] != want[name]:
            diff = "".join(difflib.unified_diff(want[name].splitlines(True), got[name].splitlines(True), f"golden/{name}", name))
            pytest.fail(f"{region}: {name} changed\n{diff}")


# --- helpers -----------------------------------------------------------------------------------


@cache
def rendered_project():
    from voxplane.manifest.loader import load_project

    return load_project(REPO)


def rendered_region(region: str):
    return rendered_project().regions[region]


def test_program_with_a_bad_manifest_registers_nothing(manifest_tree, monkeypatch):
    """Under the engine (`pulumi up`), the program logs every problem and stops before any resource."""
    import pulumi

    from voxplane.deploy import render as render_module
    from voxplane.deploy.program import StackConfig, run

    root = manifest_tree(files={"agents/echo.yaml": "name: echo\ntenant: acme\n"})
    seen: list[str] = []
    original = render_module._RecordingMocks.new_resource

    def counting(self, args):
        seen.append(args.typ)
        return original(self, args)

    monkeypatch.setattr(render_module._RecordingMocks, "new_resource", counting)
    with pytest.raises(pulumi.RunError, match=r"2 manifest problem\(s\) above; nothing was deployed"):
        render_module.run_mocked(
            lambda: run(StackConfig()),
            stack="test",
            config={"voxplane:region": "test", "voxplane:repoRoot": str(root)},
            secret_keys=[],
        )
    assert seen == []


def test_readme_shows_the_real_demo_table():
    """The tables in README.md's `make demo` output (what `voxplane status local` prints) are the
    local region's: every agent pool, model and platform workload with its desired replicas, every
    LiveKit object (nodes vary by run; the rest may not)."""
    readme = (REPO / "README.md").read_text()
    shown = readme.split("$ make demo\n...\n", 1)[1].split("```", 1)[0]
    result = rendered("local")
    region = rendered_region("local")
    want_pools, want_models, want_platform = [], [], []
    for o in result.kubernetes:
        if o["kind"] not in ("Deployment", "StatefulSet"):
            continue
        meta, ready = o["metadata"], f"{o['spec']['replicas']}/{o['spec']['replicas']}"
        component = meta["labels"]["app.kubernetes.io/component"]
        if component == "agent":
            want_pools.append((f"{meta['labels']['voxplane.io/tenant']}/{meta['name']}", meta["namespace"], ready))
        elif component == "inference":
            want_models.append((meta["name"], region.models[meta["name"]].kind, meta["namespace"], ready))
        else:
            want_platform.append((f"{o['kind'].lower()}/{meta['name']}", meta["namespace"], component, ready))
    lines = shown.splitlines()

    def table(header: str, width: int) -> list[tuple[str, ...]]:
        start = next(i for i, line in enumerate(lines) if line.startswith(header))
        rows = []
        for line in lines[start + 2:]:
            if not line.strip():
                break
            rows.append(tuple(line.split()[:width]))
        return sorted(rows)

    assert table("agent pool ", 3) == sorted(want_pools)
    assert table("model ", 4) == sorted(want_models)
    assert table("platform ", 4) == sorted(want_platform)
    want_livekit = sorted((str(o["kind"]), str(o["name"])) for o in result.livekit)
    assert table("livekit object ", 2) == want_livekit
