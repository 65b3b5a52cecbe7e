"""The book's Sphinx extension: each script tag once (the duplicate ``const THEBE_JS_URL``
was a SyntaxError on every page), and a ``favicon.ico`` at the site's root (a missing one is a
404 in the browser's console)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from sphinx.builders.html._assets import _JavaScript

from unet_book.site import favicon_ico, unique_scripts, write_favicon_ico


def test_repeated_scripts_are_written_once_and_the_order_kept():
    thebe = 'const THEBE_JS_URL = "x"; const thebe_selector = ".cell"'
    scripts = [_JavaScript("doctools.js"), _JavaScript(None, body=thebe),
               _JavaScript("sphinx-thebe.js", **{"async": "async"}),
               _JavaScript("", body=thebe, priority=500), _JavaScript("doctools.js"),
               _JavaScript(None, body="var other = 1")]
    context = {"script_files": scripts}
    unique_scripts(None, "page", "page.html", context, None)
    kept = context["script_files"]
    assert kept is scripts  # the builder's own list, edited in place
    assert [(s.filename, s.attributes.get("body")) for s in kept] == [
        ("doctools.js", None), (None, thebe), ("sphinx-thebe.js", None), (None, "var other = 1")]
    empty = {"script_files": []}
    unique_scripts(None, "page", "page.html", empty, None)
    assert empty["script_files"] == []


def test_the_favicon_is_the_books_mark_in_two_sizes(tmp_path):
    app = SimpleNamespace(outdir=str(tmp_path), builder=SimpleNamespace(format="html"))
    write_favicon_ico(app, None)
    with Image.open(tmp_path / "favicon.ico") as icon:
        assert icon.format == "ICO"
        assert icon.info["sizes"] == {(16, 16), (32, 32)}
    pixels = np.asarray(favicon_ico(32))
    assert pixels[16, 2].tolist() == [0x00, 0x72, 0xB2, 255]  # the blue square
    assert pixels[0, 0, 3] == 0  # its rounded corner is transparent
    assert pixels[12, 9, :3].tolist() == [255, 255, 255]  # the U's left stroke
    assert pixels[12, 16, :3].tolist() == [0x00, 0x72, 0xB2]  # the U's opening


@pytest.mark.parametrize("builder, exception", [("latex", None), ("html", RuntimeError())])
def test_no_favicon_for_other_builders_or_a_failed_build(tmp_path, builder, exception):
    app = SimpleNamespace(outdir=str(tmp_path), builder=SimpleNamespace(format=builder))
    write_favicon_ico(app, exception)
    assert not (tmp_path / "favicon.ico").exists()
