"""A DRIVE-like synthetic fundus generator (a stand-in when the real DRIVE is absent).

Not a replication of anything in the paper: it exists so that the code, tests and book run
without the real data set, on images that still pose the same problem. What is modelled, with
the real DRIVE training set's statistics as the target (measured on ``shared/data/DRIVE``):

* Geometry: a circular field of view (radius ~0.47 of the short side, ~68 % of the pixels;
  outside it the photograph is nearly black), an optic disc 0.55-0.8 FOV radii left or right
  of the centre, a fovea near the centre with a vessel-free zone.
* Vessel trees: for each quadrant an artery and a vein leave the disc; the temporal ones arch
  around the fovea (the vascular arcades), the nasal ones run outwards. Each vessel is a random
  walk with correlated curvature (tortuosity), tapers slowly, and bifurcates at random with
  Murray's law (r_parent^3 = r_child1^3 + r_child2^3); children of the arcades head towards
  the fovea or away from the disc. Vessels of one kind (artery, vein) stop when they run into
  each other; side branches sprout towards the largest vessel-free gaps until the trees cover
  the FOV. Growth proceeds from the thickest vessels to the thinnest and stops at a
  vessel-area budget drawn per image (7-10.5 % of the pixels; DRIVE's training masks: 6-11.6
  %, mean 8.6 %). Widths run from ~10 px at the disc down to 1-2 px.
* Appearance: vessels absorb light along their chord (so thin vessels have low contrast and
  wide ones high, about -30 % in green), most in green, little in red; arteries are paler with
  a central light reflex. Uneven illumination (vignetting plus a smooth random field), retinal
  texture, a darker macula, a bright optic disc, a few dark haemorrhage-like blobs and bright
  exudate-like spots (distractors that are *not* vessels), a camera blur and sensor noise;
  per-image colour and brightness vary like DRIVE's (green background ~65-125).

The label is the set of pixels within each centreline point's radius (measured to the
sub-pixel centreline), inside the FOV. The test split's second observer
(:func:`write_synthetic_drive`) re-rasterises the same trees with every branch shifted
and re-sized a little and 40 % of the thin branches missed.

``size`` is ``(height, width)``; geometry scales with the short side, vessel widths only down
to half of DRIVE's, so small sizes (e.g. ``(96, 96)``) still show a branching tree, for tests.

Speed: ~0.3 s per 584x565 image on one core (a 40-image set in ~10-12 s).

Used when the real DRIVE is absent; every chapter then says so. No chapter of its own.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from unet_core.data.fields import gaussian_field

DRIVE_SIZE: tuple[int, int] = (584, 565)  # (height, width) of a DRIVE photograph
_REF = 565.0  # short side the length constants below are tuned for


class SyntheticFundus(NamedTuple):
    """``image (H, W, 3) uint8``, ``vessels (H, W) bool``, ``fov (H, W) bool``."""

    image: np.ndarray
    vessels: np.ndarray
    fov: np.ndarray


@dataclass
class _Branch:
    """One vessel segment between its birth and its end (centreline samples)."""

    ys: list[float] = field(default_factory=list)
    xs: list[float] = field(default_factory=list)
    rs: list[float] = field(default_factory=list)
    artery: bool = True
    level: int = 0


@dataclass
class _Geometry:
    shape: tuple[int, int]
    scale: float  # short side / 565
    centre: np.ndarray  # FOV centre (y, x)
    radius: float  # FOV radius
    disc: np.ndarray
    disc_radius: float
    fovea: np.ndarray
    faz: float  # radius of the foveal avascular zone
    side: int  # +1: disc right of the centre, -1: left


def _geometry(rng: np.random.Generator, shape: tuple[int, int]) -> _Geometry:
    h, w = shape
    short = min(h, w)
    centre = np.array([h * rng.uniform(0.505, 0.52), w * rng.uniform(0.485, 0.5)])
    radius = short * rng.uniform(0.465, 0.478)
    side = int(rng.choice([-1, 1]))
    disc = centre + radius * np.array([rng.uniform(-0.17, 0.03), side * rng.uniform(0.55, 0.78)])
    fovea = np.array(
        [disc[0] + radius * rng.uniform(0.0, 0.12), centre[1] - side * radius * rng.uniform(0, 0.1)]
    )
    return _Geometry(
        shape=shape, scale=short / _REF, centre=centre, radius=radius, disc=disc,
        disc_radius=radius * rng.uniform(0.11, 0.15), fovea=fovea, faz=radius * 0.09, side=side,
    )


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


@dataclass(order=True)
class _Tip:
    """A vessel waiting to be grown; tips are grown thickest first."""

    neg_r: float
    order: int
    y: float = field(compare=False)
    x: float = field(compare=False)
    theta: float = field(compare=False)
    mode: str = field(compare=False)  # steering: arcade, radial, fovea, outward, target, free
    artery: bool = field(compare=False)
    level: int = field(compare=False)
    max_len: float = field(compare=False)
    parent: int = field(compare=False, default=-1)
    target: tuple[float, float] = field(compare=False, default=(0.0, 0.0))


def _grow_tree(rng: np.random.Generator, g: _Geometry, area_budget: float) -> list[_Branch]:
    """Grow the vessel trees, thickest first, until ``area_budget`` pixels are used.

    Space is shared through coarse occupancy grids, one for arteries and one for veins: a
    branch (other than the main vessels) ends when it runs into cells already used by another
    vessel of its own kind, so arteries still cross veins as in real fundi but vessels do not
    pile up. When every tip has stopped before the budget is spent, a side branch sprouts from
    the vessel point nearest to the largest remaining gap and grows towards it, so the trees
    fill the whole FOV (apart from the foveal avascular zone).
    """
    grower = _TreeGrower(rng, g, area_budget)
    grower.seed_main_vessels()
    while grower.used < area_budget:
        if not grower.heap and not grower.sprout():
            break
        if not grower.heap:
            continue
        grower.grow_branch(heapq.heappop(grower.heap))
    return grower.branches


class _TreeGrower:
    """The state of one :func:`_grow_tree` run: growth constants, occupancy grids, tips."""

    def __init__(self, rng: np.random.Generator, g: _Geometry, area_budget: float) -> None:
        self.rng, self.g, self.area_budget = rng, g, area_budget
        s = self.s = g.scale
        self.sr = max(s, 0.5)  # radii shrink with the image only down to half DRIVE's, so small
        # test images still hold a visible, branching tree
        self.step = max(0.75, 2.0 * s)
        self.r_min = 0.7
        self.tortuosity = rng.uniform(0.6, 1.4)
        self.branch_len = rng.uniform(25, 40) * max(s, 0.25)  # mean distance between bifurcations
        self.taper = math.exp(-self.step / (900 * s))
        self.cy, self.cx = g.centre
        self.fy, self.fx = g.fovea
        self.dy0, self.dx0 = g.disc
        self.arcade_d = float(np.hypot(*(g.disc - g.fovea)))
        self.temporal = -g.side  # x direction from the disc towards the fovea
        self._init_grids()
        self.heap: list[_Tip] = []
        self.order = itertools.count()  # tie-break: equal radii grow in creation order
        self.branches: list[_Branch] = []
        self.used = 0.0

    def _init_grids(self) -> None:
        """The coarse occupancy grids and the cells a sprout may head for."""
        g = self.g
        cell = self.cell = max(3.0, 4.0 * self.s)
        gh, gw = int(g.shape[0] / cell) + 2, int(g.shape[1] / cell) + 2
        self.owner = np.full((2, gh, gw), -1, np.int64)  # [artery] -> first branch in the cell
        self.first_point = np.full((gh, gw), -1, np.int64)  # a point of a sprout-able vessel
        self.points: list[tuple[int, int]] = []  # (branch, point index in branch)
        gcy, gcx = (np.mgrid[0:gh, 0:gw] - 0.5) * cell
        self.reachable = (np.hypot(gcy - self.cy, gcx - self.cx) < g.radius - 2 * cell) & (
            np.hypot(gcy - self.fy, gcx - self.fx) > g.faz + cell
        )
        self.tried = np.zeros((gh, gw), bool)

    def push(self, r: float, y: float, x: float, theta: float, mode: str, artery: bool,
             level: int, max_len: float, parent: int = -1,
             target: tuple[float, float] = (0.0, 0.0)) -> None:
        """Queue a tip, unless it is already thinner than the thinnest vessel."""
        if r >= self.r_min:
            heapq.heappush(self.heap, _Tip(-r, next(self.order), y, x, theta, mode, artery, level,
                                           max_len, parent, target))

    def seed_main_vessels(self) -> None:
        """Queue an artery and a vein per quadrant at the disc, and a few macular vessels."""
        rng, g, sr, r_min = self.rng, self.g, self.sr, self.r_min
        dy0, dx0, temporal = self.dy0, self.dx0, self.temporal
        for vertical in (-1, 1):  # superior, inferior
            for kind in ("temporal", "nasal"):
                if kind == "temporal":
                    base = math.atan2(vertical, temporal * rng.uniform(0.5, 1.0))
                else:
                    base = math.atan2(vertical * rng.uniform(0.3, 1.2), -temporal)
                for artery in (True, False):
                    theta = base + rng.normal(0, 0.1) + (0.1 if artery else -0.1) * vertical
                    r0 = (rng.uniform(3.3, 4.1) if artery else rng.uniform(4.1, 5.1)) * sr
                    r0 *= 1.0 if kind == "temporal" else 0.75
                    off = rng.normal(0, 0.2 * g.disc_radius, 2)
                    self.push(max(r0, 1.2 * r_min), dy0 + off[0], dx0 + off[1], theta,
                              "arcade" if kind == "temporal" else "radial", artery, 0,
                              2.4 * g.radius)
        for _ in range(int(rng.integers(1, 4))):  # small macular vessels straight to the fovea
            theta = math.atan2(self.fy - dy0, self.fx - dx0) + rng.normal(0, 0.3)
            self.push(rng.uniform(1.2, 1.8) * sr, dy0, dx0, theta, "fovea",
                      bool(rng.random() < 0.5), 1, g.radius)

    def sprout(self) -> bool:
        """Queue a side branch towards the largest gap (:func:`_sprout`); False if none is left."""
        return _sprout(self.rng, self.owner, self.first_point, self.points, self.branches,
                       self.reachable, self.tried, self.cell, self.r_min, self.push)

    def grow_branch(self, tip: _Tip) -> None:
        """Grow ``tip`` into a new branch, step by step, until it stops; queue its children."""
        rng, g, step, taper = self.rng, self.g, self.step, self.taper
        y, x, theta, r, mode = tip.y, tip.x, tip.theta, -tip.neg_r, tip.mode
        me = len(self.branches)
        br = _Branch(artery=tip.artery, level=tip.level)
        self.branches.append(br)
        grid = self.owner[int(tip.artery)]
        kappa, length, orient = 0.0, 0.0, 0
        arc_r = min(self.arcade_d * rng.uniform(0.9, 1.1), 0.78 * g.radius)
        sigma_k = 0.018 * self.tortuosity / (1.0 + r / (1.5 * self.sr))
        exempt = 3.0 * self.cell + 2.0 * r
        while True:
            self._record(me, br, grid, y, x, r)
            if self.used >= self.area_budget or length > tip.max_len:
                break
            vy, vx = y - self.fy, x - self.fx
            mode, orient, target, beta = self._steer(mode, orient, y, x, theta, vy, vx, arc_r,
                                                     tip.target)
            kappa = 0.9 * kappa + rng.normal(0.0, sigma_k)
            theta = theta + kappa + beta * _wrap(target - theta)
            y += step * math.sin(theta)
            x += step * math.cos(theta)
            length += step
            r *= taper
            if self._stops(y, x, r):
                break
            if tip.level > 0 and length > exempt and mode != "target" and self._collides(
                grid, y, x, me, tip.parent
            ):  # ran into its own kind
                break
            if self._forks(y, x, r):
                r, theta = self._bifurcate(tip, me, mode, y, x, r, theta, vy, vx)

    def _record(self, me: int, br: _Branch, grid: np.ndarray, y: float, x: float,
                r: float) -> None:
        """Append a centreline point to branch ``me``, mark its cell and count its area."""
        cell = self.cell
        gy, gx = int(y / cell) + 1, int(x / cell) + 1
        if grid[gy, gx] < 0:
            grid[gy, gx] = me
        if self.first_point[gy, gx] < 0 and r >= 1.3 * self.sr + self.r_min:
            self.first_point[gy, gx] = len(self.points)
        self.points.append((me, len(br.rs)))
        br.ys.append(y)
        br.xs.append(x)
        br.rs.append(r)
        self.used += max(1.0, 2.0 * r) * self.step

    def _steer(self, mode: str, orient: int, y: float, x: float, theta: float, vy: float,
               vx: float, arc_r: float, goal: tuple[float, float]
               ) -> tuple[str, int, float, float]:
        """The heading a vessel in ``mode`` is pulled towards, and how hard (beta).

        ``(vy, vx)`` is the offset from the fovea. Returns the (possibly switched) mode, the
        arcade's orientation around the fovea, the target heading and beta.
        """
        d_f = math.hypot(vy, vx) + 1e-9
        if mode == "arcade" and (x - self.fx) * self.temporal > 0.25 * arc_r:
            mode = "radial"  # past the fovea the arcade runs on away from the disc
        if mode == "arcade":  # around the fovea at distance arc_r, continuing the heading
            if orient == 0:
                orient = 1 if (-vx * math.sin(theta) + vy * math.cos(theta)) > 0 else -1
            ty, tx = -orient * vx / d_f, orient * vy / d_f
            k = 1.5 * (arc_r - d_f) / arc_r
            target, beta = math.atan2(ty + k * vy / d_f, tx + k * vx / d_f), 0.07
        elif mode == "radial":
            target, beta = math.atan2(y - self.dy0, x - self.dx0), 0.03
        elif mode == "fovea":
            target, beta = math.atan2(-vy, -vx), 0.04
        elif mode == "outward":
            target, beta = math.atan2(vy, vx), 0.02
        elif mode == "target":  # towards a gap; once there, on straight ahead
            gap_y, gap_x = goal[0] - y, goal[1] - x
            ahead = gap_y * math.sin(theta) + gap_x * math.cos(theta)
            if math.hypot(gap_y, gap_x) < 3.0 * self.cell or ahead < 0:
                mode = "free"
            target, beta = math.atan2(gap_y, gap_x), 0.05
        else:
            target, beta = theta, 0.0
        return mode, orient, target, beta

    def _stops(self, y: float, x: float, r: float) -> bool:
        """True if a vessel at ``(y, x)`` of radius ``r`` ends: too thin, out of the FOV or
        the image, or in the foveal avascular zone."""
        g = self.g
        return (
            r < self.r_min
            or math.hypot(y - self.cy, x - self.cx) > g.radius - 1.5
            or math.hypot(y - self.fy, x - self.fx) < g.faz
            or not (0 <= y < g.shape[0] and 0 <= x < g.shape[1])
        )

    def _collides(self, grid: np.ndarray, y: float, x: float, me: int, parent: int) -> bool:
        """True if the cells around ``(y, x)`` hold another vessel of the same kind."""
        cell = self.cell
        gy, gx = int(y / cell) + 1, int(x / cell) + 1
        near = grid[gy - 1 : gy + 2, gx - 1 : gx + 2]
        return bool(((near >= 0) & (near != me) & (near != parent)).any())

    def _forks(self, y: float, x: float, r: float) -> bool:
        """Whether the vessel bifurcates here (off the disc, thick enough, at random)."""
        on_disc = math.hypot(y - self.dy0, x - self.dx0) < 1.3 * self.g.disc_radius
        return (not on_disc and r > 1.6 * self.r_min
                and self.rng.random() < self.step / self.branch_len)

    def _bifurcate(self, tip: _Tip, me: int, mode: str, y: float, x: float, r: float,
                   theta: float, vy: float, vx: float) -> tuple[float, float]:
        """Split off a child (Murray's law) and queue it; returns the parent's new r, theta."""
        rng = self.rng
        q = rng.uniform(0.75, 0.9) if rng.random() < 0.15 else rng.uniform(0.4, 0.75)
        r_child = r * q
        r = r * (1.0 - q**3) ** (1.0 / 3.0)  # Murray's law
        turn = rng.uniform(0.6, 1.3) * (1.0 if rng.random() < 0.5 else -1.0)
        child_theta = theta + turn
        theta -= 0.5 * q * q * turn
        if mode == "arcade":
            towards = math.cos(child_theta) * -vx + math.sin(child_theta) * -vy > 0
            child_mode = "fovea" if towards else "radial"
        elif mode in ("fovea", "target"):
            child_mode = "free"
        else:
            child_mode = mode
        self.push(r_child, y, x, child_theta, child_mode, tip.artery, tip.level + 1,
                  self.g.radius * rng.uniform(0.4, 1.0), me)
        return r, theta


def _sprout(
    rng: np.random.Generator,
    owner: np.ndarray,
    first_point: np.ndarray,
    points: list[tuple[int, int]],
    branches: list[_Branch],
    reachable: np.ndarray,
    tried: np.ndarray,
    cell: float,
    r_min: float,
    push: Callable[..., None],
) -> bool:
    """Start a side branch towards the largest gap between vessels; False if none is left."""
    occupied = (owner >= 0).any(axis=0)
    sources = first_point >= 0
    if not sources.any():
        return False
    dist = ndi.distance_transform_edt(~occupied)
    ny, nx = ndi.distance_transform_edt(~sources, return_distances=False, return_indices=True)
    weight = np.where(reachable & ~tried & (dist >= 3.0), dist**2, 0.0).ravel()
    total = weight.sum()
    if total <= 0:
        return False
    k = int(rng.choice(weight.size, p=weight / total))
    gy, gx = divmod(k, owner.shape[2])
    tried[max(gy - 1, 0) : gy + 2, max(gx - 1, 0) : gx + 2] = True
    sy, sx = int(ny[gy, gx]), int(nx[gy, gx])
    b, j = points[int(first_point[sy, sx])]
    first_point[max(sy - 6, 0) : sy + 7, max(sx - 6, 0) : sx + 7] = -1  # no brooms
    src = branches[b]
    ty, tx = (gy - 0.5) * cell, (gx - 0.5) * cell
    y, x = src.ys[j], src.xs[j]
    r = src.rs[j] * rng.uniform(0.45, 0.75)
    theta = math.atan2(ty - y, tx - x)
    reach = math.hypot(ty - y, tx - x)
    push(r, y, x, theta, "target", src.artery, src.level + 1, 1.3 * reach + 10 * cell, b,
         (ty, tx))
    return True


def _centreline(branches: list[_Branch], spacing: float = 0.5) -> dict[str, np.ndarray]:
    """Resample every branch at ``spacing`` px: arrays y, x, r, artery."""
    ys, xs, rs, art = [], [], [], []
    for br in branches:
        y, x, r = (np.asarray(v, dtype=np.float64) for v in (br.ys, br.xs, br.rs))
        if y.size == 1:
            ys.append(y), xs.append(x), rs.append(r), art.append(np.full(1, br.artery))
            continue
        arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(y), np.diff(x)))])
        t = np.arange(0.0, arc[-1] + 1e-9, spacing)
        ys.append(np.interp(t, arc, y))
        xs.append(np.interp(t, arc, x))
        rs.append(np.interp(t, arc, r))
        art.append(np.full(t.size, br.artery))
    return {
        "y": np.concatenate(ys), "x": np.concatenate(xs), "r": np.concatenate(rs),
        "artery": np.concatenate(art),
    }


_RADIUS_BINS = (0.0, 1.0, 1.6, 2.4, 3.4, np.inf)


def _rasterise(
    line: dict[str, np.ndarray], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vessel mask, chord length (px of blood crossed) and artery map from centreline points.

    Per radius bin, a Euclidean distance transform gives every pixel its nearest centreline
    pixel; the pixel is vessel if it lies within that point's radius. Binning keeps a thin
    branch from "stealing" pixels inside the thick vessel it leaves.
    """
    h, w = shape
    iy, ix = np.rint(line["y"]).astype(np.intp), np.rint(line["x"]).astype(np.intp)
    ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    mask = np.zeros(shape, bool)
    chord = np.zeros(shape, np.float32)
    artery = np.zeros(shape, bool)
    order = np.argsort(line["r"], kind="stable")  # thicker points written last, so they win
    for lo, hi in zip(_RADIUS_BINS[:-1], _RADIUS_BINS[1:], strict=True):
        sel = order[ok[order] & (line["r"][order] >= lo) & (line["r"][order] < hi)]
        if sel.size == 0:
            continue
        m = int(math.ceil(float(line["r"][sel].max()))) + 2
        y0, y1 = max(int(iy[sel].min()) - m, 0), min(int(iy[sel].max()) + m + 1, h)
        x0, x1 = max(int(ix[sel].min()) - m, 0), min(int(ix[sel].max()) + m + 1, w)
        win = (slice(y0, y1), slice(x0, x1))
        py, px = iy[sel] - y0, ix[sel] - x0
        seed = np.zeros((y1 - y0, x1 - x0), bool)
        seed[py, px] = True
        radius, cyf, cxf = (np.zeros(seed.shape, np.float32) for _ in range(3))
        radius[py, px] = line["r"][sel]
        cyf[py, px] = line["y"][sel] - y0
        cxf[py, px] = line["x"][sel] - x0
        kind = np.zeros(seed.shape, bool)
        kind[py, px] = line["artery"][sel]
        ny, nx = ndi.distance_transform_edt(~seed, return_distances=False, return_indices=True)
        rn = radius[ny, nx]
        gy, gx = np.ogrid[0 : y1 - y0, 0 : x1 - x0]
        # distance to the sub-pixel centreline point, so widths are not quantised to odd pixels
        d = np.hypot(gy - cyf[ny, nx], gx - cxf[ny, nx])
        inside = seed | (d <= rn)
        c = np.where(inside, 2.0 * np.sqrt(np.maximum(rn * rn - d * d, 0.0)) + 1.0, 0.0)
        mask[win] |= inside
        better = c > chord[win]
        chord[win] = np.where(better, c, chord[win])
        artery[win] = np.where(better, kind[ny, nx] & inside, artery[win])
    return mask, chord, artery


def _blobs(
    rng: np.random.Generator, shape: tuple[int, int], g: _Geometry, n: int, r_range: tuple
) -> np.ndarray:
    """Soft round blobs (0..1) at random places inside the FOV."""
    out = np.zeros(shape, np.float32)
    for _ in range(n):
        a = rng.uniform(0, 2 * math.pi)
        d = g.radius * math.sqrt(rng.uniform(0.02, 0.85))
        cy, cx = g.centre[0] + d * math.sin(a), g.centre[1] + d * math.cos(a)
        rad = rng.uniform(*r_range) * g.scale + 0.5
        m = int(3 * rad) + 1
        y0, y1 = max(int(cy) - m, 0), min(int(cy) + m + 1, shape[0])
        x0, x1 = max(int(cx) - m, 0), min(int(cx) + m + 1, shape[1])
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.ogrid[y0:y1, x0:x1]
        blob = 1.0 / (1.0 + np.exp(((yy - cy) ** 2 + (xx - cx) ** 2) ** 0.5 / rad * 6 - 6))
        out[y0:y1, x0:x1] = np.maximum(out[y0:y1, x0:x1], blob.astype(np.float32))
    return out


def _fundus(
    rng: np.random.Generator, size: tuple[int, int], vessel_fraction: float | None
) -> tuple[SyntheticFundus, list[_Branch], _Geometry]:
    h, w = int(size[0]), int(size[1])
    if h < 16 or w < 16:
        raise ValueError(f"size {size} is too small: use at least 16x16")
    g = _geometry(rng, (h, w))
    s = g.scale
    frac = rng.uniform(0.07, 0.105) if vessel_fraction is None else float(vessel_fraction)
    if not 0.0 < frac < 0.5:
        raise ValueError(f"vessel_fraction must be in (0, 0.5), got {vessel_fraction!r}")
    # The growth budget counts overlapping pixels twice; 1.25 compensates on average.
    branches = _grow_tree(rng, g, 1.25 * frac * h * w)
    line = _centreline(branches)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rho = np.hypot(yy - float(g.centre[0]), xx - float(g.centre[1])) / np.float32(g.radius)
    fov = rho <= 1.0
    vessels, chord, artery = _rasterise(line, (h, w))
    vessels &= fov

    # -- absorbance (vessels and dark lesions), blurred by the camera -------------------------
    sr = max(s, 0.5)  # the radius scale of _grow_tree
    absorb = chord / sr  # path length in units of the 565-px reference
    absorb *= np.where(artery, 0.72, 1.0)
    reflex = artery & (chord > 3.5 * sr)
    absorb *= 1.0 - 0.3 * reflex * np.clip((chord - 3.5 * sr) / (4 * sr), 0, 1)
    absorb += 6.0 * _blobs(rng, (h, w), g, int(rng.poisson(3)), (1.5, 6.0))
    absorb = ndi.gaussian_filter(absorb.astype(np.float32), 0.8 * max(s, 0.6))
    mu = rng.uniform(0.05, 0.07)
    mu_rgb = np.array([0.15, 1.0, 0.6], np.float32) * mu

    # -- background -----------------------------------------------------------------------------
    smooth = gaussian_field(rng, (h, w), 0.35 * g.radius)
    fine = gaussian_field(rng, (h, w), max(3.0 * s, 0.8), 2)
    illum = (1.0 - rng.uniform(0.05, 0.3) * rho**3) * (1.0 + rng.uniform(0.03, 0.08) * smooth)
    texture = 1.0 + rng.uniform(0.008, 0.02) * fine[0] + 0.01 * fine[1]
    d_fovea = np.hypot(yy - float(g.fovea[0]), xx - float(g.fovea[1]))
    macula = 1.0 - rng.uniform(0.08, 0.2) * np.exp(-0.5 * (d_fovea / (0.2 * g.radius)) ** 2)
    ry = np.float32(g.disc_radius * rng.uniform(1.0, 1.15))
    rx = np.float32(g.disc_radius)
    d_disc = np.hypot((yy - float(g.disc[0])) / ry, (xx - float(g.disc[1])) / rx)
    disc = 1.0 / (1.0 + np.exp(np.minimum((d_disc - 1.0) / 0.12, 50.0)))
    disc *= 1.0 + 0.35 * np.exp(-0.5 * (d_disc / 0.35) ** 2)  # the brighter cup
    exudates = _blobs(rng, (h, w), g, int(rng.poisson(4)) if rng.random() < 0.3 else 0, (1, 3))

    green = rng.uniform(65, 125)  # per-image colour balance, like DRIVE's
    base = [min(green * rng.uniform(1.6, 2.4), 235.0), green, green * rng.uniform(0.45, 0.75)]
    red_gain = rng.uniform(50, 90)
    disc_gain = [red_gain, red_gain * rng.uniform(0.8, 1.3), red_gain * rng.uniform(0.4, 0.7)]
    shade = illum * texture
    rim = ndi.gaussian_filter(fov.astype(np.float32), max(1.2 * s, 0.5))
    noise_sd = rng.uniform(2.0, 3.5)
    image = np.empty((h, w, 3), np.uint8)
    for c in range(3):
        m_c = macula if c else 1.0 - 0.5 * (1.0 - macula)
        chan = base[c] * shade * m_c + disc_gain[c] * disc * illum + 40.0 * (c < 2) * exudates
        chan *= np.exp(-mu_rgb[c] * absorb)
        chan = chan * rim + (1.0 - rim) * rng.uniform(3, 9)
        chan += rng.standard_normal((h, w), dtype=np.float32) * (noise_sd * (0.6 + 0.4 * rim))
        image[..., c] = np.clip(np.rint(chan), 0, 255).astype(np.uint8)
    return SyntheticFundus(image, vessels, fov), branches, g


def synthetic_fundus(
    rng: np.random.Generator,
    size: tuple[int, int] = DRIVE_SIZE,
    *,
    vessel_fraction: float | None = None,
) -> SyntheticFundus:
    """One DRIVE-like fundus photograph with its vessel and FOV masks (model: module docstring).

    Args:
        rng: the source of randomness; the same generator state gives the same picture.
        size: ``(height, width)``, DRIVE's ``(584, 565)`` by default; at least 16x16.
        vessel_fraction: target share of *image* pixels that are vessel; by default drawn
            per image from U(0.07, 0.105). The result lands near it (growth stops at the
            budget; pixel quantisation and overlaps make it approximate).

    Returns:
        ``SyntheticFundus(image (H, W, 3) uint8, vessels (H, W) bool, fov (H, W) bool)``.
    """
    return _fundus(rng, size, vessel_fraction)[0]


def _second_observer(
    rng: np.random.Generator, branches: list[_Branch], shape: tuple[int, int], fov: np.ndarray
) -> np.ndarray:
    """A second annotator's mask for the same trees: traced and sized anew, thin twigs missed.

    Each branch is shifted by a random sub-pixel offset (N(0, 0.6 px) per axis), its radius
    scaled by a factor from U(0.7, 1.35), and 40 % of the branches born thinner than 1.5 px
    are left out. Agreement with the first mask is then high on thick vessels and lower on
    thin ones, with an accuracy inside the FOV near DRIVE's inter-observer 0.947.
    """
    kept = []
    for br in branches:
        if br.rs[0] < 1.5 and rng.random() < 0.4:
            continue
        f = rng.uniform(0.7, 1.35)
        dy, dx = rng.normal(0.0, 0.6, 2)
        kept.append(_Branch([y + dy for y in br.ys], [x + dx for x in br.xs],
                            [r * f for r in br.rs], br.artery, br.level))
    if not kept:
        return np.zeros(shape, bool)
    mask, _, _ = _rasterise(_centreline(kept), shape)
    return mask & fov


def write_synthetic_drive(
    root: str | Path,
    n_train: int = 20,
    n_test: int = 20,
    size: tuple[int, int] = DRIVE_SIZE,
    seed: int = 0,
) -> Path:
    """Write a synthetic DRIVE in the official layout under ``root`` (see :mod:`.drive`).

    Files: ``test/{images,1st_manual,2nd_manual,mask}`` for ids 01, 02, ... (``n_test`` of
    them) and ``training/{images,1st_manual,mask}`` for ids 21, 22, ... (``n_train``; they
    start after the test ids if ``n_test > 20``), in DRIVE's
    formats: LZW-compressed RGB TIFF images, vessel and FOV masks as 8-bit GIFs (mode L,
    0/255), the second observer as a palette GIF with index 1 = vessel. Image ``i`` is drawn
    from ``numpy.random.default_rng([seed, id])``, so the data are deterministic and an
    image does not change when ``n_train``/``n_test`` do. Returns ``Path(root)``.
    """
    root = Path(root)
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise ValueError(f"need n_train, n_test >= 0, not both 0; got {n_train}, {n_test}")
    jobs = [("test", i) for i in range(1, n_test + 1)]
    jobs += [("training", i) for i in range(max(n_test, 20) + 1, max(n_test, 20) + 1 + n_train)]
    for split, i in jobs:
        base = root / split
        folders = ["images", "1st_manual", "mask"] + (["2nd_manual"] if split == "test" else [])
        for folder in folders:
            (base / folder).mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, i])
        sample, branches, _ = _fundus(rng, size, None)
        Image.fromarray(sample.image).save(
            base / "images" / f"{i:02d}_{split}.tif", compression="tiff_lzw"
        )
        _save_gif_l(sample.vessels, base / "1st_manual" / f"{i:02d}_manual1.gif")
        _save_gif_l(sample.fov, base / "mask" / f"{i:02d}_{split}_mask.gif")
        if split == "test":
            second = _second_observer(rng, branches, sample.vessels.shape, sample.fov)
            pal = Image.frombytes("P", second.shape[::-1], second.astype(np.uint8).tobytes())
            pal.putpalette([4, 2, 4, 252, 254, 252])  # DRIVE's 2nd_manual palette
            pal.save(base / "2nd_manual" / f"{i:02d}_manual2.gif", optimize=False)
    return root


def _save_gif_l(mask: np.ndarray, path: Path) -> None:
    # optimize=False keeps the full grey palette, so the GIF reads back as mode L like DRIVE's.
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(path, optimize=False)
