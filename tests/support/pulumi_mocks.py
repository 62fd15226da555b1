"""Pulumi programs and components run under the SDK's mock engine (`voxplane.deploy.render.mocked_engine`),
with a recorder of what they registered."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks

from voxplane.deploy.render import mocked_engine

__all__ = ["Recorder", "mock_digest", "mocked"]


def mock_digest(image_name: str) -> str:
    """The repoDigest the recorder gives a docker Image named `image_name`."""
    return image_name.split(":", 1)[0] + "@sha256:" + "d" * 64


class Recorder(pulumi.runtime.Mocks):
    """What a mocked program registered.

    `resources`: each resource's type, name and inputs as the mocks see them (a docker Image gets a
    repoDigest). `requests`: each RegisterResource request as sent, with the serialized inputs
    (secrets still wrapped) and options such as dependencies and ignoreChanges, which
    MockResourceArgs does not carry. `registered()`: the mock monitor's resources by URN.
    """

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []
        self.requests: list[Any] = []
        self.monitor = _RecordingMonitor(self)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        state = dict(args.inputs)
        if args.typ == "docker:index/image:Image":
            state["repoDigest"] = mock_digest(args.inputs["imageName"])
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None

    def one(self, typ: str) -> pulumi.runtime.MockResourceArgs:
        """The one registered resource of type `typ`."""
        found = [r for r in self.resources if r.typ == typ]
        assert len(found) == 1, [r.typ for r in self.resources]
        return found[0]

    def registered(self) -> dict[str, Any]:
        """The registered resources by URN (the monitor's view: state and parent)."""
        return dict(self.monitor.get_registered_resources())

    def request_by_urn(self) -> dict[str, Any]:
        """Each RegisterResource request by the URN of the resource it registered."""
        return {self.monitor.make_urn(r.parent, r.type, r.name): r for r in self.requests}


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, keeping a copy of each RegisterResource request in the recorder."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(recorder)
        self.recorder = recorder

    def RegisterResource(self, request: Any) -> Any:
        self.recorder.requests.append(copy.deepcopy(request))
        return super().RegisterResource(request)


@contextlib.contextmanager
def mocked(*, stack: str = "local", config: Mapping[str, str] | None = None,
           secrets: Mapping[str, str] | None = None) -> Iterator[Recorder]:
    """Pulumi set to run against a new `Recorder` with the stack config `config` (plain) and
    `secrets` (secret), keys as `voxplane:<key>`; on an event loop of its own, closed afterwards;
    the runtime settings are put back afterwards. Components registered inside are recorded; a
    program runs inside with `pulumi.runtime.test(program)()`."""
    recorder = Recorder()
    with mocked_engine(recorder.monitor, stack=stack, config={**(config or {}), **(secrets or {})},
                       secret_keys=list(secrets or {})):
        yield recorder
