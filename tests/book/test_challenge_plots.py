"""unet_book.challenge_plots: what the challenge's instruments see, on a hand-made slice."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from unet_book.challenge_plots import (
    challenge_table_rows,
    plot_thinning,
    topological_crop,
    warped_errors,
)
from unet_core import warping
from unet_core.data.splits import Example


def _slice(gap: bool, shift: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A 96x96 slice of four cells (membranes 4 px wide) and a prediction of it: the same, a
    border shifted by one pixel, or with a gap in the vertical membrane (a merge)."""
    target = np.zeros((96, 96), bool)
    target[46:50, :] = True
    target[:, 46:50] = True
    pred = target.astype(np.float64) * 0.9 + 0.05
    if shift:  # the vertical membrane one pixel to the right, the crossing kept whole
        pred[:, 46] = np.where(target[:, 45], 0.95, 0.05)
        pred[:, 50] = 0.95
    if gap:
        pred[10:20, 46:50] = 0.05
    return target, pred


def _example(target: np.ndarray) -> Example:
    return Example("s", np.repeat((~target)[..., None], 1, axis=2).astype(np.float32), target,
                   None)


def test_warping_absorbs_a_shifted_border_and_keeps_a_merge() -> None:
    target, shifted = _slice(gap=False, shift=True)
    errors = warped_errors(shifted, target, 0.5)
    assert errors["before"].sum() > 0
    assert not (errors["merge"] | errors["split"] | errors["other"]).any()
    target, merged = _slice(gap=True)
    errors = warped_errors(merged, target, 0.5)
    assert not (errors["split"] | errors["other"]).any()
    merge = errors["merge"]
    assert merge.sum() > 0 and merge[10:20, 46:50].sum() == merge.sum()
    rows, cols = topological_crop(merge, size=32)
    assert rows.start <= 15 < rows.stop and cols.start <= 48 < cols.stop
    assert topological_crop(np.zeros((96, 96), bool), size=32) == (slice(32, 64), slice(32, 64))


def test_the_figure_names_the_merge_and_the_thinned_cells() -> None:
    target, merged = _slice(gap=True)
    fig = plot_thinning(_example(target), merged, 0.5)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 4
    assert "3 cells" in titles[1] and "thinned borders: 3 cells" in titles[2]
    assert "merges red, splits blue (slice: 1, 0)" in titles[3]
    plt.close(fig)


def test_the_figure_warps_its_slice_once(monkeypatch) -> None:  # noqa: ANN001
    warps = []
    real = warping._warp

    def counted(*args):  # noqa: ANN002, ANN202
        warps.append(args)
        return real(*args)

    monkeypatch.setattr(warping, "_warp", counted)
    target, merged = _slice(gap=True)
    fig = plot_thinning(_example(target), merged, 0.5)
    assert len(warps) == 1
    assert "(slice: 1, 0)" in fig.axes[3].get_title()
    plt.close(fig)


def test_the_table_chooses_the_threshold_on_validation_slices() -> None:
    target, perfect = _slice(gap=False)
    _, merged = _slice(gap=True)
    t, rows = challenge_table_rows([perfect], [_example(target)], [merged], [_example(target)])
    assert t in [round(0.1 * k, 1) for k in range(11)]
    assert [r[0] for r in rows] == ["V_rand (thinned)", "V_info (thinned)",
                                    "V_rand split / merge", "warping error",
                                    "V_rand (thinned), the leaderboard's best"]
    assert float(rows[0][3]) < 1 and "1 merges" in rows[3][3]
    assert float(rows[4][3]) == pytest.approx(float(rows[0][3]), abs=1e-4)
