"""Markdown tables for every chapter (rendered by MyST in the book, by JupyterLab live)."""

from __future__ import annotations

from collections.abc import Sequence


def markdown_table(
    header: Sequence[str], body: Sequence[Sequence[object]], align: str | None = None
) -> str:
    """A GitHub-flavoured Markdown table; integers are written with thousands commas.

    Args:
        header: column titles.
        body: rows of cells (any objects; integers get thousands separators).
        align: one letter per column, ``"l"`` or ``"r"``; by default columns whose cells are
            all numbers are right-aligned and the others left-aligned.
    """

    def cell(v: object) -> str:
        return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)

    if align is None:
        align = "".join(
            "r" if all(isinstance(r[j], int | float) for r in body) else "l"
            for j in range(len(header))
        )
    if len(align) != len(header) or set(align) - {"l", "r"}:
        raise ValueError(f"align={align!r} needs one 'l' or 'r' per column ({len(header)})")
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---:" if a == "r" else ":---" for a in align) + "|")
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in body]
    return "\n".join(lines)
