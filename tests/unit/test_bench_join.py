"""The join bench's figures: median, p90 by nearest rank, failed joins."""

from __future__ import annotations

import pytest

from bench.join_impaired import Figures, nearest_rank


def test_p90_by_nearest_rank() -> None:
    values = [float(v) for v in range(10, 0, -1)]  # 10 .. 1, unordered on purpose
    assert nearest_rank(values, 0.9) == 9.0
    assert nearest_rank(values, 0.5) == 5.0
    assert nearest_rank([7.0], 0.9) == 7.0
    assert nearest_rank([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 100.0], 0.9) == 100.0
    with pytest.raises(ValueError):
        nearest_rank([], 0.9)


def test_a_row_names_median_p90_max_and_failures() -> None:
    figures = Figures([400.0, 300.0, 1200.0, 350.0], failed=1)
    assert figures.row().split() == ["375", "1200", "1200", "1"]
    assert Figures(failed=3).row().split() == ["-", "-", "-", "3"]
