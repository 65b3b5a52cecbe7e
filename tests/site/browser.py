"""What the browser tests share: the Chromium they drive, offline, and the site's HTTP server.

Debian's Chromium and ChromeDriver (``/usr/bin/chromium``, ``/usr/bin/chromedriver``, or
``$CHROMIUM``, ``$CHROMEDRIVER``); without them a test is skipped, unless
``UNET_REQUIRE_SITE_TEST=1`` (CI), which turns that into a failure.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("UNET_SITE_DIR", ROOT / "_build" / "html"))  # the built book
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
REQUIRED = os.environ.get("UNET_REQUIRE_SITE_TEST") == "1"
#: The explorer's metrics line, as both explorers print it, and the library's names for them.
NUMBERS_PATTERN = r"(F1|Se|Sp|precision|AUC) (nan|[0-9.]+)"
KEYS = {"F1": "f1", "Se": "sensitivity", "Sp": "specificity", "precision": "precision",
        "AUC": "auc_roc"}


def missing_browser() -> str | None:
    """Why the browser cannot run here, or ``None``."""
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not (Path(tool).exists() or shutil.which(tool)):
            return f"{tool} not found: install Debian's chromium and chromium-driver"
    return None


def site_served(page: str = "index.html") -> Iterator[str]:
    """The built site over HTTP (skipped, or failed in CI, without ``page`` or a browser)."""
    if not (SITE / page).exists():
        skip_or_fail(f"no built {page} at {SITE}: run `make book` first")
    reason = missing_browser()
    if reason:
        skip_or_fail(reason)
    with serve(SITE) as url:
        yield url


def skip_or_fail(reason: str) -> None:
    if REQUIRED:
        pytest.fail(reason)
    pytest.skip(reason)


#: The headers that make a page cross-origin isolated (SharedArrayBuffer, WebAssembly threads).
ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin",
             "Cross-Origin-Embedder-Policy": "require-corp"}


@contextlib.contextmanager
def serve(directory: Path, headers: dict[str, str] | None = None) -> Iterator[str]:
    """``directory`` served over HTTP on 127.0.0.1 (a free port), quietly, with ``headers``
    on every response; yields its URL."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def end_headers(self) -> None:
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            super().end_headers()

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def chrome(width: int = 1280, height: int = 1600, timeout: float = 60, log: bool = True):
    """Headless Chromium that reaches nothing but 127.0.0.1 (and file://): every other host
    name fails to resolve. ``log``: keep the browser console for the test to read."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--window-size={width},{height}",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    if log:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(timeout)
    driver.set_script_timeout(timeout)
    return driver


def wait_for(driver, script: str, timeout: float = 30):
    """The first truthy value of ``script`` in the page, polled every 50 ms."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        lambda d: d.execute_script(script))
