"""Loaders, validation and mask binarisation of unet_core.data, on tiny files in tmp_path."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unet_core.data import (
    DataError,
    SyntheticDataWarning,
    binarize_mask,
    data_dir,
    load_drive,
    load_isbi2012,
    read_gray,
    read_mask,
    read_rgb,
    resolve_dataset,
    shown_path,
)

H, W = 12, 10
RNG = np.random.default_rng(1234)
MASK = RNG.random((H, W)) > 0.6  # the reference foreground of the mask-mode tests


# -- helpers ------------------------------------------------------------------------------------
def _save_l(mask: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(path, optimize=False)


def _save_palette(index: np.ndarray, path: Path, palette: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.frombytes("P", index.shape[::-1], index.astype(np.uint8).tobytes())
    im.putpalette(palette)
    im.save(path, optimize=False)


def _image(seed: int, shape: tuple[int, ...] = (H, W, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _write_drive(root: Path, split: str, ids: list[int], second: bool | None = None) -> None:
    """A tiny DRIVE split in the official layout (random content)."""
    second = split == "test" if second is None else second
    for i in ids:
        img = root / split / "images" / f"{i:02d}_{split}.tif"
        img.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_image(i)).save(img)
        vessels = np.random.default_rng(i).random((H, W)) > 0.8
        _save_l(vessels, root / split / "1st_manual" / f"{i:02d}_manual1.gif")
        fov = np.zeros((H, W), bool)
        fov[2:-2, 2:-2] = True
        _save_l(fov, root / split / "mask" / f"{i:02d}_{split}_mask.gif")
        if second:
            _save_palette(
                vessels.astype(np.uint8), root / split / "2nd_manual" / f"{i:02d}_manual2.gif",
                [4, 2, 4, 252, 254, 252],
            )


def _write_isbi_png(root: Path, n: int = 3, test: int = 2) -> None:
    for i in range(n):
        for folder in ("images", "labels"):
            (root / "train" / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(_image(i, (H, W))).save(root / "train" / "images" / f"{i:02d}.png")
        label = np.where(np.random.default_rng(i).random((H, W)) > 0.3, 255, 0).astype(np.uint8)
        Image.fromarray(label).save(root / "train" / "labels" / f"{i:02d}.png")
    for i in range(test):
        (root / "test" / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(_image(100 + i, (H, W))).save(root / "test" / "images" / f"{i:02d}.png")


def _tiff(path: Path, stack: np.ndarray) -> None:
    """A multi-page greyscale TIFF, like the challenge's volumes."""
    tifffile.imwrite(path, stack, photometric="minisblack")


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# -- data_dir -------------------------------------------------------------------------------------
def test_data_dir_default_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("UNET_DATA_DIR", raising=False)
    assert data_dir() == Path("./data")
    monkeypatch.setenv("UNET_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path


# -- mask binarisation, every mode ----------------------------------------------------------------
def _mask_file(kind: str, path: Path) -> Path:
    m = MASK
    if kind == "L_0_255_png":
        Image.fromarray(np.where(m, 255, 0).astype(np.uint8)).save(path := path / "m.png")
    elif kind == "L_0_255_gif":
        _save_l(m, path := path / "m.gif")
    elif kind == "L_0_1_png":
        Image.fromarray(m.astype(np.uint8)).save(path := path / "m.png")
    elif kind == "L_antialiased":  # > 2 levels: threshold at 128
        levels = np.where(m, 200, 30).astype(np.uint8)
        levels[0, 0] = 250 if m[0, 0] else 100
        Image.fromarray(levels).save(path := path / "m.png")
    elif kind == "P_drive_palette":
        _save_palette(m.astype(np.uint8), path := path / "m.gif", [4, 2, 4, 252, 254, 252])
    elif kind == "P_inverted_palette_png":  # index 1 displayed black: the index still wins
        _save_palette(m.astype(np.uint8), path := path / "m.png", [255, 255, 255, 0, 0, 0])
    elif kind == "mode_1":
        Image.fromarray(m).save(path := path / "m.png")
    elif kind == "RGB_white":
        rgb = np.repeat(np.where(m, 255, 0).astype(np.uint8)[..., None], 3, axis=2)
        Image.fromarray(rgb).save(path := path / "m.png")
    elif kind == "RGB_red_annotation":
        rgb = np.zeros((H, W, 3), np.uint8)
        rgb[m, 0] = 255
        Image.fromarray(rgb).save(path := path / "m.png")
    elif kind == "RGBA":
        rgba = np.zeros((H, W, 4), np.uint8)
        rgba[m, :3] = 255
        rgba[..., 3] = 255
        Image.fromarray(rgba).save(path := path / "m.png")
    elif kind == "I16_0_65535":
        Image.fromarray(np.where(m, 65535, 0).astype(np.uint16)).save(path := path / "m.png")
    elif kind == "TIFF_float":
        Image.fromarray(m.astype(np.float32)).save(path := path / "m.tif")
    else:  # pragma: no cover
        raise AssertionError(kind)
    return path


MASK_KINDS = [
    "L_0_255_png", "L_0_255_gif", "L_0_1_png", "L_antialiased", "P_drive_palette",
    "P_inverted_palette_png", "mode_1", "RGB_white", "RGB_red_annotation", "RGBA",
    "I16_0_65535", "TIFF_float",
]


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_read_mask_binarises_every_mode(kind: str, tmp_path: Path) -> None:
    path = _mask_file(kind, tmp_path)
    mask = read_mask(path)
    assert mask.dtype == bool and mask.shape == (H, W)
    np.testing.assert_array_equal(mask, MASK)


def test_drive_second_manual_palette_is_read_by_index(tmp_path: Path) -> None:
    """DRIVE's 2nd_manual: palette P, index 1 = vessel, whatever the colours."""
    path = tmp_path / "01_manual2.gif"
    _save_palette(MASK.astype(np.uint8), path, [4, 2, 4, 252, 254, 252])
    with Image.open(path) as im:
        assert im.mode == "P" and set(np.unique(np.asarray(im))) == {0, 1}
    np.testing.assert_array_equal(read_mask(path), MASK)


@pytest.mark.parametrize(
    ("levels", "expected"),
    [((0,), False), ((255,), True), ((1,), True), ((0, 1), None), ((0, 255), None), ((3, 7), None)],
)
def test_binarize_levels(levels: tuple[int, ...], expected: bool | None) -> None:
    values = np.where(MASK, levels[-1], levels[0]).astype(np.uint8)
    result = binarize_mask(values)
    if expected is None:  # two levels: the higher is foreground
        np.testing.assert_array_equal(result, MASK)
    else:
        assert result.all() if expected else not result.any()


def test_palette_mask_with_many_indices_raises(tmp_path: Path) -> None:
    path = tmp_path / "multi.png"
    _save_palette((np.arange(H * W).reshape(H, W) % 3), path, [0, 0, 0, 255, 0, 0, 0, 255, 0])
    with pytest.raises(DataError, match=r"multi\.png.*3 indices.*binary mask"):
        read_mask(path)


def test_palette_mask_single_bright_index_zero_is_ambiguous(tmp_path: Path) -> None:
    """Pillow writes a uniformly white L image as a one-colour GIF, index 0 = white."""
    path = tmp_path / "white.gif"
    Image.fromarray(np.full((H, W), 255, np.uint8)).save(path)  # optimize=True (default)
    with Image.open(path) as im:
        assert im.mode == "P"
    with pytest.raises(DataError, match=r"white\.gif.*ambiguous"):
        read_mask(path)


def test_unsupported_mask_mode_raises(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (W, H)).save(path)
    with pytest.raises(DataError, match=r"cmyk\.jpg.*mode 'CMYK'"):
        read_mask(path)


# -- image readers ------------------------------------------------------------------------------
def test_read_rgb_and_gray(tmp_path: Path) -> None:
    rgb = _image(0)
    Image.fromarray(rgb).save(tmp_path / "c.tif", compression="tiff_lzw")
    np.testing.assert_array_equal(read_rgb(tmp_path / "c.tif"), rgb)
    grey = _image(1, (H, W))
    Image.fromarray(grey).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_gray(tmp_path / "g.png"), grey)
    Image.fromarray(np.repeat(grey[..., None], 3, 2)).save(tmp_path / "g3.png")
    np.testing.assert_array_equal(read_gray(tmp_path / "g3.png"), grey)
    with pytest.raises(DataError, match=r"g\.png.*mode 'L'.*RGB"):
        read_rgb(tmp_path / "g.png")
    with pytest.raises(DataError, match=r"c\.tif.*colour image.*greyscale"):
        read_gray(tmp_path / "c.tif")
    Image.fromarray(np.zeros((H, W), np.uint16)).save(tmp_path / "g16.png")
    with pytest.raises(DataError, match=r"g16\.png.*8-bit greyscale"):
        read_gray(tmp_path / "g16.png")


@pytest.mark.parametrize("suffix", [".png", ".gif", ".tif"])
def test_truncated_file_raises_naming_it(suffix: str, tmp_path: Path) -> None:
    path = tmp_path / f"broken{suffix}"
    Image.fromarray(_image(3, (64, 64))).save(path)
    _truncate(path)
    with pytest.raises(DataError, match=rf"broken\{suffix}.*truncated"):
        read_gray(path)


def test_missing_empty_and_garbage_files_raise(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing mask: .*nope\.gif does not exist"):
        read_mask(tmp_path / "nope.gif", "mask")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.png"):
        read_mask(tmp_path / "empty.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DataError, match=r"cannot read image .*text\.png"):
        read_rgb(tmp_path / "text.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(DataError, match=r"dir\.png is not a regular file"):
        read_rgb(tmp_path / "dir.png")


# -- DRIVE ----------------------------------------------------------------------------------------
def test_load_drive_reads_the_official_layout(tmp_path: Path) -> None:
    _write_drive(tmp_path, "training", [21, 3, 10])
    _write_drive(tmp_path, "test", [2, 1])
    (tmp_path / "training" / "images" / ".DS_Store").write_bytes(b"junk")  # hidden: ignored
    train = load_drive(tmp_path, "training")
    assert [s.name for s in train] == ["03_training", "10_training", "21_training"]  # numeric
    assert [s.id for s in train] == [3, 10, 21]
    s = train[0]
    assert s.image.shape == (H, W, 3) and s.image.dtype == np.uint8
    np.testing.assert_array_equal(s.image, _image(3))
    assert s.vessels.dtype == bool and s.fov.dtype == bool
    np.testing.assert_array_equal(s.vessels, np.random.default_rng(3).random((H, W)) > 0.8)
    assert s.fov.sum() == (H - 4) * (W - 4)
    assert s.second_observer is None
    assert s.path == tmp_path / "training" / "images" / "03_training.tif"
    test = load_drive(tmp_path, "test")
    assert [s.name for s in test] == ["01_test", "02_test"]
    assert test[0].second_observer is not None
    np.testing.assert_array_equal(test[0].second_observer, test[0].vessels)
    with pytest.raises(AttributeError):
        s.name = "x"  # type: ignore[misc]  # frozen


def test_load_drive_bad_split_lists_choices(tmp_path: Path) -> None:
    expected = "split='train' is not valid; expected one of training, test"
    with pytest.raises(ValueError, match=expected):
        load_drive(tmp_path, "train")


@pytest.mark.parametrize(
    ("damage", "pattern"),
    [
        ("no_split", r"missing folder .*training"),
        ("empty_images", r"empty folder .*training/images"),
        ("no_vessel_mask", r"image .*22_training\.tif has no vessel mask.*22_manual1\.gif"),
        ("no_fov_mask", r"image .*22_training\.tif has no FOV mask.*22_training_mask\.gif"),
        ("orphan_mask", r"vessel mask .*23_manual1\.gif has no image.*23_training\.tif"),
        ("mask_size", r"FOV mask .*22_training_mask\.gif is 5x10 \(HxW\).*22_training\.tif is "
                      r"12x10.*same size"),
        ("truncated_image", r"cannot read DRIVE image .*22_training\.tif.*truncated"),
        ("truncated_mask", r"cannot read vessel mask \(1st_manual\) .*22_manual1\.gif"),
        ("garbage_mask", r"cannot read FOV mask .*21_training_mask\.gif"),
        ("bad_name", r"unexpected file .*image21\.tif.*named like 21_training\.tif"),
        ("grey_image", r"DRIVE image .*21_training\.tif has mode 'L'.*RGB"),
        ("duplicate_id", r"same id 21"),
    ],
)
def test_load_drive_errors_name_the_file(damage: str, pattern: str, tmp_path: Path) -> None:
    base = tmp_path / "training"
    if damage != "no_split":
        _write_drive(tmp_path, "training", [21, 22])
    if damage == "empty_images":
        for p in (base / "images").iterdir():
            p.unlink()
    elif damage == "no_vessel_mask":
        (base / "1st_manual" / "22_manual1.gif").unlink()
    elif damage == "no_fov_mask":
        (base / "mask" / "22_training_mask.gif").unlink()
    elif damage == "orphan_mask":
        _save_l(MASK, base / "1st_manual" / "23_manual1.gif")
    elif damage == "mask_size":
        _save_l(np.ones((5, W), bool), base / "mask" / "22_training_mask.gif")
    elif damage == "truncated_image":
        path = base / "images" / "22_training.tif"
        Image.fromarray(_image(0, (64, 64, 3))).save(path)
        _truncate(path)
    elif damage == "truncated_mask":
        path = base / "1st_manual" / "22_manual1.gif"
        _save_l(np.random.default_rng(0).random((64, 64)) > 0.5, path)
        _truncate(path)
    elif damage == "garbage_mask":
        (base / "mask" / "21_training_mask.gif").write_bytes(b"GIF89a garbage")
    elif damage == "bad_name":
        Image.fromarray(_image(0)).save(base / "images" / "image21.tif")
    elif damage == "grey_image":
        Image.fromarray(_image(0, (H, W))).save(base / "images" / "21_training.tif")
    elif damage == "duplicate_id":
        Image.fromarray(_image(0)).save(base / "images" / "021_training.tif")
    with pytest.raises(DataError, match=pattern):
        load_drive(tmp_path, "training")


def test_load_drive_test_split_requires_second_observer(tmp_path: Path) -> None:
    _write_drive(tmp_path, "test", [1, 2], second=False)
    with pytest.raises(DataError, match=r"missing folder .*test/2nd_manual"):
        load_drive(tmp_path, "test")
    samples = load_drive(tmp_path, "test", require_second_observer=False)
    assert all(s.second_observer is None for s in samples)
    _save_palette(MASK.astype(np.uint8), tmp_path / "test" / "2nd_manual" / "01_manual2.gif",
                  [4, 2, 4, 252, 254, 252])
    with pytest.raises(DataError, match=r"02_test\.tif has no second-observer vessel mask"):
        load_drive(tmp_path, "test", require_second_observer=False)  # present: checked


# -- ISBI 2012 ------------------------------------------------------------------------------------
def test_load_isbi_png_layout(tmp_path: Path) -> None:
    _write_isbi_png(tmp_path, n=3, test=2)
    train = load_isbi2012(tmp_path)
    assert [s.name for s in train] == ["00", "01", "02"]
    s = train[1]
    assert s.image.dtype == np.uint8 and s.image.shape == (H, W)
    np.testing.assert_array_equal(s.image, _image(1, (H, W)))
    label = np.where(np.random.default_rng(1).random((H, W)) > 0.3, 255, 0)
    np.testing.assert_array_equal(s.membranes, label == 0)  # membranes = label 0
    np.testing.assert_array_equal(s.labels, label)
    assert s.frame is None and s.path.name == "01.png"
    test = load_isbi2012(tmp_path, "test")
    assert len(test) == 2 and all(t.membranes is None and t.labels is None for t in test)


def test_load_isbi_tiff_layout_matches_png(tmp_path: Path) -> None:
    _write_isbi_png(tmp_path / "png", n=3, test=2)
    png = load_isbi2012(tmp_path / "png")
    tif = tmp_path / "tif"
    tif.mkdir()
    _tiff(tif / "train-volume.tif", np.stack([s.image for s in png]))
    _tiff(tif / "train-labels.tif", np.stack([s.labels for s in png]))
    _tiff(tif / "test-volume.tif", np.stack([_image(7, (H, W))] * 2))
    samples = load_isbi2012(tif)
    assert [s.name for s in samples] == ["00", "01", "02"]
    assert [s.frame for s in samples] == [0, 1, 2]
    for a, b in zip(samples, png, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.membranes, b.membranes)
    test = load_isbi2012(tif, "test")
    assert len(test) == 2 and test[0].membranes is None


def test_load_isbi_choices(tmp_path: Path) -> None:
    expected = "split='training' is not valid; expected one of train, test"
    with pytest.raises(ValueError, match=expected):
        load_isbi2012(tmp_path, "training")
    expected = "layout='zip' is not valid; expected one of auto, png, tiff"
    with pytest.raises(ValueError, match=expected):
        load_isbi2012(tmp_path, layout="zip")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("damage", "pattern"),
    [
        ("nothing", r"no ISBI 2012 'train' data under .*train/images.*train-volume\.tif"),
        ("both_layouts", r"both .*train/images and .*train-volume\.tif exist: pass layout="),
        ("no_label", r"image .*01\.png has no label: expected .*labels/01\.png"),
        ("orphan_label", r"label .*labels/07\.png has no image"),
        ("label_size", r"label image .*labels/02\.png is 4x10 \(HxW\).*images/02\.png is 12x10"),
        ("empty_labels", r"empty folder .*train/labels"),
        ("not_png", r"unexpected file .*images/notes\.txt.*only \.png"),
        ("truncated_label", r"cannot read label image .*labels/00\.png.*truncated"),
        ("tiff_shape", r"label volume .*train-labels\.tif has shape \(2, 12, 10\).*\(3, 12, 10\)"),
        ("tiff_truncated", r"cannot read EM volume .*train-volume\.tif"),
        ("tiff_truncated_zlib", r"cannot read EM volume .*train-volume\.tif.*truncated"),
        ("tiff_no_labels", r"missing label volume: .*train-labels\.tif does not exist"),
        ("tiff_16bit", r"EM volume .*train-volume\.tif has dtype uint16: expected uint8"),
    ],
)
def test_load_isbi_errors_name_the_file(damage: str, pattern: str, tmp_path: Path) -> None:
    if not damage.startswith("tiff") and damage != "nothing":
        _write_isbi_png(tmp_path, n=3, test=0)
    labels = tmp_path / "train" / "labels"
    volume = np.stack([_image(i, (H, W)) for i in range(3)])
    if damage.startswith("tiff"):
        _tiff(tmp_path / "train-volume.tif",
              volume.astype(np.uint16) if damage == "tiff_16bit" else volume)
        if damage == "tiff_truncated_zlib":  # tifffile would silently load fewer pages
            tifffile.imwrite(tmp_path / "train-volume.tif", np.concatenate([volume] * 4),
                             photometric="minisblack", compression="zlib")
            _truncate(tmp_path / "train-volume.tif", 0.5)
        if damage != "tiff_no_labels":
            n = 2 if damage == "tiff_shape" else 3
            _tiff(tmp_path / "train-labels.tif", np.full((n, H, W), 255, np.uint8))
        if damage == "tiff_truncated":
            _truncate(tmp_path / "train-volume.tif", 0.3)
    elif damage == "both_layouts":
        _tiff(tmp_path / "train-volume.tif", volume)
    elif damage == "no_label":
        (labels / "01.png").unlink()
    elif damage == "orphan_label":
        Image.fromarray(np.zeros((H, W), np.uint8)).save(labels / "07.png")
    elif damage == "label_size":
        Image.fromarray(np.zeros((4, W), np.uint8)).save(labels / "02.png")
    elif damage == "empty_labels":
        for p in labels.iterdir():
            p.unlink()
    elif damage == "not_png":
        (tmp_path / "train" / "images" / "notes.txt").write_text("hello")
    elif damage == "truncated_label":
        Image.fromarray(_image(0, (64, 64))).save(labels / "00.png")
        _truncate(labels / "00.png")
    with pytest.raises(DataError, match=pattern):
        load_isbi2012(tmp_path, "train")


# -- resolve_dataset ----------------------------------------------------------------------------
TINY = {
    "drive": {"n_train": 2, "n_test": 1, "size": [40, 36]},
    "isbi2012": {"n_train": 2, "n_test": 1, "size": 32},
}


def test_resolve_unknown_name_lists_choices(tmp_path: Path) -> None:
    expected = "name='DRIVE2' is not valid; expected one of drive, isbi2012"
    with pytest.raises(ValueError, match=expected):
        resolve_dataset("DRIVE2", tmp_path)


@pytest.mark.parametrize("name", ["drive", "isbi2012"])
def test_resolve_writes_synthetic_once_and_warns(name: str, tmp_path: Path) -> None:
    with pytest.warns(SyntheticDataWarning, match=r"synthetic stand-in.*UNET_DATA_DIR"):
        first = resolve_dataset(name, tmp_path, synthetic_options=TINY[name])
    folder = "DRIVE" if name == "drive" else "isbi2012"
    assert first.synthetic and first.root == tmp_path / "synthetic" / folder
    samples = first.load()
    assert len(samples) == 2
    stamp = {p: p.stat().st_mtime_ns for p in first.root.rglob("*") if p.is_file()}
    with pytest.warns(SyntheticDataWarning):
        again = resolve_dataset(name, tmp_path, synthetic_options=TINY[name])
    assert again == first
    assert {p: p.stat().st_mtime_ns for p in again.root.rglob("*") if p.is_file()} == stamp
    # changed options: the cache is rebuilt
    with pytest.warns(SyntheticDataWarning):
        other = resolve_dataset(name, tmp_path, synthetic_options={**TINY[name], "n_train": 3})
    assert len(other.load()) == 3
    assert not [p for p in other.root.parent.iterdir() if ".tmp-" in p.name]


def test_resolve_rebuilds_an_incomplete_cache(tmp_path: Path) -> None:
    cache = tmp_path / "synthetic" / "isbi2012" / "train" / "images"
    cache.mkdir(parents=True)
    (cache / "00.png").write_bytes(b"half-written")
    with pytest.warns(SyntheticDataWarning):
        found = resolve_dataset("isbi2012", tmp_path, synthetic_options=TINY["isbi2012"])
    assert len(found.load()) == 2


def test_resolve_prefers_real_data_and_uses_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_isbi_png(tmp_path / "isbi2012")
    monkeypatch.setenv("UNET_DATA_DIR", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no SyntheticDataWarning
        found = resolve_dataset("isbi2012")
    assert found.root == tmp_path / "isbi2012" and not found.synthetic
    assert len(found.load("train")) == 3
    assert not (tmp_path / "synthetic").exists()


def test_resolve_rejects_a_broken_real_folder(tmp_path: Path) -> None:
    (tmp_path / "DRIVE" / "stuff").mkdir(parents=True)
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "DRIVE")) + ".*layout"):
        resolve_dataset("drive", tmp_path)


def test_green_clahe_equalises_the_green_channel_at_8_bits():
    import cv2

    from unet_core.data.prepare import CLAHE_CLIP, CLAHE_GRID, prepare_image

    rng = np.random.default_rng(0)
    image = np.zeros((64, 80, 3), np.uint8)
    image[:, :, 1] = np.clip(rng.normal(60, 8, (64, 80)), 0, 255).astype(np.uint8)  # low contrast
    out = prepare_image(image, "green_clahe")
    assert out.shape == (64, 80, 1) and out.dtype == np.float32
    expected = cv2.createCLAHE(CLAHE_CLIP, (CLAHE_GRID, CLAHE_GRID)).apply(image[:, :, 1])
    np.testing.assert_array_equal(np.rint(out[:, :, 0] * 255).astype(np.uint8), expected)
    assert out.std() > image[:, :, 1].std() / 255  # the contrast grew
    # A float image in [0, 1] gives the same result as its 8-bit original.
    np.testing.assert_allclose(prepare_image(image.astype(np.float32) / 255, "green_clahe"), out)


def test_a_data_path_is_shown_relative_to_the_data_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("UNET_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "data" / "DRIVE").mkdir(parents=True)
    assert shown_path(tmp_path / "data" / "DRIVE") == "$UNET_DATA_DIR/DRIVE"
    assert shown_path(tmp_path / "data") == "$UNET_DATA_DIR"
    assert shown_path(tmp_path / "elsewhere" / "isbi2012") == "isbi2012"  # no absolute path
