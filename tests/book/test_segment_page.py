"""unet_book.site.segment_page: chapter 8's "your own image" HTML, and what the Sphinx extension
copies into the site for it (modules, the named runs' exports, a warning without the runtime)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from unet_book.site import segment_page
from unet_book.site.mount import SITE_DIR
from unet_book.site.segment_page import MODULES, RUNTIME_DIR, modules_version, segment_html


def test_the_html_names_its_runs_and_imports_this_version() -> None:
    html = segment_html([("DRIVE", "drive-cpu-1"), ("ISBI", "isbi-cpu-2")])
    assert 'data-segment-runs="drive-cpu-1 isbi-cpu-2"' in html
    assert f"segment.js?v={modules_version()}" in html
    assert f"segment_worker.js?v={modules_version()}" in html
    assert "http://" not in html.replace("http.server", "") and "https://" not in html
    for state in ('"elsewhere"', '"file"', '"error"'):
        assert state in html


@pytest.mark.parametrize("models", [[], [("x", "../etc")], [("x", "a b")]])
def test_bad_runs_are_refused(models) -> None:  # noqa: ANN001
    with pytest.raises(ValueError):
        segment_html(models)


def test_the_version_follows_every_module(tmp_path, monkeypatch) -> None:
    for name in MODULES:
        (tmp_path / name).write_text(f"// {name}\n")
    monkeypatch.setattr(segment_page, "STATIC", tmp_path)
    before = modules_version()
    (tmp_path / "image_codec.js").write_text("// changed\n")
    assert modules_version() != before


def _app(tmp_path: Path, page_text: str) -> SimpleNamespace:
    out = tmp_path / "html"
    (out / "notebooks").mkdir(parents=True)
    (out / "notebooks" / "08.html").write_text(page_text)
    src = tmp_path / "src"
    (src / "notebooks").mkdir(parents=True)
    builder = SimpleNamespace(format="html", get_target_uri=lambda doc: doc + ".html")
    return SimpleNamespace(outdir=str(out), srcdir=str(src), builder=builder,
                           env=SimpleNamespace(all_docs={"notebooks/08": 0}))


def test_publishing_copies_modules_and_exports_and_warns_without_runtime(
        tmp_path, monkeypatch, caplog) -> None:
    run = tmp_path / "runs" / "drive-cpu-1"
    (run / "browser").mkdir(parents=True)
    (run / "model.pt").write_bytes(b"weights")
    (run / "browser" / "model.onnx").write_bytes(b"onnx")
    (run / "browser" / "model.json").write_text(json.dumps({"sha256": "x"}))
    monkeypatch.setenv("UNET_RUNS_DIR", str(tmp_path / "runs"))
    exported = []
    monkeypatch.setattr(segment_page, "export_run", lambda d: exported.append(Path(d).name))
    page = segment_html([("DRIVE", "drive-cpu-1"), ("ISBI", "absent-run")]).replace(
        modules_version(), "0123456789")  # a page from the execution cache: an older version
    app = _app(tmp_path, page)
    with caplog.at_level(logging.WARNING):
        segment_page.publish_to_site(app, None)
    site = Path(app.outdir) / SITE_DIR
    assert sorted(p.name for p in site.glob("*.js")) == sorted(MODULES)
    assert (site / "drive-cpu-1" / "browser" / "model.onnx").read_bytes() == b"onnx"
    assert exported == ["drive-cpu-1"]
    text = caplog.text
    assert f"no {RUNTIME_DIR}/ort.wasm.min.mjs" in text and "absent-run" in text
    fixed = (Path(app.outdir) / "notebooks" / "08.html").read_text()
    assert "0123456789" not in fixed and f"segment.js?v={modules_version()}" in fixed


def test_nothing_happens_for_other_builders_or_a_failed_build(tmp_path) -> None:
    app = _app(tmp_path, segment_html([("DRIVE", "r")]))
    segment_page.publish_to_site(app, RuntimeError("failed"))
    app.builder.format = "latex"
    segment_page.publish_to_site(app, None)
    assert not (Path(app.outdir) / SITE_DIR).exists()
