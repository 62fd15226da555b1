"""Run the real Pulumi engine on a region stack against the local control plane and dev LiveKit.

What a user with their own cluster does by hand (`pulumi login`, `pulumi config set --secret`,
`pulumi up -s REGION`), set up here so that nothing outside the cache changes:

- the engine and plugins come from `scripts/ensure-toolchain.sh` (first on PATH, with the
  project's `.venv/bin` so the language host finds the project's Python);
- state goes to a file backend under the cache, and secrets are encrypted with a passphrase kept
  in a 0600 file under the cache;
- the stack's config is the repository's `Pulumi.<region>.yaml` plus its secrets, in a copy under
  the cache (`pulumi --config-file`): a working tree never gains an `encryptionsalt` or `secure:`
  values that only this machine could decrypt;
- every secret the region needs gets a random dev value, kept in a 0600 file; the dev LiveKit
  server derives its API keys from the same dev root secret, so the stack's keys match it.

Dev values only: `dev_secrets` refuses nothing by itself, but these files never hold production
secrets because nothing but this module writes them.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import yaml

from ..livekit.keys import ROOT_SECRET_CONFIG
from .paths import SCRIPTS, VENV, dev_dir, write_private

_ENSURE_TOOLCHAIN = SCRIPTS / "ensure-toolchain.sh"


class StackError(RuntimeError):
    """Setting up or running the engine failed; the message says why."""


def needed_secret_keys(root: Path, region: str) -> list[str]:
    """Stack config keys (without `voxplane:`) that hold secrets the region reads; `ManifestError`
    or `UnknownRegion` as `loader.load_region` says."""
    from ..deploy.render import secret_config_keys
    from ..manifest.loader import load_region

    return sorted(secret_config_keys(load_region(root, region).project, region))


def dev_secrets(region: str, keys: Sequence[str]) -> dict[str, str]:
    """Random dev values for `keys`, created once per machine and region (0600, under the cache)."""
    path = dev_dir() / "secrets" / f"{region}.json"
    try:
        values: dict[str, str] = json.loads(path.read_text())
    except (OSError, ValueError):
        values = {}
    missing = [k for k in keys if k not in values]
    for key in missing:
        values[key] = "dev-" + secrets.token_urlsafe(24)
    if missing or not path.exists():
        write_private(path, json.dumps(values, indent=1, sort_keys=True) + "\n")
    return {k: values[k] for k in keys}


def dev_root_secret(region: str) -> str:
    """The dev `livekitRootSecret` of `region` (what the dev LiveKit server derives its keys from)."""
    return dev_secrets(region, [ROOT_SECRET_CONFIG])[ROOT_SECRET_CONFIG]


def toolchain_bin_dir() -> Path:
    proc = subprocess.run(["bash", str(_ENSURE_TOOLCHAIN), "all", "--print-bin-dir"], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise StackError("scripts/ensure-toolchain.sh failed (see the lines above)")
    return Path(proc.stdout.strip())


@dataclass
class StackEnv:
    """Everything `pulumi` needs to run REGION's stack here: env, working dir, config file."""

    region: str
    root: Path
    config_file: Path
    env: dict[str, str] = field(default_factory=dict)

    def pulumi(self, *args: str, check: bool = False, capture: bool = False, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        argv = ["pulumi", *args, "--stack", self.region, "--non-interactive"]
        if args[:1] in (("up",), ("preview",), ("refresh",), ("destroy",), ("config",), ("import",)):
            argv += ["--config-file", str(self.config_file)]  # the others take no --config-file
        proc = subprocess.run(argv, cwd=self.root, env=self.env, text=True, stdin=subprocess.DEVNULL,
                              capture_output=capture, timeout=timeout)
        if check and proc.returncode != 0:
            raise StackError(f"pulumi {' '.join(args)} failed (exit {proc.returncode})"
                             + (f": {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}" if capture else ""))
        return proc

    def exports(self) -> str:
        keys = ["PATH", "PULUMI_HOME", "PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE_FILE", "PULUMI_SKIP_UPDATE_CHECK",
                "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"]
        return "export " + " ".join(f"{k}={shlex.quote(self.env[k])}" for k in keys if k in self.env)


def prepare(root: Path, region: str, *, state_dir: Path | None = None, overrides: Mapping[str, str] | None = None,
            drop: Sequence[str] = (), bin_dir: Path | None = None, extra_env: Mapping[str, str] | None = None) -> StackEnv:
    """Engine env, backend, passphrase, the stack's config copy with its secrets; creates the stack.

    `overrides`/`drop` change plain config keys of the copy (tests point us-east at the local
    control plane); the repository's stack file is never written.
    """
    root = root.resolve()
    secret_keys = needed_secret_keys(root, region)  # the region first: nothing set up for a wrong name
    stack_file = root / f"Pulumi.{region}.yaml"
    if not stack_file.is_file():
        raise StackError(f"{stack_file} not found: every region deploys through its own stack file")
    bins = bin_dir or toolchain_bin_dir()
    home = dev_dir() / "pulumi-home"
    state = state_dir or dev_dir() / "state"
    state.mkdir(parents=True, exist_ok=True)
    passphrase = dev_dir() / "passphrase"
    if not passphrase.exists():
        write_private(passphrase, secrets.token_urlsafe(32) + "\n")
    venv_bin = VENV / "bin"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env.update({
        # Our engine and plugins first, then the project's Python (the language host runs `python`).
        "PATH": os.pathsep.join([str(bins), str(venv_bin), env.get("PATH", "")]),
        "PULUMI_HOME": str(home),
        "PULUMI_BACKEND_URL": f"file://{state}",
        "PULUMI_CONFIG_PASSPHRASE_FILE": str(passphrase),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "VIRTUAL_ENV": str(VENV),
        **(extra_env or {}),
    })
    config_file = _config_copy(root, region, stack_file, state, overrides or {}, drop)
    stack = StackEnv(region, root, config_file, env)
    listed = subprocess.run(["pulumi", "stack", "ls", "--json"], cwd=root, env=env, capture_output=True, text=True)
    if listed.returncode != 0:
        raise StackError(f"pulumi stack ls: {listed.stderr.strip()}")
    if region not in {s.get("name") for s in json.loads(listed.stdout or "[]")}:
        # `stack init` writes an encryptionsalt into Pulumi.<stack>.yaml of its folder, and has no
        # --config-file: run it beside a copy of Pulumi.yaml, so the working tree stays as it is.
        scratch = state / "init" / region
        scratch.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / "Pulumi.yaml", scratch / "Pulumi.yaml")
        init = subprocess.run(["pulumi", "stack", "init", region, "--non-interactive"], cwd=scratch, env=env,
                              capture_output=True, text=True)
        if init.returncode != 0:
            raise StackError(f"pulumi stack init {region}: {init.stderr.strip()}")
    _set_secrets(stack, secret_keys)
    return stack


def _config_copy(root: Path, region: str, stack_file: Path, state: Path, overrides: Mapping[str, str], drop: Sequence[str]) -> Path:
    """`Pulumi.<region>.yaml`'s plain config, overridden, plus the secure values set earlier."""
    copy = state / "config" / f"Pulumi.{region}.yaml"
    repo_doc = yaml.safe_load(stack_file.read_text()) or {}
    try:
        previous = yaml.safe_load(copy.read_text()) or {}
    except OSError:
        previous = {}
    config = dict(repo_doc.get("config") or {})
    for key in drop:
        config.pop(key, None)
    config.update(overrides)
    for key, value in (previous.get("config") or {}).items():
        if isinstance(value, dict) and "secure" in value:
            config[key] = value
    doc = {k: v for k, v in repo_doc.items() if k != "config"}
    if "encryptionsalt" in previous:
        doc["encryptionsalt"] = previous["encryptionsalt"]
    doc["config"] = config
    write_private(copy, yaml.safe_dump(doc, sort_keys=False))
    return copy


def _set_secrets(stack: StackEnv, keys: Sequence[str]) -> None:
    doc = yaml.safe_load(stack.config_file.read_text()) or {}
    have = {k for k, v in (doc.get("config") or {}).items() if isinstance(v, dict) and "secure" in v}
    values = dev_secrets(stack.region, keys)
    for key in keys:
        if f"voxplane:{key}" in have:
            continue
        # The value goes through stdin, never argv (visible in ps) or a log.
        proc = subprocess.run(["pulumi", "config", "set", "--secret", f"voxplane:{key}", "--stack", stack.region,
                               "--config-file", str(stack.config_file), "--non-interactive"],
                              input=values[key], cwd=stack.root, env=stack.env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise StackError(f"pulumi config set --secret voxplane:{key}: {proc.stderr.strip()}")
