"""Benchmark: Kubernetes drift over 1,000+ owned objects on a real kube-apiserver.

Starts the dev control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok) for
region `local` in a temporary VOXPLANE_DEV_STATE (never the default dev cluster) and stops it at
the end. Creates a labelled namespace with N ConfigMaps carrying voxplane's labels (default
1,000), then times, in the same process, against the same ApiClient:

- voxplane drift: `drift.kubernetes.report.detect()` — one list call per kind across namespaces (plus
  one metadata-only list per declared namespaced kind for unowned objects), compare;
- baseline: a GET per declared object (what a per-resource refresh does), compared with the same
  rules (`compare.diff_object`).

API calls are counted by wrapping `ApiClient.call_api`. Drift is also measured at a tenth of the
objects to show its call count does not grow. Best of several rounds.
Targets (issue): API calls independent of object count, >= 10x faster than the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.kubedrift.conftest import counting  # noqa: E402
from tests.support.stats import best_of  # noqa: E402

NAMESPACE = "vox-bench"
LABELS = {"app.kubernetes.io/managed-by": "voxplane", "app.kubernetes.io/part-of": "local",
          "app.kubernetes.io/name": "bench", "app.kubernetes.io/component": "bench"}


def config_maps(count: int) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = [{
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": dict(LABELS), "annotations": {"voxplane.io/source": "regions/local.yaml"}},
    }]
    for i in range(count):
        objects.append({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"bench-{i:05d}", "namespace": NAMESPACE, "labels": dict(LABELS),
                         "annotations": {"voxplane.io/source": "regions/local.yaml"}},
            "data": {"config.yaml": f"index: {i}\nlevel: info\n", "owner": "bench"},
        })
    return objects


def per_object_check(api_client: Any, desired: list[dict[str, Any]]) -> int:
    """The baseline: GET each declared object, compare it with the same rules; returns drifted fields."""
    from voxplane.drift.kubernetes.compare import diff_object
    from voxplane.drift.kubernetes.live import kind_ref

    drifted = 0
    for obj in desired:
        meta = obj["metadata"]
        ref = kind_ref(obj["apiVersion"], obj["kind"], bool(meta.get("namespace")))
        prefix = f"/api/{ref.api_version}" if "/" not in ref.api_version else f"/apis/{ref.api_version}"
        path = (f"{prefix}/namespaces/{meta['namespace']}/{ref.plural}/{meta['name']}" if meta.get("namespace")
                else f"{prefix}/{ref.plural}/{meta['name']}")
        params = api_client.param_serialize(method="GET", resource_path=path, header_params={"Accept": "application/json"},
                                            auth_settings=["BearerToken"])
        response = api_client.call_api(*params)
        body = response.read()
        if response.status == 404:
            drifted += 1
            continue
        drifted += len(diff_object(obj, json.loads(body)))
    return drifted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1000, help="ConfigMaps to create (default 1000)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="voxplane-bench-kube-"))
    os.environ["VOXPLANE_DEV_STATE"] = str(state)  # never the default dev cluster
    from kubernetes import config as kube_config

    from voxplane.dev import cluster
    from voxplane.drift.kubernetes.live import LiveReader
    from voxplane.drift.kubernetes.report import detect
    from voxplane.manifest.loader import load

    project = load((), REPO).require_project()
    region, agents = project.regions["local"], project.agents_in("local")
    try:
        print(f"starting the dev control plane in {state} ...", file=sys.stderr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            cluster.up(region, agents, lambda line: print(f"  {line}", file=sys.stderr))
        bins = cluster.toolchain_bin_dir()
        desired = config_maps(args.objects)
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig_path())}
        start = time.perf_counter()
        for chunk in range(0, len(desired), 500):
            doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": desired[chunk:chunk + 500]})
            proc = subprocess.run([str(bins / "kubectl"), "apply", "--server-side", "--field-manager", "pulumi-kubernetes",
                                   "-f", "-"], input=doc, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(f"kubectl apply failed: {proc.stderr.strip()}", file=sys.stderr)
                return 1
        print(f"created {len(desired)} objects in {time.perf_counter() - start:.1f}s", file=sys.stderr)

        api = kube_config.new_client_from_config(config_file=str(cluster.kubeconfig_path()))
        count = counting(api)

        def drift(objects: list[dict[str, Any]]) -> Callable[[], Any]:
            return lambda: detect(region, agents, objects, LiveReader(api))

        tenth = desired[: max(2, len(desired) // 10)]
        c0 = count()
        t_small, rep_small = best_of(args.rounds, drift(tenth))
        calls_small = (count() - c0) // args.rounds
        c0 = count()
        t_drift, rep = best_of(args.rounds, drift(desired))
        calls_drift = (count() - c0) // args.rounds
        c0 = count()
        t_base, base_drifted = best_of(args.rounds, lambda: per_object_check(api, desired))
        calls_base = (count() - c0) // args.rounds

        assert not rep.changed and not rep.missing, "the benchmark objects should be in sync"
        assert base_drifted == 0, "the baseline found drift where voxplane found none"
        print(f"{'method':<34} {'objects':>8} {'API calls':>10} {'seconds':>9}")
        print(f"{'voxplane drift (list per kind)':<34} {len(tenth):>8} {calls_small:>10} {t_small:>9.3f}")
        print(f"{'voxplane drift (list per kind)':<34} {len(desired):>8} {calls_drift:>10} {t_drift:>9.3f}")
        print(f"{'baseline (GET per object)':<34} {len(desired):>8} {calls_base:>10} {t_base:>9.3f}")
        ratio = t_base / t_drift if t_drift else float("inf")
        print(f"\nspeed-up: {ratio:.1f}x (target >= 10x); API calls {calls_drift} for {len(desired)} objects, "
              f"{calls_small} for {len(tenth)} (constant: {'yes' if calls_drift == calls_small else 'NO'})")
        return 0 if calls_drift == calls_small and ratio >= 10 else 1
    finally:
        cluster.down(lambda line: print(f"  {line}", file=sys.stderr), quiet=True)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
