"""The HTML page kit of the reports: one self-contained page (a title, a subtitle, a link per
section, the sections), tables from DataFrames, figures as embedded PNG images, and a writer that
never leaves half a page behind. Every report builds its pages from these pieces only."""

from __future__ import annotations

import base64
import html
import io
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DASH = "–"  # what a table shows for a missing value
REPORT_MODE = 0o644  # a written page: its owner writes it, everyone reads it

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1000px; color: #222;
       padding: 0 1rem; }}
h1 {{ margin-bottom: 0.2rem; }}
.window {{ color: #555; margin-top: 0; }}
section {{ margin: 2.5rem 0; }}
img {{ max-width: 100%; }}
table {{ border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }}
th, td {{ padding: 0.25rem 0.7rem; border-bottom: 1px solid #ddd; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
caption {{ text-align: left; font-weight: 600; padding-bottom: 0.3rem; }}
nav a {{ margin-right: 1rem; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p class="window">{subtitle}</p>
<nav>{nav}</nav>
{body}
</body>
</html>
"""


# ----------------------------------------------------------------------------------- the page
def html_page(title: str, subtitle: str, sections: list[str]) -> str:
    """One self-contained page: title, subtitle, a link per section (``html_section``), sections."""
    nav = []
    for text in sections:
        anchor = text.split('id="', 1)[1].split('"', 1)[0]
        heading = text.split("<h2>", 1)[1].split("</h2>", 1)[0]
        nav.append(f'<a href="#{anchor}">{heading}</a>')
    return PAGE.format(
        title=html.escape(title), subtitle=html.escape(subtitle), nav="".join(nav),
        body="\n".join(sections),
    )  # fmt: skip


def html_section(anchor: str, heading: str, explanation: str, *parts: str) -> str:
    """A section with its anchor, heading, explanation and parts (tables, images, HTML).

    The explanation is the report's own text and may hold markup (``<code>``, ``<b>``); the
    heading is escaped. Values from the data in an explanation must be escaped by the caller.
    """
    return (
        f'<section id="{anchor}">\n<h2>{html.escape(heading)}</h2>\n<p>{explanation}</p>\n'
        + "\n".join(parts)
        + "\n</section>"
    )


def generated_at() -> str:
    """The current time as the pages print it ("Generated ...")."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def write_atomic(path: Path, text: str) -> None:
    """Write then rename: a reader (or a browser refresh) never sees half a report. The page
    is readable by everyone (mode 0644), as a report meant to be shared should be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, REPORT_MODE)  # mkstemp makes the file 0600, private to its owner
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------- the values
def day(value: object) -> str:
    """A timestamp as its date, YYYY-MM-DD."""
    return pd.Timestamp(value).strftime("%Y-%m-%d")


def fmt(value: Any, pattern: str = "{:.4f}") -> str:
    """A number through ``pattern``, or a dash when it is missing (None, NaN or infinite)."""
    infinite = isinstance(value, float | np.floating) and np.isinf(value)
    return DASH if value is None or pd.isna(value) or infinite else pattern.format(value)


def html_table(frame: pd.DataFrame, caption: str | None = None) -> str:
    """A DataFrame as an HTML table: rates and shares (by column name) as percentages, counts
    with thousands separators, other numbers with one decimal, timestamps as dates; text as
    it is (escaped)."""
    shown = frame.copy()
    for column in shown.columns:
        values = shown[column]
        if "rate" in str(column) or "share" in str(column):
            shown[column] = [fmt(v, "{:.1%}") for v in values]
        elif pd.api.types.is_integer_dtype(values):
            shown[column] = [f"{v:,}" for v in values]
        elif pd.api.types.is_float_dtype(values):
            shown[column] = [fmt(v, "{:,.1f}") for v in values]
        elif pd.api.types.is_datetime64_any_dtype(values):
            shown[column] = [day(v) for v in values]
    text = shown.to_html(index=False, border=0, escape=True)
    if caption:
        text = text.replace(">", f"><caption>{html.escape(caption)}</caption>", 1)
    return text


# -------------------------------------------------------------------------------- the figures
def new_figure(width: float, height: float) -> tuple[Figure, Any]:
    """A figure of ``width`` x ``height`` inches and its one axes, outside pyplot (no global
    state, no display)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    return fig, fig.add_subplot(1, 1, 1)


def html_png(data: bytes) -> str:
    """PNG bytes as an embedded image."""
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="">'


def html_figure(fig: Figure) -> str:
    """A matplotlib figure as an embedded PNG image."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return html_png(buffer.getvalue())
