"""The mask explorer's cases, reference metrics and gallery, and its live widget driven through
its traits (no browser: the drawing is in the ES module, tested in tests/book/
test_explorer_widget.py with Node and in tests/site with Chromium)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import unet_book.explorer as explorer
import unet_book.explorer_widget as explorer_widget
from unet_book.explorer import (
    OVERLAYS,
    PALETTE,
    Case,
    ThresholdMetrics,
    gallery,
    metrics_text,
    render_panel,
    window,
)
from unet_book.explorer_widget import MaskExplorer, decode_case, quantise
from unet_core.metrics import segmentation_metrics


def make_case(h: int = 584, w: int = 565, seed: int = 0, observer: bool = True) -> Case:
    rng = np.random.default_rng(seed)
    target = rng.random((h, w)) < 0.12
    prob = np.clip(0.6 * target + rng.normal(0.2, 0.2, (h, w)), 0, 1).astype(np.float32)
    yy, xx = np.mgrid[:h, :w]
    fov = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (0.45 * min(h, w)) ** 2
    second = target ^ (rng.random((h, w)) < 0.05) if observer else None
    return Case(f"case{seed}", rng.random((h, w, 3)).astype(np.float32), prob, target, fov,
                second)


@pytest.mark.parametrize("threshold", [0.05, 0.3, 0.5, 0.77, 0.99])
@pytest.mark.parametrize("use_fov", [True, False])
def test_threshold_metrics_equal_the_library_metrics(threshold, use_fov):
    c = make_case(60, 50, seed=1)
    fov = c.fov if use_fov else None
    fast = ThresholdMetrics(c.prob, c.target, fov).at(threshold)
    ref = segmentation_metrics(c.prob, c.target, fov, threshold=threshold)
    for key in ("f1", "sensitivity", "specificity", "accuracy", "auc_roc"):
        assert fast[key] == pytest.approx(getattr(ref, key), abs=1e-12), key


def test_case_checks_shapes():
    with pytest.raises(ValueError, match="bad: target has shape"):
        Case("bad", np.zeros((4, 4, 3)), np.zeros((4, 4)), np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="prob must be"):
        Case("bad", np.zeros((4, 4, 3)), np.zeros((4, 4, 1)))


def test_render_panel_errors_and_fov():
    c = make_case(40, 30, seed=2)
    out = render_panel(c, "errors", 0.5, show_fov=True)
    pred = c.prob >= 0.5
    tp = pred & c.target & c.fov
    assert (out[tp] == PALETTE["tp"]).all() and (out[~c.fov] == PALETTE["outside"]).all()
    no_fov = render_panel(c, "errors", 0.5, show_fov=False)
    assert (no_fov[~c.fov & pred & ~c.target] == PALETTE["fp"]).all()
    assert (no_fov[~pred & c.target] == PALETTE["fn"]).all()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_render_panel_shapes_and_region(overlay):
    c = make_case(40, 30, seed=3)
    region = window((40, 30), 16, (0.5, 0.5))
    out = render_panel(c, overlay, 0.4, True, region)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8


def test_render_panel_without_labels_is_grey_and_unknown_overlay_is_named():
    c = Case("x", np.zeros((8, 8, 3)), np.zeros((8, 8)))
    assert (render_panel(c, "second observer", 0.5) == 90).all()
    with pytest.raises(ValueError, match="overlay='heat'.*probability"):
        render_panel(c, "heat", 0.5)


@pytest.mark.parametrize("size, centre, want", [
    (None, (0.5, 0.5), (slice(0, 100), slice(0, 80))),
    (20, (0.5, 0.5), (slice(40, 60), slice(30, 50))),
    (20, (0.0, 1.0), (slice(0, 20), slice(60, 80))),
    (500, (0.3, 0.3), (slice(0, 100), slice(0, 80))),
])
def test_window_is_clipped_to_the_image(size, centre, want):
    assert window((100, 80), size, centre) == want


def test_the_widget_is_fed_the_chosen_image_and_knows_what_the_browser_must_show():
    cases = [make_case(seed=4), make_case(seed=5, observer=False)]
    ex = MaskExplorer(cases=cases)
    view = ex.view
    assert view.images == ["case4", "case5"] and view.image == "case4"
    sent = decode_case(view.payload)
    assert sent["name"] == "case4" and (sent["levels"] == quantise(cases[0].prob)).all()
    assert sent["has_second_observer"] and (sent["labels"] & 4).any()

    view.threshold = 0.62
    ref = segmentation_metrics(cases[0].prob, cases[0].target, cases[0].fov, threshold=0.62)
    text = view.reference_text()
    assert text.startswith("threshold 0.62:")
    assert f"F1 {ref.f1:.4f}" in text and f"Se {ref.sensitivity:.4f}" in text
    assert f"AUC {ref.auc_roc:.4f}" in text
    view.show_fov = False
    ref_all = segmentation_metrics(cases[0].prob, cases[0].target, None, threshold=0.62)
    assert f"F1 {ref_all.f1:.4f}" in view.reference_text()
    view.threshold = 0.6249  # the browser's slider has steps of 0.01
    assert view.slider_threshold() == 0.62

    view.image = "case5"
    assert decode_case(view.payload)["name"] == "case5"
    assert not decode_case(view.payload)["has_second_observer"]
    for trait, bad in (("left", "heat"), ("zoom", "3 px")):
        with pytest.raises(Exception, match="heat|3 px"):
            setattr(view, trait, bad)


# -- cost structure: what one slider move computes ---------------------------------------------
# (Wall time is not asserted: it fails on a loaded machine. These tests assert instead that a
# threshold query is two binary searches on presorted arrays and that an update recomputes no
# probability, no AUC and no per-image metric object.)
class _Counter:
    """Wrap ``module.name`` and count its calls (the arguments are kept)."""

    def __init__(self, monkeypatch, module, name: str):
        self.calls: list[tuple] = []
        real = getattr(module, name)

        def spy(*args, **kwargs):
            self.calls.append(args)
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)

    def __len__(self) -> int:
        return len(self.calls)


def test_a_threshold_query_is_two_binary_searches_on_sorted_arrays(monkeypatch):
    c = make_case(60, 50, seed=8)
    metrics_calls = _Counter(monkeypatch, explorer, "segmentation_metrics")
    tm = ThresholdMetrics(c.prob, c.target, c.fov)
    assert len(metrics_calls) == 1  # the AUC, once per image
    # What it keeps: the FOV probabilities of each class, sorted; no (H, W) array.
    assert np.array_equal(tm.pos, np.sort(c.prob[c.fov & c.target]))
    assert np.array_equal(tm.neg, np.sort(c.prob[c.fov & ~c.target]))
    assert tm.pos.size + tm.neg.size == c.fov.sum()
    assert not any(isinstance(v, np.ndarray) and v.ndim == 2 for v in vars(tm).values())

    searches = _Counter(monkeypatch, np, "searchsorted")
    sorts = _Counter(monkeypatch, np, "sort")
    thresholds = np.linspace(0.05, 0.95, 11)
    for t in thresholds:
        tm.at(float(t))
    assert len(searches) == 2 * len(thresholds)
    assert all(args[0] is tm.pos or args[0] is tm.neg for args in searches.calls)
    assert len(sorts) == 0 and len(metrics_calls) == 1  # nothing sorted or recomputed


def test_a_threshold_query_does_not_read_the_probability_map_again():
    c = make_case(60, 50, seed=9)
    tm = ThresholdMetrics(c.prob, c.target, c.fov)
    before = tm.at(0.4)
    c.prob[...] = 0.0  # the map the metrics were built from; queries must not look at it
    assert tm.at(0.4) == before


def test_a_threshold_move_costs_python_nothing_and_an_image_is_encoded_once(monkeypatch):
    """The browser thresholds, draws and computes the metrics: a threshold move (or any other
    control) makes Python encode, predict or sort nothing; each image's data file is built
    once and sent when it is chosen."""
    cases = [make_case(120, 100, seed=10), make_case(120, 100, seed=11)]
    encoded = _Counter(monkeypatch, explorer_widget, "encode_case")
    ex = MaskExplorer(cases=cases)
    assert len(encoded) == 1  # the first image only
    built = _Counter(monkeypatch, explorer_widget, "ThresholdMetrics")
    metrics_calls = _Counter(monkeypatch, explorer, "segmentation_metrics")
    predictions = _Counter(monkeypatch, explorer, "predict_probability")
    sent = []
    ex.view.observe(lambda change: sent.append(change["new"]), "payload")
    for t in np.linspace(0.2, 0.8, 9):
        ex.view.threshold = round(float(t), 2)
    ex.view.left, ex.view.zoom, ex.view.show_fov = "probability", "64 px", False
    assert len(encoded) == 1 and not sent
    assert len(built) == 0 and len(metrics_calls) == 0 and len(predictions) == 0
    ex.view.image = "case11"
    ex.view.image = "case10"
    ex.view.image = "case11"
    assert len(encoded) == 2 and len(sent) == 3  # each image encoded once, sent when chosen
    assert len(predictions) == 0


def test_metrics_text_without_ground_truth():
    assert "no ground truth" in metrics_text(None, 0.5)


def test_gallery_titles_carry_the_metrics():
    c = make_case(80, 70, seed=7)
    fig = gallery(c, thresholds=(0.4, 0.6))
    assert len(fig.axes) == 3
    f1 = ThresholdMetrics(c.prob, c.target, c.fov).at(0.4)["f1"]
    assert f"F1 {f1:.4f}" in fig.axes[1].get_title()


# -- over runs ----------------------------------------------------------------------------------
def test_explorer_opens_smoke_drive_run_and_segments_a_file(smoke_drive_run, tmp_path):
    ex = MaskExplorer(tmp_path / "runs")
    assert ex.run.value == Path(smoke_drive_run.run_dir).name
    assert len(ex.cases) == 2 and ex.view.image == ex.cases[0].name
    run_threshold = smoke_drive_run.metrics["test"]["threshold"]
    assert ex.view.threshold == pytest.approx(round(run_threshold, 2))
    assert "F1" in ex.view.reference_text()
    assert decode_case(ex.view.payload)["has_target"]

    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((50, 61, 3)) * 255).astype(np.uint8)).save(
        photo)
    ex.path.value = str(photo)
    ex.load_file.click()
    assert ex.view.image == "photo.png" and "no ground truth" in ex.view.reference_text()
    sent = decode_case(ex.view.payload)
    assert sent["name"] == "photo.png" and not sent["has_target"]
    assert sent["levels"].shape == (50, 61) and sent["image"].shape == (50, 61, 3)

    ex.path.value = str(tmp_path / "missing.jpg")
    ex.load_file.click()
    assert "cannot segment" in ex.status.value and "missing.jpg" in ex.status.value


def test_explorer_without_runs_says_so(tmp_path):
    ex = MaskExplorer(tmp_path / "empty")
    assert "No finished run" in ex.status.value and ex.cases == []
    assert ex.view.payload == b"" and ex.view.message


def test_unknown_run_is_named(smoke_drive_run, tmp_path):
    with pytest.raises(ValueError, match="run='nope'.*found: drive-smoke"):
        MaskExplorer(tmp_path / "runs", run="nope")
