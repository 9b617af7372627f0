"""bench.factory refuses sizes it cannot measure before it starts anything."""

from __future__ import annotations

import pytest

from bench import factory
from bench._factory_core import WARM_UP


@pytest.mark.parametrize("sizes", ["100", f"{WARM_UP},1000", "0", "abc"])
def test_sizes_the_warm_up_already_reaches_are_refused_before_the_run(
    sizes: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # 100 was taken: the engines made to warm up already passed it, so it
    # timed creation at 200-250 live engines under the label 100.
    with pytest.raises(SystemExit) as exit:
        factory.main(["--quick", "--sizes", sizes])
    assert exit.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "argument --sizes: expected sizes" in captured.err


def test_sizes_above_the_warm_up_are_taken_in_order() -> None:
    assert factory._sizes(f"10000,{WARM_UP + 1},10000") == (WARM_UP + 1, 10_000)
