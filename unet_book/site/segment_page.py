"""Chapter 8's "your own image" in the static book: the page's HTML and what the Sphinx
extension copies into the site for it.

:func:`segment_html` is the chapter's output: a ``<div>`` naming the runs whose exported
networks it offers (``data-segment-runs``) and a module script that mounts
``unet_book/static/segment.js`` on it. :func:`publish_to_site` (Sphinx ``build-finished``)
copies the page's ES modules (:data:`unet_book.browser_model.MODULES`) into
``_static/unet_explorer/`` and each named run's export (``<run>/browser/model.onnx`` and
``model.json``, :func:`unet_book.browser_model.export_run`) into
``_static/unet_explorer/<run>/browser/``; onnxruntime-web is in ``_static/onnxruntime-web/``
(``make onnxruntime-web``, served through ``html_static_path``). The page fetches the runtime
and a model only when the reader segments an image.
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

from unet_book.browser_model import EXPORT_DIR, MANIFEST_FILE, ONNX_FILE, export_run
from unet_book.site.mount import SITE_DIR, mount_html
from unet_train.runs import runs_dir

STATIC = Path(__file__).resolve().parents[1] / "static"  # unet_book/static
MODULES = ("segment.js", "segment_worker.js", "overlap_tile.js", "image_codec.js",
           "mask_explorer.js")
RUNTIME_DIR = "_static/onnxruntime-web"
RUNTIME_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs",
                 "ort-wasm-simd-threaded.wasm")
_RUN = re.compile(r"[A-Za-z0-9._-]+")


def modules_version() -> str:
    """A short hash of the page's ES modules together (the cache-busting query)."""
    digest = hashlib.sha256()
    for name in MODULES:
        digest.update((STATIC / name).read_bytes())
    return digest.hexdigest()[:10]


def segment_html(models: Sequence[tuple[str, str]], element_id: str = "unet-segment") -> str:
    """The chapter's output: ``models`` are ``(label, run folder name)`` pairs, the first the
    default. Where the page cannot run, the ``<div>`` says why (``data-state``: ``elsewhere``
    outside the built book, ``file`` from ``file://``, ``error`` when loading failed)."""
    if not models:
        raise ValueError("segment_html: give at least one (label, run) pair")
    for _, run in models:
        if not _RUN.fullmatch(run):
            raise ValueError(f"run={run!r} must be a run folder's name")
    runs = " ".join(run for _, run in models)
    entries = json.dumps([{"label": label, "run": run} for label, run in models])
    version = modules_version()
    note = ("Segmenting your own image runs here: it needs JavaScript and the book served "
            "over HTTP (for example <code>python -m http.server -d _build/html</code>).")
    setup = f"""const ort = new URL(root + "{RUNTIME_DIR}/", document.baseURI);
const models = {entries}.map((m) => ({{ label: m.label,
  manifestUrl: new URL(m.run + "/{EXPORT_DIR}/model.json", base).href,
  modelUrl: new URL(m.run + "/{EXPORT_DIR}/model.onnx", base).href }}));"""
    mount = (f'm.mount(el, {{ models, ortUrl: new URL("ort.wasm.min.mjs", ort).href,\n'
             f'      wasmBase: ort.href, workerUrl: new URL("segment_worker.js?v={version}", '
             'base).href })')
    return mount_html(
        "unet-segment", element_id, {"segment-runs": runs}, note,
        module=f"segment.js?v={version}", mount=mount, setup=setup,
        elsewhere=("Segmenting your own image in the page runs in the built site; here, use "
                   "the live explorer's file box or python -m unet_train predict."),
        file=("Segmenting your own image needs the book served over HTTP (browsers block "
              "module scripts, workers and fetches from file://), for example python -m "
              "http.server -d _build/html; the figures below show explorer states."),
        error=("Segmenting your own image could not load ({}). It runs in the book served "
               "over HTTP."))


def publish_export(run_dir: Path, site: Path) -> None:
    """A run's export (made if needed) into ``<site>/<run>/browser/``, where the page looks."""
    export_run(run_dir)
    target = site / run_dir.name / EXPORT_DIR
    target.mkdir(parents=True, exist_ok=True)
    for file in (ONNX_FILE, MANIFEST_FILE):
        shutil.copy2(run_dir / EXPORT_DIR / file, target / file)


def publish_to_site(app: Any, exception: Exception | None) -> None:
    """Sphinx ``build-finished``: the page's modules and the exports of the runs a page names
    (``data-segment-runs``) into ``<site>/_static/unet_explorer/``; pages from the execution
    cache are pointed at this version of the modules. A missing run or runtime is a warning
    (the page then says it could not load), as for the explorer."""
    from sphinx.util import logging as sphinx_logging  # Sphinx is there only in a book build

    if exception is not None or getattr(app.builder, "format", "") != "html":
        return
    logger = sphinx_logging.getLogger(__name__)
    outdir = Path(app.outdir)
    wanted: dict[str, Path] = {}
    version = modules_version()
    for docname in sorted(app.env.all_docs):
        uri = app.builder.get_target_uri(docname)
        page = outdir / (uri + "index.html" if uri.endswith("/") or not uri else uri)
        if not page.exists():
            continue
        text = page.read_text(encoding="utf-8", errors="replace")
        found = re.findall(r'data-segment-runs="([A-Za-z0-9._ -]+)"', text)
        for names in found:
            for name in names.split():
                wanted.setdefault(name, Path(app.srcdir) / Path(docname).parent)
        fresh = re.sub(r"(segment(?:_worker)?\.js)\?v=[0-9a-f]+", rf"\1?v={version}", text)
        if found and fresh != text:
            page.write_text(fresh, encoding="utf-8")
    if not wanted:
        return
    site = outdir / SITE_DIR
    site.mkdir(parents=True, exist_ok=True)
    for name in MODULES:
        shutil.copy2(STATIC / name, site / name)
    missing = [f for f in RUNTIME_FILES if not (outdir / RUNTIME_DIR / f).exists()]
    if missing:
        logger.warning(f"segment your own image: the site has no {RUNTIME_DIR}/{missing[0]}: "
                       "run `make onnxruntime-web` before building the book")
    for name, chapter_dir in wanted.items():
        with contextlib.chdir(chapter_dir):
            run_dir = (runs_dir() / name).resolve()
        if not (run_dir / "model.pt").exists():
            logger.warning(f"segment your own image: the page names run {name}, which is not "
                           "in the runs folder: run chapter 8 or clear the execution cache")
            continue
        publish_export(run_dir, site)


def write_page_site(out_dir: Path, models: Sequence[tuple[str, Path]],
                    vendor: Path | None = None) -> Path:
    """A one-page site with the segmenter alone, laid out as the book's (``index.html``,
    ``_static/unet_explorer/``, ``_static/onnxruntime-web/``): ``models`` are ``(label,
    run folder)`` pairs, exported if needed; ``vendor`` is ``make onnxruntime-web``'s folder.
    The timing benchmark (``benchmarks/browser_speed.py``) serves it; returns ``out_dir``."""
    vendor = vendor or Path(__file__).resolve().parents[2] / "_vendor" / "onnxruntime-web"
    missing = [f for f in RUNTIME_FILES if not (vendor / f).exists()]
    if missing:
        raise FileNotFoundError(f"{vendor.name}/{missing[0]} is missing: run "
                                "`make onnxruntime-web`")
    out_dir = Path(out_dir)
    site = out_dir / SITE_DIR
    runtime = out_dir / RUNTIME_DIR
    site.mkdir(parents=True, exist_ok=True)
    runtime.mkdir(parents=True, exist_ok=True)
    for name in MODULES:
        shutil.copy2(STATIC / name, site / name)
    for name in RUNTIME_FILES:
        shutil.copy2(vendor / name, runtime / name)
    for _, run_dir in models:
        publish_export(Path(run_dir), site)
    body = segment_html([(label, Path(run_dir).name) for label, run_dir in models])
    (out_dir / "index.html").write_text(
        '<!DOCTYPE html>\n<html lang="en" data-content_root="./">\n<head><meta charset="utf-8">'
        '<title>U-Net: your own image</title><link rel="icon" href="data:,"></head>\n'
        f"<body>\n{body}\n</body>\n</html>\n", encoding="utf-8")
    return out_dir
