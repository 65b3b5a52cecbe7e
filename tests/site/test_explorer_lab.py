"""Chapter 8's explorer live in JupyterLab, in headless Chromium: the test starts a JupyterLab
server on 127.0.0.1 with a token, opens the chapter, runs it (smoke profile), moves the
threshold slider with the keyboard and checks that the metrics line and the picture change and
that the kernel's widget holds what the browser shows; then it stops the server.

The chapter runs from a copy in a temporary folder (JupyterLab autosaves: the repository's
notebook keeps its text), with ``$UNET_DATA_DIR`` and ``$UNET_RUNS_DIR`` as the rest of the
project sees them (a run trained by the book build is loaded, else a smoke run is trained).
Without Chromium the test is skipped, unless ``UNET_REQUIRE_SITE_TEST=1``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browser import KEYS, NUMBERS_PATTERN, chrome, missing_browser, skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
CHAPTER = "08_mask_explorer"
WIDGET = ".unet-explorer-root[data-mode='widget']"
NUMBERS = re.compile(NUMBERS_PATTERN)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _project_dir(name: str, default: Path) -> str:
    value = Path(os.environ.get(name) or default)
    return str(value if value.is_absolute() else (ROOT / value).resolve())


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on 127.0.0.1 over a copy of chapter 8: (url, token, process)."""
    reason = missing_browser()
    if reason:
        skip_or_fail(reason)
    book = tmp_path / "notebooks"
    book.mkdir()
    for suffix in (".ipynb", ".py"):
        shutil.copy2(ROOT / "notebooks" / f"{CHAPTER}{suffix}", book)
    token, port = secrets.token_hex(16), _free_port()
    env = {**os.environ, "UNET_PROFILE": "smoke",
           "UNET_DATA_DIR": _project_dir("UNET_DATA_DIR", ROOT / "data"),
           "UNET_RUNS_DIR": _project_dir("UNET_RUNS_DIR", ROOT / "runs"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={book}",
         "--LabApp.expose_app_in_browser=True",
         f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
         f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
         *(["--allow-root"] if os.geteuid() == 0 else [])],  # CI's containers run as root
        env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail("JupyterLab did not start:\n" +
                                (tmp_path / "lab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield url, token, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _chrome():
    return chrome(1400, 1800, timeout=120, log=False)


def _wait(driver, script: str, timeout: float, what: str):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(
            lambda d: d.execute_script(script))
    except TimeoutException:
        text = driver.execute_script("return document.body.innerText.slice(-2000);")
        pytest.fail(f"timed out after {timeout} s waiting for {what}; the page ends:\n{text}")


# Run Python in the notebook's kernel and return what it printed.
KERNEL = """
const [code, done] = [arguments[0], arguments[arguments.length - 1]];
const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
let out = '';
const future = kernel.requestExecute({code});
future.onIOPub = (msg) => {
  if (msg.header.msg_type === 'stream') out += msg.content.text;
  if (msg.header.msg_type === 'error') out += 'ERROR ' + msg.content.evalue;
};
future.done.then(() => done(out), (e) => done('ERROR ' + e));
"""


def _shown(driver) -> dict:
    return driver.execute_script(f"""
const root = document.querySelector("{WIDGET}");
const c = root.querySelector('.ux-panel-right');
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let h = 0; for (let i = 0; i < d.length; i++) h = (h * 31 + d[i]) | 0;
return {{text: root.querySelector('.ux-metrics').textContent, digest: h,
        k: Number(root.querySelector('.ux-slider').value)}};""")


def test_the_explorer_runs_live_in_jupyterlab(lab, capsys):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, token, proc = lab
    driver = _chrome()
    try:
        driver.get(f"{url}/lab/tree/{CHAPTER}.ipynb?token={token}")
        _wait(driver, "const s = window.jupyterapp?.shell.currentWidget?.sessionContext;"
                      " return Boolean(s && s.session && s.session.kernel &&"
                      " s.session.kernel.connectionStatus === 'connected');", 120,
              "the chapter and its kernel")
        t0 = time.monotonic()
        driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
        _wait(driver, f"return document.querySelector(\"{WIDGET}\")?.dataset.state === 'ready'",
              300, "the live explorer")
        ran = time.monotonic() - t0
        before = _shown(driver)
        assert before["text"].startswith(f"threshold {before['k'] / 100:.2f}: F1 "), before

        slider = driver.find_element(By.CSS_SELECTOR, f"{WIDGET} .ux-slider")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});"
                              " arguments[0].focus();", slider)
        key = Keys.ARROW_LEFT if before["k"] > 50 else Keys.ARROW_RIGHT
        slider.send_keys(*[key] * 10)
        _wait(driver, f"return document.querySelector(\"{WIDGET} .ux-metrics\").textContent"
                      f" !== {json.dumps(before['text'])}", 10,
              f"the metrics line to change (slider at {slider.get_attribute('value')})")
        after = _shown(driver)
        assert abs(after["k"] - before["k"]) == 10, (before, after)
        assert after["text"].startswith(f"threshold {after['k'] / 100:.2f}: F1 "), after
        assert after["digest"] != before["digest"], "the errors overlay did not change"

        # the widget in the kernel has the browser's threshold and metrics line, and the
        # library computes the same numbers on the float probabilities
        deadline = time.monotonic() + 20
        while True:
            printed = driver.execute_async_script(KERNEL, (
                "import json; v = explorer.view; print(json.dumps({'threshold': v.threshold, "
                "'text': v.metrics_text, 'ms': v.last_update_ms, "
                "'ref': v.reference_metrics()}))"))
            assert not printed.startswith("ERROR"), printed
            state = json.loads(printed)
            if state["text"] == after["text"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert state["threshold"] == pytest.approx(after["k"] / 100)
        assert state["text"] == after["text"]
        shown = {KEYS[k]: float(v) for k, v in NUMBERS.findall(after["text"])}
        for name, value in shown.items():
            assert value == pytest.approx(state["ref"][name], abs=1e-3), (name, after["text"])
        with capsys.disabled():
            print(f"\nJupyterLab: chapter 8 ran in {ran:.0f} s; slider {before['k']} -> "
                  f"{after['k']}: {after['text']}; update {state['ms']:.1f} ms in the browser")
    finally:
        driver.quit()
    proc.terminate()
    assert proc.wait(timeout=30) is not None
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
