"""bench.load refuses bad options before it starts anything, naming what
was wrong and what is accepted."""

from __future__ import annotations

import os
import sys
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


@pytest.mark.parametrize("agent", ["echo", "calc"])
@pytest.mark.parametrize("option", [["--seconds", "2"], ["--steps", "5"]])
def test_the_shape_of_a_sleep_run_is_refused_for_another_agent(
    agent: str, option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    message = refusal(["--agent", agent, *option], capsys)
    assert f"--seconds and --steps shape sleep runs; --agent {agent} takes neither" in message


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


def test_py_spy_when_it_is_not_installed_is_refused_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))  # nothing beside it
    monkeypatch.setenv("PATH", str(tmp_path))
    profile = tmp_path / "profile"
    message = refusal(["--py-spy", str(profile)], capsys)
    assert "--py-spy " in message and "py-spy is not installed (" in message
    assert not profile.exists()


def test_py_spy_into_a_folder_that_cannot_be_made_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spy = tmp_path / "py-spy"  # found, never run: the refusal comes first
    spy.write_text("#!/bin/sh\nexit 1\n")
    spy.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    message = refusal(["--py-spy", "/proc/greenroom-profile"], capsys)
    assert "--py-spy /proc/greenroom-profile: cannot make the folder (" in message


@pytest.mark.parametrize("option", ["--users", "--runs-per-user"])
def test_a_load_of_zero_is_refused_not_taken_for_the_default(
    option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    message = refusal([option, "0"], capsys)
    assert "--users, --runs-per-user, --steps and --concurrency must be >= 1" in message


def test_py_spy_into_a_folder_that_cannot_be_written_to_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The folder exists (so it was taken), and py-spy's own failure to write
    # its profile went unheard.
    spy = tmp_path / "py-spy"
    spy.write_text("#!/bin/sh\nexit 1\n")
    spy.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    message = refusal(["--py-spy", "/proc"], capsys)
    assert "--py-spy /proc: cannot write into the folder (" in message
