"""What the book's two in-page programs share (the mask explorer, :func:`unet_book.site.
explorer_export.site_html`; "your own image", :func:`unet_book.site.segment_page.segment_html`):
a ``<div>`` and an inline module script that imports an ES module from the site's
``_static/unet_explorer/`` (:data:`SITE_DIR`, relative to the page through Sphinx's
``data-content_root``) and mounts it on the ``<div>``. Where it cannot run, the ``<div>`` says
why (``data-state``): ``elsewhere`` outside the built book (JupyterLab, a notebook viewer),
``file`` from ``file://`` (browsers block module scripts and fetches there), ``error`` when
loading failed.
"""

from __future__ import annotations

import html
import json
import textwrap

SITE_DIR = "_static/unet_explorer"  # where the Sphinx hooks put the modules and data in the site


def js_string(text: str, indent: int = 4) -> str:
    """``text`` as a JavaScript string expression: literals of at most 72 characters joined
    by ``+``, one a line, so that the page's source stays readable (``<`` escaped, so that no
    text can close the script)."""
    chunks = textwrap.wrap(text, 72, drop_whitespace=False, break_on_hyphens=False) or [""]
    return (" +\n" + " " * indent).join(json.dumps(c).replace("<", "\\u003c") for c in chunks)


def mount_html(kind: str, element_id: str, data: dict[str, str], note: str, *, module: str,
               mount: str, elsewhere: str, file: str, error: str, setup: str = "") -> str:
    """The ``<div class="{kind}">`` (``data-*`` attributes ``data``) holding ``note`` (HTML,
    shown until the script runs, in ``<p class="{kind}-note">``) and the module script that
    imports ``module`` (a file of :data:`SITE_DIR`, with its cache-busting query) and mounts
    it: ``mount`` is a JavaScript expression of the module ``m``, the ``<div>`` ``el`` and
    ``base``, the URL of :data:`SITE_DIR`; ``setup`` are JavaScript statements run before the
    import (``root`` is the site's root). The note says ``elsewhere`` outside the built book,
    ``file`` from ``file://`` and ``error`` when loading failed, with the error's message
    where ``error`` has ``{}``."""
    attributes = "".join(f' data-{name}="{html.escape(value)}"' for name, value in data.items())
    before, _, after = error.partition("{}")
    setup = textwrap.indent(setup.strip("\n") + "\n", "  ") if setup.strip() else ""
    return f"""<div class="{kind}" id="{element_id}"{attributes}>
<p class="{kind}-note">{note}</p>
</div>
<script type="module">
const el = document.getElementById("{element_id}");
const say = (state, text) => {{
  el.dataset.state = state;
  const p = el.querySelector(".{kind}-note") ?? el.appendChild(
    document.createElement("p"));
  p.textContent = text;
}};
const root = document.documentElement.dataset.content_root;
if (root === undefined) {{
  say("elsewhere", {js_string(elsewhere)});
}} else if (location.protocol === "file:") {{
  say("file", {js_string(file)});
}} else {{
  const base = new URL(root + "{SITE_DIR}/", document.baseURI);
{setup}  import(new URL({json.dumps(module)}, base).href)
    .then((m) => {mount})
    .catch((err) => say("error", {js_string(before, 6)} + err.message +
      {js_string(after, 6)}));
}}
</script>"""
