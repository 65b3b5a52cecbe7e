"""unet_book/static/overlap_tile.js equals unet_core.tiling: the plans of many image sizes, the
mirrored tile inputs, and the stitched logits of the same tiles (run in Node)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from node_module import run_node

from unet_core.model import UNet
from unet_core.tiling import hann_window, mirror_indices, plan_axis, predict_tiled

MODULE = Path(__file__).resolve().parents[2] / "unet_book" / "static" / "overlap_tile.js"
SIZES = [1, 2, 10, 31, 37, 61, 100, 512, 565, 584, 2001]
#: (padding, depth, tile): the paper's net, the cpu profile's, a small same-padded one.
GEOMETRIES = [("valid", 4, 572), ("valid", 4, 316), ("same", 4, 288), ("same", 2, 32)]


def _node(script: str, data: dict, tmp_path: Path):
    return run_node("overlap_tile.js", "ot", script, data, tmp_path)


def _net(padding: str, depth: int) -> UNet:
    return UNet(1, 1, base_channels=2, depth=depth, padding=padding)  # type: ignore[arg-type]


def _manifest(net: UNet, tile: int) -> dict:
    """The tile plan's part of model.json (unet_book.browser_model.manifest)."""
    plan = plan_axis(net, tile, tile)
    return {"padding": net.padding, "depth": net.depth, "tile": plan.tile, "out": plan.out,
            "crop": plan.crop, "overlap": tile - plan.stride if net.padding == "same" else None}


def test_the_module_is_offline_and_one_file() -> None:
    text = MODULE.read_text()
    assert "import " not in text.split("export", 1)[0].replace("No import", "")
    assert "http://" not in text and "https://" not in text


@pytest.mark.parametrize(("padding", "depth", "tile"), GEOMETRIES)
def test_plans_equal_pythons(padding, depth, tile, tmp_path) -> None:  # noqa: ANN001
    net = _net(padding, depth)
    manifest = _manifest(net, tile)
    got = _node("console.log(JSON.stringify(data.sizes.map(s => ot.planAxis(data.plan, s))));",
                {"plan": manifest, "sizes": SIZES}, tmp_path)
    for size, js in zip(SIZES, got, strict=True):
        py = plan_axis(net, size, tile)
        assert (js["tile"], js["out"], js["crop"], js["stride"]) == (py.tile, py.out, py.crop,
                                                                     py.stride), size
        assert js["starts"] == list(py.starts), size


def test_mirrored_tiles_and_the_window_equal_pythons(tmp_path) -> None:
    rng = np.random.default_rng(1)
    image = rng.random((2, 13, 9)).astype(np.float32)
    corners = [(-5, -7), (0, 0), (8, 4), (-20, 3)]
    got = _node("""
const img = Float32Array.from(data.image);
const tiles = data.corners.map(([y, x]) => Array.from(ot.tileInput(img, 2, 13, 9, y, x, 16)));
const index = Array.from({length: 40}, (_, i) => ot.mirrorIndex(i - 20, 7));
console.log(JSON.stringify({tiles, index, hann: Array.from(ot.hannWindow(24)),
                            one: ot.mirrorIndex(5, 1)}));
""", {"image": image.ravel().tolist(), "corners": corners}, tmp_path)
    for (y, x), tile in zip(corners, got["tiles"], strict=True):
        expected = image[:, mirror_indices(y, 16, 13)][:, :, mirror_indices(x, 16, 9)]
        np.testing.assert_array_equal(np.asarray(tile, np.float32).reshape(2, 16, 16), expected)
    assert got["index"] == mirror_indices(-20, 40, 7).tolist() and got["one"] == 0
    np.testing.assert_array_equal(np.asarray(got["hann"], np.float32), hann_window(24).numpy())


@pytest.mark.parametrize(("padding", "depth", "tile", "shape"), [
    ("same", 2, 32, (45, 70)), ("same", 2, 32, (1, 1)), ("valid", 2, 60, (50, 33)),
    ("valid", 2, 60, (10, 10))])
def test_stitched_logits_equal_predict_tiled(padding, depth, tile, shape,
                                             tmp_path) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    net = UNet(1, 2, base_channels=4, depth=depth, padding=padding).eval()
    image = torch.rand(1, *shape, generator=torch.Generator().manual_seed(2))
    expected = predict_tiled(net, image, tile, batch_size=1).numpy()  # tiles one by one, as below
    manifest = _manifest(net, tile)
    h, w = shape
    plans = [plan_axis(net, n, tile) for n in shape]
    outputs = []
    for y in plans[0].starts:  # the tiles' logits as Python computes them, in its order
        for x in plans[1].starts:
            batch = image[:, mirror_indices(y, tile, h)][:, :, mirror_indices(x, tile, w)]
            with torch.inference_mode():
                outputs.append({"y": y, "x": x, "logits": net(batch[None])[0].ravel().tolist()})
    got = _node("""
const s = new ot.Stitcher(data.plan, 2, data.h, data.w);
for (const t of data.tiles) s.add(t.y, t.x, Float32Array.from(t.logits));
const logits = s.result();
console.log(JSON.stringify({logits: Array.from(logits),
                            prob: Array.from(ot.probability(logits, "softmax", data.h * data.w)),
                            count: ot.tiles(data.plan, data.h, data.w).positions.length}));
""", {"plan": manifest, "h": h, "w": w, "tiles": outputs}, tmp_path)
    assert got["count"] == len(outputs)
    logits = np.asarray(got["logits"], np.float32).reshape(2, h, w)
    assert float(np.abs(logits - expected).max()) < 1e-6
    prob = torch.softmax(torch.from_numpy(expected), 0)[1].numpy()
    assert float(np.abs(np.asarray(got["prob"]).reshape(h, w) - prob).max()) < 1e-6
