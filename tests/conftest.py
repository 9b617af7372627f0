"""Settings for every test."""

import threading
import time
from typing import Any

import pytest


class _Watchdog:
    """pytest-timeout's thread method, with one thread for the whole run,
    armed for each test, that also names the test that hung: the plugin's
    own prints only the threads' stacks, and a hung trio test's is trio
    waiting in `epoll`. (The plugin starts a thread for each test, whose
    start-up may then run inside a test that counts the objects alive.)"""

    #: How often the thread looks at the clock.
    INTERVAL = 0.2

    def __init__(self) -> None:
        self._armed: tuple[pytest.Item, Any, float] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="test watchdog", daemon=True)
            self._thread.start()

    def arm(self, item: pytest.Item, settings: Any) -> None:
        self._armed = (item, settings, time.monotonic() + settings.timeout)

    def disarm(self) -> None:
        self._armed = None

    def _watch(self) -> None:
        while True:
            time.sleep(self.INTERVAL)
            armed = self._armed
            if armed is not None and time.monotonic() > armed[2]:
                self._expired(armed[0], armed[1])

    @staticmethod
    def _expired(item: pytest.Item, settings: Any) -> None:
        import pytest_timeout

        capture = item.config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            capture.suspend_global_capture(item)  # so this is not the test's own output
        terminal = item.config.get_terminal_writer()
        terminal.line(f"\n{item.nodeid} ran longer than {settings.timeout} s", red=True)
        pytest_timeout.timeout_timer(item, settings)  # the stacks, then os._exit(1)


_watchdog = _Watchdog()


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # optional: `-p no:timeout` turns it off
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    if settings.method != "thread":
        return None  # the plugin's own
    _watchdog.start()
    _watchdog.arm(item, settings)
    item.cancel_timeout = _watchdog.disarm  # type: ignore[attr-defined]  # where the plugin looks
    return True


def pytest_sessionstart(session: pytest.Session) -> None:
    # Started before any test, so that its start-up falls in none.
    if session.config.pluginmanager.hasplugin("timeout"):
        _watchdog.start()
