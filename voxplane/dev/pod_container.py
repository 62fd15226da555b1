"""A rendered pod's container, run by a Docker engine with the pod's own constraints.

`run_argv` turns a pod spec (a Deployment's `spec.template.spec`) and one of its containers into
`docker run` arguments that keep what the pod asks of the image:

| pod spec                                          | docker run                                        |
|---------------------------------------------------|---------------------------------------------------|
| runAsUser / runAsGroup (container over pod)       | `--user UID:GID`                                  |
| fsGroup, supplementalGroups                       | `--group-add GID`                                 |
| runAsNonRoot                                      | refused, as the kubelet refuses, when the user is root |
| readOnlyRootFilesystem                            | `--read-only`                                     |
| capabilities drop / add                           | `--cap-drop` / `--cap-add`                        |
| allowPrivilegeEscalation: false                   | `--security-opt no-new-privileges`                |
| seccompProfile RuntimeDefault                     | the engine's default profile                      |
| emptyDir (sizeLimit)                              | a tmpfs of that size, mode 0777 like an emptyDir  |
| configMap / secret / projected volume             | a read-only bind mount of files the caller wrote  |
| command / args                                    | `--entrypoint` and the arguments                  |
| workingDir                                        | `--workdir`                                       |
| limits.memory / limits.cpu                        | `--memory` / `--cpus`                             |
| terminationGracePeriodSeconds                     | `--stop-timeout` (what `docker stop` waits)       |
| terminationMessagePath                            | a writable bind mount of a file the caller gives  |
| an init container                                 | run alone, as the kubelet runs it before the rest |
| env (values the caller resolved)                  | `--env-file` (0600, so no secret shows in `ps`)   |

Not kept: the pod network (the engine has none: `--network=host`, so the process binds and dials
loopback and the caller moves addresses and ports and says which; or `--network=none`, loopback of
its own only), probes (the caller polls them),
ephemeral-storage limits (overlay2 on this filesystem has no quota). Anything else a spec asks
that has no equivalent here raises `PodSpecError`, rather than running something weaker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from ..manifest.quantity import parse_quantity
from .paths import write_private

__all__ = ["PodSpecError", "run_argv", "effective_user"]


class PodSpecError(ValueError):
    """What the pod spec asks cannot be kept here, or the kubelet would refuse to start it."""


@dataclass(frozen=True)
class User:
    uid: int
    gid: Optional[int]


def effective_user(pod: Mapping[str, Any], container: Mapping[str, Any], image_user: str) -> User:
    """The user the container runs as: the container's, else the pod's securityContext, else the
    image's USER; PodSpecError where runAsNonRoot is set and that is root, or not a number the
    kubelet can check (its verifyRunAsNonRoot)."""
    pod_ctx, ctx = pod.get("securityContext") or {}, container.get("securityContext") or {}
    uid = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
    gid = ctx.get("runAsGroup", pod_ctx.get("runAsGroup"))
    non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
    if uid is None:
        name = (image_user or "0").split(":", 1)[0]
        if not name.isdigit():
            if non_root:
                raise PodSpecError(f"container {container['name']!r} has runAsNonRoot and image has non-numeric user "
                                   f"({name}), cannot verify user is non-root")
            raise PodSpecError(f"container {container['name']!r}: the image's user {name!r} is not numeric")
        uid = int(name)
        if gid is None and ":" in (image_user or "") and image_user.split(":", 1)[1].isdigit():
            gid = int(image_user.split(":", 1)[1])
    if non_root and int(uid) == 0:
        raise PodSpecError(f"container {container['name']!r} has runAsNonRoot and image will run as root")
    return User(int(uid), None if gid is None else int(gid))


def run_argv(
    pod: Mapping[str, Any],
    container_name: str,
    *,
    image: str,
    image_user: str,
    name: str,
    env_file: Path,
    files: Mapping[str, Path],
    labels: Optional[Mapping[str, str]] = None,
    network: str = "host",
    termination_log: Optional[Path] = None,
) -> list[str]:
    """`docker run` arguments (after `run`) for container `container_name` of `pod`.

    `image`: what to run (the pod's own or the one built for it); `image_user`: its USER
    (`docker image inspect`); `env_file`: the resolved env, written by the caller; `files`: for each
    configMap, secret or projected volume the container mounts, a host folder holding its files as
    the kubelet lays them out; `network`: `host` (the process binds and dials loopback, so the
    caller moves addresses and ports) or `none` (a network namespace of its own with only loopback:
    rendered ports as they are, reachable only from inside, e.g. by `docker exec`);
    `termination_log`: a host file mounted writable at the container's terminationMessagePath, as
    the kubelet mounts one (an init container's verdict, say). `container_name` may name an init
    container: it runs alone, as the kubelet runs each before the pod's containers.
    """
    (container,) = [c for c in [*pod.get("initContainers", []), *pod.get("containers", [])]
                    if c["name"] == container_name]
    pod_ctx, ctx = pod.get("securityContext") or {}, container.get("securityContext") or {}
    _refuse_unsupported(pod, container)
    user = effective_user(pod, container, image_user)
    if network not in ("host", "none"):
        raise PodSpecError(f"network {network!r}: host or none")
    argv = ["--detach", "--name", name, f"--network={network}", "--env-file", str(env_file),
            "--user", f"{user.uid}:{user.gid}" if user.gid is not None else str(user.uid)]
    for gid in [pod_ctx.get("fsGroup"), *pod_ctx.get("supplementalGroups", [])]:
        if gid is not None:
            argv += ["--group-add", str(gid)]
    if ctx.get("readOnlyRootFilesystem"):
        argv.append("--read-only")
    caps = ctx.get("capabilities") or {}
    argv += [f"--cap-drop={c}" for c in caps.get("drop", [])] + [f"--cap-add={c}" for c in caps.get("add", [])]
    if ctx.get("allowPrivilegeEscalation") is False:
        argv += ["--security-opt", "no-new-privileges"]
    seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type", "RuntimeDefault")
    if seccomp == "Unconfined":
        argv += ["--security-opt", "seccomp=unconfined"]
    argv += _mounts(pod, container, files)
    if termination_log is not None:
        target = container.get("terminationMessagePath", "/dev/termination-log")
        argv += ["--mount", f"type=bind,source={termination_log},target={target}"]
    limits = (container.get("resources") or {}).get("limits") or {}
    if "memory" in limits:
        argv += ["--memory", str(int(parse_quantity(str(limits["memory"]))))]
    if "cpu" in limits:
        argv += ["--cpus", str(float(parse_quantity(str(limits["cpu"]))))]
    grace = pod.get("terminationGracePeriodSeconds", 30)
    argv += ["--stop-timeout", str(int(grace))]
    if container.get("workingDir"):
        argv += ["--workdir", str(container["workingDir"])]
    for key, value in sorted((labels or {}).items()):
        argv += ["--label", f"{key}={value}"]
    command, args = list(container.get("command") or []), list(container.get("args") or [])
    if command:
        argv += ["--entrypoint", command[0], image, *command[1:], *args]
    else:
        argv += [image, *args]
    return argv


def _refuse_unsupported(pod: Mapping[str, Any], container: Mapping[str, Any]) -> None:
    ctx = container.get("securityContext") or {}
    where = f"container {container['name']!r}"
    if ctx.get("privileged"):
        raise PodSpecError(f"{where}: privileged containers are not run here")
    seccomp = (ctx.get("seccompProfile") or (pod.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
    if seccomp not in (None, "RuntimeDefault", "Unconfined"):
        raise PodSpecError(f"{where}: seccompProfile {seccomp!r} has no equivalent here")
    if pod.get("hostPID") or pod.get("hostIPC"):
        raise PodSpecError("hostPID/hostIPC pods are not run here")


def _mounts(pod: Mapping[str, Any], container: Mapping[str, Any], files: Mapping[str, Path]) -> list[str]:
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    argv: list[str] = []
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"])
        if volume is None:
            raise PodSpecError(f"volumeMount {mount['name']!r}: the pod has no such volume")
        if mount.get("subPath"):
            raise PodSpecError(f"volumeMount {mount['name']!r}: subPath is not run here")
        target = mount["mountPath"]
        if "emptyDir" in volume:
            size = (volume["emptyDir"] or {}).get("sizeLimit")
            options = ["rw", "exec", "nosuid", "nodev", "mode=0777"]  # an emptyDir: world-writable, not noexec
            if size:
                options.append(f"size={int(parse_quantity(str(size)))}")
            argv += ["--tmpfs", f"{target}:{','.join(options)}"]
        elif any(kind in volume for kind in ("configMap", "secret", "projected")):
            if mount["name"] not in files:
                raise PodSpecError(f"volume {mount['name']!r}: no files given for it")
            source = files[mount["name"]]
            readonly = ",readonly" if mount.get("readOnly", True) else ""  # the kubelet mounts these read-only
            argv += ["--mount", f"type=bind,source={source},target={target}{readonly}"]
        else:
            kinds = sorted(set(volume) - {"name"})
            raise PodSpecError(f"volume {mount['name']!r}: {', '.join(kinds)} volumes are not run here")
    return argv


def write_env_file(path: Path, env: Mapping[str, str]) -> Path:
    """`env` as a Docker env file, 0600 before its first byte (values may be secrets)."""
    for key, value in env.items():
        if "\n" in value:
            raise PodSpecError(f"env {key}: a value with a newline cannot go through an env file")
    write_private(path, "".join(f"{k}={v}\n" for k, v in env.items()))
    return path


def write_volume_files(folder: Path, volume: Mapping[str, Any], contents: Mapping[str, str], gid: Optional[int]) -> Path:
    """`folder` holding a configMap/secret/projected volume's files as the kubelet lays them out:
    each `items` path from `contents` (key → text), with the volume's defaultMode (or the item's
    mode) and, with an fsGroup, that group (the kubelet chowns to it)."""
    spec = volume.get("projected") or volume.get("configMap") or volume.get("secret") or {}
    default_mode = int(spec.get("defaultMode", 0o644))
    sources: Sequence[Mapping[str, Any]] = spec.get("sources") or [volume]
    folder.mkdir(parents=True, exist_ok=True)
    for source in sources:
        body = source.get("configMap") or source.get("secret") or {}
        # Without `items`, every key of the object, each under its own name.
        for item in body.get("items") or [{"key": k, "path": k} for k in sorted(contents)]:
            if item["key"] not in contents:
                raise PodSpecError(f"volume {volume['name']!r}: no content given for key {item['key']!r}")
            path = folder / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(contents[item["key"]])
            os.chmod(path, int(item.get("mode", default_mode)))
            if gid is not None:
                os.chown(path, -1, gid)
                os.chown(path.parent, -1, gid)
    return folder
