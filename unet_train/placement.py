"""How a run computes on its device: precision and memory format, chosen by measurement.

Two settings change only how fast the same network computes, not what it computes (up to
rounding): the **precision** (fp32, or bf16 autocast; :mod:`unet_train.devices`) and the
**memory format** of the activations and weights (NCHW ``contiguous``, or NHWC
``channels_last``). Which combination is fastest depends on the CPU, and no flag predicts it:

* on an AMD EPYC with AVX-512 BF16, bf16 autocast trained about 2x faster than fp32;
* on an Intel Xeon whose oneDNN reports bf16, bf16 autocast trained *slower* than fp32;
* on an AMD EPYC with AVX2 only (no bf16), a width-64 training step ran at 0.0198 Mpx/s in
  channels-last against 0.0257 in NCHW, while inference was the other way round (0.120 against
  0.086).

So ``precision="auto"`` and ``memory_format="auto"`` (the :class:`~unet_train.config.TrainConfig`
defaults) are decided by timing: :func:`choose` runs a few training steps (forward, backward)
of the run's own network at its own patch and batch size, or a few forward passes of the
evaluation tile for inference, in every candidate combination, interleaved, and takes the
fastest median. **Training and inference are chosen separately.** The measurement is cached per
machine, thread count, torch version and network shape in the user cache directory
(:func:`cache_dir`), so it runs once, and every run records what was chosen and the timings in
its ``environment.json``.

Candidates: fp32, and bf16 autocast where the CPU computes bf16 natively
(:func:`unet_train.devices.cpu_supports_bf16`); ``contiguous`` and ``channels_last``. A config can
force either (``precision="fp32"|"bf16"``, ``memory_format="contiguous"|"channels_last"``); the
older switches still hold: ``bf16=False`` means fp32 and ``channels_last=False`` means
``contiguous``. The environment variables ``UNET_PRECISION`` and ``UNET_MEMORY_FORMAT`` force an
``auto`` choice for a whole process (for example, to run the test suite in the precision this
CPU would not choose; bf16 on a CPU without native bf16 is emulated and slow, but correct).
On CUDA and MPS nothing is timed: ``auto`` takes the device's mixed precision
(:func:`unet_train.devices.choose_precision`) and channels-last unless it is switched off.

Because training and evaluation during training choose the inference placement the same way
as evaluation after :func:`unet_train.runs.load_model` does, the numbers a run writes and the
numbers recomputed from its ``model.pt`` come from one code path, on any CPU.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from unet_train.atomic import write_json
from unet_train.devices import Precision, choose_precision, cpu_kind, synchronize

if TYPE_CHECKING:
    from unet_train.config import TrainConfig

#: ``TrainConfig.precision`` choices.
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
#: ``TrainConfig.memory_format`` choices.
MEMORY_FORMATS: tuple[str, ...] = ("auto", "contiguous", "channels_last")
#: What a placement is for.
PHASES: tuple[str, ...] = ("train", "infer")
PRECISION_ENV = "UNET_PRECISION"
MEMORY_FORMAT_ENV = "UNET_MEMORY_FORMAT"
CACHE_ENV = "UNET_CACHE_DIR"
CACHE_FILE = "placement.json"
#: Timed rounds per candidate (after one warm-up round); the median counts.
ROUNDS = 3
#: Tiles per forward pass in inference (:func:`unet_train.evaluation.predict_probability`).
INFER_BATCH = 4

FP32 = Precision(None, False, "fp32")
#: This process's choices: (cache directory, key) -> placement (the cache file is read once).
_CHOSEN: dict[tuple[str, str], Placement] = {}
BF16 = Precision(torch.bfloat16, False, "bf16 autocast")


@dataclass(frozen=True)
class Placement:
    """How one phase (training or inference) computes: precision and memory format, and how
    that was decided (``"measured"``, ``"cached"``, ``"forced"`` or ``"only choice"``)."""

    precision: Precision
    channels_last: bool
    how: str
    seconds: dict[str, float] = field(default_factory=dict)  # candidate -> median seconds
    note: str = ""  # why a candidate was left out, e.g. no native bf16

    @property
    def memory_format(self) -> str:
        return "channels_last" if self.channels_last else "contiguous"

    @property
    def name(self) -> str:
        """``fp32/contiguous``, ``bf16/channels_last``, ..."""
        return f"{self.precision.name}/{self.memory_format}"

    def describe(self) -> str:
        """One line for a log: the choice, how it was made and the timings."""
        times = ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in self.seconds.items())
        note = f"; {self.note}" if self.note else ""
        return f"{self.name} ({self.how}{': ' + times if times else ''}{note})"

    def as_dict(self) -> dict[str, Any]:
        """For ``environment.json``."""
        return {"precision": self.precision.name, "memory_format": self.memory_format,
                "how": self.how, "seconds": dict(self.seconds), "note": self.note}


def cache_dir() -> Path:
    """The user cache directory: ``$UNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/unet-book``, else
    ``~/.cache/unet-book``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "unet-book"


def _env_choice(name: str, choices: tuple[str, ...]) -> str | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if value not in choices[1:]:
        raise ValueError(f"environment variable {name}={value!r} is not valid; expected one of "
                         f"{', '.join(choices[1:])} (or unset)")
    return value


def requested(cfg: TrainConfig) -> tuple[str, str]:
    """The config's precision and memory format with the older switches and the environment
    applied: each ``auto`` or a forced value."""
    precision = "fp32" if not cfg.bf16 else cfg.precision
    if precision == "auto":
        precision = _env_choice(PRECISION_ENV, PRECISIONS) or "auto"
    fmt = "contiguous" if not cfg.channels_last else cfg.memory_format
    if fmt == "auto":
        fmt = _env_choice(MEMORY_FORMAT_ENV, MEMORY_FORMATS) or "auto"
    return precision, fmt


def _forced_precision(name: str, device: torch.device) -> Precision:
    if name == "fp32":
        return FP32
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("precision='bf16' was asked for but this GPU has no bf16; use "
                         "precision='auto' (fp16 with a gradient scaler) or 'fp32'")
    return Precision(torch.bfloat16, False, "bf16 autocast (forced)")


def candidates(cfg: TrainConfig, device: torch.device) -> tuple[list[Precision], list[bool]]:
    """The precisions and memory formats (``channels_last`` flags) that :func:`choose` compares
    for ``cfg`` on ``device``: one each where the config or the environment forces it."""
    precision, fmt = requested(cfg)
    if precision != "auto":
        precisions = [_forced_precision(precision, device)]
    elif device.type != "cpu":
        precisions = [choose_precision(device, True)]
    else:
        offered = choose_precision(device, True)
        precisions = [FP32] + ([BF16] if offered.autocast is not None else [])
    if fmt != "auto":
        formats = [fmt == "channels_last"]
    elif device.type != "cpu":
        formats = [True]
    else:
        formats = [False, True]
    return precisions, formats


def _key(cfg: TrainConfig, in_channels: int, out_channels: int, device: torch.device,
         phase: str, names: list[str]) -> str:
    if phase == "train":
        shape = (cfg.batch_size // cfg.world_size, cfg.patch_size)
    else:
        shape = (INFER_BATCH, cfg.eval_tile)
    what = {"phase": phase, "device": device.type, "cpu": cpu_kind(),
            "threads": torch.get_num_threads(), "torch": str(torch.__version__),
            "net": [in_channels, out_channels, cfg.base_channels, cfg.depth, cfg.padding,
                    cfg.batch_norm], "shape": list(shape), "candidates": names}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads((cache_dir() / CACHE_FILE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(key: str, entry: dict[str, Any]) -> None:
    data = _read_cache()
    data[key] = entry
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        write_json(cache_dir() / CACHE_FILE, data)
    except OSError:
        pass  # an unwritable cache only means measuring again next time


def _name(precision: Precision, channels_last: bool) -> str:
    return f"{precision.name}/{'channels_last' if channels_last else 'contiguous'}"


def choose(cfg: TrainConfig, model: torch.nn.Module, device: torch.device, phase: str) -> Placement:
    """The placement of ``phase`` (``"train"`` or ``"infer"``) for ``model`` built from ``cfg``
    on ``device``: forced, the only candidate, cached, or measured now (module docstring)."""
    if phase not in PHASES:
        raise ValueError(f"phase={phase!r} is not valid; expected one of {', '.join(PHASES)}")
    precisions, formats = candidates(cfg, device)
    options = [(p, f) for p in precisions for f in formats]
    offered = choose_precision(device, True)
    note = offered.note if (device.type == "cpu" and offered.autocast is None
                            and requested(cfg)[0] == "auto") else ""
    if len(options) == 1:  # on a CPU only where forced; on a GPU the device's default
        forced = requested(cfg) != ("auto", "auto")
        return Placement(*options[0], "forced" if forced else "only choice", note=note)
    names = [_name(p, f) for p, f in options]
    key = _key(cfg, model.in_channels, model.out_channels, device, phase, names)
    memo = (str(cache_dir()), key)
    if memo in _CHOSEN:
        return _CHOSEN[memo]
    entry = _read_cache().get(key)
    if isinstance(entry, dict) and entry.get("choice") in names:
        p, f = options[names.index(entry["choice"])]
        chosen = Placement(p, f, "cached", {k: float(v) for k, v in entry["seconds"].items()},
                           note)
    else:
        seconds = measure(cfg, model, device, phase, options)
        best = min(seconds, key=seconds.__getitem__)
        _write_cache(key, {"choice": best, "seconds": seconds, "cpu": cpu_kind(),
                           "date": time.strftime("%Y-%m-%d %H:%M:%S")})
        p, f = options[names.index(best)]
        chosen = Placement(p, f, "measured", seconds, note)
    _CHOSEN[memo] = chosen
    return chosen


def measure(cfg: TrainConfig, model: torch.nn.Module, device: torch.device, phase: str,
            options: list[tuple[Precision, bool]], rounds: int = ROUNDS) -> dict[str, float]:
    """Median seconds of one training step (forward and backward at the config's patch and
    per-process batch size) or one inference forward pass (:data:`INFER_BATCH` tiles of the
    evaluation tile) of a copy of ``model`` in each option, interleaved so that a change of
    machine load falls on all of them alike. The model itself is not changed; the global
    random state is saved and restored."""
    rng = torch.get_rng_state()
    try:
        generator = torch.Generator().manual_seed(0)
        train = phase == "train"
        n, side = ((cfg.batch_size // cfg.world_size, cfg.patch_size) if train
                   else (INFER_BATCH, cfg.eval_tile))
        x = torch.rand(n, model.in_channels, side, side, generator=generator).to(device)
        copies = []
        for precision, channels_last in options:
            net = copy.deepcopy(model).to(device).train(train)
            if channels_last:
                net = net.to(memory_format=torch.channels_last)
            xin = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            copies.append((net, xin, precision))
        times: list[list[float]] = [[] for _ in options]
        for r in range(rounds + 1):  # round 0 warms up
            for i, (net, xin, precision) in enumerate(copies):
                t0 = time.perf_counter()
                _run_once(net, xin, precision, device, train)
                synchronize(device)
                if r:
                    times[i].append(time.perf_counter() - t0)
        return {_name(p, f): statistics.median(t) for (p, f), t in zip(options, times,
                                                                         strict=True)}
    finally:
        torch.set_rng_state(rng)


def _run_once(net: torch.nn.Module, x: torch.Tensor, precision: Precision,
              device: torch.device, train: bool) -> None:
    autocast = torch.autocast(device_type=device.type, dtype=precision.autocast or torch.bfloat16,
                              enabled=precision.autocast is not None)
    if train:
        with autocast:
            out = net(x)  # (N, K, H_out, W_out)
        out.float().square().mean().backward()
        net.zero_grad(set_to_none=True)
    else:
        with torch.inference_mode(), autocast:
            net(x)


def is_channels_last(model: torch.nn.Module) -> bool:
    """Whether ``model``'s 4-d weights are in channels-last memory format."""
    # a weight with a dimension of size 1 can be both at once: any one that is only channels-last
    return any(p.ndim == 4 and p.is_contiguous(memory_format=torch.channels_last)
               and not p.is_contiguous() for p in model.parameters())


@contextlib.contextmanager
def in_memory_format(model: torch.nn.Module, channels_last: bool) -> Iterator[torch.nn.Module]:
    """``model`` in the given memory format for the block, and back in its own afterwards (the
    parameters are the same objects: an optimiser holding them is unaffected)."""
    before = is_channels_last(model)
    if before == channels_last:
        yield model
        return
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    try:
        yield model
    finally:
        model.to(memory_format=torch.channels_last if before else torch.contiguous_format)
