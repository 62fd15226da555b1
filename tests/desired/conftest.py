"""Fixtures for tests/desired: the components run under Pulumi mocks that record what they register."""

from __future__ import annotations

import copy
from typing import Any, Iterator

import pulumi
import pytest

# The shared helpers assert; rewrite them so a failure shows the values, as it would in a test module.
pytest.register_assert_rewrite("tests.desired._helpers")

from voxplane.render import _private_event_loop  # noqa: E402

from ._helpers import LIVEKIT_ROOT_SECRET, mock_digest  # noqa: E402


class Recorder(pulumi.runtime.Mocks):
    """What a mocked program registered.

    `resources`: each resource's type, name and inputs as the mocks see them (a docker Image gets a
    repoDigest). `requests`: each RegisterResource request as sent, with the serialized inputs
    (secrets still wrapped) and options such as ignoreChanges, which MockResourceArgs does not carry.
    """

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []
        self.requests: list[Any] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources.append(args)
        state = dict(args.inputs)
        if args.typ == "docker:index/image:Image":
            state["repoDigest"] = mock_digest(args.inputs["imageName"])
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}

    def one(self, typ: str) -> pulumi.runtime.MockResourceArgs:
        """The one registered resource of type `typ`."""
        found = [r for r in self.resources if r.typ == typ]
        assert len(found) == 1, [r.typ for r in self.resources]
        return found[0]


class _WireMonitor(pulumi.runtime.mocks.MockMonitor):
    """The mock monitor, keeping a copy of each RegisterResource request in the recorder."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(recorder)
        self.recorder = recorder

    def RegisterResource(self, request):
        self.recorder.requests.append(copy.deepcopy(request))
        return super().RegisterResource(request)


@pytest.fixture
def stack_secrets() -> dict[str, str]:
    """Secret stack config of the mocked run, `voxplane:<key>` = value; a module overrides it to add its own."""
    return {"livekitRootSecret": LIVEKIT_ROOT_SECRET}


@pytest.fixture
def stack_config() -> dict[str, str]:
    """Plain (not secret) stack config of the mocked run, `voxplane:<key>` = value."""
    return {}


@pytest.fixture
def mocked(stack_secrets: dict[str, str], stack_config: dict[str, str]) -> Iterator[Recorder]:
    """Pulumi set to run against recording mocks with the stack config above, on an event loop of
    the test's own (closed afterwards, with the loops of the mock monitor's threads); the runtime
    settings are put back afterwards."""
    with _private_event_loop():
        yield from _mocked(stack_secrets, stack_config)


def _mocked(stack_secrets: dict[str, str], stack_config: dict[str, str]) -> Iterator[Recorder]:
    saved = copy.deepcopy(pulumi.runtime.settings.SETTINGS)
    recorder = Recorder()
    pulumi.runtime.set_mocks(recorder, preview=False, monitor=_WireMonitor(recorder))
    pulumi.runtime.set_all_config(
        {f"voxplane:{k}": v for k, v in (stack_secrets | stack_config).items()},
        secret_keys=[f"voxplane:{k}" for k in stack_secrets],
    )
    try:
        yield recorder
    finally:
        pulumi.runtime.settings.configure(saved)
