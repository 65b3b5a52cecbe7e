"""The fixtures the browser tests of this folder share (the helpers are in ``browser.py``).

* ``site_url``: the built site over HTTP, once per test module; skipped (failed in CI) without
  the page the module needs, its ``PAGE`` (``index.html`` if it names none), or a browser.
* ``browser``: one headless Chromium per test module (``browser.chrome``), quit at its end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from browser import chrome, site_served


@pytest.fixture(scope="module")
def site_url(request) -> Iterator[str]:
    yield from site_served(getattr(request.module, "PAGE", "index.html"))


@pytest.fixture(scope="module")
def browser(site_url: str):
    driver = chrome()
    yield driver
    driver.quit()
