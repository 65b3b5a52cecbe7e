"""``curves.png`` (Pillow): both panels are drawn, each series in its colour, and only then."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from unet_train.curves import COLOURS, PANEL, _ticks, draw_curves, save_curves

HISTORY = [{"step": s, "minutes": 0.5 * k, "loss": 1.0 / (k + 1), "val_auc_roc": 0.5 + 0.1 * k,
            "val_f1": 0.3 + 0.1 * k} for k, s in enumerate((10, 20, 30, 40))]


def _has_colour(image: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.all(image == np.array(rgb, np.uint8), axis=-1)


def test_each_series_is_drawn_in_its_panel():
    image = np.asarray(draw_curves(HISTORY, "run"))
    assert image.shape == (PANEL[1] + 24, 2 * PANEL[0], 3)
    loss = _has_colour(image, COLOURS["loss"])
    auc, f1 = (_has_colour(image, COLOURS[k]) for k in ("val_auc_roc", "val_f1"))
    assert loss[:, :PANEL[0]].sum() > 100 and loss[:, PANEL[0]:].sum() == 0
    assert auc[:, PANEL[0]:].sum() > 100 and f1[:, PANEL[0]:].sum() > 100
    assert auc[:, :PANEL[0]].sum() == 0


def test_a_falling_loss_is_drawn_falling():
    image = np.asarray(draw_curves(HISTORY))
    rows, cols = np.nonzero(_has_colour(image[:, :PANEL[0]], COLOURS["loss"]))
    left, right = rows[cols < cols.mean()].mean(), rows[cols > cols.mean()].mean()
    assert right > left  # image rows grow downwards: a lower loss is further down


def test_runs_without_validation_images_get_an_empty_right_panel():
    history = [{k: v for k, v in h.items() if not k.startswith("val")} for h in HISTORY]
    image = np.asarray(draw_curves(history))
    assert not _has_colour(image, COLOURS["val_auc_roc"]).any()


def test_save_writes_the_png_and_nothing_without_history(tmp_path):
    assert save_curves(tmp_path, []) is None and not list(tmp_path.iterdir())
    path = save_curves(tmp_path, HISTORY)
    assert path == tmp_path / "curves.png" and Image.open(path).size == (2 * PANEL[0],
                                                                      PANEL[1] + 24)
    with pytest.raises(ValueError, match="history is empty"):
        draw_curves([])


@pytest.mark.parametrize("lo, hi", [(0.0, 7.3), (0.81, 0.98), (-2.0, 0.5), (3.0, 3.0)])
def test_ticks_lie_in_the_range_and_are_few(lo, hi):
    ticks = _ticks(lo, hi)
    assert 1 <= len(ticks) <= 6 and all(lo - 1e-9 <= t <= hi + 1e-9 for t in ticks)
