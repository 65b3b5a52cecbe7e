"""Where a run computes, and in which precision (chapter 5 explains training).

* :data:`DEVICES` and :func:`pick_device`: ``auto`` is the best available (CUDA, then MPS,
  then the CPU).
* :func:`choose_precision`: mixed precision chosen per device. ``TrainConfig.bf16`` asks for
  it; what a device gets is

  - CPU: bf16 autocast where the CPU supports bf16 arithmetic (AVX-512 BF16 or AMX, detected
    through oneDNN), else fp32: emulated bf16 is slower than fp32, so it is never used;
  - CUDA: bf16 autocast where the GPU supports it (Ampere and later), else fp16 autocast with
    a gradient scaler (fp16's range is too small for unscaled gradients);
  - MPS: fp16 autocast with a gradient scaler, as PyTorch supports it there.

  The loss is always computed in fp32.
* :func:`environment`: what a run records about where it ran (device, threads, versions).
* :func:`synchronize`: wait for the device, so that a timing measures the work.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

import numpy as np
import torch

#: ``TrainConfig.device`` choices; ``auto`` is the best available (CUDA, then MPS, then CPU).
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")


def pick_device(name: str) -> torch.device:
    """The ``torch.device`` for a :data:`DEVICES` choice (an unavailable one raises)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but CUDA is not available "
                         "(use --device cpu or auto)")
    if name == "mps" and not mps_available():
        raise ValueError("device='mps' was asked for but MPS is not available "
                         "(use --device cpu or auto)")
    if name not in DEVICES:
        raise ValueError(f"device={name!r} is not valid; expected one of {', '.join(DEVICES)}")
    return torch.device(name)


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def cpu_supports_bf16() -> bool:
    """True when this CPU computes bf16 natively (oneDNN's check: AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cuda_supports_bf16() -> bool:
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


@dataclass(frozen=True)
class Precision:
    """How a device computes the forward pass: ``autocast`` dtype (``None``: fp32) and whether
    the gradients need a scaler (fp16)."""

    autocast: torch.dtype | None
    grad_scaler: bool
    note: str

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast]


def choose_precision(
    device: torch.device, mixed: bool, *, cpu_bf16: bool | None = None,
    cuda_bf16: bool | None = None,
) -> Precision:
    """The precision a device gets when ``mixed`` precision is asked for (module docstring).

    ``cpu_bf16`` and ``cuda_bf16`` override the capability checks (for tests).
    """
    if not mixed:
        return Precision(None, False, "fp32 (mixed precision off)")
    if device.type == "cpu":
        supported = cpu_supports_bf16() if cpu_bf16 is None else cpu_bf16
        if supported:
            return Precision(torch.bfloat16, False, "bf16 autocast (this CPU computes bf16)")
        return Precision(None, False, "fp32: this CPU has no native bf16 (AVX-512 BF16 or AMX), "
                                      "where bf16 autocast is slower than fp32")
    if device.type == "cuda":
        supported = cuda_supports_bf16() if cuda_bf16 is None else cuda_bf16
        if supported:
            return Precision(torch.bfloat16, False, "bf16 autocast (this GPU supports bf16)")
        return Precision(torch.float16, True, "fp16 autocast with a gradient scaler "
                                              "(this GPU has no bf16)")
    if device.type == "mps":
        return Precision(torch.float16, True, "fp16 autocast with a gradient scaler (MPS)")
    return Precision(None, False, f"fp32 (no mixed precision on {device.type})")


def synchronize(device: torch.device) -> None:
    """Wait until ``device`` has finished its queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def environment(device: torch.device, precision: Precision) -> dict[str, object]:
    """Where a run ran: recorded in its folder (``environment.json``) and its checkpoint."""
    info: dict[str, object] = {
        "device": device.type, "precision": precision.name, "threads": torch.get_num_threads(),
        "torch": str(torch.__version__), "numpy": str(np.__version__),
        "python": platform.python_version(),
        "machine": platform.machine(), "processor": processor_name(), "cpu_kind": cpu_kind(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = str(torch.version.cuda)
    return info


def cpuinfo_value(*keys: str) -> str | None:
    """The value of the first line of ``/proc/cpuinfo`` whose key is one of ``keys`` (None
    where there is none or the file cannot be read): the one reader of that file."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() in keys:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_flags() -> list[str]:
    """Every instruction-set flag of this CPU (x86 ``flags``, Arm ``Features``)."""
    return (cpuinfo_value("flags", "Features") or "").split()


def cpu_features() -> list[str]:
    """The instruction-set extensions of this CPU that decide which kernels PyTorch runs
    (from ``/proc/cpuinfo``; empty where it cannot be read)."""
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "asimd",
              "sve")
    present = set(cpu_flags())
    return [w for w in wanted if w in present]


def cpu_kind() -> str:
    """The processor and the extensions that change its numerics and speed, e.g. ``AMD EPYC
    (avx2)`` or ``AMD EPYC (avx2 avx512f avx512_bf16, native bf16)``: two machines of one kind
    run the same CPU kernels (one model name alone does not say it: both AMD EPYCs this project
    met are called ``AMD EPYC``)."""
    features = " ".join(cpu_features()) or "unknown extensions"
    native = ", native bf16" if cpu_supports_bf16() else ""
    return f"{processor_name()} ({features}{native})"


def processor_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (else what ``platform`` knows)."""
    return cpuinfo_value("model name") or platform.processor() or "unknown"
