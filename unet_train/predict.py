"""Segment a reader's own image files with a trained model (overlap-tile inference, paper Sec. 2).

Inputs are files and folders; a folder means its images (suffixes :data:`IMAGE_SUFFIXES`,
compared case-insensitively, sorted by name, not its subfolders; other files there are listed
as ignored, and a folder without an image is an error naming it). Any image Pillow reads (TIFF,
PNG, JPEG, GIF, BMP, ...; RGB, RGBA, grey, palette, 16-bit, float) and of any size is read by
:func:`unet_core.data.imageio.read_image` (8-bit images as in training, 16-bit and float ones
scaled by their type's range, never stretched per image), converted to the channels the model
was trained on (:func:`to_model_input`) and segmented tile by tile
(:func:`unet_train.evaluation.predict_probability`, on the model's device and in its
precision).

Written per image into the output folder:

* ``<stem>_prob.png``: the model's foreground probability ``p``, **without loss**: a 16-bit
  grey PNG holding ``round(p * 65535)``; read it back as
  ``np.asarray(Image.open(f), np.float64) / 65535`` (within 7.7e-6 of ``p``, so thresholds,
  ROC curves and AUCs computed from the files equal those of the model's output). It is the
  raw output everywhere, also outside an estimated field of view.
* ``<stem>_mask.png``: 0/255, foreground where ``p >= threshold`` (the model's threshold,
  chosen on training-set images, unless one is given); with ``fov="auto"`` also 0 outside the
  estimated field of view.
* ``<stem>_fov.png`` (``fov="auto"`` only): the estimated field of view of a fundus
  photograph, 0/255 (:func:`unet_train.fov.estimate_fov`). It is an **estimate**, not DRIVE's
  official mask (on DRIVE it agrees on >= 99.3 % of the pixels); a photograph without a black
  surround gets the whole image.

Names never collide: the first input with a given stem keeps ``<stem>``; a later one with the
same stem (``a/x.png`` and ``b/x.png``, or ``x.png`` and ``x.tif``; compared case-insensitively)
and one whose output would overwrite an input file get ``<stem>-2``, ``<stem>-3``, ...
(:attr:`Prediction.renamed` says why). Outputs of an earlier run in the output folder are
replaced (:attr:`Prediction.replaced` counts them). A file that fails (unreadable, truncated,
an unsupported mode) is reported with a one-line reason and the others are processed.

Chapter 8 segments a reader's image with it (and the mask explorer, :mod:`unet_book.explorer`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from unet_core.data.errors import DataError
from unet_core.data.imageio import IGNORED_NAMES, read_image
from unet_core.data.prepare import prepare_image
from unet_core.model import UNet
from unet_core.validation import check_choice
from unet_train.atomic import write_image
from unet_train.config import TrainConfig
from unet_train.evaluation import predict_probability
from unet_train.fov import estimate_fov

Image.MAX_IMAGE_PIXELS = 20_000 * 20_000  # large slides are fine: inference is tiled

#: What a folder argument stands for: its files with these suffixes (any case).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".gif", ".bmp")
#: ``fov`` choices: ``none`` (the whole image) or ``auto`` (:func:`unet_train.fov.estimate_fov`).
FOV_MODES: tuple[str, ...] = ("none", "auto")
#: A probability ``p`` is written as ``round(p * PROBABILITY_SCALE)`` in a 16-bit PNG.
PROBABILITY_SCALE = 65535
#: The files written per image, by suffix of ``<stem>``.
OUTPUT_SUFFIXES: tuple[str, ...] = ("_prob.png", "_mask.png", "_fov.png")


def to_model_input(image: np.ndarray, cfg: TrainConfig, in_channels: int) -> np.ndarray:
    """uint8 or float ``(H, W[, 3])`` -> float32 ``(H, W, in_channels)`` as the model was
    trained (:func:`unet_core.data.prepare.prepare_image`)."""
    x = prepare_image(image, cfg.channels)
    if x.shape[2] == in_channels:
        return x
    if x.shape[2] == 1 and in_channels == 3:  # a greyscale photograph for a colour model
        return np.repeat(x, 3, axis=2)
    if x.shape[2] == 3 and in_channels == 1:
        return prepare_image(image, "gray")
    raise ValueError(f"cannot turn a {x.shape[2]}-channel image into {in_channels} channels")


def encode_probability(prob: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] as the uint16 of ``<stem>_prob.png``: ``round(p * 65535)``."""
    prob = np.asarray(prob)
    if not np.isfinite(prob).all():
        raise ValueError("the model gave NaN or infinite probabilities (a diverged model?)")
    return np.round(np.clip(prob, 0.0, 1.0) * PROBABILITY_SCALE).astype(np.uint16)


def decode_probability(values: np.ndarray) -> np.ndarray:
    """The probabilities of a ``<stem>_prob.png`` array (float64)."""
    return np.asarray(values, np.float64) / PROBABILITY_SCALE


def read_probability(path: str | Path) -> np.ndarray:
    """The probabilities written to ``path`` (a ``<stem>_prob.png``), float64 ``(H, W)``."""
    with Image.open(path) as im:
        return decode_probability(np.asarray(im))


def describe_error(exc: BaseException) -> str:
    """An exception as one line (the library's own errors already name the file)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, ValueError | OSError):  # DataError is a ValueError
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True)
class Inputs:
    """What the path arguments stand for: image files (in order, each once), the arguments
    that failed (an empty or missing folder), and what was left out and why."""

    files: list[Path]
    failed: list[tuple[Path, Exception]] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)  # non-image files in folder arguments
    repeated: list[Path] = field(default_factory=list)  # files given more than once


def collect_inputs(paths: Sequence[str | Path]) -> Inputs:
    """Files as given; a folder as its images (module docstring). A folder without an image
    is a failed input (a :class:`~unet_core.data.errors.DataError` naming it); a file given
    twice (also through its folder) is processed once and listed in ``repeated``."""
    files: list[Path] = []
    failed: list[tuple[Path, Exception]] = []
    ignored: list[Path] = []
    repeated: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            entries = sorted(p for p in path.iterdir() if p.is_file()
                             and not p.name.startswith(".") and p.name not in IGNORED_NAMES)
            images = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
            ignored += [p for p in entries if p.suffix.lower() not in IMAGE_SUFFIXES]
            if not images:
                failed.append((path, DataError(
                    f"folder {path} holds no image: expected files ending in "
                    f"{', '.join(IMAGE_SUFFIXES)} (any case; subfolders are not searched)")))
                continue
        else:
            images = [path]  # a missing or bad file fails when it is read, with its reason
        for p in images:
            key = p.resolve()
            if key in seen:
                repeated.append(p)
                continue
            seen.add(key)
            files.append(p)
    return Inputs(files, failed, ignored, repeated)


def output_stems(files: Sequence[Path], output: Path) -> list[tuple[str, str | None]]:
    """The output stem of each file, and why it differs from the file's stem (None if not).

    The first file with a stem keeps it; a later one with the same stem (case-insensitive),
    or one whose output would overwrite an input file, gets ``<stem>-2``, ``<stem>-3``, ...
    """
    inputs = {p.resolve() for p in files}
    taken: dict[str, Path] = {}
    stems: list[tuple[str, str | None]] = []
    for path in files:
        stem, n, why = path.stem, 1, None
        while True:
            name = stem if n == 1 else f"{stem}-{n}"
            holder = taken.get(name.casefold())
            if holder is not None:
                why = why or f"{stem} is taken by {holder}"
            elif any((output / f"{name}{s}").resolve() in inputs for s in OUTPUT_SUFFIXES):
                why = why or f"{stem}_*.png would overwrite an input file"
            else:
                break
            n += 1
        taken[name.casefold()] = path
        stems.append((name, why))
    return stems


@dataclass(frozen=True)
class Prediction:
    """One segmented image: where its files went and what they hold."""

    source: Path
    probability: Path
    mask: Path
    shape: tuple[int, int]
    foreground_fraction: float  # of the whole image, after the FOV (if any)
    fov: Path | None = None  # the estimated FOV file (fov="auto")
    fov_fraction: float | None = None  # share of the image inside the estimated FOV
    fov_found: bool | None = None  # False: no black surround, the FOV is the whole image
    renamed: str | None = None  # why the output stem differs from the file's stem
    replaced: int = 0  # files of an earlier run overwritten


@dataclass(frozen=True)
class PredictionSummary:
    """What :func:`predict_files` did: the predictions, the failures (each with its error),
    the output folder, and the inputs left out (:class:`Inputs`)."""

    output: Path
    predictions: list[Prediction]
    failed: list[tuple[Path, Exception]]
    inputs: Inputs


def predict_files(
    model: UNet,
    cfg: TrainConfig,
    paths: Sequence[str | Path],
    output: str | Path,
    *,
    threshold: float,
    tile: int | None = None,
    tta: str | None = None,
    fov: str = "none",
    progress: bool = False,
    on_error: Callable[[Path, Exception], None] | None = None,
) -> PredictionSummary:
    """Segment every image of ``paths`` (files and folders) into ``output``.

    A bad file does not stop the others: it is in ``failed`` with its error, and
    ``on_error(path, error)`` is called when it fails. ``fov="auto"`` estimates each image's
    field of view (module docstring); ``tile`` and ``tta`` override the model's config;
    ``progress`` shows a tqdm bar over the images.
    """
    check_choice("fov", fov, FOV_MODES)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold} is not a probability: expected 0 <= t <= 1")
    out_dir = Path(output)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"output {out_dir} is a file: expected a folder for the PNGs")
    settings = cfg.to_dict()
    if tile is not None:
        settings["eval_tile"] = tile
    if tta is not None:
        settings["tta"] = tta
    run_cfg = TrainConfig.from_dict(settings)  # validates tile and tta
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = collect_inputs(paths)
    failed = list(inputs.failed)
    if on_error is not None:
        for path, exc in inputs.failed:
            on_error(path, exc)
    done: list[Prediction] = []
    stems = output_stems(inputs.files, out_dir)
    bar = tqdm(list(zip(inputs.files, stems, strict=True)), desc="predict", unit="image",
               disable=not progress)
    for path, (stem, renamed) in bar:
        try:
            done.append(_predict_one(model, cfg, run_cfg, path, out_dir, stem, renamed,
                                     threshold, fov))
        except Exception as exc:  # report and go on with the next file
            failed.append((path, exc))
            if on_error is not None:
                on_error(path, exc)
    bar.close()
    return PredictionSummary(out_dir, done, failed, inputs)


def _predict_one(model: UNet, cfg: TrainConfig, run_cfg: TrainConfig, path: Path, out_dir: Path,
                 stem: str, renamed: str | None, threshold: float, fov: str) -> Prediction:
    image = read_image(path)
    prob = predict_probability(model, to_model_input(image, cfg, model.in_channels), run_cfg)
    encoded = encode_probability(prob)
    mask = prob >= threshold
    fov_mask = estimate_fov(image) if fov == "auto" else None
    if fov_mask is not None:
        mask &= fov_mask.mask
    files = {suffix: out_dir / f"{stem}{suffix}" for suffix in OUTPUT_SUFFIXES}
    images = {"_prob.png": Image.fromarray(encoded),
              "_mask.png": Image.fromarray(mask.astype(np.uint8) * 255)}
    if fov_mask is not None:
        images["_fov.png"] = Image.fromarray(fov_mask.mask.astype(np.uint8) * 255)
    replaced = sum(files[s].exists() for s in images)
    for suffix, im in images.items():
        write_image(files[suffix], im)
    return Prediction(
        path, files["_prob.png"], files["_mask.png"], (int(prob.shape[0]), int(prob.shape[1])),
        float(mask.mean()),
        fov=files["_fov.png"] if fov_mask is not None else None,
        fov_fraction=fov_mask.fraction if fov_mask is not None else None,
        fov_found=fov_mask.found if fov_mask is not None else None,
        renamed=renamed, replaced=int(replaced),
    )
