"""unet_book.site.explorer_export: a run's test images as the explorer's data files with the
reference metrics the browser must show, the chapter's HTML, and the Sphinx hook that copies
module and data into the site (tests/site runs the page in Chromium)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from unet_book.explorer import run_cases
from unet_book.explorer_widget import MODULE, STEPS, decode_case, quantise, run_threshold
from unet_book.site.explorer_export import export_static, module_version, publish_to_site, site_html
from unet_book.site.mount import SITE_DIR
from unet_core.metrics import segmentation_metrics


def test_export_static_writes_data_files_an_index_and_reference_metrics(smoke_drive_run,
                                                                       tmp_path):
    run_dir = Path(smoke_drive_run.run_dir)
    index = export_static(run_dir)
    out = run_dir / "explorer"
    assert json.loads((out / "index.json").read_text()) == index
    assert index["run"] == run_dir.name and index["steps"] == STEPS
    assert index["threshold"] == pytest.approx(run_threshold(run_dir))
    assert [e["name"] for e in index["images"]] == [c.name for c in run_cases(run_dir)]
    for entry, case in zip(index["images"], run_cases(run_dir), strict=True):
        blob = (out / entry["file"]).read_bytes()
        assert len(blob) == entry["bytes"]
        assert np.array_equal(decode_case(blob)["levels"], quantise(case.prob))
        assert {c["fov"] for c in entry["checks"]} == {True, False}
        for check in entry["checks"]:
            fov = case.fov if check["fov"] else None
            ref = segmentation_metrics(case.prob, case.target, fov, threshold=check["k"] / STEPS)
            assert check["f1"] == pytest.approx(ref.f1) and check["auc_roc"] == ref.auc_roc
    stamp = (out / "index.json").stat().st_mtime_ns
    assert export_static(run_dir) == index  # cached: nothing written again
    assert (out / "index.json").stat().st_mtime_ns == stamp

    first = index["images"][0]["name"]
    one = export_static(run_dir, tmp_path / "one", images=[first])
    assert [e["name"] for e in one["images"]] == [first]
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == sorted(
        ["index.json", one["images"][0]["file"]])
    with pytest.raises(ValueError, match="no test images.*nope"):
        export_static(run_dir, tmp_path / "two", images=["nope"])


def test_site_html_is_a_div_and_a_module_script_from_the_site(smoke_drive_run):
    html = site_html("drive-smoke-abc")
    assert 'data-explorer-run="drive-smoke-abc"' in html and '<script type="module">' in html
    assert f'"{SITE_DIR}/"' in html and "mask_explorer.js?v=" in html
    assert "drive-smoke-abc/index.json" in html and "dataset.content_root" in html
    assert not re.search(r"(src|href)=\"https?://|import\(\"https?://", html)
    with pytest.raises(ValueError, match="run folder"):
        site_html('x" onload="alert(1)')


def test_the_sphinx_hook_copies_the_module_and_the_run_data(smoke_drive_run, tmp_path):
    run_dir = Path(smoke_drive_run.run_dir)
    out, src = tmp_path / "html", tmp_path / "book"
    (out / "notebooks").mkdir(parents=True)
    (src / "notebooks").mkdir(parents=True)
    old = site_html(run_dir.name).replace(f"?v={module_version()}", "?v=0123abcd")
    (out / "notebooks" / "08.html").write_text(old)
    (out / "notebooks" / "07.html").write_text("<p>no explorer</p>")
    app = SimpleNamespace(outdir=str(out), srcdir=str(src),
                          builder=SimpleNamespace(format="html",
                                                  get_target_uri=lambda d: d + ".html"),
                          env=SimpleNamespace(all_docs={"notebooks/08": 0, "notebooks/07": 0}))
    publish_to_site(app, None)  # UNET_RUNS_DIR is absolute here (the fixture's)
    site = out / SITE_DIR
    assert (site / "mask_explorer.js").read_bytes() == MODULE.read_bytes()
    # the page (as the execution cache left it) now imports this version of the module
    assert (out / "notebooks" / "08.html").read_text() == site_html(run_dir.name)
    index = json.loads((site / run_dir.name / "index.json").read_text())
    assert all((site / run_dir.name / e["file"]).exists() for e in index["images"])
    shutil.rmtree(site)
    publish_to_site(SimpleNamespace(**{**vars(app), "builder": SimpleNamespace(
        format="latex", get_target_uri=app.builder.get_target_uri)}), None)
    assert not site.exists()  # nothing for other builders
