"""Chapter 8's "your own image" in the built book, in headless Chromium, offline.

Run after the book is built (``make book`` or ``make book-strict``; ``make site-test`` runs
every test of this folder), with the real data (``UNET_DATA_DIR``) and the runs the book
trained (``UNET_RUNS_DIR``). The page's file inputs are fed real files:

* a DRIVE test image (the TIFF itself) with its ground truth and FOV mask: the probabilities
  the page computes (onnxruntime-web in a Web Worker, the page's overlap-tile plan) equal
  ``unet_core.tiling.predict_tiled``'s with the run's PyTorch model to 1e-3 (max abs), and
  the F1 at the model's threshold equals ``unet_core.metrics``'s to 3 decimals;
* an ISBI 2012 slice with chapter 7's model, when the page offers it: the probabilities;
* a truncated file and an image over the page's size limit: one clear message each;
* cancelling a run, then segmenting again;
* no console error, no request outside the site, and neither the runtime nor a model fetched
  before an image is picked; from ``file://`` the page says why it cannot run.

Without a built site, a browser, the data or the runs the tests are skipped, unless
``UNET_REQUIRE_SITE_TEST=1`` (CI), which fails them instead.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import SITE, chrome, skip_or_fail, wait_for

from unet_book.browser_model import tiled_probabilities
from unet_book.site.mount import SITE_DIR
from unet_core.data.imageio import read_image, read_mask
from unet_core.data.paths import data_dir
from unet_core.metrics import segmentation_metrics
from unet_train.predict import to_model_input
from unet_train.runs import load_model, runs_dir

PAGE = "notebooks/08_mask_explorer.html"
ROOT_JS = "document.querySelector('.unet-segment .unet-segment-root')"
TOLERANCE = 1e-3  # max abs difference of the probabilities, page against PyTorch
OUTSIDE_TARGET = 0.01  # share of outside-FOV pixels above the threshold (issue target)


@pytest.fixture(scope="module")
def browser(browser):
    """The shared browser (conftest.py), with time for the network to run in the page."""
    browser.set_script_timeout(300)
    return browser


@pytest.fixture(scope="module")
def page(browser, site_url) -> list[str]:
    """Chapter 8 with the segmenter ready; the run folders it offers, in its order."""
    browser.get(f"{site_url}/{PAGE}")
    state = wait_for(browser, f"const r = {ROOT_JS}; return r ? r.dataset.state : "
                     "(document.querySelector('.unet-segment')?.dataset.state === 'error'"
                     " ? 'error' : null);")
    note = browser.execute_script("return document.querySelector('.unet-segment').innerText;")
    assert state == "idle", f"the segmenter did not load: {note}"
    return browser.execute_script(
        "return document.querySelector('.unet-segment').dataset.segmentRuns;").split()


def real(*parts: str) -> Path:
    path = data_dir().joinpath(*parts)
    if not path.exists():
        skip_or_fail(f"{Path(*parts)} is not in the data folder: the test needs the real data")
    return path


def run_dir(name: str) -> Path:
    path = runs_dir() / name
    if not (path / "model.pt").exists():
        skip_or_fail(f"run {name} is not in the runs folder: build the book here first")
    return path


def segment(browser, image: Path, model: int = 0, target: Path | None = None,
            fov: Path | None = None, timeout: float = 300) -> dict:
    """Give the page its files (masks first, the image last, which starts the network);
    wait for the result; the page's state, status line and summary."""
    browser.execute_script(f"{ROOT_JS}.dataset.state = 'given';"
                           "document.querySelector('.us-model').value = String(arguments[0]);"
                           "document.querySelector('.us-file').value = '';",  # a file again
                           model)
    for cls, path in ((".us-target", target), (".us-fov", fov)):
        if path is not None:
            browser.execute_script(f"document.querySelector('{cls}').value = '';")
            browser.find_element("css selector", cls).send_keys(str(path))
    browser.find_element("css selector", ".us-file").send_keys(str(image))
    wait_for(browser, f"const s = {ROOT_JS}.dataset.state; return s === 'done' || "
             "s === 'error' || s === 'cancelled';", timeout)
    return browser.execute_script(
        "const p = document.querySelector('.unet-segment').unetSegment;"
        "return {state: p.root.dataset.state, status: p.status.textContent,"
        " summary: p.summary.textContent, f1: p.metrics ? p.metrics.f1 : null,"
        " ms: p.result ? p.result.ms : null};")


def page_probabilities(browser) -> np.ndarray:
    """The page's last probability map, float32 (H, W)."""
    out = browser.execute_script("""
const r = document.querySelector('.unet-segment').unetSegment.result;
const bytes = new Uint8Array(r.prob.buffer, r.prob.byteOffset, r.prob.byteLength);
let text = ''; for (let i = 0; i < bytes.length; i += 0x8000)
  text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
return {b64: btoa(text), height: r.height, width: r.width};""")
    return np.frombuffer(base64.b64decode(out["b64"]), np.float32).reshape(
        out["height"], out["width"])


@functools.lru_cache(maxsize=4)
def python_probabilities(run: Path, image: Path) -> tuple[np.ndarray, float, Any]:
    """``predict_tiled``'s probabilities (fp32, no test-time augmentation) for ``image`` read
    as ``predict`` reads it; the run's threshold and config."""
    model, cfg, threshold = load_model(run / "model.pt")
    x = to_model_input(read_image(image), cfg, model.in_channels)
    return tiled_probabilities(model.float().eval(), x, cfg.eval_tile), threshold, cfg


def test_nothing_large_is_fetched_before_an_image_is_picked(browser, page, site_url):
    names = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);")
    assert not [n for n in names if re.search(r"\.(onnx|wasm)|ort\.wasm", n)], names
    assert all(n.startswith(site_url) for n in names), names


def test_a_drive_image_equals_pytorch_and_the_library(browser, page, capsys):
    image = real("DRIVE", "test", "images", "01_test.tif")
    target = real("DRIVE", "test", "1st_manual", "01_manual1.gif")
    fov = real("DRIVE", "test", "mask", "01_test_mask.gif")
    run = run_dir(page[0])
    shown = segment(browser, image, 0, target, fov)
    assert shown["state"] == "done", shown["status"]
    got = page_probabilities(browser)
    want, threshold, cfg = python_probabilities(run, image)
    assert got.shape == want.shape == (584, 565)
    difference = float(np.abs(got - want).max())
    assert difference < TOLERANCE, f"largest difference to PyTorch {difference:.2e}"
    truth, inside = read_mask(target), read_mask(fov)
    f1 = segmentation_metrics(want, truth, inside, threshold=threshold).f1
    assert abs(shown["f1"] - f1) < 5e-4, (shown["f1"], f1)
    assert f"F1 {shown['f1']:.4f}" in shown["summary"]
    outside = float((got[~inside] >= np.float32(threshold)).mean())
    outside_py = float((want[~inside] >= np.float32(threshold)).mean())
    if cfg.outside_fov == "background" and cfg.profile != "smoke":
        # the book's model, trained to give background there (not the seconds-long smoke run)
        assert max(outside, outside_py) < OUTSIDE_TARGET, (outside, outside_py)
    with capsys.disabled():
        print(f"\n01_test.tif in Chromium: {shown['ms'] / 1000:.2f} s for the tiles; largest "
              f"difference to PyTorch {difference:.2e}; F1 at {threshold:.4f} page "
              f"{shown['f1']:.4f}, library {f1:.4f}; outside the FOV above the threshold: "
              f"page {100 * outside:.2f} %, PyTorch {100 * outside_py:.2f} % "
              f"({cfg.profile} profile, trained with outside_fov={cfg.outside_fov})")


def test_an_isbi_slice_equals_pytorch(browser, page, capsys):
    if len(page) < 2:
        pytest.skip("the page offers no ISBI 2012 model (chapter 7's run was not trained)")
    image = real("isbi2012", "train", "images", "25.png")
    shown = segment(browser, image, 1)
    assert shown["state"] == "done", shown["status"]
    got = page_probabilities(browser)
    want, _, _ = python_probabilities(run_dir(page[1]), image)
    difference = float(np.abs(got - want).max())
    assert got.shape == (512, 512) and difference < TOLERANCE, difference
    with capsys.disabled():
        print(f"\nISBI slice 25 in Chromium: {shown['ms'] / 1000:.2f} s for the tiles; "
              f"largest difference to PyTorch {difference:.2e}")


def test_a_truncated_file_gets_one_clear_message(browser, page, tmp_path):
    whole = real("isbi2012", "train", "images", "25.png").read_bytes()
    for suffix in (".png", ".jpg"):
        cut = tmp_path / f"cut{suffix}"
        if suffix == ".png":
            cut.write_bytes(whole[: len(whole) // 2])
        else:
            from PIL import Image

            Image.new("L", (64, 64), 100).save(tmp_path / "whole.jpg")
            data = (tmp_path / "whole.jpg").read_bytes()
            cut.write_bytes(data[: len(data) // 2])
        shown = segment(browser, cut)
        assert shown["state"] == "error", shown
        assert shown["status"].startswith(cut.name), shown["status"]
        assert re.search(r"truncated|damaged", shown["status"]), shown["status"]
        assert "\n" not in shown["status"] and len(shown["status"]) < 300


def test_an_image_over_the_limit_is_refused_with_the_limit(browser, page, tmp_path):
    from PIL import Image

    big = tmp_path / "big.png"
    Image.new("L", (4100, 4100), 0).save(big)
    shown = segment(browser, big)
    assert shown["state"] == "error"
    assert "4100x4100" in shown["status"] and "16.78 megapixels" in shown["status"]


def test_cancel_then_segment_again(browser, page):
    image = real("DRIVE", "test", "images", "02_test.tif")
    browser.execute_script(f"{ROOT_JS}.dataset.state = 'given';"
                           "document.querySelector('.us-file').value = '';")
    browser.find_element("css selector", ".us-file").send_keys(str(image))
    wait_for(browser, "return document.querySelector('.us-progress').value >= 1;", 120)
    browser.find_element("css selector", ".us-cancel").click()
    assert wait_for(browser, f"return {ROOT_JS}.dataset.state;") == "cancelled"
    shown = segment(browser, image)
    assert shown["state"] == "done", shown["status"]


def test_no_console_error_and_nothing_from_outside(browser, page, site_url):
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    names = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);")
    assert all(n.startswith(site_url) for n in names), [n for n in names
                                                        if not n.startswith(site_url)]


def test_from_file_urls_the_page_says_why():
    if not (SITE / PAGE).exists():
        skip_or_fail(f"no built {PAGE}")
    driver = chrome()
    try:
        driver.get((SITE / PAGE).resolve().as_uri())
        state = wait_for(driver, "return document.querySelector('.unet-segment')"
                                 "?.dataset.state || null;")
        note = driver.execute_script(
            "return document.querySelector('.unet-segment').innerText;")
        time.sleep(0.2)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()
    assert state == "file" and "HTTP" in note, (state, note)
    assert not errors, errors


def test_the_published_manifests_match_their_files(page):
    for name in page:
        folder = SITE / SITE_DIR / name / "browser"
        record = json.loads((folder / "model.json").read_text())
        data = (folder / "model.onnx").read_bytes()
        assert hashlib.sha256(data).hexdigest() == record["sha256"]
        assert record["largest_difference_to_torch"] < 1e-4
