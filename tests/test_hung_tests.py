"""A hung test ends the run with a stack trace instead of hanging it.

A trio deadline cannot reach a wait inside a shielded scope (an actor
system's shutdown is one), so a bug that never finishes such a wait would
hang `make test`, and CI with it. The project's pytest settings give each
test a time limit (pytest-timeout, in a thread, so that it works while
trio blocks in `epoll`); here a hanging test is run under those settings,
with the limit cut to two seconds.
"""

import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HANGS = """
import trio

async def test_a_shielded_wait_that_never_ends():
    with trio.fail_after(1):  # cannot reach into the shield
        with trio.CancelScope(shield=True):
            await trio.sleep_forever()
"""


def test_a_test_that_hangs_where_no_deadline_reaches_fails_the_run(tmp_path: Path) -> None:
    (tmp_path / "test_hangs.py").write_text(HANGS)
    began = time.monotonic()
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"),
         "--rootdir", str(tmp_path), "-p", "tests.conftest",
         "--timeout", "2", str(tmp_path / "test_hangs.py")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert finished.returncode != 0
    assert "Timeout" in finished.stdout + finished.stderr
    # Which test it was (the stacks alone show only trio waiting in `epoll`):
    assert "test_hangs.py::test_a_shielded_wait_that_never_ends ran longer than 2.0 s" in (
        finished.stdout
    )
    assert time.monotonic() - began < 30


def test_every_test_has_a_time_limit_kept_by_a_thread() -> None:
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    options = settings["ini_options"]
    # Far above any test's own time (the slowest take seconds), far below CI's patience.
    assert 30 <= options["timeout"] <= 300
    # A signal's exception would be raised inside trio's own loop (in its wait
    # for I/O), leaving trio broken for the tests after it; a thread ends the run.
    assert options["timeout_method"] == "thread"
