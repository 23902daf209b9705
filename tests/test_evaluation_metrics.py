"""Organ and whole-body metrics (evaluation/metrics.py): the 1 mL SUVpeak sphere and its organ restriction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from petct_pipeline.evaluation.metrics import sphere_kernel, suv_peak


def test_sphere_kernel_holds_one_millilitre_on_fine_and_coarse_grids():
    for spacing in ((2.0, 2.0, 2.0), (2.04, 2.04, 3.0), (4.0, 4.0, 4.0)):
        assert sphere_kernel(spacing).sum() * np.prod(spacing) / 1000 == pytest.approx(1.0, abs=0.01)
    assert sphere_kernel((8.0, 8.0, 8.0)).sum() * 0.512 == pytest.approx(1.0, abs=0.05)

def test_suv_peak_is_the_hottest_sphere_inside_the_organ_only():
    suv = np.ones((30, 30, 30), np.float32)
    mask = np.zeros(suv.shape, bool)
    mask[5:25, 5:25, 5:25] = True
    suv[0:5, :, :] = 100.0  # a hot neighbour outside the organ must not leak in
    assert suv_peak(suv, mask, (2.0, 2.0, 2.0)) == pytest.approx(1.0)
    suv[10:13, 10:13, 10:13] = 5.0  # 0.216 mL hot spot: the 1 mL sphere averages it with its surroundings
    assert suv_peak(suv, mask, (2.0, 2.0, 2.0)) == pytest.approx(1 + 4 * 27 / sphere_kernel((2.0,) * 3).sum(),
                                                                  rel=0.02)
    suv[10:17, 10:17, 10:17] = 5.0  # 2.7 mL: the whole 7-voxel-wide sphere kernel fits inside
    assert suv_peak(suv, mask, (2.0, 2.0, 2.0)) == pytest.approx(5.0)
    assert suv_peak(np.ones_like(suv) * 2.5, mask, (2.0, 2.0, 2.0)) == pytest.approx(2.5)
    assert math.isnan(suv_peak(suv, np.zeros_like(mask), (2.0, 2.0, 2.0)))
