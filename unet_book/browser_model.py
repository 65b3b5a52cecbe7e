"""The trained U-Net for the reader's browser: one tile network in ONNX, and what the page needs
to tile an image exactly as :func:`unet_core.tiling.predict_tiled` does.

:func:`export_run` writes, from a run folder's ``model.pt``, into a folder of its own:

* ``model.onnx``: the network for **one tile** of a fixed size (the run's ``eval_tile``),
  batch 1, fp32, exported with ``torch.onnx.export`` (the dynamo exporter, opset 18). Its
  output is the logits, as :class:`~unet_core.model.UNet` gives them;
* ``model.json`` (:func:`manifest`): the tile plan's parameters (tile, output and crop sizes,
  the overlap and stride of :func:`~unet_core.tiling.plan_axis`, the pooling depth), the
  input preparation (channels, as :func:`~unet_core.data.prepare.prepare_image`), how logits
  become a probability (sigmoid of one channel, or softmax of two), the run's threshold, the
  file's size and SHA-256, the largest difference to PyTorch measured at export, the run's
  provenance and the library versions.

:class:`OnnxTileNet` runs the exported file with ``onnxruntime`` behind the interface
``predict_tiled`` uses, so the Python side can check the file through the very tiling the
page reproduces: the difference between ``predict_tiled`` with the network and with its ONNX
file is the difference the runtime makes, nothing else.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from unet_core.losses import foreground_probability
from unet_core.metrics import segmentation_metrics
from unet_core.model import UNet
from unet_core.tiling import plan_axis, predict_tiled
from unet_train.atomic import atomic_write, write_json
from unet_train.recipe import out_channels_for
from unet_train.runs import MODEL, load_model, read_provenance

ONNX_FILE = "model.onnx"
MANIFEST_FILE = "model.json"
OPSET = 18
CHECK_SEED = 0  # the random tiles the export is checked on
EXPORT_FORMAT = 1  # of model.json: a change re-exports every run
EXPORT_DIR = "browser"  # a run's export: <run>/browser/model.onnx and model.json


def export_tile_network(model: UNet, tile: int) -> bytes:
    """The ONNX file of ``model`` for one ``(1, C, tile, tile)`` input, in eval mode."""
    model = model.eval()
    x = torch.zeros(1, model.in_channels, tile, tile)
    buffer = io.BytesIO()
    quiet = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed": operators we do not use
    try:
        with warnings.catch_warnings():  # the exporter's notes on operators this model lacks
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (x,), dynamo=True, opset_version=OPSET,
                                        input_names=["image"], output_names=["logits"],
                                        verbose=False)
    finally:
        quiet.setLevel(level)
    assert program is not None
    program.save(buffer)
    data = buffer.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data))
    return data


def session(data: bytes | Path) -> onnxruntime.InferenceSession:
    """An onnxruntime session (CPU) of an ONNX file or its bytes."""
    source = data.read_bytes() if isinstance(data, Path) else data
    return onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])


def largest_difference(model: UNet, data: bytes, tile: int, tiles: int = 2) -> float:
    """Largest absolute difference of the logits of ``model`` and of its ONNX file on
    ``tiles`` random tiles (seeded)."""
    run = session(data)
    generator = torch.Generator().manual_seed(CHECK_SEED)
    worst = 0.0
    for _ in range(tiles):
        x = torch.rand(1, model.in_channels, tile, tile, generator=generator)
        with torch.inference_mode():
            expected = model.eval()(x).numpy()
        got = run.run(None, {"image": x.numpy()})[0]
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def manifest(model: UNet, cfg: Any, threshold: float, data: bytes, difference: float,
             provenance: dict[str, Any] | None) -> dict[str, Any]:
    """``model.json`` (module docstring)."""
    plan = plan_axis(model, cfg.eval_tile, cfg.eval_tile)  # one tile's parameters
    overlap = cfg.eval_tile - plan.stride if model.padding == "same" else None
    return {
        "format": EXPORT_FORMAT, "file": ONNX_FILE, "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "opset": OPSET, "input": "image", "output": "logits",
        "tile": plan.tile, "out": plan.out, "crop": plan.crop, "stride": plan.stride,
        "overlap": overlap, "depth": model.depth, "padding": model.padding,
        "in_channels": model.in_channels, "channels": cfg.channels, "dataset": cfg.dataset,
        "outside_fov": cfg.outside_fov,
        "probability": "softmax" if out_channels_for(cfg.loss) == 2 else "sigmoid",
        "threshold": threshold, "tta": "none",
        "largest_difference_to_torch": difference,
        "provenance": provenance,
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__},
    }


def model_digest(run_dir: Path) -> str:
    """SHA-256 of a run's ``model.pt``: what an export was made from."""
    return hashlib.sha256((Path(run_dir) / MODEL).read_bytes()).hexdigest()


def export_run(run_dir: Path, out_dir: Path | None = None) -> dict[str, Any]:
    """Export the run in ``run_dir`` into ``out_dir`` (default ``<run>/browser``:
    ``model.onnx``, ``model.json``); the manifest. The file is checked against PyTorch before
    it is written. Nothing is written when ``out_dir`` holds the export of this ``model.pt``
    in this format already."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / EXPORT_DIR
    digest = model_digest(run_dir)
    try:
        old = read_manifest(out_dir)
        if old.get("format") == EXPORT_FORMAT and old.get("model_sha256") == digest:
            return old
    except (OSError, ValueError, KeyError):
        pass
    model, cfg, threshold = load_model(run_dir / MODEL)
    data = export_tile_network(model, cfg.eval_tile)
    difference = largest_difference(model, data, cfg.eval_tile)
    record = manifest(model, cfg, threshold, data, difference, read_provenance(run_dir))
    record.update(run=run_dir.name, model_sha256=digest)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / ONNX_FILE, lambda f: f.write(data))
    write_json(out_dir / MANIFEST_FILE, record, indent=1)
    return record


def read_manifest(out_dir: Path) -> dict[str, Any]:
    """An export's manifest; ValueError if its ``model.onnx`` is not the file it describes."""
    record = json.loads((out_dir / MANIFEST_FILE).read_text())
    data = (out_dir / ONNX_FILE).read_bytes()
    if hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise ValueError(f"{ONNX_FILE}: its SHA-256 is not the one {MANIFEST_FILE} records")
    return record


class OnnxTileNet(nn.Module):
    """An exported tile network behind the interface of :func:`unet_core.tiling.predict_tiled`:
    ``forward`` runs each tile of a batch through onnxruntime; the geometry (``depth``,
    ``padding``, sizes) is the original network's."""

    def __init__(self, model: UNet, data: bytes | Path) -> None:
        super().__init__()
        self.net = model
        self.session = session(data)
        self.tile = int(self.session.get_inputs()[0].shape[-1])

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["net"], name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, C, T, T) -> logits (N, K, O, O), one tile at a time (batch 1 in the file)
        outs = [self.session.run(None, {"image": t[None].float().numpy()})[0]
                for t in x.float().cpu()]
        return torch.from_numpy(np.concatenate(outs))


# -- what chapter 8 prints --------------------------------------------------------------------
SPEED_RESULTS = (Path(__file__).resolve().parents[1] / "benchmarks" / "results"
                 / "browser_speed.json")


def tiled_probabilities(net: nn.Module, image: np.ndarray, tile: int) -> np.ndarray:
    """``predict_tiled``'s foreground probability of a prepared ``(H, W, C)`` image, fp32, no
    test-time augmentation (what the page computes)."""
    x = np.ascontiguousarray(np.moveaxis(np.asarray(image, np.float32), 2, 0))
    with torch.inference_mode():
        logits = predict_tiled(net, x, tile, tta="none")
    return foreground_probability(logits[None])[0].numpy()


def runtime_difference(run_dir: Path, case: Any) -> str:
    """PyTorch against the run's exported file (onnxruntime, CPU) through the same tiling on
    one test case: the largest probability difference and the F1 at the run's threshold."""
    run_dir = Path(run_dir)
    record = export_run(run_dir)
    model, cfg, threshold = load_model(run_dir / MODEL)
    model = model.float().eval()
    torch_p = tiled_probabilities(model, case.image, cfg.eval_tile)
    onnx_p = tiled_probabilities(OnnxTileNet(model, run_dir / EXPORT_DIR / ONNX_FILE),
                                 case.image, cfg.eval_tile)
    text = (f"{case.name}, {torch_p.shape[1]}x{torch_p.shape[0]} px: the largest difference of "
            f"the probabilities, PyTorch against the exported file, is "
            f"{np.abs(torch_p - onnx_p).max():.1e} (logits of single tiles at export: "
            f"{record['largest_difference_to_torch']:.1e})")
    if case.target is not None:
        f1 = [segmentation_metrics(p, case.target, case.fov, threshold=threshold).f1
              for p in (torch_p, onnx_p)]
        text += f"; F1 at the threshold {threshold:.4f}: {f1[0]:.4f} and {f1[1]:.4f}"
    return text + "."


def browser_costs(exports: list[dict[str, Any]], results: Path = SPEED_RESULTS) -> str:
    """The page's weight (model files, runtime) and the measured seconds in Chromium."""
    lines = ["model files: " + ", ".join(
        f"{e['dataset']} {e['bytes'] / 1e6:.1f} MB (tile {e['tile']} px)" for e in exports)]
    if not results.exists():
        return lines[0] + f"; no browser timings yet ({results.name}: run the benchmark)"
    r = json.loads(results.read_text())
    lines.append(f"runtime: {r['runtime_total_bytes'] / 1e6:.1f} MB (onnxruntime-web, "
                 "WebAssembly with SIMD), fetched with the first image, then cached")
    for key, label in (("drive_565x584", "DRIVE test image, 565x584"),
                       ("isbi_512x512", "ISBI 2012 slice, 512x512")):
        one, many = r["one_thread"].get(key), r["isolated"].get(key)
        if one is None:
            continue
        part = (f"{label}: {one['median_network_s']:.2f} s for its {one['tiles']} tiles with "
                f"1 thread")
        if many is not None and many["threads"] > 1:
            part += (f", {many['median_network_s']:.2f} s with {many['threads']} threads "
                     "(served cross-origin isolated)")
        lines.append(part)
    outside = r["one_thread"].get("outside_fov_positive")
    if outside:
        lines.append(f"outside the FOVs of the {outside['images']} DRIVE test images, the page "
                     f"gave {outside['above']} of {outside['pixels']} pixels at or above the "
                     "threshold")
    lines.append(f"measured in headless {r['chromium']} on {r['cpu']} ({r['cores']} cores), "
                 f"commit {r['commit']}, {r['date']}, with the runs "
                 f"{', '.join(r['models'])} (the same networks as the book's); median of "
                 f"{r['repeat']} runs after one warm-up")
    return "\n".join(lines)
