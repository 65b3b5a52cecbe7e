"""The command line: train, evaluate and predict on tiny synthetic data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unet_core.cli import main
from unet_core.data import write_synthetic_drive
from unet_core.data.imageio import read_image


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


def test_evaluate(trained, capsys, tmp_path):
    out = tmp_path / "m.json"
    code = main(["evaluate", "--checkpoint", str(trained / "run" / "model.pt"), "--data-dir",
                 str(trained / "data"), "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "auc_roc" in text and "2 images" in text
    assert out.exists()


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
    sixteen = read_image(paths[-1])
    assert sixteen.dtype == np.uint8 and sixteen.max() == 255
