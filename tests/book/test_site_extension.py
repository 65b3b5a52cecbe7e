"""The book's Sphinx extension: each script tag once (the duplicate ``const THEBE_JS_URL``
was a SyntaxError on every page)."""

from __future__ import annotations

from sphinx.builders.html._assets import _JavaScript

from unet_book.site import unique_scripts


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
