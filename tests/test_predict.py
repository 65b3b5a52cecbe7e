"""``predict`` on a reader's own images: lossless probability files, the estimated field of view,
16-bit and float inputs, names that never collide, folders, progress and the summary.

The field-of-view estimate is checked on the real DRIVE when ``UNET_DATA_DIR`` holds it (all
40 photographs; run with ``UNET_DATA_DIR=../shared/data``), and always on the synthetic
stand-in.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

import unet_train.cli as cli
from unet_core.data import load_drive, write_synthetic_drive
from unet_core.data.errors import DataError
from unet_core.data.imageio import read_image
from unet_core.data.splits import load_data
from unet_core.metrics import evaluate_set
from unet_train.cli import main
from unet_train.config import TrainConfig
from unet_train.evaluation import evaluate, predict_probability
from unet_train.fov import estimate_fov
from unet_train.predict import (
    collect_inputs,
    encode_probability,
    output_stems,
    predict_files,
    read_probability,
)
from unet_train.runs import load_model
from unet_train.train import train

REAL = Path(os.environ["UNET_DATA_DIR"]) / "DRIVE" if os.environ.get("UNET_DATA_DIR") else None
needs_real_drive = pytest.mark.skipif(
    REAL is None or not (REAL / "test" / "images").is_dir(),
    reason="UNET_DATA_DIR does not hold the real DRIVE",
)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """A 4-step smoke model on a tiny synthetic DRIVE: ``(data root, model.pt)``."""
    root = tmp_path_factory.mktemp("predict")
    write_synthetic_drive(root / "DRIVE", n_train=3, n_test=2, size=(72, 68), seed=1)
    cfg = TrainConfig.from_profile("smoke", patch_size=32, eval_tile=32, steps=4, eval_every=2)
    result = train(cfg, root / "run", data_root=root, progress=False, log=lambda _: None)
    return root, result.run_dir / "model.pt"


def _test_images(root: Path) -> list[Path]:
    return sorted((root / "DRIVE" / "test" / "images").glob("*.tif"))


def _predict(model_file: Path, paths, out: Path, **kwargs):
    model, cfg, threshold = load_model(model_file)
    kwargs.setdefault("threshold", threshold)
    return predict_files(model, cfg, paths, out, **kwargs)


# -- lossless probabilities -------------------------------------------------------------------
def test_probability_files_are_16_bit_and_give_evaluates_auc(smoke, tmp_path):
    root, model_file = smoke
    summary = _predict(model_file, _test_images(root), tmp_path)
    assert not summary.failed and len(summary.predictions) == 2
    model, cfg, threshold = load_model(model_file)
    data = load_data(cfg, root)
    probs = []
    for p, example in zip(summary.predictions, data.test, strict=True):
        with Image.open(p.probability) as im:
            assert im.mode == "I;16"
            stored = np.asarray(im)
        assert stored.dtype == np.uint16 and np.unique(stored).size > 256  # more than 8 bits
        prob = read_probability(p.probability)
        # the file is the model's output to within half a 16-bit step
        model_prob = predict_probability(model, example.image, cfg)
        assert np.abs(prob - model_prob).max() <= 0.5 / 65535 + 1e-7
        probs.append(prob)
    ev = evaluate(model, data.test, cfg, threshold)["pooled"]
    from_files = evaluate_set(probs, [e.target for e in data.test], [e.fov for e in data.test],
                              threshold=threshold).pooled
    # equal to 4 decimals (8-bit files would be off by ~1e-3 for this model)
    assert from_files.auc_roc == pytest.approx(ev["auc_roc"], abs=5e-5)


def test_encode_probability_rounds_to_16_bits_and_refuses_nan():
    p = np.array([[0.0, 0.5, 1.0, 1 / 65535, 0.49999]])
    assert encode_probability(p).tolist() == [[0, 32768, 65535, 1, 32767]]
    with pytest.raises(ValueError, match="NaN"):
        encode_probability(np.array([[np.nan]]))


# -- the field of view ------------------------------------------------------------------------
def _agreement(samples) -> list[float]:
    return [float((estimate_fov(s.image).mask == s.fov).mean()) for s in samples]


@needs_real_drive
def test_fov_estimate_agrees_with_drives_official_masks():
    agree = _agreement(load_drive(REAL, "test")) + _agreement(load_drive(REAL, "training"))
    assert len(agree) == 40
    print(f"FOV agreement on the real DRIVE: min {min(agree):.4f}, mean {np.mean(agree):.4f}")
    assert min(agree) >= 0.99


def test_fov_estimate_agrees_with_the_synthetic_masks(tmp_path):
    for size in ((72, 68), (584, 565)):
        root = write_synthetic_drive(tmp_path / f"D{size[0]}", n_train=0, n_test=3, size=size,
                                     seed=5)
        agree = _agreement(load_drive(root, "test", require_second_observer=False))
        assert min(agree) >= 0.99, (size, agree)


def test_fov_without_a_black_surround_is_the_whole_image():
    rng = np.random.default_rng(0)
    est = estimate_fov(rng.integers(90, 200, (40, 50, 3), dtype=np.uint8))
    assert not est.found and est.mask.all()


def test_fov_auto_writes_the_estimate_and_clears_the_mask_outside(smoke, tmp_path):
    root, model_file = smoke
    image = _test_images(root)[0]
    official = load_drive(root / "DRIVE", "test")[0].fov
    plain = _predict(model_file, [image], tmp_path / "plain", threshold=0.0).predictions[0]
    auto = _predict(model_file, [image], tmp_path / "auto", threshold=0.0,
                    fov="auto").predictions[0]
    fov = np.asarray(Image.open(auto.fov)) == 255
    mask = np.asarray(Image.open(auto.mask))
    assert (fov == official).mean() >= 0.99 and 0.5 < fov.mean() < 0.8
    # threshold 0: foreground everywhere, but for the estimated surround
    assert (np.asarray(Image.open(plain.mask)) == 255).all()
    assert np.array_equal(mask == 255, fov) and (mask[~fov] == 0).all()
    # the probability file stays the model's raw output, also outside the FOV
    assert np.array_equal(read_probability(auto.probability), read_probability(plain.probability))
    assert auto.fov_found and auto.fov_fraction == pytest.approx(fov.mean())


# -- 16-bit and float inputs ------------------------------------------------------------------
def test_read_image_scales_wide_images_by_their_types_range(tmp_path):
    v = np.array([[0, 1, 128, 255]], np.uint8)
    Image.fromarray(v.astype(np.uint16) * 257).save(tmp_path / "a.png")  # I;16
    Image.fromarray(v.astype(np.int32) * 257).save(tmp_path / "b.tif")  # I, 16-bit values
    Image.fromarray(np.array([[0, 2**30, 2**31 - 1, 5]], np.int32)).save(tmp_path / "c.tif")
    Image.fromarray(np.array([[-0.5, 0.25, 1.5, 1.0]], np.float32)).save(tmp_path / "d.tif")
    tifffile.imwrite(tmp_path / "e.tif", np.dstack([v, v, v]).astype(np.uint16) * 257)  # RGB16
    for name in ("a.png", "b.tif", "e.tif"):
        x = read_image(tmp_path / name)
        assert x.dtype == np.float32
        np.testing.assert_allclose(x[..., 0] if x.ndim == 3 else x, v / 255.0, atol=1e-7)
    np.testing.assert_allclose(read_image(tmp_path / "c.tif"), [[0, 0.5, 1, 5 / (2**31 - 1)]],
                               atol=1e-7)
    np.testing.assert_allclose(read_image(tmp_path / "d.tif"), [[0, 0.25, 1, 1]])  # clipped
    # a dark 16-bit image stays dark (no per-image stretch)
    Image.fromarray(np.array([[0, 1000]], np.uint16)).save(tmp_path / "dark.png")
    assert read_image(tmp_path / "dark.png").max() == pytest.approx(1000 / 65535)


def test_read_image_refuses_nan_and_negative_values(tmp_path):
    Image.fromarray(np.array([[0.5, np.nan]], np.float32)).save(tmp_path / "nan.tif")
    Image.fromarray(np.array([[-3, 7]], np.int32)).save(tmp_path / "neg.tif")
    with pytest.raises(DataError, match=r"nan\.tif.*NaN"):
        read_image(tmp_path / "nan.tif")
    with pytest.raises(DataError, match=r"neg\.tif.*negative"):
        read_image(tmp_path / "neg.tif")


def test_16_bit_copy_predicts_as_its_8_bit_original(smoke, tmp_path):
    root, model_file = smoke
    rgb = np.asarray(Image.open(_test_images(root)[0]))
    green = np.ascontiguousarray(rgb[:, :, 1])
    assert green.max() < 250  # a per-image stretch would change this image
    pairs = {"grey": ("g8.png", "g16.png"), "rgb": ("c8.tif", "c16.tif")}
    Image.fromarray(green).save(tmp_path / "g8.png")
    Image.fromarray(green.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    Image.fromarray(rgb).save(tmp_path / "c8.tif")
    tifffile.imwrite(tmp_path / "c16.tif", rgb.astype(np.uint16) * 257)
    assert read_image(tmp_path / "c16.tif").dtype == np.float32  # the 16-bit path is taken
    paths = [tmp_path / n for pair in pairs.values() for n in pair]
    summary = _predict(model_file, paths, tmp_path / "out")
    assert not summary.failed
    by_name = {p.source.name: p for p in summary.predictions}
    for eight, sixteen in pairs.values():
        a, b = by_name[eight], by_name[sixteen]
        diff = np.abs(read_probability(a.probability) - read_probability(b.probability))
        assert diff.max() < 0.02 and diff.mean() < 0.002, (eight, diff.max(), diff.mean())
        assert abs(a.foreground_fraction - b.foreground_fraction) < 0.005


# -- names, folders, failures -----------------------------------------------------------------
def test_same_stem_in_two_folders_never_overwrites(smoke, tmp_path, capsys):
    root, model_file = smoke
    first, second = _test_images(root)
    for folder, source in (("a", first), ("b", second)):
        (tmp_path / folder).mkdir()
        Image.open(source).save(tmp_path / folder / "x.png")
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", str(model_file), "--output", str(out), "--quiet",
                 str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png")])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["x-2_mask.png", "x-2_prob.png",
                                                     "x_mask.png", "x_prob.png"]
    alone = _predict(model_file, [tmp_path / "b" / "x.png"], tmp_path / "alone").predictions[0]
    assert np.array_equal(read_probability(out / "x-2_prob.png"),
                          read_probability(alone.probability))  # b's output, under x-2
    assert not np.array_equal(read_probability(out / "x_prob.png"),
                              read_probability(alone.probability))
    lines = capsys.readouterr().out.splitlines()
    a_line, b_line = (next(line for line in lines if line.startswith(str(tmp_path / f / "x.png")))
                      for f in ("a", "b"))
    assert "-> x_prob.png" in a_line and "renamed" not in a_line
    assert "-> x-2_prob.png" in b_line and f"renamed: x is taken by {tmp_path / 'a'}" in b_line


def test_a_second_run_into_the_same_folder_says_what_it_replaced(smoke, tmp_path, capsys):
    root, model_file = smoke
    args = ["predict", "--checkpoint", str(model_file), "--output", str(tmp_path / "out"),
            "--quiet", str(_test_images(root)[0])]
    assert main(args) == 0
    assert "replaced" not in capsys.readouterr().out
    assert main([*args, "--fov", "auto"]) == 0
    out = capsys.readouterr().out
    assert f"2 file(s) of an earlier run in {tmp_path / 'out'} replaced" in out  # prob, mask
    assert "estimated FOV" in out and "_fov.png" in out


def test_output_stems_also_spare_input_files(tmp_path):
    files = [tmp_path / "x.png", tmp_path / "x.TIF", tmp_path / "x-2.png",
             tmp_path / "y_mask.png", tmp_path / "y.png"]
    stems = output_stems(files, tmp_path)
    assert [s for s, _ in stems] == ["x", "x-2", "x-2-2", "y_mask", "y-2"]
    assert stems[0][1] is None and "taken by" in stems[1][1]
    assert "overwrite an input" in stems[4][1]


def test_a_folder_means_its_images_sorted(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    rgb = np.zeros((8, 8, 3), np.uint8)
    for name in ("c.JpG", "A.PNG", "b.tiff", "d.bmp", "e.gif", "sub/f.png"):
        Image.fromarray(rgb).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    (folder / ".DS_Store").write_bytes(b"")
    inputs = collect_inputs([folder, folder / "b.tiff"])
    assert [p.name for p in inputs.files] == ["A.PNG", "b.tiff", "c.JpG", "d.bmp", "e.gif"]
    assert [p.name for p in inputs.ignored] == ["notes.txt"]
    assert [p.name for p in inputs.repeated] == ["b.tiff"] and not inputs.failed


def test_a_folder_without_images_is_an_error_naming_it(smoke, tmp_path, capsys):
    _, model_file = smoke
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    code = main(["predict", "--checkpoint", str(model_file), "--output", str(tmp_path / "out"),
                 "--quiet", str(empty)])
    captured = capsys.readouterr()
    assert code == 1
    assert f"error: folder {empty} holds no image" in captured.err
    assert "0 image(s) segmented, 1 failed" in captured.out


def test_bad_files_are_reported_and_the_others_processed(smoke, tmp_path, capsys):
    root, model_file = smoke
    good = _test_images(root)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    text = tmp_path / "notes.tif"
    text.write_text("not a TIFF")
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", str(model_file), "--output", str(out),
                 str(good[0]), str(broken), str(text), str(good[1])])
    captured = capsys.readouterr()
    assert code == 1
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 2 and "broken.png" in errors[0] and "notes.tif" in errors[1]
    assert "Traceback" not in captured.err
    assert "predict" in captured.err and "image/s" in captured.err  # the progress bar
    summary = captured.out[captured.out.index("2 image(s) segmented, 2 failed"):]
    assert f"written to {out}" in summary
    failed = summary[summary.index("failed:"):].splitlines()[1:]
    assert len(failed) == 2 and str(broken) in failed[0] and str(text) in failed[1]
    assert all("cannot read image" in line for line in failed)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{p.stem}_{k}.png" for p in good for k in ("prob", "mask"))


def test_quiet_has_no_progress_bar(smoke, tmp_path, capsys):
    root, model_file = smoke
    assert main(["predict", "--checkpoint", str(model_file), "--output", str(tmp_path / "o"),
                 "--quiet", str(_test_images(root)[0])]) == 0
    assert capsys.readouterr().err == ""


def test_predict_and_evaluate_take_a_device(smoke, tmp_path, capsys, monkeypatch):
    root, model_file = smoke
    model, _, _ = load_model(model_file, device="cpu")
    assert next(model.parameters()).device == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            load_model(model_file, device="cuda")
    seen = []

    def spy(path, device="cpu"):
        seen.append(device)
        return load_model(path, device="cpu")

    monkeypatch.setattr(cli, "load_model", spy)
    assert main(["predict", "--checkpoint", str(model_file), "--output", str(tmp_path / "o"),
                 "--quiet", "--device", "cpu", str(_test_images(root)[0])]) == 0
    assert main(["evaluate", "--checkpoint", str(model_file), "--data-dir", str(root)]) == 0
    assert seen == ["cpu", "auto"]
    assert "on cpu" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["predict", "--checkpoint", str(model_file), "--output", "o", "--device", "tpu",
              "x.png"])
    assert "invalid choice: 'tpu'" in capsys.readouterr().err


def test_help_documents_the_outputs(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = capsys.readouterr().out
    assert "16-bit" in text and "65535" in text and "--fov" in text and "ESTIMATED" in text
