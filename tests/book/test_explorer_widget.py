"""The browser explorer's data preparation (16-bit levels, histograms, data files) and its
agreement with unet_core.metrics (the static export and its Sphinx hook:
test_explorer_export.py).

The ES module's own computations (decoding, histograms, metrics, window, palette) are run in
Node.js where it is installed (skipped otherwise); the browser tests in tests/site run the same
module in Chromium.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pytest

from unet_book.explorer import (
    _MAGMA,
    LEGEND,
    OVERLAYS,
    PALETTE,
    ZOOMS,
    Case,
    render_panel,
    window,
)
from unet_book.explorer_widget import (
    LEVELS,
    MODULE,
    STEPS,
    class_histograms,
    decode_case,
    encode_case,
    histogram_auc,
    histogram_metrics,
    quantise,
    threshold_bin,
)
from unet_core.metrics import confusion_counts, segmentation_metrics
from unet_train.predict import encode_probability

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")


def make_case(h: int = 96, w: int = 80, seed: int = 0, dtype=np.float32,
              fov: bool = True) -> Case:
    rng = np.random.default_rng(seed)
    target = rng.random((h, w)) < 0.12
    prob = np.clip(0.5 * target + rng.normal(0.3, 0.2, (h, w)), 0, 1).astype(dtype)
    # probabilities exactly at, and one float step either side of, slider thresholds
    k = rng.integers(1, STEPS, 40)
    at = (k / STEPS).astype(dtype)
    prob.flat[:40] = at
    prob.flat[40:80] = np.nextafter(at, dtype(0))
    prob.flat[80:120] = np.nextafter(at, dtype(1))
    prob.flat[120:122] = (0, 1)
    yy, xx = np.mgrid[:h, :w]
    mask = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (0.45 * min(h, w)) ** 2 if fov else None
    return Case(f"case{seed}", rng.random((h, w, 3)).astype(np.float32), prob, target, mask,
                target ^ (rng.random((h, w)) < 0.05))


# -- 16-bit levels -----------------------------------------------------------------------------
def test_threshold_bin_rounds_halves_up_in_integers():
    assert threshold_bin(10) == 6554 and threshold_bin(30) == 19661  # 6553.5, 19660.5
    for k in range(1, STEPS):
        assert threshold_bin(k) == int(np.floor(k / STEPS * LEVELS + 0.5))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_levels_are_exact_at_every_slider_threshold(dtype):
    c = make_case(seed=1, dtype=dtype)
    q = quantise(c.prob)
    assert q.dtype == np.uint16 and q.shape == c.prob.shape
    for k in range(1, STEPS):
        assert np.array_equal(q >= threshold_bin(k), c.prob >= k / STEPS), k
    # at most one level from round(p * 65535) (float16: k / 100 itself is rounded to a float16,
    # up to half its step, 16 levels, away), and the order of the pixels is kept
    exact = encode_probability(c.prob.astype(np.float64)).astype(int)  # float16 * 65535: inf
    assert np.abs(q.astype(int) - exact).max() <= (16 if dtype == np.float16 else 1)
    order = np.argsort(c.prob.ravel(), kind="stable")
    assert (np.diff(q.ravel()[order].astype(int)) >= 0).all()
    assert q.min() == 0 and q.max() == LEVELS


def test_histograms_count_each_class_inside_and_outside_the_fov():
    c = make_case(seed=2)
    q = quantise(c.prob)
    hist = class_histograms(q, c.target, c.fov)
    assert hist.shape == (4, LEVELS + 1) and hist.sum() == c.prob.size
    for row, (vessel, inside) in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
        where = (c.target == bool(vessel)) & (c.fov == bool(inside))
        assert hist[row].sum() == where.sum()
        assert np.array_equal(hist[row], np.bincount(q[where], minlength=LEVELS + 1))
    assert class_histograms(q, c.target)[:2].sum() == 0  # no FOV: every pixel inside


@pytest.mark.parametrize("use_fov", [True, False])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_histogram_metrics_equal_the_library_on_the_float_probabilities(use_fov, dtype):
    c = make_case(200, 180, seed=3, dtype=dtype)
    hist = class_histograms(quantise(c.prob), c.target, c.fov)
    fov = c.fov if use_fov else None
    for k in (5, 10, 30, 47, 50, 62, 77, 99):
        got = histogram_metrics(hist, k, use_fov)
        ref = segmentation_metrics(c.prob, c.target, fov, threshold=k / STEPS)
        counts = confusion_counts(c.prob, c.target, fov, threshold=k / STEPS)
        assert (got["tp"], got["fp"], got["fn"], got["tn"]) == (
            counts.tp, counts.fp, counts.fn, counts.tn), k
        for key in ("f1", "sensitivity", "specificity", "precision", "accuracy"):
            assert got[key] == pytest.approx(getattr(ref, key), abs=1e-12), (k, key)
        # threshold-free: the trapezoid over 65536 levels against the exact AUC
        assert got["auc_roc"] == pytest.approx(ref.auc_roc, abs=1e-4)


def test_sixteen_bits_keep_the_auc_and_eight_would_not():
    """A map like a trained model's (most background pixels near 0, many distinct values):
    16-bit levels change the AUC by less than 1e-4, 8-bit ones (the reason for 16) by more."""
    rng = np.random.default_rng(5)
    target = rng.random((300, 300)) < 0.1
    prob = 1 / (1 + np.exp(-(6 * target + rng.normal(-7, 2.5, target.shape))))
    exact = segmentation_metrics(prob, target).auc_roc
    auc16 = histogram_auc(class_histograms(quantise(prob), target))
    auc8 = segmentation_metrics(np.round(prob * 255) / 255, target).auc_roc
    assert abs(auc16 - exact) < 1e-4 < abs(auc8 - exact)


def test_histogram_auc_without_a_class_is_nan():
    q = np.full((4, 4), 100, np.uint16)
    assert np.isnan(histogram_auc(class_histograms(q, np.zeros((4, 4), bool))))


# -- data files --------------------------------------------------------------------------------
def test_data_file_round_trip():
    c = make_case(seed=6)
    yy, xx = np.mgrid[:96, :80]
    smooth = np.stack([yy / 95, xx / 79, (yy + xx) / 174], axis=2).astype(np.float32)
    c = Case(c.name, smooth, c.prob, c.target, c.fov, c.second_observer)
    blob = encode_case(c)
    d = decode_case(blob)
    assert (d["name"], d["width"], d["height"], d["steps"], d["levels"].dtype) == (
        "case6", 80, 96, STEPS, np.uint16)
    assert np.array_equal(d["levels"], quantise(c.prob))
    assert np.array_equal(d["labels"] & 1, c.target) and np.array_equal(d["labels"] & 2 > 0, c.fov)
    assert np.array_equal(d["labels"] & 4 > 0, c.second_observer)
    assert d["has_target"] and d["has_fov"] and d["has_second_observer"]
    assert np.abs(d["image"].astype(int) - np.round(c.image * 255)).max() < 12  # a JPEG
    bare = decode_case(encode_case(Case("x.png", np.zeros((5, 7)), np.full((5, 7), 0.3))))
    assert not (bare["has_target"] or bare["has_fov"] or bare["has_second_observer"])
    assert bare["image"].shape == (5, 7, 3) and (bare["labels"] == 0).all()
    with pytest.raises(ValueError, match="not a mask explorer data file"):
        decode_case(b"PNG" + blob[3:])


# -- the ES module, in Node.js -----------------------------------------------------------------
def _node(script: str, *args: str) -> dict:
    if NODE is None:
        pytest.skip("node not installed: the ES module is tested in the browser tests only")
    head = f"import * as ux from {json.dumps(MODULE.as_uri())};\n"
    done = subprocess.run([NODE, "--input-type=module", "-e", head + script, *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_module_is_offline_and_one_file():
    text = MODULE.read_text()
    assert not re.search(r"^\s*import\b", text, re.M), "the module imports nothing"
    assert not re.search(r"https?://", text), "no URL: nothing from a CDN or the network"
    assert "export default { render }" in text and "export async function mount(" in text
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "static/*.js" in package_data["package-data"]["unet_book"]


def test_the_module_shares_the_palette_overlays_zooms_and_magma():
    got = _node("console.log(JSON.stringify({palette: ux.PALETTE, legend: ux.LEGEND, "
                "overlays: ux.OVERLAYS, zooms: ux.ZOOMS, magma: ux.MAGMA_HEX, "
                "bins: Array.from({length: 99}, (_, i) => ux.thresholdBin(i + 1, 100))}));")
    assert {k: tuple(v) for k, v in got["palette"].items()} == PALETTE
    assert got["legend"] == LEGEND
    assert tuple(got["overlays"]) == OVERLAYS and got["zooms"] == ZOOMS
    assert got["magma"] == _MAGMA.tobytes().hex()
    assert got["bins"] == [threshold_bin(k) for k in range(1, STEPS)]


def test_the_module_computes_the_library_metrics_from_a_data_file(tmp_path):
    c = make_case(584, 565, seed=7)
    (tmp_path / "case.bin").write_bytes(encode_case(c))
    ks = [10, 30, 45, 62, 90]
    got = _node("""
import { readFileSync } from "node:fs";
const d = await ux.decode(readFileSync(process.argv[1]));
const s = ux.prepare(d);
const out = {};
for (const fov of [true, false]) for (const k of JSON.parse(process.argv[2])) {
  out[`${k}-${fov}`] = ux.metricsAt(s, k, d.steps, fov);
  out[`${k}-${fov}`].text = ux.metricsText(out[`${k}-${fov}`], k / d.steps);
}
console.log(JSON.stringify(out));
""", str(tmp_path / "case.bin"), json.dumps(ks))
    for use_fov in (True, False):
        fov = c.fov if use_fov else None
        for k in ks:
            m = got[f"{k}-{str(use_fov).lower()}"]
            ref = segmentation_metrics(c.prob, c.target, fov, threshold=k / STEPS)
            counts = confusion_counts(c.prob, c.target, fov, threshold=k / STEPS)
            assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (counts.tp, counts.fp, counts.fn,
                                                            counts.tn)
            for key in ("f1", "sensitivity", "specificity", "precision"):
                assert m[key] == pytest.approx(getattr(ref, key), abs=1e-12)
            assert round(m["auc_roc"], 3) == pytest.approx(round(ref.auc_roc, 3), abs=1e-3)
            assert m["text"].startswith(f"threshold {k / STEPS:.2f}: F1 {ref.f1:.4f}, ")


def test_the_module_window_and_errors_overlay_equal_pythons(tmp_path):
    c = make_case(60, 50, seed=8)
    (tmp_path / "case.bin").write_bytes(encode_case(c))
    got = _node("""
import { readFileSync } from "node:fs";
const d = await ux.decode(readFileSync(process.argv[1]));
const windows = [[null, 0.5, 0.5], [20, 0.5, 0.5], [20, 0, 1], [16, 0.31, 0.77], [500, 0.3, 0.3]]
  .map(([size, cy, cx]) => ux.windowOf(60, 50, size, cy, cx));
const r = ux.windowOf(60, 50, null, 0.5, 0.5);
const px = new Uint8ClampedArray(r.w * r.h * 4);
ux.paint(px, d, null, "errors", ux.thresholdBin(47, 100), true, r);
console.log(JSON.stringify({windows, errors: Array.from(px)}));
""", str(tmp_path / "case.bin"))
    for (size, cy, cx), r in zip([(None, 0.5, 0.5), (20, 0.5, 0.5), (20, 0, 1), (16, 0.31, 0.77),
                                  (500, 0.3, 0.3)], got["windows"], strict=True):
        ys, xs = window((60, 50), size, (cy, cx))
        assert (r["y0"], r["x0"], r["h"], r["w"]) == (ys.start, xs.start, ys.stop - ys.start,
                                                      xs.stop - xs.start)
    errors = np.array(got["errors"], np.uint8).reshape(60, 50, 4)[..., :3]
    assert np.array_equal(errors, render_panel(c, "errors", 0.47, True))
