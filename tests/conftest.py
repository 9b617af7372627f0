"""Settings for every test."""

import threading
from typing import Any

import pytest


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # optional: `-p no:timeout` turns it off
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """pytest-timeout's thread timer, which also names the test that hung:
    the plugin's own prints the stacks of the threads, and a hung trio test's
    is only trio waiting in `epoll`, which says nothing of which test."""
    if settings.method != "thread":
        return None  # the plugin's own

    def expired() -> None:
        import pytest_timeout

        capture = item.config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            capture.suspend_global_capture(item)  # so this is not the test's own output
        terminal = item.config.get_terminal_writer()
        terminal.line(f"\n{item.nodeid} ran longer than {settings.timeout} s", red=True)
        pytest_timeout.timeout_timer(item, settings)

    timer = threading.Timer(settings.timeout, expired)
    timer.name = f"pytest-timeout {item.nodeid}"

    def cancel() -> None:
        timer.cancel()
        timer.join()

    item.cancel_timeout = cancel  # type: ignore[attr-defined]  # where the plugin looks
    timer.start()
    return True
