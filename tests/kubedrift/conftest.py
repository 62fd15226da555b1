"""Fixtures for Kubernetes drift against a real control plane: the dev cluster (etcd,
kube-apiserver, controller-manager, scheduler, kwok) for region `local`, in this session's own
VOXPLANE_DEV_STATE, with the rendered `local` objects applied as `pulumi up` applies them
(server-side apply, field manager `pulumi-kubernetes`), Secrets with values the tests choose.

Nothing here skips: a binary that cannot be built, or a server that cannot start, fails the test.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from ..support.repo import copy_manifests

REGION = "local"
FIELD_MANAGER = "pulumi-kubernetes"


def secret_env(region: Any, agents: Any) -> dict[str, str]:
    """A value for every secret the region's Secrets need: the root secret and each `{config: KEY}`."""
    from voxplane.desired.common import SecretValue
    from voxplane.livekit.keys import ROOT_SECRET_CONFIG
    from voxplane.drift.kubernetes.secrets import secret_objects

    keys = {ROOT_SECRET_CONFIG}
    for obj in secret_objects(region, agents):
        for value in (obj.get("stringData") or {}).values():
            if isinstance(value, SecretValue) and value.kind == "config":
                keys.add(value.name)
    return {f"VOXPLANE_SECRET_{k}": f"kubedrift-test-{k}-value" for k in sorted(keys)}


@dataclass
class Cluster:
    """The dev cluster with the `local` region applied; helpers to edit it out of band."""

    root: Path
    bins: Path
    kubeconfig: Path
    region: Any
    agents: Any
    env: dict[str, str]
    desired: list[dict[str, Any]] = field(default_factory=list)

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.bins / "kubectl"), *args], input=stdin, capture_output=True, text=True,
                              env={**os.environ, "KUBECONFIG": str(self.kubeconfig)}, timeout=120)
        assert not check or proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
        return proc

    def manifests(self) -> str:
        """The rendered objects as YAML documents, Secrets with the chosen values."""
        from voxplane.drift.kubernetes.secrets import env_lookup, resolved_string_data

        docs = []
        for obj in self.desired:
            if obj["kind"] == "Secret":
                obj = {**obj, "stringData": resolved_string_data(obj, self.region, self.agents, env_lookup(self.env))}
            docs.append(yaml.safe_dump(obj, sort_keys=False))
        return "---\n".join(docs)

    def apply(self) -> None:
        """Apply every rendered object (again): what `pulumi up` does, as the same field manager."""
        self.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager", FIELD_MANAGER, "-f", "-",
                     stdin=self.manifests())

    def api_client(self) -> Any:
        from kubernetes import config as kube_config

        return kube_config.new_client_from_config(config_file=str(self.kubeconfig))

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.kubectl("get", kind, "-n", namespace, name, "-o", "json").stdout)
        return data

    def line_of(self, rel: str, text: str) -> int:
        """1-based line of the first line of `rel` holding `text`."""
        for number, line in enumerate((self.root / rel).read_text().splitlines(), 1):
            if text in line:
                return number
        raise AssertionError(f"{text!r} not in {rel}")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The session's dev cluster for `local`, in its own VOXPLANE_DEV_STATE (set only while the
    cluster starts and stops, so no other test sees it), the region applied."""
    from voxplane.dev import cluster as dev_cluster
    from voxplane.manifest.loader import load
    from voxplane.deploy.render import render

    state = tmp_path_factory.mktemp("kubedrift-dev-state")
    root = copy_manifests(tmp_path_factory.mktemp("kubedrift-repo") / "repo")
    project = load((), root).require_project()
    region, agents = project.regions[REGION], project.agents_in(REGION)
    bins = dev_cluster.toolchain_bin_dir()  # fails (never skips) when a binary cannot be built
    for binary in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl"):
        assert (bins / binary).is_file(), f"{binary} missing in {bins}"
    try:
        with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
            patch.setenv("VOXPLANE_DEV_STATE", str(state))
            # The control plane outlives the Popen objects that started it (start_new_session);
            # their "still running" ResourceWarning on collection is expected, not a leak.
            warnings.simplefilter("ignore", ResourceWarning)
            dev_cluster.up(region, agents, lambda _line: None)
            kubeconfig = dev_cluster.kubeconfig_path()
            gc.collect()
        c = Cluster(root, bins, kubeconfig, region, agents, secret_env(region, agents))
        c.desired = render(REGION, root).kubernetes
        c.apply()
        yield c
    finally:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("VOXPLANE_DEV_STATE", str(state))
            dev_cluster.down(lambda _line: None, quiet=True)


@pytest.fixture
def fresh(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster as applied, before and after the test: objects the test made by hand (label
    `kubedrift-test`) are deleted, and every rendered object is applied again."""

    def reset() -> None:
        cluster.kubectl("delete", "configmap", "-A", "-l", "kubedrift-test", "--wait=false", check=False)
        cluster.apply()

    reset()
    yield cluster
    reset()


def counting(api_client: Any) -> Callable[[], int]:
    """Count the HTTP requests made through `api_client` (wraps `ApiClient.call_api`)."""
    calls = [0]
    original = api_client.call_api

    def call_api(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    api_client.call_api = call_api
    return lambda: calls[0]
