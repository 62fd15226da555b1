"""A rendered pod spec → `docker run` arguments that keep its constraints (voxplane/dev/pod_container.py),
on the golden renders: what each field becomes, and what is refused rather than run weaker."""

from __future__ import annotations

import copy
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from voxplane.dev.pod_container import PodSpecError, effective_user, run_argv, write_env_file, write_volume_files

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "local" / "kubernetes"


def _pod(path: str) -> dict[str, Any]:
    return dict(yaml.safe_load((GOLDEN / path).read_text())["spec"]["template"]["spec"])


def _argv(pod: dict[str, Any], container: str, tmp_path: Path, files: dict[str, Path] | None = None,
          image_user: str = "10001:10001") -> list[str]:
    return run_argv(pod, container, image="img@sha256:" + "1" * 64, image_user=image_user, name="c",
                    env_file=tmp_path / "env", files=files or {}, labels={"t": "1"})


def _pairs(argv: list[str]) -> list[tuple[str, str]]:
    return list(zip(argv, argv[1:]))


def test_the_agent_pod_keeps_user_groups_read_only_root_capabilities_tmp_memory_and_grace(tmp_path: Path) -> None:
    argv = _argv(_pod("vox-t-bellavista/deployment.reservations.yaml"), "agent", tmp_path)
    pairs = _pairs(argv)
    assert ("--user", "10001:10001") in pairs and ("--group-add", "10001") in pairs
    assert "--read-only" in argv and "--cap-drop=ALL" in argv and ("--security-opt", "no-new-privileges") in pairs
    # /tmp: the emptyDir, its sizeLimit, writable by anyone and not noexec, as an emptyDir is.
    assert ("--tmpfs", "/tmp:rw,exec,nosuid,nodev,mode=0777,size=2147483648") in pairs
    assert ("--memory", str(4 * 2**30)) in pairs and ("--stop-timeout", "1830") in pairs
    assert ("--network=host" in argv) and ("--env-file", str(tmp_path / "env")) in pairs
    assert argv[-5:] == ["--entrypoint", "python", "img@sha256:" + "1" * 64, "agent.py", "start"]
    assert "seccomp=unconfined" not in argv  # RuntimeDefault: the engine's own default profile


def test_the_gateway_pod_mounts_its_config_volume_read_only(tmp_path: Path) -> None:
    pod = _pod("vox-system/deployment.livekit-gateway.yaml")
    with pytest.raises(PodSpecError, match="volume 'config': no files given for it"):
        _argv(pod, "gateway", tmp_path)
    argv = _argv(pod, "gateway", tmp_path, files={"config": tmp_path / "cfg"})
    assert ("--mount", f"type=bind,source={tmp_path / 'cfg'},target=/etc/voxplane-gateway,readonly") in _pairs(argv)
    assert ("--stop-timeout", "30") in _pairs(argv) and ("--memory", str(256 * 2**20)) in _pairs(argv)


def test_the_config_volume_files_have_the_pods_mode_and_group(tmp_path: Path) -> None:
    pod = _pod("vox-system/deployment.livekit-gateway.yaml")
    (volume,) = pod["volumes"]
    gid = os.getgid()
    folder = write_volume_files(tmp_path / "v", volume, {"config.json": "{}", "vx-gateway": "s1", "vxt-bellavista": "s2",
                                                         "vxt-northwind": "s3"}, gid=gid)
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "config.json", "keys/vx-gateway", "keys/vxt-bellavista", "keys/vxt-northwind"]
    for path in folder.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o440 == volume["projected"]["defaultMode"]
            assert path.stat().st_gid == gid
    with pytest.raises(PodSpecError, match="no content given for key 'vxt-northwind'"):
        write_volume_files(tmp_path / "w", volume, {"config.json": "{}", "vx-gateway": "s", "vxt-bellavista": "s"}, gid=None)


def test_what_has_no_equivalent_here_is_refused(tmp_path: Path) -> None:
    pod = _pod("vox-t-bellavista/deployment.reservations.yaml")
    host_path = copy.deepcopy(pod)
    host_path["volumes"][0] = {"name": "tmp", "hostPath": {"path": "/var/run"}}
    with pytest.raises(PodSpecError, match="volume 'tmp': hostPath volumes are not run here"):
        _argv(host_path, "agent", tmp_path)
    privileged = copy.deepcopy(pod)
    privileged["containers"][0]["securityContext"]["privileged"] = True
    with pytest.raises(PodSpecError, match="privileged"):
        _argv(privileged, "agent", tmp_path)


def test_run_as_non_root_is_checked_as_the_kubelet_checks_it() -> None:
    pod = _pod("vox-t-bellavista/deployment.reservations.yaml")
    container = pod["containers"][0]
    assert effective_user(pod, container, "").uid == 10001  # the pod's runAsUser wins over the image's
    for key in ("runAsUser", "runAsGroup"):
        pod["securityContext"].pop(key)
    assert (effective_user(pod, container, "10001:10001").uid, effective_user(pod, container, "10001:10001").gid) == (10001, 10001)
    with pytest.raises(PodSpecError, match="has runAsNonRoot and image will run as root"):
        effective_user(pod, container, "")
    with pytest.raises(PodSpecError, match="non-numeric user \\(agent\\), cannot verify user is non-root"):
        effective_user(pod, container, "agent")


def test_the_env_file_is_private_and_refuses_what_it_cannot_carry(tmp_path: Path) -> None:
    path = write_env_file(tmp_path / "env", {"A": "1", "SECRET": "s=x"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "A=1\nSECRET=s=x\n"
    with pytest.raises(PodSpecError, match="env B: a value with a newline"):
        write_env_file(tmp_path / "env2", {"B": "x\ny"})


def test_an_init_container_runs_alone_with_its_termination_log_mounted_writable(tmp_path: Path) -> None:
    """The GPU preflight (a model pod's init container) is run as the kubelet runs it: its own
    user, read-only root, dropped capabilities, and the file the kubelet mounts at its
    terminationMessagePath, writable (the preflight writes its verdict there)."""
    pod = _pod("vox-inference/statefulset.chat.yaml")
    log = tmp_path / "termination-log"
    argv = run_argv(pod, "gpu-preflight", image="img@sha256:" + "1" * 64, image_user="10001:10001", name="c",
                    env_file=tmp_path / "env", files={}, termination_log=log)
    pairs = _pairs(argv)
    assert ("--user", "10001:10001") in pairs and "--read-only" in argv and "--cap-drop=ALL" in argv
    assert ("--mount", f"type=bind,source={log},target=/dev/termination-log") in pairs
    assert argv[-11:] == ["img@sha256:" + "1" * 64, "--gpus", "1", "--product", "NVIDIA-L4", "--memory-gib", "24",
                          "--group", "l4", "--model", "chat"]
