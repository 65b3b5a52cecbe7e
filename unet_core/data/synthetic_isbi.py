"""An ISBI-2012-like synthetic EM generator (a stand-in when the real data set is absent).

Not part of the paper: it lets the code, tests and book run without the real data, on images
that pose the same problem, separating touching cells by their thin dark membranes among
other dark structures. Target statistics, measured on the real training set
(``shared/data/isbi2012``, 30 slices of 512x512): ~120-140 cells per slice with a median
area of ~550 px (10th-90th percentile ~100-4000 px), membranes 4-9 px wide covering 22 % of
the pixels (17-27 % per slice), membrane grey ~95 against ~150 inside cells, whose texture
is strong (std ~36).

Model:

* Cells: a Voronoi partition of random seeds whose density varies smoothly (bundles of small
  axon profiles next to large cell bodies), with boundaries warped by a smooth random
  displacement so they meander, and some neighbouring cells merged into larger non-convex
  ones. Cells touch: every boundary between two cells is a membrane.
* Membranes: a band around each boundary whose half-width varies smoothly along it (so the
  width ranges over ~3-9 px); their darkness varies too, with some stretches faint, as where
  the section cuts a membrane obliquely.
* Content: each cell has its own grey level and texture; organelle-like blobs (dark,
  mitochondria-like ellipses with inner stripes, and clusters of small vesicle rings) lie
  inside cells and are *not* membrane, the main distractors; then uneven illumination, a
  little blur and noise.

``size`` (an int for a square, or ``(height, width)``) sets the field of view at ISBI's pixel
scale; ``scale`` shrinks or enlarges every length, so ``size=128, scale=0.25`` gives an
ISBI-like picture in few pixels, for tests.

Used when the real ISBI 2012 is absent; every chapter then says so. No chapter of its own.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from unet_core.data.fields import gaussian_field

ISBI_SIZE = 512


class SyntheticEM(NamedTuple):
    """``image (H, W) uint8``, ``membranes (H, W) bool``, ``instances (H, W) int32``.

    ``instances`` labels the cell interiors 1..K and is 0 on membranes.
    """

    image: np.ndarray
    membranes: np.ndarray
    instances: np.ndarray


def _as_shape(size: int | tuple[int, int]) -> tuple[int, int]:
    shape = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    if min(shape) < 16:
        raise ValueError(f"size {size} is too small: use at least 16")
    return shape


def _cells(rng: np.random.Generator, shape: tuple[int, int], s: float) -> np.ndarray:
    """Warped, partly merged Voronoi partition: ``(H, W) int32`` labels 0..K-1."""
    h, w = shape
    n_seeds = max(4, int(round(200 * h * w / (512 * 512 * s * s))))
    density = np.exp(0.6 * gaussian_field(rng, shape, 60 * s))
    p = (density / density.sum()).ravel()
    idx = rng.choice(h * w, size=n_seeds, replace=False, p=p)
    seeds = np.zeros(shape, bool)
    seeds.flat[idx] = True
    ny, nx = ndi.distance_transform_edt(~seeds, return_distances=False, return_indices=True)
    ids = np.zeros(shape, np.int32)
    ids.flat[idx] = np.arange(n_seeds, dtype=np.int32)
    voronoi = ids[ny, nx]
    # meandering boundaries: read the partition through a smooth random displacement
    warp = gaussian_field(rng, shape, 12 * s, 2) * (4.0 * s)
    yy, xx = np.indices(shape)
    wy = np.clip(np.rint(yy + warp[0]), 0, h - 1).astype(np.intp)
    wx = np.clip(np.rint(xx + warp[1]), 0, w - 1).astype(np.intp)
    labels = voronoi[wy, wx]
    # merge some neighbours into larger, non-convex cells
    right = labels[:, :-1] != labels[:, 1:]
    down = labels[:-1, :] != labels[1:, :]
    pairs = np.concatenate(
        [
            np.stack([labels[:, :-1][right], labels[:, 1:][right]], 1),
            np.stack([labels[:-1, :][down], labels[1:, :][down]], 1),
        ]
    )
    pairs = np.unique(np.sort(pairs, axis=1), axis=0)
    parent = np.arange(n_seeds)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = int(parent[a])
        return a

    for a, b in pairs[rng.random(len(pairs)) < 0.12]:
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[rb] = ra
    roots = np.array([find(i) for i in range(n_seeds)])
    _, compact = np.unique(roots, return_inverse=True)
    return compact.astype(np.int32)[labels]


def _pick(rng: np.random.Generator, candidates: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` distinct entries of ``candidates``, at random."""
    if candidates.size == 0 or n <= 0:
        return candidates[:0]
    return rng.choice(candidates, size=min(n, candidates.size), replace=False)


def _ellipse(
    out: np.ndarray, cy: float, cx: float, a: float, b: float, angle: float
) -> tuple[tuple[slice, slice], np.ndarray]:
    """Window and normalised radius ``rho`` (1 on the boundary) of an ellipse in ``out``."""
    m = int(math.ceil(max(a, b))) + 3
    y0, y1 = max(int(cy) - m, 0), min(int(cy) + m + 1, out.shape[0])
    x0, x1 = max(int(cx) - m, 0), min(int(cx) + m + 1, out.shape[1])
    yy, xx = np.ogrid[y0:y1, x0:x1]
    dy, dx = yy - cy, xx - cx
    ca, sa = math.cos(angle), math.sin(angle)
    u, v = dx * ca + dy * sa, -dx * sa + dy * ca
    return (slice(y0, y1), slice(x0, x1)), np.sqrt((u / a) ** 2 + (v / b) ** 2)


def synthetic_em(
    rng: np.random.Generator, size: int | tuple[int, int] = ISBI_SIZE, *, scale: float = 1.0
) -> SyntheticEM:
    """One ISBI-like EM slice with its membrane mask and cell instances (module docstring).

    Args:
        rng: the source of randomness; the same generator state gives the same slice.
        size: side of a square slice (512, like ISBI 2012) or ``(height, width)``; >= 16.
            It sets the field of view: cells keep ISBI's size in pixels, so a 64x64 slice
            holds a handful of them.
        scale: pixel size relative to ISBI's; 0.25 shrinks cells, membranes and organelles
            four times (e.g. an ISBI-like field of view in 128x128 pixels). Membranes stay
            at least ~2 px wide.

    Returns:
        ``SyntheticEM(image (H, W) uint8, membranes (H, W) bool, instances (H, W) int32)``;
        ``membranes`` is True on boundary pixels (the challenge's label 0).
    """
    shape = _as_shape(size)
    if not 0.05 <= scale <= 4.0:
        raise ValueError(f"scale must be in [0.05, 4], got {scale!r}")
    s = float(scale)
    labels = _cells(rng, shape, s)
    membranes, interior, instances = _membranes(rng, labels, s)
    image = _cell_content(rng, labels, s)
    _darken_membranes(rng, image, membranes, s)
    dist = ndi.distance_transform_edt(interior).astype(np.float32)  # depth inside a cell
    _add_mitochondria(rng, image, dist, s)
    _add_vesicles(rng, image, dist, interior, s)
    return SyntheticEM(_acquire(rng, image, s), membranes, instances)


def _membranes(
    rng: np.random.Generator, labels: np.ndarray, s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Membrane band around every boundary, then rounded cell interiors (opening with a disc).

    Returns ``membranes``, ``interior`` (its complement) and the interiors' ``instances``
    (1..K, 0 on membranes).
    """
    shape = labels.shape
    boundary = np.zeros(shape, bool)
    edge_x = labels[:, :-1] != labels[:, 1:]
    edge_y = labels[:-1, :] != labels[1:, :]
    boundary[:, :-1] |= edge_x
    boundary[:, 1:] |= edge_x
    boundary[:-1, :] |= edge_y
    boundary[1:, :] |= edge_y
    dist = ndi.distance_transform_edt(~boundary).astype(np.float32)
    half = np.clip(1.8 + 0.9 * gaussian_field(rng, shape, 25 * s), 0.4, 3.8) * max(s, 0.5)
    interior = dist > half
    rounding = 4.0 * s + 1.0
    core = ndi.distance_transform_edt(interior) > rounding
    interior = ndi.distance_transform_edt(~core) <= rounding
    cells, n = ndi.label(interior)
    area = np.bincount(cells.ravel(), minlength=n + 1)
    small = area < 40 * s * s + 4
    small[0] = False
    interior &= ~small[cells]
    membranes = ~interior
    instances, _ = ndi.label(interior)
    return membranes, interior, instances.astype(np.int32)


def _cell_content(rng: np.random.Generator, labels: np.ndarray, s: float) -> np.ndarray:
    """Float32 grey levels: a level per cell (a few dark cells), texture, grainy cytoplasm."""
    shape = labels.shape
    n_cells = int(labels.max()) + 1
    cell_grey = rng.uniform(145, 180, n_cells)
    dark = rng.random(n_cells) < 0.06
    cell_grey[dark] = rng.uniform(110, 140, int(dark.sum()))
    texture = gaussian_field(rng, shape, max(1.2 * s, 0.7), 2)
    image = cell_grey.astype(np.float32)[labels]
    image += 13.0 * texture[0] + 13.0 * gaussian_field(rng, shape, 6 * s)
    image += 8.0 * texture[1] * (rng.random(n_cells) < 0.5)[labels]  # grainy cytoplasm
    return image


def _darken_membranes(
    rng: np.random.Generator, image: np.ndarray, membranes: np.ndarray, s: float
) -> None:
    """Darken the membranes in ``image`` (in place), with a strength varying along them
    (faint, oblique stretches)."""
    strength = np.clip(0.85 + 0.3 * gaussian_field(rng, image.shape, 30 * s), 0.4, 1.0)
    darkness = ndi.gaussian_filter(membranes.astype(np.float32), 0.7 * max(s, 0.5))
    image -= 95.0 * strength * darkness


def _add_mitochondria(
    rng: np.random.Generator, image: np.ndarray, dist: np.ndarray, s: float
) -> None:
    """Mitochondria-like ellipses with cristae, away from the membranes (in place).

    ``dist`` is every pixel's depth inside its cell.
    """
    h, w = image.shape
    inside = np.flatnonzero(dist.ravel() > 12 * s + 2)
    n_mito = int(rng.poisson(22 * h * w / (512 * s) ** 2))
    for k in _pick(rng, inside, n_mito):
        cy, cx = divmod(int(k), w)
        b = rng.uniform(5.0, 12.0) * s + 1.0
        a = b * rng.uniform(1.0, 2.2)
        angle = rng.uniform(0, math.pi)
        win, rho = _ellipse(image, cy, cx, a, b, angle)
        yy, xx = np.ogrid[win[0], win[1]]
        cristae = np.sin((xx * math.cos(angle + 1.4) + yy * math.sin(angle + 1.4)) * 1.3 / s)
        body = np.clip(1.3 - rho, 0, 1) * (rho < 1.3)
        rim = np.exp(-0.5 * ((rho - 1.0) / (0.9 / b)) ** 2)
        image[win] -= (38 + 10 * cristae) * np.minimum(body * 3, 1) + 35 * rim


def _add_vesicles(
    rng: np.random.Generator, image: np.ndarray, dist: np.ndarray, interior: np.ndarray,
    s: float,
) -> None:
    """Small dark vesicle rings (in place): clusters near the membranes, a few scattered."""
    shape = image.shape
    h, w = shape
    near = np.flatnonzero(((dist > 2 * s + 1) & (dist < 10 * s + 2)).ravel())
    impulses = (rng.random(shape, dtype=np.float32) < 0.0015 / max(s, 0.25) ** 2) * interior
    impulses = impulses.astype(np.float32) * 0.6  # scattered vesicles all over the cytoplasm
    n_clusters = int(rng.poisson(14 * h * w / (512 * s) ** 2))
    for k in _pick(rng, near, n_clusters):
        cy, cx = divmod(int(k), w)
        n = int(rng.integers(8, 40))
        py = np.clip(np.rint(cy + rng.normal(0, 6 * s + 1, n)), 0, h - 1).astype(np.intp)
        px = np.clip(np.rint(cx + rng.normal(0, 6 * s + 1, n)), 0, w - 1).astype(np.intp)
        impulses[py, px] = 1.0
    r_ves = 2.2 * s + 0.8
    m = int(math.ceil(r_ves)) + 2
    ky, kx = np.mgrid[-m : m + 1, -m : m + 1]
    ring = np.exp(-0.5 * ((np.hypot(ky, kx) - r_ves) / 0.7) ** 2).astype(np.float32)
    image -= 30.0 * ndi.convolve(impulses, ring, mode="constant")


def _acquire(rng: np.random.Generator, image: np.ndarray, s: float) -> np.ndarray:
    """Acquisition: uneven illumination (in place), blur and noise; returns the uint8 slice."""
    shape = image.shape
    image *= 1.0 + 0.06 * gaussian_field(rng, shape, 120 * s)
    image = ndi.gaussian_filter(image, 0.7 * max(s, 0.5))
    image += rng.standard_normal(shape, dtype=np.float32) * rng.uniform(7, 11)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def write_synthetic_isbi2012(
    root: str | Path,
    n_train: int = 30,
    n_test: int = 30,
    size: int | tuple[int, int] = ISBI_SIZE,
    seed: int = 0,
    scale: float = 1.0,
) -> Path:
    """Write a synthetic ISBI 2012 data set in the PNG-folder layout under ``root``.

    ``train/images/00.png ...`` and ``train/labels/00.png ...`` (8-bit, 255 = cell interior,
    0 = membrane), ``test/images/00.png ...`` without labels, exactly like
    ``shared/data/isbi2012`` (:func:`unet_core.data.load_isbi2012` reads both). Slice ``i`` of
    a split is drawn from ``numpy.random.default_rng([seed, split_index, i])`` (split_index 0
    for train, 1 for test), so the data are deterministic; ``size`` and ``scale`` as in
    :func:`synthetic_em`. Returns ``Path(root)``.
    """
    root = Path(root)
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise ValueError(f"need n_train, n_test >= 0, not both 0; got {n_train}, {n_test}")
    for split_index, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        if n == 0:
            continue
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        if split == "train":
            (root / split / "labels").mkdir(parents=True, exist_ok=True)
        digits = max(2, len(str(n - 1)))
        for i in range(n):
            em = synthetic_em(np.random.default_rng([seed, split_index, i]), size, scale=scale)
            name = f"{i:0{digits}d}.png"
            Image.fromarray(em.image).save(root / split / "images" / name)
            if split == "train":
                label = np.where(em.membranes, 0, 255).astype(np.uint8)
                Image.fromarray(label).save(root / split / "labels" / name)
    return root
