"""unet_book/static/segment.js prepares images, reads masks and writes files as the library does
(run in Node): the network's input equals ``unet_train.predict.to_model_input``, a mask's
pixels ``unet_core.data.imageio.binarize_mask``, the probability file
``unet_train.predict.encode_probability``, the explorer's levels
``unet_book.explorer_widget.quantise`` and the metrics ``unet_core.metrics``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from node_module import run_node

from unet_book.explorer_widget import quantise
from unet_core.data.imageio import binarize_mask
from unet_core.metrics import confusion_counts, segmentation_metrics
from unet_train.config import TrainConfig
from unet_train.predict import encode_probability, to_model_input

MODULE = Path(__file__).resolve().parents[2] / "unet_book" / "static" / "segment.js"


def _node(script: str, data: dict, tmp_path: Path):
    return run_node("segment.js", "sg", script, data, tmp_path)


def _decoded(array: np.ndarray) -> dict:
    """What image_codec.js's decoders return for ``array`` (H, W[, C])."""
    h, w = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    return {"width": w, "height": h, "channels": channels,
            "bits": 16 if array.dtype == np.uint16 else 8, "data": array.ravel().tolist()}


def _as_read(array: np.ndarray) -> np.ndarray:
    """``read_image``'s view of the decoded pixels: alpha dropped, 16-bit scaled to [0, 1]
    float32, a colour image with three equal channels is the grey one."""
    if array.ndim == 3:
        array = array[:, :, 0] if array.shape[2] == 2 else array[:, :, :3]
    if array.ndim == 3 and (array == array[:, :, :1]).all():
        array = array[:, :, 0]
    if array.dtype == np.uint16:
        return (array.astype(np.float64) / 65535).astype(np.float32)
    return array


IMAGES = {
    "rgb8": lambda g: g.integers(0, 256, (7, 9, 3), dtype=np.uint8),
    "rgba8": lambda g: g.integers(0, 256, (7, 9, 4), dtype=np.uint8),
    "grey8": lambda g: g.integers(0, 256, (7, 9), dtype=np.uint8),
    "grey_alpha8": lambda g: g.integers(0, 256, (7, 9, 2), dtype=np.uint8),
    "grey16": lambda g: g.integers(0, 65536, (7, 9), dtype=np.uint16),
    "rgb16": lambda g: g.integers(0, 65536, (7, 9, 3), dtype=np.uint16),
    "rgb_equal8": lambda g: np.repeat(g.integers(0, 256, (7, 9, 1), dtype=np.uint8), 3, 2),
}


@pytest.mark.parametrize("kind", sorted(IMAGES))
@pytest.mark.parametrize(("channels", "in_channels"),
                         [("rgb", 3), ("green", 1), ("gray", 1), ("rgb", 1)])
def test_the_input_equals_to_model_input(kind, channels, in_channels, tmp_path) -> None:
    array = IMAGES[kind](np.random.default_rng(3))
    cfg = TrainConfig.from_profile("smoke", channels=channels)
    want = np.moveaxis(to_model_input(_as_read(array), cfg, in_channels), 2, 0)
    got = _node("const x = sg.prepareInput(data.image, data.manifest);"
                "console.log(JSON.stringify(Array.from(x)));",
                {"image": _decoded(array),
                 "manifest": {"channels": channels, "in_channels": in_channels}}, tmp_path)
    got = np.asarray(got, np.float32).reshape(want.shape)
    assert np.abs(got - want).max() <= 1e-7, (kind, channels, in_channels)


def test_clahe_models_are_refused_with_a_reason(tmp_path) -> None:
    out = _node("try { sg.prepareInput(data.image, data.manifest); console.log('null'); }"
                " catch (e) { console.log(JSON.stringify(e.message)); }",
                {"image": _decoded(np.zeros((2, 2), np.uint8)),
                 "manifest": {"channels": "green_clahe", "in_channels": 1}}, tmp_path)
    assert out and "CLAHE" in out and "predict" in out


MASKS = {
    "0_255": lambda g: (g.random((6, 8)) < 0.3).astype(np.uint8) * 255,
    "0_1": lambda g: (g.random((6, 8)) < 0.3).astype(np.uint8),
    "levels": lambda g: g.integers(0, 256, (6, 8), dtype=np.uint8),
    "one_level": lambda g: np.full((6, 8), 7, np.uint8),
    "zeros": lambda g: np.zeros((6, 8), np.uint8),
    "rgb_colour": lambda g: (g.random((6, 8, 3)) < 0.2).astype(np.uint8) * np.array(
        [200, 0, 90], np.uint8),
    "levels16": lambda g: g.integers(0, 65536, (6, 8), dtype=np.uint16),
}


@pytest.mark.parametrize("kind", sorted(MASKS))
def test_masks_binarize_as_the_library(kind, tmp_path) -> None:
    array = MASKS[kind](np.random.default_rng(5))
    mode = "RGB" if array.ndim == 3 else ("I;16" if array.dtype == np.uint16 else "L")
    want = binarize_mask(array, mode, None, source="test")
    got = _node("console.log(JSON.stringify(Array.from(sg.binarize(data.image))));",
                {"image": _decoded(array)}, tmp_path)
    assert np.array_equal(np.asarray(got, bool).reshape(want.shape), want), kind


def test_files_levels_and_metrics_equal_the_library(tmp_path) -> None:
    g = np.random.default_rng(11)
    prob = g.random((40, 50), dtype=np.float32)
    prob[0, :11] = np.arange(11, dtype=np.float32) / 10  # exact slider thresholds
    prob[1, :4] = [0.0, 1.0, 0.5, np.float32(0.49)]
    target = g.random((40, 50)) < 0.3
    fov = g.random((40, 50)) < 0.8
    threshold = 0.4863
    out = _node("""
const p = Float32Array.from(data.prob);
const m = sg.metricsAt(p, data.target, data.fov, data.threshold);
const all = sg.metricsAt(p, data.target, null, data.threshold);
console.log(JSON.stringify({file: Array.from(sg.encodeProbability(p)),
  levels: Array.from(sg.explorerLevels(p)), m, all}));""",
                {"prob": prob.ravel().tolist(), "target": target.ravel().astype(int).tolist(),
                 "fov": fov.ravel().astype(int).tolist(), "threshold": threshold}, tmp_path)
    assert np.array_equal(np.asarray(out["file"]), encode_probability(prob).ravel())
    assert np.array_equal(np.asarray(out["levels"]), quantise(prob).ravel())
    for shown, mask in ((out["m"], fov), (out["all"], None)):
        c = confusion_counts(prob, target, mask, threshold=threshold)
        assert (shown["tp"], shown["fp"], shown["fn"], shown["tn"]) == (c.tp, c.fp, c.fn, c.tn)
        want = segmentation_metrics(prob, target, mask, threshold=threshold)
        assert abs(shown["f1"] - want.f1) < 1e-12
        assert abs(shown["sensitivity"] - want.sensitivity) < 1e-12
