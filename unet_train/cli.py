"""Command line: ``python -m unet_train train|evaluate|predict``.

``train`` takes a profile and any :class:`~unet_train.config.TrainConfig` field as an option
(``--steps 500 --no-bf16 --loss bce``) and writes the run's ``curves.png``
(:mod:`unet_train.curves`); ``evaluate`` re-evaluates a run's model on its data set;
``predict`` segments image files and folders of any format and size (:mod:`unet_train.predict`:
16-bit probability PNGs, 0/255 masks, optionally an estimated field of view). ``evaluate`` and
``predict`` load the model straight onto ``--device`` (auto: CUDA, then MPS, then the CPU) and
compute in that device's precision. Chapter 5 shows the commands, chapter 8 ``predict``.

Errors: a user error (a missing, truncated, corrupt or foreign checkpoint, an unreadable data
folder, a bad config value, a diverged run) prints one line ``error: ...`` on stderr naming the
file or setting and what to do, never a traceback, and exits with 1 (2 for a bad option or
config value). An interrupted run (SIGINT, SIGTERM; a checkpoint was written) prints how to
resume and exits with 128 + the signal's number; one that comes after the last step, during
the final evaluation, lets the run finish and be saved, says so, and exits with the same code
(so that a script running several runs stops too). Under ``torchrun`` only rank 0 prints (also
the errors, which every rank meets alike) and draws ``curves.png``; the other ranks stay silent
and exit with the same code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from unet_core.data.splits import load_data
from unet_core.model import UNet
from unet_core.tiling import TTA_MODES
from unet_train.atomic import write_text
from unet_train.config import GROUPS, PROFILES, TrainConfig, check_names
from unet_train.curves import save_curves
from unet_train.devices import DEVICES
from unet_train.evaluation import evaluate
from unet_train.faults import TrainingDiverged, TrainingInterrupted
from unet_train.placement import MEMORY_FORMATS, PRECISIONS
from unet_train.predict import (
    FOV_MODES,
    IMAGE_SUFFIXES,
    PredictionSummary,
    describe_error,
    predict_files,
)
from unet_train.runs import load_model
from unet_train.train import train

PREDICT_EPILOG = f"""\
Written per image into --output:
  <stem>_prob.png  the foreground probability p as a 16-bit grey PNG, value = round(p * 65535)
                   (no loss of information: read back as value / 65535); the model's raw
                   output everywhere, also outside an estimated field of view
  <stem>_mask.png  0/255: p >= threshold (and, with --fov auto, 0 outside the field of view)
  <stem>_fov.png   with --fov auto: the ESTIMATED field of view of a fundus photograph
                   (bright disc on a black surround), 0/255; not an official mask
A folder argument means its images, sorted, not its subfolders:
  {' '.join(IMAGE_SUFFIXES)} (any case); other files there are listed as ignored.
16-bit and float images are scaled by their type's range (16-bit / 65535, float taken as 0-1
and clipped), as 8-bit ones by 255 in training; never stretched per image.
Inputs with the same stem (a/x.png, b/x.png) never overwrite each other: later ones are
written as x-2_*, x-3_*, ... and their output line says so. A bad file is reported with its
reason and the others are processed; the exit code is then 1.
"""


class _UsageError(ValueError):
    """A bad option or config value: exit code 2, like argparse's own errors."""


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    groups = {name: parser.add_argument_group(f"config: {name} (overrides the profile)")
              for name in GROUPS}
    for name, members in GROUPS.items():
        for field_name in members:
            if field_name != "profile":
                _add_field_option(groups[name], fields[field_name])


def _add_field_option(group: Any, f: dataclasses.Field) -> None:
    option = "--" + f.name.replace("_", "-")
    if f.type in ("bool", bool):
        group.add_argument(option, dest=f.name, action=argparse.BooleanOptionalAction,
                           default=None)
    else:
        kind = {"int": int, "float": float, "str": str}.get(str(f.type), str)
        group.add_argument(option, dest=f.name, type=kind, default=None)


def _add_placement_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="inference precision (default: the run's, auto: the faster on this "
                             "machine, measured once; unet_train.placement)")
    parser.add_argument("--memory-format", choices=MEMORY_FORMATS, default=None,
                        help="inference memory format (default: the run's, auto: as above)")


def _placed(cfg: TrainConfig, args: argparse.Namespace) -> TrainConfig:
    """``cfg`` with ``--precision`` and ``--memory-format`` applied (each overrides the older
    switch too: ``--precision bf16`` on a run trained with ``bf16=False``)."""
    changes: dict[str, object] = {}
    if args.precision is not None:
        changes |= {"precision": args.precision, "bf16": True}
    if args.memory_format is not None:
        changes |= {"memory_format": args.memory_format, "channels_last": True}
    return TrainConfig.from_dict(cfg.to_dict() | changes) if changes else cfg


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a probability: expected 0 <= t <= 1")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number of pixels")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m unet_train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a U-Net (resumes an interrupted run)")
    train.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    train.add_argument("--run-dir", type=Path, default=None,
                       help="run directory (default runs/<dataset>-<profile>-<config hash>); "
                            "its checkpoint.pt is resumed from unless --no-resume")
    train.add_argument("--data-dir", type=Path, default=None, help="default $UNET_DATA_DIR")
    train.add_argument("--no-resume", action="store_true", help="start over")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_options(train)

    device_help = ("where to compute (auto: CUDA, then MPS, then the CPU); the checkpoint is "
                   "loaded straight onto it and the device's precision is used")
    ev = sub.add_parser("evaluate", help="evaluate a trained model on its data set")
    ev.add_argument("--checkpoint", type=Path, required=True, help="a run's model.pt")
    ev.add_argument("--split", choices=("test", "val"), default="test")
    ev.add_argument("--data-dir", type=Path, default=None)
    ev.add_argument("--tta", choices=TTA_MODES, default=None)
    ev.add_argument("--device", choices=DEVICES, default="auto", help=device_help)
    _add_placement_options(ev)
    ev.add_argument("--json", type=Path, default=None, help="also write the metrics here")

    pr = sub.add_parser("predict", help="segment image files and folders (any format and size)",
                        epilog=PREDICT_EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    pr.add_argument("--checkpoint", type=Path, required=True, help="a run's model.pt")
    pr.add_argument("--output", type=Path, required=True, help="folder for the PNGs")
    pr.add_argument("--threshold", type=_probability, default=None,
                    help="mask threshold (default: the model's, chosen on training-set images)")
    pr.add_argument("--tile", type=_positive_int, default=None,
                    help="tile side (default: the model's)")
    pr.add_argument("--tta", choices=TTA_MODES, default=None)
    pr.add_argument("--fov", choices=FOV_MODES, default="none",
                    help="none: segment the whole image (default); auto: estimate the field of "
                         "view of a fundus photograph, write it as <stem>_fov.png and set the "
                         "mask to background outside it (an estimate)")
    pr.add_argument("--device", choices=DEVICES, default="auto", help=device_help)
    _add_placement_options(pr)
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.add_argument("images", nargs="+", type=Path, help="image files and folders of images")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"profile"}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def _main_rank() -> bool:
    """False in a ``torchrun`` process other than rank 0 (it prints nothing)."""
    return os.environ.get("RANK", "0") in ("", "0")


def _error(message: str) -> None:
    if _main_rank():
        print(f"error: {' '.join(message.split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        message = f"unrecognized arguments: {' '.join(unknown)}"
        if args.command == "train":
            names = [u.lstrip("-").split("=")[0].replace("-", "_") for u in unknown
                     if u.startswith("--")]
            try:
                check_names(dict.fromkeys(names))
            except ValueError as exc:
                message += f" ({exc}; as options: --name-with-dashes)"
        parser.error(message)
    command = {"train": _train, "evaluate": _evaluate, "predict": _predict}[args.command]
    try:
        return command(args)
    except TrainingInterrupted as exc:  # a checkpoint was written; the message says how to resume
        if _main_rank():
            print(str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        _error("interrupted (Ctrl-C); files already written are kept")
        return 130
    except _UsageError as exc:
        _error(str(exc))
        return 2
    except TrainingDiverged as exc:  # the message says what to try
        _error(f"training diverged: {exc}")
        return 1
    except (ValueError, OSError) as exc:  # DataError is a ValueError
        _error(describe_error(exc))
        return 1


def _train(args: argparse.Namespace) -> int:
    try:
        cfg = TrainConfig.from_profile(args.profile, **_overrides(args))
    except ValueError as exc:
        raise _UsageError(str(exc)) from exc
    try:
        result = train(cfg, args.run_dir, resume=not args.no_resume, progress=not args.quiet,
                       data_root=args.data_dir)
    except ValueError as exc:
        if "not a valid unet_core checkpoint" not in str(exc):
            raise
        raise ValueError(f"{describe_error(exc)}: cannot resume from it; move it away, or "
                         "start the run over with --no-resume") from exc
    late = result.late_signal  # it came during the final evaluation: the run is done
    if _main_rank():  # under torchrun the other ranks have no run folder to draw or report
        save_curves(result.run_dir, result.history)
        print(f"run directory: {result.run_dir}")
        if late is not None:
            print(f"{signal.Signals(late).name} received after the last step: the run "
                  "finished and is saved; nothing to resume", file=sys.stderr)
    return 0 if late is None else 128 + late  # a script that runs several stops here too


def _load_model(args: argparse.Namespace) -> tuple[UNet, TrainConfig, float]:
    """``--checkpoint`` onto ``--device``; a bad checkpoint's error says what is expected."""
    try:
        return load_model(args.checkpoint, device=args.device)
    except (ValueError, FileNotFoundError) as exc:
        if str(args.checkpoint) not in str(exc):  # e.g. --device cuda without CUDA
            raise
        raise type(exc)(f"{describe_error(exc)}; --checkpoint expects a run's model.pt (or "
                        "checkpoint.pt) written by python -m unet_train train") from exc


def _evaluate(args: argparse.Namespace) -> int:
    model, cfg, threshold = _load_model(args)
    cfg = _placed(cfg, args)
    if args.tta is not None:
        cfg = TrainConfig.from_dict(cfg.to_dict() | {"tta": args.tta})
    data = load_data(cfg, args.data_dir)
    examples = data.test if args.split == "test" else data.val
    if not examples:
        raise _UsageError(f"--split {args.split}: the run's data has no {args.split} images "
                          "(val_images=0); use --split test")
    result = evaluate(model, examples, cfg, threshold)
    pooled = result["pooled"]
    tag = " (SYNTHETIC data)" if data.synthetic else ""
    device = next(model.parameters()).device
    print(f"{cfg.dataset} {args.split}{tag}, {len(examples)} images, threshold "
          f"{threshold:.3f}, on {device.type}")
    for key, value in pooled.items():
        print(f"  {key:12s} {value:.4f}")
    if args.json:
        write_text(args.json, json.dumps(result, indent=1))
    return 0


def _failure(path: Path, exc: Exception) -> str:
    """One line naming the file and why it failed."""
    reason = describe_error(exc)
    return reason if str(path) in reason else f"{path}: {reason}"


def _file_error(path: Path, exc: Exception) -> None:
    tqdm.write(f"error: {_failure(path, exc)}", file=sys.stderr)  # above the progress bar


def _predict(args: argparse.Namespace) -> int:
    model, cfg, threshold = _load_model(args)
    cfg = _placed(cfg, args)
    threshold = threshold if args.threshold is None else args.threshold
    summary = predict_files(
        model, cfg, args.images, args.output, threshold=threshold, tile=args.tile,
        tta=args.tta, fov=args.fov, progress=not args.quiet, on_error=_file_error,
    )
    for p in summary.predictions:
        written = ", ".join(f.name for f in (p.probability, p.mask, p.fov) if f is not None)
        notes = [f"{p.shape[0]}x{p.shape[1]}", f"{100 * p.foreground_fraction:.1f} % foreground"]
        if p.fov_found is not None:
            notes.append(f"estimated FOV {100 * (p.fov_fraction or 0.0):.1f} % of the image"
                         if p.fov_found else "no black surround found: FOV = whole image")
        renamed = f" [renamed: {p.renamed}]" if p.renamed else ""
        print(f"{p.source} -> {written} ({', '.join(notes)}){renamed}")
    print(_summary(summary, threshold, args.fov))
    return 1 if summary.failed else 0


def _summary(summary: PredictionSummary, threshold: float, fov: str) -> str:
    done, failed, inputs = summary.predictions, summary.failed, summary.inputs
    kinds = ["<stem>_prob.png (16-bit probability, value / 65535)",
             f"<stem>_mask.png (0/255 at threshold {threshold:.3f}"
             + (", 0 outside the estimated FOV)" if fov == "auto" else ")")]
    if fov == "auto":
        kinds.append("<stem>_fov.png (estimated field of view)")
    lines = [f"{len(done)} image(s) segmented, {len(failed)} failed; written to "
             f"{summary.output}: {', '.join(kinds)}"]
    renamed = sum(p.renamed is not None for p in done)
    if renamed:
        lines.append(f"{renamed} output name(s) changed so that no file overwrites another "
                     "(see [renamed] above)")
    replaced = sum(p.replaced for p in done)
    if replaced:
        lines.append(f"{replaced} file(s) of an earlier run in {summary.output} replaced")
    if inputs.ignored:
        lines.append(f"{len(inputs.ignored)} non-image file(s) in the folders ignored: "
                     + ", ".join(map(str, inputs.ignored)))
    if inputs.repeated:
        lines.append("given more than once, segmented once: "
                     + ", ".join(map(str, inputs.repeated)))
    if failed:
        lines.append("failed:")
        lines += [f"  {_failure(path, exc)}" for path, exc in failed]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
