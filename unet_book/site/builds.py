"""The measured first builds of the book: a table for the reproduce page, a line for the README.

``benchmarks/first_build.py`` times a fresh clone's first ``make book`` (real data, default
profile, ``.venv`` included) and a rebuild, and appends one record per commit to
``benchmarks/results/first_build.json``. This module turns those records into the table the
reproduce page shows (through the ``first-builds`` directive, a Sphinx extension of its own
that :mod:`unet_book.site` sets up) and the one line the README shows (``python -m
unet_book.site.builds`` rewrites it; a test fails when the README's copy drifts), so no
duration is typed by hand. Two records are a *pair*, whose ratio may be read, only when they
were measured on the same kind of machine: the same CPU model and core count, the bf16 matmul
rate within :data:`PAIR_TOLERANCE`, within :data:`PAIR_HOURS` of each other.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unet_book.tables import markdown_table

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "first_build.json"
PAIR_TOLERANCE = 0.10  # largest relative difference of two builds' GFLOP/s in a pair
PAIR_HOURS = 24.0  # largest time between two builds in a pair
# rows of the table: (label, chapter numbers whose execution seconds they add up)
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("chapters 1-4 (no training)", ("01", "02", "03", "04")),
    ("chapter 5: the live DRIVE training and its test evaluation", ("05",)),
    ("chapter 6: results", ("06",)),
    ("chapter 7: ISBI 2012", ("07",)),
    ("chapters 8-10", ("08", "09", "10")),
)


def load_builds(path: Path = RESULTS) -> list[dict]:
    """The records of ``path``, oldest first (an empty list when there is no file)."""
    if not path.exists():
        return []
    records = json.loads(path.read_text())
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of build records")
    return sorted(records, key=lambda r: r["date"])


def _gflops(record: dict) -> float:
    machine = record["machine"]
    return (machine["bf16_gflops_before"] + machine["bf16_gflops_after"]) / 2


def is_pair(a: dict, b: dict) -> bool:
    """Whether two records were measured on the same kind of machine, close in time."""
    same_cpu = (a["machine"]["cpu"], a["machine"]["cores"]) == (b["machine"]["cpu"],
                                                                b["machine"]["cores"])
    rate = abs(_gflops(a) / _gflops(b) - 1) <= PAIR_TOLERANCE
    hours = abs((dt.datetime.fromisoformat(a["date"])
                 - dt.datetime.fromisoformat(b["date"])).total_seconds()) / 3600
    return same_cpu and rate and hours <= PAIR_HOURS


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _chapter_seconds(record: dict, numbers: Sequence[str]) -> float | None:
    times = [s for name, s in record["chapter_execution_s"].items()
             if name[:2] in numbers and s is not None]
    return sum(times) if times else None


def _column(record: dict) -> list[str]:
    total = record["first_build_min"] * 60
    cells = []
    for _, numbers in GROUPS:
        seconds = _chapter_seconds(record, numbers)
        cells.append("-" if seconds is None else _duration(seconds))
    executed = sum(s for s in record["chapter_execution_s"].values() if s is not None)
    cells.append(_duration(total - executed))
    cells.append(f"**{record['first_build_min']:.1f} min**")
    cells.append(f"{record['first_build_normalised_min']:.1f}")
    cells.append(_duration(record["rebuild_s"]))
    return cells


def _header(record: dict) -> str:
    machine = record["machine"]
    return (f"{record['commit'][:7]}, {record['date'][:10]}, {machine['cpu']} "
            f"({machine['cores']} cores, {_gflops(record):.0f} GFLOP/s bf16)")


def first_build_markdown(records: Sequence[dict]) -> str:
    """The table of first builds, newest first, and a sentence per pair with the newest."""
    if not records:
        return "No first build has been measured yet (`benchmarks/first_build.py`)."
    newest_first = list(reversed(records))
    labels = [label for label, _ in GROUPS] + [
        "`.venv`, installs, rendering (the rest)", "**first build in all**",
        "normalised minutes (wall x GFLOP/s / 400)", "second `make book`, nothing changed"]
    columns = [_column(r) for r in newest_first]
    body = [[label, *(c[i] for c in columns)] for i, label in enumerate(labels)]
    table = markdown_table(["step of `UNET_DATA_DIR=../shared/data make book`",
                            *map(_header, newest_first)], body,
                           align="l" + "r" * len(columns))
    newest, older = newest_first[0], newest_first[1:]
    sentences = [] if not older else [
        f"Two builds are a pair when they ran on the same CPU model and number of cores, their "
        f"bf16 matmul rates within {PAIR_TOLERANCE:.0%} of each other, at most "
        f"{PAIR_HOURS:.0f} h apart."]
    for other in older:
        ratio = newest["first_build_min"] / other["first_build_min"]
        if is_pair(newest, other):
            sentences.append(
                f"Measured as a pair on one machine, the first build of {newest['commit'][:7]} "
                f"took {ratio:.2f} of the time of {other['commit'][:7]}'s "
                f"({newest['first_build_min']:.1f} min against "
                f"{other['first_build_min']:.1f} min).")
        else:
            sentences.append(
                f"{newest['commit'][:7]} on the {newest['machine']['cpu']} and "
                f"{other['commit'][:7]} on the {other['machine']['cpu']} "
                f"({other['date'][:10]}) are not a pair: a ratio of their times would mix the "
                f"change of code with the change of machine.")
    return "\n\n".join([table, *sentences])


def readme_line(records: Sequence[dict]) -> str:
    """The README's line: the newest measured first build, and where the table is."""
    if not records:
        return "No first build has been measured yet (`benchmarks/first_build.py`)."
    newest = records[-1]
    machine = newest["machine"]
    return (f"Measured: the newest timed first `make book` (commit {newest['commit'][:7]}, "
            f"{newest['date'][:10]}; fresh clone, real data, default profile, `.venv` "
            f"included) took {newest['first_build_min']:.1f} min on a {machine['cores']}-core "
            f"{machine['cpu']} ({newest['first_build_normalised_min']:.1f} normalised minutes, "
            f"wall x bf16 GFLOP/s / 400), a rebuild with nothing changed "
            f"{_duration(newest['rebuild_s'])}. The reproduce page has every measured build, "
            f"by chapter ({len(records)} so far).")


README = RESULTS.parents[2] / "README.md"
BEGIN = "<!-- first-builds: made by python -m unet_book.site.builds -->"
END = "<!-- /first-builds -->"


def _block_span(text: str) -> tuple[int, int] | None:
    """Where the table goes in ``text``: from after the begin marker to the end marker."""
    start, stop = text.find(BEGIN), text.find(END)
    if start < 0 or stop < start:
        return None
    return start + len(BEGIN), stop


def readme_block(text: str) -> str | None:
    """The part of ``text`` between the README's first-builds markers (``None`` if absent)."""
    span = _block_span(text)
    return None if span is None else text[span[0]:span[1]].strip("\n")


def write_readme(readme: Path = README, results: Path = RESULTS) -> bool:
    """Put the current :func:`readme_line` between the markers of ``readme``; ``True`` if it
    changed."""
    text = readme.read_text()
    span = _block_span(text)
    if span is None:
        raise SystemExit(f"{readme}: expected the markers {BEGIN!r} and {END!r}")
    line = readme_line(load_builds(results))
    new = text[:span[0]] + "\n" + line + "\n" + text[span[1]:]
    if new != text:
        readme.write_text(new)
    return new != text


def first_builds_directive() -> type:
    """The ``first-builds`` directive class (made here so that importing this module does
    not import docutils): no arguments, no content; the table of :func:`first_build_markdown`
    of :data:`RESULTS`, parsed as MyST where the page puts it; the page is read again when the
    results file changes (a dependency of the document)."""
    from docutils import nodes
    from docutils.parsers.rst import Directive
    from docutils.statemachine import StringList

    class FirstBuilds(Directive):
        has_content = False

        def run(self) -> list:
            env = getattr(self.state.document.settings, "env", None)
            if env is not None:
                env.note_dependency(str(RESULTS))
            text = first_build_markdown(load_builds(RESULTS))
            container = nodes.container(classes=["first-builds"])
            self.state.nested_parse(StringList(text.splitlines(), source=str(RESULTS)),
                                    self.content_offset, container)
            return [container]

    return FirstBuilds


def setup(app: Any) -> dict[str, Any]:
    """The Sphinx extension of the ``first-builds`` directive (set up by :mod:`unet_book.site`,
    by name: the package does not import this module, which ``python -m`` runs)."""
    app.add_directive("first-builds", first_builds_directive())
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    print(f"README.md: {'updated' if write_readme() else 'already current'}")
