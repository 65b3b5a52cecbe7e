"""The command line: train, evaluate and predict on tiny synthetic data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unet_core.data import write_synthetic_drive
from unet_core.data.imageio import read_image
from unet_train.cli import main
from unet_train.runs import load_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    write_synthetic_drive(root / "data" / "DRIVE", n_train=3, n_test=2, size=(72, 68), seed=2)
    code = main(["train", "--profile", "smoke", "--run-dir", str(root / "run"), "--data-dir",
                 str(root / "data"), "--patch-size", "32", "--eval-tile", "32", "--quiet",
                 "--no-bf16"])
    assert code == 0
    return root


def test_train_writes_a_model(trained):
    assert (trained / "run" / "model.pt").exists()
    cfg = (trained / "run" / "config.json").read_text()
    assert '"bf16": false' in cfg and '"patch_size": 32' in cfg


def test_misspelt_option_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--stpes", "3"])
    err = capsys.readouterr().err
    assert "--stpes" in err and "did you mean 'steps'" in err and "base_channels" in err


def test_unknown_profile_lists_choices(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--profile", "fast"])
    assert "cpu" in capsys.readouterr().err


@pytest.mark.parametrize("split", ["test", "val"])
def test_evaluate_gives_the_numbers_of_the_run(trained, capsys, tmp_path, split):
    """``evaluate --json`` on a finished run reproduces its metrics.json section."""
    out = tmp_path / "m.json"
    args = ["evaluate", "--checkpoint", str(trained / "run" / "model.pt"), "--data-dir",
            str(trained / "data"), "--json", str(out)]
    code = main(args + (["--split", split] if split != "test" else []))
    assert code == 0
    got = json.loads(out.read_text())
    want = json.loads((trained / "run" / "metrics.json").read_text())[split]
    assert got["threshold"] == want["threshold"] and got["images"] == want["images"]
    assert got["pooled"] == pytest.approx(want["pooled"], abs=1e-6)
    assert got["mean"] == pytest.approx(want["mean"], abs=1e-6)
    for a, b in zip(got["per_image"], want["per_image"], strict=True):
        assert a == pytest.approx(b, abs=1e-6)
    text = capsys.readouterr().out
    n = len(want["images"])
    assert f"drive {split}" in text and f"{n} images" in text
    assert f"threshold {want['threshold']:.3f}" in text
    for key, value in got["pooled"].items():  # every pooled number, printed
        assert re.search(rf"^\s+{key}\s+{value:.4f}$", text, re.M), key


def _write_images(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (61, 47, 3), dtype=np.uint8)
    paths = []
    for name, im in [
        ("a.tif", Image.fromarray(rgb)),
        ("b.png", Image.fromarray(rgb[:, :, 0])),  # greyscale
        ("c.png", Image.fromarray(np.dstack([rgb, np.full((61, 47), 255, np.uint8)]))),  # RGBA
        ("d.jpg", Image.fromarray(rgb)),
        ("e.gif", Image.fromarray(rgb).convert("P")),
        ("f.png", Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 200)),  # 16-bit
    ]:
        im.save(folder / name)
        paths.append(folder / name)
    return paths


def test_predict_any_format_and_reports_bad_files(trained, tmp_path, capsys):
    paths = _write_images(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    missing = tmp_path / "missing.tif"
    args = ["predict", "--checkpoint", str(trained / "run" / "model.pt"), "--output",
            str(tmp_path / "out"), *map(str, paths[:3]), str(tmp_path / "broken.png"),
            str(missing), *map(str, paths[3:])]
    code = main(args)
    captured = capsys.readouterr()
    assert code == 1  # some files failed ...
    assert "broken.png" in captured.err and "missing.tif" in captured.err
    assert "6 image(s) segmented, 2 failed" in captured.out  # ... but the others went through
    for p in paths:
        prob = np.asarray(Image.open(tmp_path / "out" / f"{p.stem}_prob.png"))
        mask = np.asarray(Image.open(tmp_path / "out" / f"{p.stem}_mask.png"))
        assert prob.shape == mask.shape == (61, 47)
        assert set(np.unique(mask)) <= {0, 255}


def test_read_image_modes(tmp_path):
    paths = _write_images(tmp_path)
    shapes = {p.suffix + p.stem: read_image(p).shape for p in paths}
    assert shapes[".tifa"] == (61, 47, 3) and shapes[".pngb"] == (61, 47)
    assert shapes[".pngc"] == (61, 47, 3) and shapes[".gife"] == (61, 47, 3)
    sixteen = read_image(paths[-1])  # scaled by its type's range, not stretched per image
    stored = np.asarray(Image.open(paths[-1]), np.float64)
    assert sixteen.dtype == np.float32 and stored.max() > 255
    np.testing.assert_allclose(sixteen, stored / 65535, rtol=1e-6)


def _mask_agrees_with_probability(folder: Path, stem: str, threshold: float) -> np.ndarray:
    """The mask PNG is the probability PNG at ``threshold`` (16-bit rounding aside); returns
    the probability (the PNG's levels / 65535)."""
    prob = np.asarray(Image.open(folder / f"{stem}_prob.png"), np.float64) / 65535.0
    mask = np.asarray(Image.open(folder / f"{stem}_mask.png"))
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    # prob PNG = round(65535 p): the stored level is within half a level of p, so only pixels
    # within one level of the threshold may fall on either side.
    sure = np.abs(prob - threshold) > 1 / 65535
    assert sure.mean() > 0.5
    assert np.array_equal(mask[sure] == 255, prob[sure] >= threshold)
    return prob


def test_predict_mask_is_the_probability_at_the_threshold(trained, tmp_path, capsys):
    model_file = trained / "run" / "model.pt"
    _, _, threshold = load_model(model_file)
    image = trained / "data" / "DRIVE" / "test" / "images" / "01_test.tif"
    assert main(["predict", "--checkpoint", str(model_file), "--output", str(tmp_path / "own"),
                 str(image)]) == 0
    prob = _mask_agrees_with_probability(tmp_path / "own", "01_test", threshold)
    own = np.asarray(Image.open(tmp_path / "own" / "01_test_mask.png")) == 255
    # The printed foreground share is the mask's.
    assert f"{100 * own.mean():.1f} % foreground" in capsys.readouterr().out
    # --threshold moves the mask: lower thresholds mark more pixels, each a superset.
    low, high = (float(np.quantile(prob, q)) for q in (0.25, 0.75))
    masks = {}
    for t in (low, high):
        out = tmp_path / f"t{t:.4f}"
        assert main(["predict", "--checkpoint", str(model_file), "--output", str(out),
                     "--threshold", str(t), str(image)]) == 0
        _mask_agrees_with_probability(out, "01_test", t)
        masks[t] = np.asarray(Image.open(out / "01_test_mask.png")) == 255
        # The probability does not depend on the threshold.
        assert np.array_equal(np.asarray(Image.open(out / "01_test_prob.png")),
                              np.asarray(Image.open(tmp_path / "own" / "01_test_prob.png")))
    assert masks[low].mean() > masks[high].mean()
    assert (masks[low] >= masks[high]).all()
    assert masks[low].mean() == pytest.approx(0.75, abs=0.05)
    assert masks[high].mean() == pytest.approx(0.25, abs=0.05)


def test_a_bad_file_does_not_stop_the_good_ones(trained, tmp_path, capsys):
    paths = _write_images(tmp_path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    text = tmp_path / "notes.tif"
    text.write_text("not an image")
    model = str(trained / "run" / "model.pt")
    code = main(["predict", "--checkpoint", model, "--output", str(tmp_path / "mixed"),
                 str(paths[0]), str(broken), str(paths[1]), str(text), str(paths[2])])
    captured = capsys.readouterr()
    assert code == 1
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2
    assert str(broken) in errors[0] and str(text) in errors[1]
    assert "3 image(s) segmented, 2 failed" in captured.out
    written = sorted(p.name for p in (tmp_path / "mixed").iterdir())
    assert written == sorted(f"{p.stem}_{kind}.png" for p in paths[:3]
                             for kind in ("prob", "mask"))
    # The good files come out as they do without the bad ones; and then the exit code is 0.
    assert main(["predict", "--checkpoint", model, "--output", str(tmp_path / "good"),
                 *map(str, paths[:3])]) == 0
    for name in written:
        assert np.array_equal(np.asarray(Image.open(tmp_path / "mixed" / name)),
                              np.asarray(Image.open(tmp_path / "good" / name))), name
