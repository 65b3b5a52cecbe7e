"""The book's Sphinx extension (``_config.yml``: ``sphinx: extra_extensions``): what the built
site needs to work offline, in one place. The site's pieces are this package's modules:

* The mask explorer's ES module and data go into ``_static/unet_explorer/``
  (:func:`unet_book.site.explorer_export.publish_to_site`).
* Chapter 8's "your own image": its ES modules and the exported networks of the runs it
  names go into the same folder, beside onnxruntime-web from ``_vendor/``
  (:func:`unet_book.site.segment_page.publish_to_site`). Both pages' HTML says why it cannot
  run where it cannot (:mod:`unet_book.site.mount`).
* A ``favicon.ico`` at the site's root (:func:`write_favicon_ico`), the same mark as
  ``book/favicon.svg``: browsers ask for ``/favicon.ico`` whatever the page links, and a
  missing one is a 404 in the console.
* The ``first-builds`` directive: the table of measured first builds
  (:func:`unet_book.site.builds.first_build_markdown` of
  ``benchmarks/results/first_build.json``), parsed as MyST where the page puts it, so the
  reproduce page types no duration by hand. :mod:`unet_book.site.builds` is an extension of
  its own, set up here by name: ``python -m unet_book.site.builds`` runs that module, which
  this package therefore does not import (runpy warns when a package has imported the module
  it is about to run).
* Each script a page loads is written once (:func:`unique_scripts`). Jupyter Book 1 registers
  sphinx-thebe's and sphinx-togglebutton's inline scripts twice, and the second
  ``const THEBE_JS_URL`` is an ``Uncaught SyntaxError`` on every page.

MathJax comes from the site too (``mathjax_path`` in ``_config.yml``: ``make mathjax`` puts the
pinned npm package under ``_vendor/mathjax``), and myst-nb's widget scripts from CDNs are off
(``nb_ipywidgets_js: {}``): the explorer is an ES module of the site, no widget manager.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unet_book.explorer_widget import FORMAT
from unet_book.site import explorer_export, segment_page


def script_key(script: Any) -> tuple:
    """What makes two of Sphinx's script entries the same tag: file and attributes (the
    inline body among them), not the priority; an inline script's file is ``None`` or ``""``
    (the copy the environment kept), the same."""
    attributes = getattr(script, "attributes", {}) or {}
    return (str(getattr(script, "filename", script) or ""), tuple(sorted(
        (k, str(v)) for k, v in attributes.items())))


def unique_scripts(app: Any, pagename: str, templatename: str, context: dict,
                   doctree: Any) -> None:
    """Sphinx ``html-page-context`` (late, after the handlers that add scripts, such as
    MathJax's): drop repeated script entries, keeping the first."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    kept = []
    for script in scripts:
        key = script_key(script)
        if key not in seen:
            seen.add(key)
            kept.append(script)
    scripts[:] = kept  # in place: it is the builder's list, which later handlers add to


def favicon_ico(size: int = 32) -> Any:
    """The book's mark (``book/favicon.svg``: a white U on a blue rounded square) drawn as a
    ``size`` x ``size`` RGBA image."""
    from PIL import Image, ImageDraw

    scale = size / 32
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, size - 1, size - 1), radius=round(6 * scale), fill="#0072b2")
    width = max(1, round(4 * scale))
    # the U: two strokes down from y = 7 to y = 18, joined by a half circle of radius 7
    left, right, top, middle = 9 * scale, 23 * scale, 7 * scale, 18 * scale
    draw.line((left, top, left, middle), fill="white", width=width)
    draw.line((right, top, right, middle), fill="white", width=width)
    radius = 7 * scale
    draw.arc((left, middle - radius, right, middle + radius), 0, 180,
             fill="white", width=width)
    return image


def write_favicon_ico(app: Any, exception: Exception | None) -> None:
    """Sphinx ``build-finished``: ``favicon.ico`` (16 and 32 px) at the HTML output's root."""
    if exception is not None or getattr(app.builder, "format", "") != "html":
        return
    favicon_ico(32).save(Path(app.outdir) / "favicon.ico", sizes=[(16, 16), (32, 32)])


def setup(app: Any) -> dict[str, Any]:
    app.setup_extension("unet_book.site.builds")  # the first-builds directive
    app.connect("html-page-context", unique_scripts, priority=900)
    app.connect("build-finished", explorer_export.publish_to_site)
    app.connect("build-finished", segment_page.publish_to_site)
    app.connect("build-finished", write_favicon_ico)
    return {"version": str(FORMAT), "parallel_read_safe": True, "parallel_write_safe": True}
