"""Fixtures for tests/desired: the components run under Pulumi mocks that record what they register
(tests/support/pulumi_mocks.py)."""

from __future__ import annotations

from typing import Iterator

import pytest

# The shared helpers assert; rewrite them so a failure shows the values, as it would in a test module.
pytest.register_assert_rewrite("tests.desired._helpers")

from ..support.pulumi_mocks import Recorder, mocked as mocked_run  # noqa: E402
from ._helpers import LIVEKIT_ROOT_SECRET  # noqa: E402


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
    """Pulumi set to run against recording mocks with the stack config above (see
    `tests.support.pulumi_mocks.mocked`)."""
    with mocked_run(config={f"voxplane:{k}": v for k, v in stack_config.items()},
                    secrets={f"voxplane:{k}": v for k, v in stack_secrets.items()}) as recorder:
        yield recorder
