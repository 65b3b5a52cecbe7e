"""The one atomic writer: whole files or none, usual permissions, no litter on failure."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
from PIL import Image

from unet_train.atomic import atomic_write, write_image, write_json, write_npz, write_text


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"a": 1})

    def half_then_fail(f):
        f.write(b'{"a": 2, "b": ')
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(path, half_then_fail)
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_written_files_get_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = write_text(tmp_path / "sub" / "x.txt", "hello")
    finally:
        os.umask(mask)
    assert path.read_text() == "hello"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.parametrize("suffix, mode", [(".png", "L"), (".png", "I;16"), (".tif", "F")])
def test_images_round_trip_by_suffix(tmp_path, suffix, mode):
    data = (np.arange(12, dtype=np.float32).reshape(3, 4) * 1000)
    array = {"L": data.astype(np.uint8), "I;16": data.astype(np.uint16), "F": data}[mode]
    path = write_image(tmp_path / f"p{suffix}", Image.fromarray(array))
    np.testing.assert_array_equal(np.asarray(Image.open(path)), array)


def test_unknown_image_suffix_is_an_error_naming_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"x\.weird"):
        write_image(tmp_path / "x.weird", Image.new("L", (2, 2)))
    assert not list(tmp_path.iterdir())


def test_npz_round_trip(tmp_path):
    path = write_npz(tmp_path / "p.npz", a=np.arange(5), names=np.array(["x", "y"]))
    with np.load(path) as z:
        assert z["a"].tolist() == [0, 1, 2, 3, 4] and list(z["names"]) == ["x", "y"]
