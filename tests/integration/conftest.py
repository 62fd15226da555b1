"""Integration tests: real servers (livekit-server, Redis) started by the tests themselves."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # pyproject.toml declares the marker too; registering it twice is harmless, and this keeps
    # `pytest tests/integration` warning-free (warnings are errors here) without it.
    config.addinivalue_line(
        "markers", "integration: talks to real servers (livekit-server, Redis) started by the test"
    )
