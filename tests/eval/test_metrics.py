"""Tests for cassle.eval.metrics on hand-computed matrices."""

import math

import numpy as np
import pytest
import torch

from cassle.eval.metrics import (
    average_accuracy,
    average_forgetting,
    backward_transfer,
    forward_transfer,
    summarize,
)

R = [[80, 10, 5], [60, 85, 20], [50, 70, 90]]
BASE = [10, 12, 15]


@pytest.mark.parametrize("conv", [lambda r: r, np.asarray, lambda r: torch.tensor(r, dtype=torch.float32)])
def test_hand_computed_3x3(conv):
    m = conv(R)
    assert average_accuracy(m) == pytest.approx(70.0)  # (50+70+90)/3
    assert average_forgetting(m) == pytest.approx(22.5)  # ((80-50)+(85-70))/2
    assert backward_transfer(m) == pytest.approx(-22.5)  # ((50-80)+(70-85))/2
    assert forward_transfer(m, BASE) == pytest.approx(1.5)  # ((10-12)+(20-15))/2
    assert summarize(m, BASE) == pytest.approx(
        {"average_accuracy": 70.0, "average_forgetting": 22.5, "backward_transfer": -22.5, "forward_transfer": 1.5}
    )


def test_forgetting_uses_best_earlier_row_not_diagonal():
    # task 0 peaks after task 1 (60), ends at 55: forgetting 5, but BWT = 55 - 50 = +5
    R2 = [[50, 0, 0], [60, 70, 0], [55, 70, 80]]
    assert average_forgetting(R2) == pytest.approx((5 + 0) / 2)
    assert backward_transfer(R2) == pytest.approx((5 + 0) / 2)


def test_single_task_is_nan_except_accuracy():
    assert average_accuracy([[42.0]]) == 42.0
    assert math.isnan(average_forgetting([[42.0]]))
    assert math.isnan(backward_transfer([[42.0]]))
    assert math.isnan(forward_transfer([[42.0]], [10.0]))


def test_nan_rows_and_missing_baseline():
    partial = [[80, 10, 5], [math.nan] * 3, [math.nan] * 3]
    assert math.isnan(average_accuracy(partial))
    assert math.isnan(summarize(R)["forward_transfer"])


def test_errors():
    with pytest.raises(ValueError, match="square"):
        average_accuracy([[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError, match="baseline has 2"):
        forward_transfer(R, [1, 2])
