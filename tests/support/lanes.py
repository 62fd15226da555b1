"""The suite's lanes: `make test` runs it in parallel processes (pytest-xdist, `-n 2 --dist
loadscope`), as most of its time is spent waiting on servers (HPA syncs, ICE, the engine), not
computing.

Any distribution but `each` (`-n N` alone is `load`) gets these units. The unit of work a lane
takes whole is a test module, so its module fixtures start once; the folders whose modules share a
slow session fixture are one unit each (`SHARED`), so that fixture starts once per run, not once
per lane, and those units go first: they are the longest. Every test's servers listen on free
loopback ports and keep their state in the test's own folders, so units never meet
(tests/conftest.py fails a dev cluster on the repository's fixed Prometheus port). A lane's
process runs with the environment of a plain run (`plain_environment`).

xdist's own `--dist loadgroup` would take groups from marks, but 3.8 writes them into a node id
that pytest 9.2 no longer reads, so the units are named here, by path (from the repository's
root), and a test using a shared fixture from outside its unit fails (`shared_fixture_outside`).
The image tooling (dockerd, its registry) is one per machine, locked: only the images unit uses it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from voxplane.dev.ports import SHARE_VARIABLE

__all__ = ["SHARED", "is_shared", "own_ports", "plain_environment", "scheduler", "shared_first", "shared_fixture_outside",
           "unit_of"]

#: Folder -> (its unit, the session fixtures its modules share that make it one).
SHARED: dict[str, tuple[str, frozenset[str]]] = {
    "tests/engine/": ("engine", frozenset({"dev_state"})),  # one control plane, each region in turn
    "tests/kubedrift/": ("kubedrift", frozenset({"cluster"})),  # one control plane, the region applied
    "tests/images/": ("images", frozenset({"built"})),  # the image tooling, every image built
    "tests/agents/": ("vllm", frozenset({"vllm_server"})),  # one real vLLM
    "tests/upstream/": ("vllm", frozenset({"vllm_server"})),
}


def unit_of(nodeid: str) -> str:
    """The unit of work of a test: its folder's shared unit, else its module."""
    for folder, (unit, _) in SHARED.items():
        if nodeid.startswith(folder):
            return unit
    return nodeid.split("::", 1)[0]


def is_shared(nodeid: str) -> bool:
    return any(nodeid.startswith(folder) for folder in SHARED)


def shared_fixture_outside(item: pytest.Item) -> str | None:
    """Why `item` may not run: it uses a shared unit's session fixture from outside that unit, so
    that fixture would start once more, in its own lane, beside the first."""
    defs: dict[str, Any] = item._fixtureinfo.name2fixturedefs  # type: ignore[attr-defined]
    for unit, names in SHARED.values():
        for name in names:
            if name in defs and defs[name][-1].scope == "session" and unit_of(item.nodeid) != unit:
                return (f"{item.nodeid} uses the session fixture {name!r} of lane unit {unit!r}: "
                        f"add its folder to tests/support/lanes.py SHARED")
    return None


def plain_environment() -> None:
    """Drop what a lane's process has in its environment and a plain run has not: COLUMNS=80 and
    LINES=24, which the CLIs a test starts would take over their terminal's own size."""
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)


def own_ports(worker: str, workers: int) -> None:
    """Give lane `worker` ("gw0", "gw1", ...) its own share of the ports `voxplane.dev.ports` picks,
    for itself and every process it starts: lanes pick ports at the same time, and a port one
    picked but has not listened on yet is free for the other to pick."""
    os.environ[SHARE_VARIABLE] = f"{int(worker.removeprefix('gw'))}/{workers}"


def shared_first(items: list[pytest.Item]) -> None:
    """Sort the shared units' tests first (stable: modules stay whole and in order). Lanes take
    units in collection order (`scheduler`), so the longest start first."""
    items.sort(key=lambda item: not is_shared(item.nodeid))


def scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's scope scheduling with `unit_of` as the scope of a test, handed out in collection
    order. xdist is imported here: a run without lanes does not need it."""
    from xdist.scheduler import LoadScopeScheduling

    class Lanes(LoadScopeScheduling):
        def __init__(self, config: pytest.Config, log: Any = None) -> None:
            super().__init__(config, log)
            # Not largest first, as loadscope does by default: a unit's count of tests says
            # nothing of its duration; `shared_first` put the long ones first.
            config.option.loadscopereorder = False

        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return Lanes(config, log)
