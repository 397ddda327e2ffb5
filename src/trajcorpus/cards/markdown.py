"""Markdown building blocks of the card: escaped table cells and tables, numbers, sizes, code
blocks and the anchors headings get."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["anchor"]


def _cell(x: Any) -> str:
    s = "" if x is None else str(x)
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]],
           align: Sequence[str] | None = None) -> str:
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |",
             "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "n/a" if x is None else repr(float(x))


def _pct(part: float, whole: float) -> str:
    return "n/a" if not whole else f"{100.0 * part / whole:.2f}%"


def _bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit} ({n} B)"
        value /= 1024
    return f"{n} B"


def _code(text: str, lang: str = "") -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def anchor(heading: str) -> str:
    """The anchor GitHub and the Hugging Face hub give a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")

