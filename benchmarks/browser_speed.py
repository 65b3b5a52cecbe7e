"""How fast the book's U-Net segments an image in the reader's browser (chapter 8), and how much
the page loads: headless Chromium on this machine, WebAssembly, one thread and, where the page
is served cross-origin isolated (COOP and COEP headers), several.

    python benchmarks/browser_speed.py [--drive-run RUN] [--isbi-run RUN] [--repeat 3]

RUN is a run folder (default: the book's runs, chapter 5's DRIVE model and chapter 7's ISBI
2012 model, under ``$UNET_RUNS_DIR``). A one-page site with the segmenter alone
(:func:`unet_book.site.segment_page.write_page_site`) is served on 127.0.0.1; for a 565x584 DRIVE
test image (``01_test.tif``) and a 512x512 ISBI 2012 slice (``train/images/25.png``, held out
by chapter 7's split), it
times, after one warm-up, ``--repeat`` runs of the network over all tiles (the worker's clock,
from the first tile to the stitched probabilities; the model is loaded by then) and of the
whole path from the file input to the explorer's first drawing. It also records the sizes of
the model file and of the runtime (what the page fetches on the first image), and that
nothing but the page's own files is fetched before an image is picked.

Writes ``benchmarks/results/browser_speed.json``. Run it alone (2 cores: a training job beside
it makes the timings lie). Needs the real data (``UNET_DATA_DIR``), Chromium and ChromeDriver
(as ``tests/site``) and ``make onnxruntime-web``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "site"))  # the browser the site tests drive

from browser import ISOLATION, chrome, serve, wait_for  # noqa: E402

from unet_book.site.segment_page import RUNTIME_DIR, RUNTIME_FILES, write_page_site  # noqa: E402
from unet_train.devices import cpuinfo_value  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "browser_speed.json"


def segment(driver, image: Path, model: int, timeout: float = 300) -> dict:
    """Pick ``image`` in the page's file input with model ``model``; the page's numbers."""
    wait_for(driver, "return document.querySelector('.unet-segment-root');")
    driver.execute_script(
        "const s = document.querySelector('.us-model'); s.value = String(arguments[0]);"
        "document.querySelector('.unet-segment-root').dataset.state = 'given';"
        "document.querySelector('.us-file').value = '';", model)  # the same file again fires
    t0 = time.perf_counter()
    driver.find_element("css selector", ".us-file").send_keys(str(image))
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = driver.execute_script(
            "return document.querySelector('.unet-segment-root').dataset.state")
        if state in ("done", "error"):
            break
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    page = driver.execute_script(
        "const p = document.querySelector('.unet-segment').unetSegment;"
        "return {state: p.root.dataset.state, status: p.status.textContent,"
        " ms: p.result && p.result.ms, threads: p.result && p.result.threads,"
        " tiles: p.result && p.result.tiles};")
    if page["state"] != "done":
        raise RuntimeError(f"{image.name}: {page['status']}")
    return {**page, "wall_s": wall}


def measure(site: Path, images: list[tuple[str, Path, int]], isolated: bool,
            repeat: int, outside: list[tuple[Path, Path]] | None = None) -> dict:
    with serve(site, ISOLATION if isolated else None) as url:
        driver = chrome(log=True)
        try:
            driver.get(url + "/index.html")
            before = driver.execute_script(
                "return performance.getEntriesByType('resource').map(e => e.name)")
            out = {"fetched_before_an_image": sorted({n.rsplit("/", 1)[-1].split("?")[0]
                                                      for n in before})}
            for label, path, model in images:
                segment(driver, path, model)  # warm-up: runtime, model, JIT
                runs = [segment(driver, path, model) for _ in range(repeat)]
                out[label] = {"network_s": [r["ms"] / 1000 for r in runs],
                              "file_to_result_s": [r["wall_s"] for r in runs],
                              "median_network_s": statistics.median(r["ms"] / 1000
                                                                    for r in runs),
                              "tiles": runs[0]["tiles"], "threads": runs[0]["threads"]}
            if outside is not None:  # every DRIVE test image with its FOV mask
                counts = [0, 0]
                for image, mask in outside:
                    driver.execute_script("document.querySelector('.us-fov').value = '';")
                    driver.find_element("css selector", ".us-fov").send_keys(str(mask))
                    segment(driver, image, 0)
                    got = driver.execute_script("return document.querySelector("
                                                "'.unet-segment').unetSegment.outside;")
                    counts = [counts[0] + got["above"], counts[1] + got["pixels"]]
                out["outside_fov_positive"] = {"images": len(outside), "above": counts[0],
                                               "pixels": counts[1],
                                               "share": counts[0] / counts[1]}
            out["console_errors"] = [e["message"] for e in driver.get_log("browser")
                                     if e["level"] == "SEVERE"]
            return out
        finally:
            driver.quit()


def main(argv: list[str] | None = None) -> int:
    from unet_book.experiments import HEADLINE_SETTINGS, ISBI_SETTINGS, notebook_config
    from unet_core.data.paths import data_dir
    from unet_train.identity import default_run_name
    from unet_train.runs import runs_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drive-run", type=Path, help="a DRIVE run folder")
    parser.add_argument("--isbi-run", type=Path, help="an ISBI 2012 run folder")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    runs = []
    for flag, given, settings in (("--drive-run", args.drive_run, HEADLINE_SETTINGS),
                                  ("--isbi-run", args.isbi_run, ISBI_SETTINGS)):
        run = given or runs_dir() / default_run_name(notebook_config(**settings))
        if not (run / "model.pt").exists():
            print(f"{flag}: no model.pt in {run}: build the book first or name a run folder",
                  file=sys.stderr)
            return 2
        runs.append(run)
    data = data_dir()
    drive_image = data / "DRIVE" / "test" / "images" / "01_test.tif"
    isbi_slice = data / "isbi2012" / "train" / "images" / "25.png"
    for path in (drive_image, isbi_slice):
        if not path.exists():
            print(f"{path.relative_to(data)} is not in the data folder: the timings need the "
                  "real data (UNET_DATA_DIR)", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        site = write_page_site(tmp / "site", [("DRIVE", runs[0]), ("ISBI 2012", runs[1])])
        images = [("drive_565x584", drive_image, 0), ("isbi_512x512", isbi_slice, 1)]
        tests = data / "DRIVE" / "test"
        outside = [(path, tests / "mask" / path.name.replace(".tif", "_mask.gif"))
                   for path in sorted((tests / "images").glob("*_test.tif"))]
        results = {"one_thread": measure(site, images, False, args.repeat, outside),
                   "isolated": measure(site, images, True, args.repeat)}
        sizes = {name: (site / RUNTIME_DIR / name).stat().st_size for name in RUNTIME_FILES}
        models = {run.name: json.loads((run / "browser" / "model.json").read_text())
                  for run in runs}
    chromium = subprocess.run(["chromium", "--version"], capture_output=True, text=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    record = {
        "commit": commit, "date": time.strftime("%Y-%m-%d"),
        "cpu": cpuinfo_value("model name") or platform.processor(),
        "cores": len(__import__("os").sched_getaffinity(0)),
        "chromium": chromium.stdout.strip(),
        "runtime_bytes": sizes, "runtime_total_bytes": sum(sizes.values()),
        "models": {name: {"bytes": m["bytes"], "tile": m["tile"], "sha256": m["sha256"],
                          "largest_difference_to_torch": m["largest_difference_to_torch"]}
                   for name, m in models.items()},
        "repeat": args.repeat, **results,
    }
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k in ("one_thread", "isolated")},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
