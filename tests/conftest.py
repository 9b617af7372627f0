"""Settings for every test."""

import sys
import threading
from typing import Any

import pytest
import pytest_timeout


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """pytest-timeout's thread timer, which also names the test that hung:
    the plugin's own prints the stacks of the threads, and a hung trio test's
    is only trio waiting in `epoll`, which says nothing of which test."""
    if settings.method != "thread":
        return None  # the plugin's own

    def expired() -> None:
        sys.stderr.write(f"\n{item.nodeid} ran longer than {settings.timeout} s\n")
        pytest_timeout.timeout_timer(item, settings)

    timer = threading.Timer(settings.timeout, expired)
    timer.name = f"pytest-timeout {item.nodeid}"

    def cancel() -> None:
        timer.cancel()
        timer.join()

    item.cancel_timeout = cancel  # type: ignore[attr-defined]  # where the plugin looks
    timer.start()
    return True
