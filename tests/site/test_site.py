"""The built book, opened in headless Chromium with no network: every page, its images, no
console errors, equations rendered, nothing fetched from outside the site, navigation.

Run after the book is built (``make book`` or ``make book-strict``)::

    make site-test

It serves ``_build/html`` on localhost, opens every page of ``_toc.yml`` in Debian's
Chromium through ChromeDriver (``/usr/bin/chromium``, ``/usr/bin/chromedriver``; ``.ci/run``
installs them), and saves a screenshot of each page under ``_build/screenshots/``. Without
a built site or a browser the tests are skipped, unless ``UNET_REQUIRE_SITE_TEST=1`` (CI),
which turns that into a failure.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
import yaml
from browser import SITE

ROOT = Path(__file__).resolve().parents[2]
SHOTS = SITE.parent / "screenshots"


def _toc_pages() -> list[str]:
    """Docnames in reading order, from ``_toc.yml``."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [chapter["file"] for chapter in part["chapters"]]
    return pages


PAGES = _toc_pages()


def _captioned_figures(page: str) -> int:
    """Code cells of a chapter whose metadata asks for a captioned figure."""
    source = ROOT / f"{page}.py"
    if not source.exists():
        return 0
    return sum(line.startswith('# %% mystnb={"figure"')
               for line in source.read_text().splitlines())


def _open(browser, url: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete")


# Once MathJax has typeset the page (or when the page has no MathJax): the number of equations
# (Sphinx's ``.math`` elements) and of those rendered (holding MathJax's ``mjx-container``).
MATH_DONE = """
const done = arguments[arguments.length - 1];
const count = () => {
  const math = Array.from(document.querySelectorAll('.math'));
  done([math.length, math.filter(m => m.querySelector('mjx-container')).length,
        Boolean(window.MathJax && window.MathJax.startup)]);
};
const wait = (n) => window.MathJax && window.MathJax.startup && window.MathJax.startup.promise
  ? window.MathJax.startup.promise.then(count, count)
  : (n > 0 && document.querySelector('script[src*="mathjax"]') ? setTimeout(() => wait(n - 1), 100)
     : count());
wait(100);
"""


def _url(site_url: str, page: str) -> str:
    return f"{site_url}/{'index' if page == PAGES[0] else page}.html"


def _check_offline_and_clean(browser, site_url: str, page: str) -> int:
    """The page as loaded, with no network: its equations rendered by the site's MathJax,
    nothing fetched from outside the site, nothing in the console. Returns the number of
    equations."""
    # equations: MathJax from the site itself renders every one of them, with no network
    equations, rendered, mathjax = browser.execute_async_script(MATH_DONE)
    assert rendered == equations, f"{page}: {rendered} of {equations} equations rendered"
    assert mathjax or not equations, f"{page}: equations but no MathJax"
    # everything the page loaded came from the site (no CDN)
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);")
    foreign = [u for u in loaded if not u.startswith((site_url, "data:", "blob:"))]
    assert not foreign, f"{page}: fetched from outside the site: {foreign}"
    tags = browser.execute_script(
        "return Array.from(document.scripts).map(s => s.src).filter(s => s);")
    assert all(t.startswith(site_url) for t in tags), f"{page}: scripts from elsewhere: {tags}"
    # and nothing went wrong in the console (the duplicate THEBE_JS_URL was a SyntaxError)
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, f"{page}: console errors: {errors}"
    return equations


def test_the_site_answers_for_favicon_ico(site_url):
    """Browsers ask for /favicon.ico whatever a page links: a 404 there is a console error."""
    with urllib.request.urlopen(f"{site_url}/favicon.ico", timeout=10) as reply:
        assert reply.status == 200
        assert reply.read(4) == b"\x00\x00\x01\x00"  # an ICO file's header


@pytest.mark.parametrize("page", PAGES)
def test_page_has_its_images_and_no_errors(browser, site_url, page):
    _open(browser, _url(site_url, page))
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.currentSrc || i.src, i.complete,"
        " i.naturalWidth]);")
    broken = [src for src, complete, width in images if not complete or width == 0]
    assert not broken, f"{page}: images that did not load: {broken}"
    figures = [src for src, _, _ in images if "/_images/" in src]
    expected = _captioned_figures(page)
    assert len(figures) >= expected, (
        f"{page}: {len(figures)} rendered figures, its source has {expected} figure cells")
    text = browser.execute_script("return document.body.innerText;")
    for marker in ("Traceback (most recent call last)", "Loading widget"):
        assert marker not in text, f"{page}: shows {marker!r}"
    errors = browser.execute_script(
        "return document.querySelectorAll('.output.traceback, .output.error').length;")
    assert errors == 0, f"{page}: {errors} error outputs"
    title = browser.execute_script("return document.querySelector('h1').innerText;")
    assert title.strip(), f"{page}: no title"
    _MATH[page] = _check_offline_and_clean(browser, site_url, page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / f"{page.replace('/', '__')}.png"))


_MATH: dict[str, int] = {}


@pytest.mark.parametrize("page", ["search", "genindex"])
def test_the_pages_outside_the_toc_load_cleanly(browser, site_url, page):
    _open(browser, f"{site_url}/{page}.html")
    _check_offline_and_clean(browser, site_url, page)


def test_some_pages_have_equations_and_mathjax_is_the_sites():
    """The check above is not empty: the book has equations, and MathJax is a file of the
    site (``make mathjax``), not a CDN's."""
    if len(_MATH) < len(PAGES):
        pytest.skip("run with the page tests")
    assert sum(_MATH.values()) > 0, _MATH
    assert (SITE / "_static" / "mathjax" / "tex-mml-chtml.js").exists()


def test_next_links_walk_the_table_of_contents(browser, site_url):
    """Following "next" from the start page visits every page in the toc's order."""
    from selenium.webdriver.common.by import By

    _open(browser, _url(site_url, PAGES[0]))
    visited = [PAGES[0]]
    for _ in range(len(PAGES) + 2):
        links = browser.find_elements(By.CSS_SELECTOR, "a.right-next")
        if not links:
            break
        browser.execute_script("arguments[0].click();", links[0])
        _open(browser, browser.current_url)
        path = browser.current_url.split(site_url + "/", 1)[1].split("#")[0]
        visited.append(path.removesuffix(".html"))
    assert visited == PAGES


def test_sidebar_links_every_chapter(browser, site_url):
    _open(browser, _url(site_url, PAGES[0]))
    hrefs = browser.execute_script(
        "return Array.from(document.querySelectorAll('.bd-sidebar-primary a.reference.internal'))"
        ".map(a => a.href);")  # absolute URLs
    linked = {h.split("#")[0].removeprefix(site_url + "/").removesuffix(".html") for h in hrefs}
    missing = [p for p in PAGES[1:] if p not in linked]
    assert not missing, f"sidebar lacks {missing} (has {sorted(linked)})"
