"""Running one of the book's ES modules in Node.js from a test: what the JavaScript tests of
``tests/book`` share. Without ``node`` the test is skipped (the browser tests in
``tests/site`` still run the modules in Chromium)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "unet_book" / "static"
NODE = shutil.which("node")


def run_node(module: str, alias: str, script: str, data: dict, tmp_path: Path):
    """Run ``script`` after ``import * as <alias> from <module>`` (a file of
    ``unet_book/static``), ``readFileSync``/``writeFileSync`` and ``data`` (JSON, as
    ``data``); its standard output, parsed as JSON."""
    if NODE is None:
        pytest.skip("node not installed: the module is tested in the browser tests only")
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps(data))
    head = (f"import * as {alias} from {json.dumps((STATIC / module).as_uri())};\n"
            "import { readFileSync, writeFileSync } from 'node:fs';\n"
            f"const data = JSON.parse(readFileSync({json.dumps(str(inputs))}, 'utf8'));\n")
    done = subprocess.run([NODE, "--input-type=module", "-e", head + script],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
