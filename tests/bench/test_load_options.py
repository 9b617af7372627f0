"""bench.load refuses bad options before it starts anything, naming what
was wrong and what is accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import load
from bench._load_report import plot_problem


def refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit:
        load.main(argv)
    assert exit.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no round began, so nothing was reported
    return captured.err.splitlines()[-1]


@pytest.mark.parametrize("seconds", ["0", "-1", "3601", "nan"])
def test_a_sleep_length_outside_what_the_agent_accepts_is_refused(
    seconds: str, capsys: pytest.CaptureFixture[str]
) -> None:
    message = refusal(["--seconds", seconds], capsys)
    assert "--seconds must be within (0, 3600]" in message


def test_more_steps_than_the_sleep_agent_takes_are_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    message = refusal(["--steps", "10001"], capsys)
    assert "--steps must be at most 10,000" in message


def test_a_plot_in_a_missing_folder_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing" / "load.png"
    message = refusal(["--plot", str(target)], capsys)
    assert "cannot write it (No such file or directory)" in message
    assert not target.parent.exists()


def test_a_plot_where_no_file_can_be_made_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    message = refusal(["--plot", "/proc/greenroom-load.png"], capsys)
    assert "--plot /proc/greenroom-load.png: cannot write it" in message


def test_a_plot_of_a_type_matplotlib_does_not_write_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "load.txt"
    message = refusal(["--plot", str(target)], capsys)
    assert "the name must end in a type matplotlib writes (" in message
    assert ".png" in message
    assert not target.exists()


def test_checking_a_plot_path_leaves_no_file_behind(tmp_path: Path) -> None:
    target = tmp_path / "load.png"
    assert plot_problem(str(target)) is None
    assert not target.exists()
