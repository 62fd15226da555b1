"""The README's "Adding an agent" and "Adding a region" steps, run literally: every `voxplane`
command of their code blocks, in order, in a temporary copy of the repository (a git repository,
as a checkout is), with the exit code the line's comment states (`# exit N: ...`, else 0). The
`pulumi` lines need a backend and a cluster and are not run here (tests/engine runs the engine);
between the region's two blocks the test fills in the placeholders, as the README asks the reader
to. The plan shown under "Planning a change" is the real output of the change it describes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from voxplane.manifest.loader import load

from .support.repo import REPO, copy_manifests
from .test_scaffold import fill_in

README = (REPO / "README.md").read_text()
VENV_BIN = Path(sys.executable).parent
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", "-c", "commit.gpgsign=false"]


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end >= 0 else None]


def bash_blocks(text: str) -> list[list[str]]:
    """The lines of each ```bash block of `text`."""
    return [[ln for ln in block.strip("\n").splitlines() if ln.strip()]
            for block in re.findall(r"```bash\n(.*?)```", text, re.S)]


def expected_exit(line: str) -> int:
    found = re.search(r"#\s*exit (\d+)", line)
    return int(found.group(1)) if found else 0


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = copy_manifests(tmp_path / "checkout")
    subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "base"], cwd=root, check=True)
    return root


def run_block(lines: list[str], cwd: Path) -> list[str]:
    """Run the block's voxplane lines with bash, as written; return the pulumi lines not run."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("NO_COLOR", None)
    skipped = []
    for line in lines:
        command = line.split("#", 1)[0].strip()
        if command.startswith("pulumi "):
            skipped.append(command)
            continue
        assert command.startswith("voxplane "), f"the README step {line!r} is neither voxplane nor pulumi"
        done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == expected_exit(line), (command, done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    return skipped


def test_adding_an_agent_as_the_readme_says(checkout):
    (block,) = bash_blocks(section("Adding an agent"))
    assert block[0].startswith("voxplane new agent ")
    run_block(block, checkout)
    name = block[0].split()[3]
    assert (checkout / f"agents/{name}.yaml").is_file() and (checkout / f"agents/{name}/agent.py").is_file()
    assert load((), checkout).ok


def test_adding_a_region_as_the_readme_says(checkout):
    first, then = bash_blocks(section("Adding a region"))
    assert first[0].startswith("voxplane new region ")
    run_block(first, checkout)
    fill_in(checkout, [p for p in load((), checkout).problems if p.message.startswith("to fill in:")])
    assert load((), checkout).ok
    skipped = run_block(then, checkout)
    name = first[0].split()[3]
    assert skipped == [f"pulumi stack init {name}",
                       f'pulumi config set --secret livekitRootSecret "$(openssl rand -hex 32)" -s {name}',
                       f"pulumi config set --secret hfToken ... -s {name}",
                       f"pulumi up -s {name}"]
    assert (checkout / f"out/{name}/kubernetes").is_dir()


def test_the_plan_in_the_readme_is_real(checkout):
    """The example under "Planning a change": the support agent gets a second number and three more workers."""
    shown = re.search(r"```\n\$ voxplane plan\n(.*?)```", section("Planning a change"), re.S)
    assert shown
    path = checkout / "agents/support.yaml"
    text = path.read_text()
    path.write_text(text.replace("max_workers: 40", "max_workers: 43")
                    .replace('numbers: ["+16175550188"]', 'numbers: ["+16175550188", "+16175550189"]'))
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["voxplane", "-q", "plan"], cwd=checkout, env=env, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr

    def normal(out: str) -> str:
        return re.sub(r"against [0-9a-f]{12} ", "against BASE ", out).strip()

    assert normal(done.stdout) == normal(shown.group(1))


def test_the_first_screen_is_the_offline_path(checkout):
    """Issue #17 item 10: the first commands the README gives are `make setup` and the offline ones
    (validate, render, plan on the example manifests), before the heavy `make demo` / `make test`;
    run as written (the venv is this one), each exits as its comment says."""
    first = bash_blocks(README)[0]
    assert README.index("make setup") < README.index("make demo") and README.index("```bash") < README.index("make demo")
    assert first[0].split("#")[0].strip() == "make setup"
    assert first[1].split("#")[0].strip() == ". .venv/bin/activate"
    commands = [line.split("#")[0].split()[1] for line in first[2:]]
    assert commands[:3] == ["validate", "render", "plan"], commands
    run_block(first[2:], checkout)
    assert (checkout / "out/us-east/kubernetes").is_dir()


def test_the_readme_names_the_command_one_way():
    """`voxplane` in every command line; `.venv/bin/voxplane` only where the README says where it is
    and in what `make demo` prints (the Makefile's own words)."""
    demo = re.search(r"```\n\$ make demo\n(.*?)```", README, re.S)
    assert demo
    rest = README.replace(demo.group(0), "")
    mentions = [line for line in rest.splitlines() if ".venv/bin/voxplane" in line]
    assert len(mentions) == 2 and mentions[0].startswith(". .venv/bin/activate"), mentions
    for block in bash_blocks(rest):
        for line in block:
            assert ".venv/bin/" not in line.split("#")[0] or line.startswith(". .venv/bin/activate"), line
