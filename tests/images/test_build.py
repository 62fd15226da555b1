"""Every image of the repository, built as the stack builds it, pushed, and recorded.

The builds are read from the program itself (voxplane.images.stack); the first tests hold that
reading to voxplane/components/images.py and to the repository's Dockerfiles without an engine, the rest
run against the suite's engine and registry (the `built` fixture)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from voxplane.deploy import agent_base
from voxplane.cli import main
from voxplane.components.gateway import GATEWAY_CONTEXT
from voxplane.components.images import PLATFORM, build_context_hash
from voxplane.desired.gateway import GATEWAY_REPOSITORY
from voxplane.dev import python_standin
from voxplane.images.record import read_record, record_path
from voxplane.images.stack import repository_images, stack_images

from .conftest import REGION, REPO, Built, host_network

REGISTRY = "registry.test.example/voxplane"


def _dockerfiles() -> list[Path]:
    """Every Dockerfile of the repository (test fixtures aside), as git knows them."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "*Dockerfile"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    return sorted((REPO / p).resolve() for p in listed if not p.startswith("tests/"))


def test_every_dockerfile_of_the_repository_is_an_image_the_suite_builds() -> None:
    """A new Dockerfile (a controller, an agent) is built and run here without editing a test:
    the suite builds what the program registers in any region (the LLM router only where a model
    has more than one replica), and the program registers every one of them, each once."""
    images = repository_images(REPO, REGISTRY)
    built = {i.dockerfile.resolve() for i in images}
    assert sorted(map(str, _dockerfiles())) == sorted(map(str, built))
    assert len(images) == len({i.name for i in images}) == len({i.repository for i in images})


def test_the_builds_are_the_ones_components_images_declares() -> None:
    """Each build is `folder_image`'s: the folder as context, its Dockerfile, the platform, the
    tag its content hash (with the base's hash for an agent on the base image), and the base's
    digest as VOXPLANE_AGENT_BASE; no other build argument comes from the stack."""
    images = stack_images(REGION, REPO, REGISTRY)
    base = build_context_hash(str(REPO / agent_base.FOLDER))
    expected = {f"{REGISTRY}/{agent_base.IMAGE}:{base}": (REPO / agent_base.FOLDER, {}),
                f"{REGISTRY}/{GATEWAY_REPOSITORY}:{build_context_hash(GATEWAY_CONTEXT)}": (Path(GATEWAY_CONTEXT), {})}
    for name in ("reservations", "support"):  # the local region's agents built from source
        context = REPO / "agents" / name
        tenant = {"reservations": "bellavista", "support": "northwind"}[name]
        expected[f"{REGISTRY}/{tenant}-{name}:{build_context_hash(str(context), base=base)}"] = (
            context, {agent_base.BUILD_ARG: f"{REGISTRY}/{agent_base.IMAGE}:{base}"})
    # Components of other work may add images (a controller): each is still a folder's own build.
    got = {i.name: i for i in images}
    for name, (context, needs) in expected.items():
        image = got[name]
        assert image.context == context.resolve() and image.dockerfile == context.resolve() / "Dockerfile"
        assert (image.platform, dict(image.args), dict(image.needs)) == (PLATFORM, {}, needs)
    for image in images:
        assert image.tag == build_context_hash(str(image.context), base=base if image.needs else None)
    # The base comes before the agents built FROM it.
    order = [i.name for i in images]
    assert all(order.index(n) < order.index(i.name) for i in images for n in i.needs.values())


def test_the_production_dockerfiles_keep_their_pinned_bases() -> None:
    """A base stand-in arrives only through a build argument whose default is the digest-pinned
    image; a pip install takes a mirror only through the PIP_INDEX_URL build argument."""
    for path in _dockerfiles():
        text = path.read_text()
        rel = path.relative_to(REPO)
        if agent_base.uses_base(text):
            assert re.search(rf"^FROM \$\{{{agent_base.BUILD_ARG}\}}$", text, re.M), rel
        else:
            assert re.search(rf"^ARG {python_standin.BUILD_ARG}=\S+@sha256:[0-9a-f]{{64}}\n"
                             rf"FROM \$\{{{python_standin.BUILD_ARG}\}}$", text, re.M), \
                f"{rel}: FROM a digest-pinned base, through `ARG {python_standin.BUILD_ARG}=<image>@sha256:...`"
        if re.search(r"^RUN .*pip install", text, re.M):
            assert re.search(r"^ARG PIP_INDEX_URL$", text, re.M), f"{rel}: `ARG PIP_INDEX_URL` (no default) before pip"
        assert "ENV PIP_INDEX_URL" not in text and "PROXY" not in text.upper(), rel


def test_no_engine_is_one_clear_line(tmp_path: Path) -> None:
    """`voxplane images push` without a reachable engine: exit 1, one line naming where it looked,
    nothing recorded."""
    from tests.support.repo import copy_manifests
    from voxplane.dev.images import docker_cli_path

    root = copy_manifests(tmp_path / "repo")
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no.sock", "VOXPLANE_DOCKER_CLI": docker_cli_path()}
    result = CliRunner(env=env).invoke(main, ["images", "push", REGION, "--root", str(root)], catch_exceptions=False)
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: no Docker engine reachable at unix://{tmp_path}/no.sock: "), line
    assert not (root / ".voxplane").exists()


# --- against the suite's engine and registry ---------------------------------------------------------


@pytest.mark.integration
def test_every_image_is_pushed_under_the_tag_the_render_computes(built: Built) -> None:
    """Each image is in the registry under its content-hash tag, and the region's pods (rendered
    from the record, as a stack that does not build renders them) run exactly the pushed digest."""
    assert len(built.outcomes) == len(built.images) >= 5
    for outcome in built.outcomes:
        assert outcome.status in ("pushed", "present") and outcome.digest
        assert built.docker().remote_digest(outcome.image.name) == outcome.digest
    images_in_pods = {c["image"] for objects in built.renders.values() for o in objects
                      if o["kind"] in ("Deployment", "StatefulSet") for pod in [o["spec"]["template"]["spec"]]
                      for c in [*pod["containers"], *pod.get("initContainers", [])] if c["image"].startswith(built.registry)}
    pushed = {f"{o.image.name}@{o.digest}" for o in built.outcomes}
    # Every image a pod of some region runs is one pushed here (the agent base is only built FROM,
    # never run).
    assert images_in_pods and images_in_pods <= pushed, images_in_pods - pushed
    assert {o.image.repository.rsplit("/", 1)[1] for o in built.outcomes} - {
        i.rsplit("/", 1)[1].split(":")[0] for i in images_in_pods} == {agent_base.IMAGE}


@pytest.mark.integration
def test_an_agent_image_is_built_from_the_pushed_base_digest(built: Built) -> None:
    """The agent's build got the base's pushed digest (VOXPLANE_AGENT_BASE, as `pulumi up` passes
    it): its layers start with exactly the base's layers."""
    docker = built.docker()

    def layers(ref: str) -> list[str]:
        done = subprocess.run([docker.executable, "image", "inspect", "--format", "{{json .RootFS.Layers}}", ref],
                              env=docker.env, capture_output=True, text=True, check=True)
        return list(json.loads(done.stdout))

    base = built.image(agent_base.FOLDER)
    base_layers = layers(built.pulled(base))
    for image in built.images:
        if image.needs:
            assert list(image.needs.values()) == [base.name]
            agent_layers = layers(built.pulled(image))
            assert agent_layers[: len(base_layers)] == base_layers, image.name


@pytest.mark.integration
def test_an_unchanged_folder_builds_to_the_same_tag_and_pushes_nothing_new(built: Built) -> None:
    """Pushing the same folders again builds nothing and pushes nothing: every tag is there, with
    the digest already recorded. `--format json` lists each image, its digest and what this run did."""
    runner = CliRunner(env={"DOCKER_HOST": built.running.docker_host, "VOXPLANE_DOCKER_CLI": built.docker().executable,
                            "VOXPLANE_BUILD_ARGS": " ".join(f"{k}={v}" for k, v in built.running.build_args().items()),
                            "VOXPLANE_BUILD_NETWORK": "host"})
    before = read_record(record_path(built.root, REGION))
    done = runner.invoke(main, ["images", "push", REGION, "--root", str(built.root), "--registry", built.registry,
                                "--format", "json"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    listed = json.loads(done.stdout)
    # The region's own images (its manifests build two agents; the scheduler names a published one;
    # the LLM router is another region's).
    local = {i.name for i in stack_images(REGION, built.root, built.registry)}
    region_images = {o.image.name: o.digest for o in built.outcomes if o.image.name in local}
    assert len(region_images) == len(local)
    assert {f"{e['name']}:{e['tag']}": e["digest"] for e in listed} == region_images
    assert {e["status"] for e in listed} == {"present"}
    assert read_record(record_path(built.root, REGION)) == before


@pytest.mark.integration
def test_the_engine_left_the_host_network_alone(built: Built) -> None:
    """No docker0, no iptables rule, no IPv4 forwarding switched on: loopback only."""
    assert host_network() == built.network_before


@pytest.mark.integration
def test_no_image_keeps_the_package_index_or_a_proxy(built: Built) -> None:
    """The loopback index reached the builds as a build argument only: no image's environment
    names it, nor any proxy or CA bundle of the host."""
    docker = built.docker()
    for outcome in built.outcomes:
        done = subprocess.run([docker.executable, "image", "inspect", "--format", "{{json .Config.Env}}",
                               built.pulled(outcome.image)], env=docker.env, capture_output=True, text=True, check=True)
        env = json.loads(done.stdout)
        assert not [e for e in env if e.split("=")[0].upper() in
                    {"PIP_INDEX_URL", "PIP_CERT", "HTTP_PROXY", "HTTPS_PROXY", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"}], env
        assert built.running.index_url not in done.stdout


@pytest.mark.integration
def test_the_base_image_holds_the_glue_the_tests_import(built: Built) -> None:
    """The agent base image's voxplane_agent.py is byte for byte agents/_platform/voxplane_agent.py,
    the file the worker tests put on PYTHONPATH, and every agent image imports that one."""
    docker = built.docker()
    want = (REPO / agent_base.FOLDER / agent_base.GLUE).read_bytes()
    for image in built.images:
        if image.context != (REPO / agent_base.FOLDER).resolve() and not image.needs:
            continue
        done = subprocess.run(
            [docker.executable, "run", "--rm", "--network=none", "--read-only", "--user", "10001:10001",
             built.pulled(image), "python", "-c",
             "import sys, voxplane_agent; sys.stdout.write(voxplane_agent.__file__); "
             "sys.stdout.buffer.write(b'\\0' + open(voxplane_agent.__file__, 'rb').read())"],
            env=docker.env, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        path, _, body = done.stdout.partition(b"\0")
        assert (path.decode(), body) == (f"/opt/voxplane/{agent_base.GLUE}", want), image.name


@pytest.mark.integration
def test_the_base_stand_in_offers_what_the_dockerfiles_rely_on(built: Built) -> None:
    """Python 3.11 as `python`, a pip that installs into the system interpreter, useradd and
    groupadd, /usr/local/bin first on PATH."""
    docker = built.docker()
    script = ("set -e; python --version; pip --version; command -v useradd; command -v groupadd; echo \"$PATH\"; "
              "ls /usr/lib/python3*/EXTERNALLY-MANAGED 2>/dev/null || echo no-marker")
    done = subprocess.run([docker.executable, "run", "--rm", "--network=none", built.running.standin, "sh", "-c", script],
                          env=docker.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Python 3.11.") and "python 3.11" in lines[1]
    assert lines[2:4] == ["/usr/sbin/useradd", "/usr/sbin/groupadd"]
    assert lines[4].startswith("/usr/local/sbin:/usr/local/bin:") and lines[5] == "no-marker"


def test_a_record_makes_a_stack_that_does_not_build_deploy_the_digests(tmp_path: Path) -> None:
    """Pods of a stack with buildImages false run `<name>@<digest>` for every image the record
    names with its current tag, and the tag where the record is stale (another tag) or absent."""
    from tests.support.repo import copy_manifests
    from voxplane.images.record import write_record
    from voxplane.deploy.render import render

    root = copy_manifests(tmp_path / "repo")
    registry = "localhost:5000/voxplane"  # Pulumi.local.yaml's
    images = {i.repository.rsplit("/", 1)[1]: i for i in stack_images(REGION, root, registry)}
    gateway, support = images[GATEWAY_REPOSITORY], images["northwind-support"]
    digest = "sha256:" + "ab" * 32
    stale = f"{images['bellavista-reservations'].repository}:{'0' * 64}"
    write_record(record_path(root, REGION), REGION, {gateway.name: digest, support.name: digest, stale: digest})

    pods = {o["metadata"]["name"]: o["spec"]["template"]["spec"]["containers"][0]["image"]
            for o in render(REGION, root).kubernetes if o["kind"] == "Deployment"}
    assert pods["livekit-gateway"] == f"{gateway.name}@{digest}"
    assert pods["support"] == f"{support.name}@{digest}"
    assert pods["reservations"] == images["bellavista-reservations"].name  # stale record: the tag


def test_a_broken_record_is_one_line_naming_the_file(tmp_path: Path, run_cli) -> None:
    from tests.support.repo import copy_manifests

    root = copy_manifests(tmp_path / "repo")
    path = record_path(root, REGION)
    path.parent.mkdir(parents=True)
    path.write_text('{"images": {"x:1": "sha1:abc"}}')
    result = run_cli("render", REGION, "--root", str(root), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == f"error: {path}: images.x:1: 'sha1:abc' is not a sha256 digest"
    assert not (tmp_path / "out").exists()


def test_plan_reads_the_same_record_on_both_sides(tmp_path: Path) -> None:
    """The working tree's record is read for the base revision too (it is not in git): an image
    whose folder did not change shows no change in `plan`."""
    from tests.support.repo import copy_manifests
    from voxplane.images.record import write_record
    from voxplane.plan.sides import exported

    root = copy_manifests(tmp_path / "repo")
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    write_record(record_path(root, REGION), REGION, {"localhost:5000/voxplane/x:1": "sha256:" + "cd" * 32})
    with exported(root, "HEAD") as base:
        assert read_record(record_path(base, REGION)) == read_record(record_path(root, REGION))
