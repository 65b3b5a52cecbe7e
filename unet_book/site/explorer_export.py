"""The mask explorer in the static book, without a kernel: a run's test images exported as
the explorer's data files, the chapter's HTML, and what the Sphinx extension copies into the site.

* :func:`export_static`: a run's test images as one data file each
  (:func:`unet_book.explorer_widget.encode_case`) plus ``index.json`` with the reference
  metrics the browser must show (:func:`reference_checks`), cached in the run folder
  (``<run>/explorer/``).
* :func:`site_html`: chapter 8's output, a ``<div>`` and a module script importing the ES
  module (``unet_book/static/mask_explorer.js``, the widget's own) from the site's
  ``_static/unet_explorer/`` (:mod:`unet_book.site.mount`).
* :func:`publish_to_site`: the book's Sphinx extension (:mod:`unet_book.site`) copies the ES
  module and the run's data there at the end of each HTML build, so a build served from the
  execution cache has them too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unet_book.explorer import Case, run_cases
from unet_book.explorer_widget import (
    FORMAT,
    JPEG_QUALITY,
    LEVELS,
    MODULE,
    STEPS,
    encode_case,
    run_threshold,
)
from unet_book.site.mount import SITE_DIR, mount_html
from unet_core.data.paths import data_dir
from unet_core.metrics import confusion_counts, segmentation_metrics
from unet_train.runs import runs_dir

EXPORT_DIR = "explorer"  # a run's static export: <run>/explorer/index.json and *.bin


def check_thresholds(case: Case, run_k: int) -> list[int]:
    """Slider positions where a case's metrics are worth checking: its run's threshold and
    the quartiles of its probabilities inside the FOV (on the 0.01 grid)."""
    inside = np.asarray(case.prob)[case.fov.astype(bool)] if case.fov is not None else case.prob
    ks = {run_k, *(int(np.clip(round(float(q) * STEPS), 1, STEPS - 1))
                   for q in np.quantile(inside, [0.25, 0.5, 0.75]))}
    return sorted(ks)


def reference_checks(case: Case, run_k: int) -> list[dict[str, Any]]:
    """:func:`unet_core.metrics.segmentation_metrics` and the confusion counts on the float
    probabilities at :func:`check_thresholds` (FOV on) and at the run's threshold (FOV off):
    the numbers the browser must show there (the site test compares them)."""
    if case.target is None:
        return []
    out = []
    plan = [(k, True) for k in check_thresholds(case, run_k)] + [(run_k, False)]
    for k, use_fov in plan:
        fov = case.fov if use_fov else None
        m = segmentation_metrics(case.prob, case.target, fov, threshold=k / STEPS)
        c = confusion_counts(case.prob, case.target, fov, threshold=k / STEPS)
        out.append({"k": k, "fov": use_fov, "f1": m.f1, "sensitivity": m.sensitivity,
                    "specificity": m.specificity, "precision": m.precision,
                    "auc_roc": m.auc_roc, "tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn})
    return out


def _export_key(run_dir: Path, images: Sequence[str] | None) -> str:
    model = run_dir / "model.pt"
    parts = [FORMAT, STEPS, JPEG_QUALITY, hashlib.sha256(model.read_bytes()).hexdigest(),
             str(data_dir().resolve()), list(images) if images is not None else None]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def export_static(run_dir: str | Path, out_dir: str | Path | None = None,
                  images: Sequence[str] | None = None) -> dict[str, Any]:
    """Write a run's test images for the static explorer: one data file per image
    (:func:`encode_case`) and ``index.json`` (run, threshold, images with their sizes and the
    reference metrics of :func:`reference_checks`). Returns the index.

    ``out_dir`` defaults to ``<run>/explorer`` (the cache :func:`publish_to_site` copies into
    the site); ``images`` picks test images by name (default all). Nothing is written when
    ``out_dir`` already holds the export of this model, data directory and selection.
    """
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / EXPORT_DIR
    key = _export_key(run_dir, images)
    index_path = out / "index.json"
    if index_path.exists():
        index = json.loads(index_path.read_text())
        if index.get("key") == key and all((out / e["file"]).exists() for e in index["images"]):
            return index
    cases = run_cases(run_dir)
    if images is not None:
        missing = sorted(set(images) - {c.name for c in cases})
        if missing:
            raise ValueError(f"{run_dir.name} has no test images {missing}")
        cases = [c for c in cases if c.name in set(images)]
    threshold = run_threshold(run_dir) or 0.5
    run_k = int(np.clip(round(threshold * STEPS), 1, STEPS - 1))
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for case in cases:
        data = encode_case(case)
        name = re.sub(r"[^A-Za-z0-9._-]", "_", case.name) + ".bin"
        (out / name).write_bytes(data)
        h, w_ = np.shape(case.prob)
        entries.append({"name": case.name, "file": name, "bytes": len(data), "width": w_,
                        "height": h, "checks": reference_checks(case, run_k)})
    for stale in set(out.glob("*.bin")) - {out / e["file"] for e in entries}:
        stale.unlink()
    index = {"format": FORMAT, "key": key, "run": run_dir.name, "threshold": threshold,
             "levels": LEVELS, "steps": STEPS, "images": entries}
    index_path.write_text(json.dumps(index, indent=1))
    return index


def module_version() -> str:
    """A short hash of the ES module (a cache-busting query in the page's import)."""
    return hashlib.sha256(MODULE.read_bytes()).hexdigest()[:10]


def site_html(run_name: str, element_id: str = "unet-explorer") -> str:
    """The chapter's output in the static book: a ``<div>`` for the explorer of ``run_name``
    and a module script that imports the ES module from the site's ``_static/unet_explorer/``
    (relative to the page, through Sphinx's ``data-content_root``) and mounts it on the run's
    ``index.json``. Where it cannot run, the ``<div>`` says why (``data-state``): outside the
    built book (``elsewhere``: JupyterLab, where the live explorer is the next cell), from
    ``file://`` (``file``: browsers block module imports and fetches there), or when loading
    failed (``error``); the gallery below it stays."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", run_name):
        raise ValueError(f"run_name={run_name!r} must be a run folder's name")
    note = ("The interactive explorer loads here: it needs JavaScript and the book served "
            "over HTTP (for example <code>python -m http.server -d _build/html</code>); the "
            "figures below show explorer states.")
    return mount_html(
        "unet-explorer", element_id, {"explorer-run": run_name}, note,
        module=f"mask_explorer.js?v={module_version()}",
        mount=f'm.mount(el, new URL("{run_name}/index.json", base).href)',
        elsewhere=("The book's explorer runs in the built site; here, run the live explorer "
                   "(the next code cell)."),
        file=("The interactive explorer needs the book served over HTTP (browsers block "
              "module scripts and data fetches from file://), for example python -m "
              "http.server -d _build/html; the figures below show explorer states."),
        error=("The interactive explorer could not load ({}). It runs in the book served "
               "over HTTP; the figures below show explorer states."))


def _chapter_dir(app: Any, docname: str) -> Path:
    return Path(app.srcdir) / Path(docname).parent


def publish_to_site(app: Any, exception: Exception | None) -> None:
    """Sphinx ``build-finished``: copy the ES module and the data of every run a page's
    explorer names (``data-explorer-run``) into ``<site>/_static/unet_explorer/``, and make
    the page import this version of the module (its cache-busting query). The data
    come from ``<run>/explorer`` (written when chapter 8 ran; exported here if missing), the
    run from ``$UNET_RUNS_DIR`` as the chapter saw it (relative paths from its folder)."""
    from sphinx.util import logging as sphinx_logging  # Sphinx is there only in a book build

    if exception is not None or getattr(app.builder, "format", "") != "html":
        return
    logger = sphinx_logging.getLogger(__name__)
    outdir = Path(app.outdir)
    wanted: dict[str, Path] = {}
    for docname in sorted(app.env.all_docs):
        uri = app.builder.get_target_uri(docname)
        page = outdir / (uri + "index.html" if uri.endswith("/") or not uri else uri)
        if page.exists():
            text = page.read_text(encoding="utf-8", errors="replace")
            names = re.findall(r'data-explorer-run="([A-Za-z0-9._-]+)"', text)
            for name in names:
                wanted.setdefault(name, _chapter_dir(app, docname))
            # a page from the execution cache imports the module by the version it was
            # executed with: point it at the module copied below
            fresh = re.sub(r"mask_explorer\.js\?v=[0-9a-f]+",
                           f"mask_explorer.js?v={module_version()}", text)
            if names and fresh != text:
                page.write_text(fresh, encoding="utf-8")
    if not wanted:
        return
    site = outdir / SITE_DIR
    site.mkdir(parents=True, exist_ok=True)
    shutil.copy2(MODULE, site / MODULE.name)
    for name, chapter_dir in wanted.items():
        with contextlib.chdir(chapter_dir):
            run_dir = (runs_dir() / name).resolve()
            if not (run_dir / "model.pt").exists():
                logger.warning(f"mask explorer: the page names run {name}, which is not under "
                               f"{runs_dir().resolve()}: train it (run chapter 8) or clear "
                               "the execution cache")
                continue
            index = export_static(run_dir)
        target = site / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(run_dir / EXPORT_DIR, target)
        total = sum(e["bytes"] for e in index["images"])
        logger.info(f"mask explorer: {name}, {len(index['images'])} images "
                    f"({total / 1e6:.1f} MB) -> {target.relative_to(outdir)}")
