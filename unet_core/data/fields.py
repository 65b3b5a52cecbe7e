"""Smooth random fields, the texture and warping primitive of the synthetic data generators.

Used by the synthetic stand-ins only; no chapter of its own.
"""

from __future__ import annotations

import numpy as np
from scipy import fft


def gaussian_field(
    rng: np.random.Generator, shape: tuple[int, int], sigma: float, count: int = 1
) -> np.ndarray:
    """``count`` independent zero-mean, unit-variance Gaussian random fields of ``shape``.

    White noise filtered in the Fourier domain by a Gaussian of standard deviation ``sigma``
    pixels (the correlation length). The noise is generated on a grid padded by ``3 sigma``
    (then cropped), so the fields do not wrap around. Smooth fields (``sigma > 8``) are made
    on a grid coarser by ``sigma / 4`` and upsampled linearly, which they cannot tell apart.
    Returns ``(count, H, W) float32`` when ``count > 1``, else ``(H, W)``; a few ms for
    584x565.
    """
    h, w = int(shape[0]), int(shape[1])
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    factor = max(1, int(sigma / 4)) if sigma > 8 else 1
    ch, cw, cs = -(-h // factor) + 1, -(-w // factor) + 1, sigma / factor
    pad = int(np.ceil(3 * cs))
    ph, pw = fft.next_fast_len(ch + pad, real=True), fft.next_fast_len(cw + pad, real=True)
    noise = rng.standard_normal((count, ph, pw), dtype=np.float32)
    fy = np.fft.fftfreq(ph).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(pw).astype(np.float32)[None, :]
    kernel = np.exp(-2.0 * (np.pi * cs) ** 2 * (fy**2 + fx**2)).astype(np.float32)
    out = fft.irfft2(fft.rfft2(noise, axes=(1, 2)) * kernel, s=(ph, pw), axes=(1, 2))
    out = np.asarray(out[:, :ch, :cw], dtype=np.float32)
    if factor > 1:  # separable linear interpolation: pixel y sits at y / factor on the grid
        for axis, n in ((1, h), (2, w)):
            pos = np.arange(n, dtype=np.float32) / factor
            lo = pos.astype(np.intp)
            t = (pos - lo.astype(np.float32)).reshape([-1 if a == axis else 1 for a in range(3)])
            out = np.take(out, lo, axis=axis) * (1 - t) + np.take(out, lo + 1, axis=axis) * t
    out = np.ascontiguousarray(out[:, :h, :w])
    out -= out.mean(axis=(1, 2), keepdims=True)
    out /= out.std(axis=(1, 2), keepdims=True) + 1e-12
    return out if count > 1 else out[0]
