"""Command line: ``python -m unet_core train|evaluate|predict``.

``train`` takes a profile and any :class:`~unet_core.config.TrainConfig` field as an option
(``--steps 500 --no-bf16 --loss bce``); ``evaluate`` re-evaluates a run's model; ``predict``
segments image files of any format and size. ``train`` also writes the run's ``curves.png``
(:mod:`unet_core.curves`). Chapter 5 shows the commands.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unet_core.config import PROFILES, TrainConfig, check_names
from unet_core.curves import save_curves
from unet_core.data.splits import load_data
from unet_core.evaluation import evaluate
from unet_core.predict import predict_files
from unet_core.runs import load_model
from unet_core.tiling import TTA_MODES
from unet_core.train import train


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("config fields (override the profile)")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "profile":
            continue
        option = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            group.add_argument(option, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=None)
        else:
            kind = {"int": int, "float": float, "str": str}.get(str(f.type), str)
            group.add_argument(option, dest=f.name, type=kind, default=None)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m unet_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a U-Net (resumes an interrupted run)")
    train.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    train.add_argument("--run-dir", type=Path, default=None,
                       help="run directory (default runs/<dataset>-<profile>-<config hash>)")
    train.add_argument("--data-dir", type=Path, default=None, help="default $UNET_DATA_DIR")
    train.add_argument("--no-resume", action="store_true", help="start over")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_options(train)

    ev = sub.add_parser("evaluate", help="evaluate a trained model on its data set")
    ev.add_argument("--checkpoint", type=Path, required=True, help="a run's model.pt")
    ev.add_argument("--split", choices=("test", "val"), default="test")
    ev.add_argument("--data-dir", type=Path, default=None)
    ev.add_argument("--tta", choices=TTA_MODES, default=None)
    ev.add_argument("--json", type=Path, default=None, help="also write the metrics here")

    pr = sub.add_parser("predict", help="segment image files (any format, any size)")
    pr.add_argument("--checkpoint", type=Path, required=True, help="a run's model.pt")
    pr.add_argument("--output", type=Path, required=True, help="folder for the PNGs")
    pr.add_argument("--threshold", type=float, default=None, help="default: the model's")
    pr.add_argument("--tile", type=int, default=None, help="tile side (default: the model's)")
    pr.add_argument("--tta", choices=TTA_MODES, default=None)
    pr.add_argument("images", nargs="+", type=Path)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"profile"}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


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
    if args.command == "train":
        try:
            cfg = TrainConfig.from_profile(args.profile, **_overrides(args))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        result = train(cfg, args.run_dir, resume=not args.no_resume, progress=not args.quiet,
                       data_root=args.data_dir)
        save_curves(result.run_dir, result.history)
        print(f"run directory: {result.run_dir}")
        return 0

    if args.command == "evaluate":
        model, cfg, threshold = load_model(args.checkpoint)
        if args.tta is not None:
            cfg = TrainConfig.from_dict(cfg.to_dict() | {"tta": args.tta})
        data = load_data(cfg, args.data_dir)
        examples = data.test if args.split == "test" else data.val
        result = evaluate(model, examples, cfg, threshold)
        pooled = result["pooled"]
        tag = " (SYNTHETIC data)" if data.synthetic else ""
        print(f"{cfg.dataset} {args.split}{tag}, {len(examples)} images, threshold "
              f"{threshold:.3f}")
        for key, value in pooled.items():
            print(f"  {key:12s} {value:.4f}")
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
        return 0

    model, cfg, threshold = load_model(args.checkpoint)
    done, failed = predict_files(
        model, cfg, args.images, args.output,
        threshold=threshold if args.threshold is None else args.threshold,
        tile=args.tile, tta=args.tta,
        on_error=lambda p, e: print(f"error: {p}: {e}", file=sys.stderr),
    )
    for p in done:
        print(f"{p.source} -> {p.probability.name}, {p.mask.name} "
              f"({p.shape[0]}x{p.shape[1]}, {100 * p.foreground_fraction:.1f} % foreground)")
    print(f"{len(done)} image(s) segmented, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
