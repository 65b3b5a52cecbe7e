"""No published page shows a path of the machine that built it: the repository's folder, the
data folder (``UNET_DATA_DIR``), the runs folder (``UNET_RUNS_DIR``) or the home folder.
Pages print paths relative to the project or the data folder. Reads the built HTML (no
browser); skipped without a built site, failed in CI (``UNET_REQUIRE_SITE_TEST=1``)."""

from __future__ import annotations

import os
from pathlib import Path

from browser import ROOT, SITE, skip_or_fail


def machine_paths() -> list[str]:
    """The absolute folders of this machine that a page could leak, most specific first."""
    found = {str(ROOT.resolve()), str(Path.home()), str(SITE.resolve().parents[1])}
    for name in ("UNET_DATA_DIR", "UNET_RUNS_DIR"):
        if os.environ.get(name):  # as given and with links resolved
            found |= {os.environ[name].rstrip("/"), str(Path(os.environ[name]).resolve())}
    return sorted((p for p in found if len(p) > 1), key=len, reverse=True)


def test_the_guard_sees_a_planted_path(tmp_path) -> None:
    page = tmp_path / "page.html"
    page.write_text(f"<p>data in {ROOT.resolve()}/data/DRIVE</p>")
    assert leaks(page, machine_paths()) == [str(ROOT.resolve())]


def leaks(page: Path, paths: list[str]) -> list[str]:
    text = page.read_text(errors="replace")
    return [p for p in paths if p + "/" in text or p + "<" in text or f"{p}'" in text
            or f'{p}"' in text or f"{p} " in text]


def test_no_page_shows_a_path_of_the_machine_that_built_it() -> None:
    pages = sorted(SITE.rglob("*.html")) if SITE.exists() else []
    if not pages:
        skip_or_fail(f"no built site at {SITE}: run `make book` first")
    paths = machine_paths()
    bad = {str(p.relative_to(SITE)): found for p in pages if (found := leaks(p, paths))}
    assert not bad, f"pages show paths of this machine: {bad}"
