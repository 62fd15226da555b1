"""`wait_until`: the one way a test waits for something that happens on its own time (a server
becoming ready, a controller finishing, a worker registering)."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

import pytest

__all__ = ["wait_until"]

T = TypeVar("T")


def wait_until(what: str, check: Callable[[], T], *, timeout: float, interval: float = 0.1,
               unless: Callable[[], str | None] = lambda: None, details: Callable[[], str] = lambda: "") -> T:
    """Call `check` until it returns a true value, and return that value.

    The test fails, naming `what`, when `timeout` seconds pass first, or at once when `unless()`
    gives a reason to stop waiting (a process that exited); `details()` is added to the failure
    (a server's last log lines). The timeout bounds a wait that should end; it is never a check of
    how long something took.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        reason = unless()
        failure = (f"{reason} while waiting for {what}" if reason
                   else f"no {what} within {timeout:.0f}s" if time.monotonic() > deadline else None)
        if failure is not None:
            more = details()
            pytest.fail(failure + (f"\n{more}" if more else ""))
        time.sleep(interval)
