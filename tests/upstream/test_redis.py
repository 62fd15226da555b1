"""The region's Redis, run as rendered: the container's own start command, its redis.conf from the
ConfigMap, the password file it turns into `requirepass`, and its readiness command, with the
installed redis-server (Debian's; the image runs 7.4: every directive rendered is older than both).

Rewritten, and only these: the pod's absolute paths (/etc/redis, /run/redis, /run/secrets/redis,
/data) become folders of the test, and `port` a free one.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from voxplane.dev.ports import free_port
from .conftest import REGIONS, rendered

# Real servers and the tools `make servers` builds (vLLM's venv, lkconfig, redis-server).
pytestmark = pytest.mark.integration

PASSWORD = 'pa ss"wo\\rd'  # a space, a quote and a backslash: the sed line must escape them


def _redis(region: str) -> tuple[dict[str, Any], str]:
    sts = next(o for o in rendered(region) if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "livekit-redis")
    conf = next(o for o in rendered(region) if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "livekit-redis-config")
    return sts["spec"]["template"]["spec"]["containers"][0], conf["data"]["redis.conf"]


IN_CLUSTER = [r for r in REGIONS if any(o["kind"] == "StatefulSet" and o["metadata"]["name"] == "livekit-redis"
                                        for o in rendered(r))]


def test_some_example_region_runs_its_own_redis():
    assert IN_CLUSTER


@pytest.mark.parametrize("region", IN_CLUSTER)
def test_rendered_redis_starts_with_every_directive_and_its_password(region, tmp_path):
    container, conf = _redis(region)
    port = free_port()
    moved = {f"/{p}": str(tmp_path / p.replace("/", "-")) for p in ("etc/redis", "run/redis", "run/secrets/redis", "data")}
    for folder in moved.values():
        Path(folder).mkdir()

    def here(text: str) -> str:
        for pod, local in moved.items():
            text = text.replace(pod + "/", local + "/").replace(pod + "\n", local + "\n")
        return text

    (Path(moved["/run/secrets/redis"]) / "password").write_text(PASSWORD)
    rendered_port = int(next(line.split()[1] for line in conf.splitlines() if line.startswith("port ")))
    (Path(moved["/etc/redis"]) / "redis.conf").write_text(here(conf).replace(f"port {rendered_port}\n", f"port {port}\n"))
    command = [here(part) for part in container["command"]]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ready = [here(part).replace(f"-p {rendered_port}", f"-p {port}") for part in container["readinessProbe"]["exec"]["command"]]
        for _ in range(100):
            if subprocess.run(ready, capture_output=True).returncode == 0:
                break
            assert proc.poll() is None, proc.communicate()[0]
            time.sleep(0.1)
        else:
            pytest.fail("the rendered readiness command never succeeded")

        def config_get(name: str) -> str:
            out = subprocess.run(["redis-cli", "-p", str(port), "--no-auth-warning", "-a", PASSWORD, "CONFIG", "GET", name],
                                 capture_output=True, text=True, check=True).stdout.split("\n")
            return out[1]

        for line in conf.splitlines():
            directive, value = line.split(maxsplit=1)
            if directive == "include":
                continue  # not a setting: the auth file it names is checked through requirepass
            expected = moved.get(value, str(port) if directive == "port" else value)
            assert config_get(directive) == expected, line
        assert config_get("requirepass") == PASSWORD
        denied = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True)
        assert "NOAUTH" in denied.stdout + denied.stderr
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
