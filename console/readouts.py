"""The funnel and the experiment readouts, as the report commands wrote them.

``funnel report funnel`` writes ``<data_dir>/reports/funnel.json`` (conversion, drop-off, the
ranked fixes) and ``funnel report experiments`` writes ``<data_dir>/reports/experiments.json``
(every comparison with its intervals and alerts). The console reads them, re-reading a file only
when it changed; a file not written yet gives the command that writes it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FUNNEL_JSON = Path("reports") / "funnel.json"  # under the data folder
EXPERIMENTS_JSON = Path("reports") / "experiments.json"


@dataclass(frozen=True)
class Missing:
    """A page's input not computed yet: what is missing and the command that makes it."""

    what: str
    command: str


class JsonFiles:
    """JSON documents read once per version of the file (its mtime and size)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[tuple[int, int], Any]] = {}

    def read(self, path: Path) -> Any | None:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        version = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._cache.get(path)
            if cached is not None and cached[0] == version:
                return cached[1]
        document = json.loads(path.read_text())
        with self._lock:
            self._cache[path] = (version, document)
        return document


def pct(value: Any, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{float(value):+.1%}" if signed else f"{float(value):.1%}"


def money(value: Any, currency: str = "") -> str:
    if value is None:
        return "–"
    return f"{float(value):,.0f}{' ' + currency if currency else ''}"


def funnel_view(document: dict[str, Any]) -> dict[str, Any]:
    """What the funnel page shows of ``funnel.json``: the data window, conversion and drop-off
    per step, and the fixes in rank order."""
    fixes = document.get("fixes") or {}
    value = document.get("value_of_a_point") or {}
    return {
        "generated_at": document.get("generated_at"),
        "window": document.get("data_window") or {},
        "conversion": document.get("conversion") or [],
        "fixes": fixes.get("ranked") or [],
        "readouts_file": fixes.get("readouts_file"),
        "currency": value.get("currency", ""),
        "stalls": (document.get("drop_off") or {}).get("stalls") or [],
    }


def readout_rows(document: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per comparison of ``experiments.json``, with its alerts spelled out."""
    rows = []
    for c in document.get("comparisons") or []:
        alerts = []
        srm = c.get("srm") or {}
        if srm.get("alert"):
            alerts.append("sample ratio mismatch")
        if c.get("status") not in ("ok", None):
            alerts.append(str(c.get("status")).replace("_", " "))
        seq = c.get("sequential") or {}
        rows.append(
            {
                **c,
                "alerts": alerts,
                "interval": _interval(c.get("lift_rel_low"), c.get("lift_rel_high")),
                "sequential_interval": _interval(seq.get("lift_rel_low"), seq.get("lift_rel_high")),
            }
        )
    return rows


def _interval(low: Any, high: Any) -> str:
    if low is None or high is None:
        return "–"
    return f"[{float(low):+.1%}, {float(high):+.1%}]"


STAGE_COLORS = {
    "awareness": "#9ecae1",
    "consideration": "#4292c6",
    "decision": "#fd8d3c",
    "retention": "#41ab5d",
}


def stacked_bars(
    rows: list[tuple[str, list[int]]], columns: list[str], width: int = 720, height: int = 180
) -> dict[str, Any]:
    """An inline SVG of leads per stage at each snapshot: one stacked bar per snapshot."""
    top = max((sum(v) for _, v in rows), default=0) or 1
    step = width / max(len(rows), 1)
    bars = []
    for i, (label, values) in enumerate(rows):
        y = float(height)
        for column, value in zip(columns, values, strict=True):
            h = value * height / top
            y -= h
            bars.append(
                {
                    "x": round(i * step + 1, 1),
                    "y": round(y, 1),
                    "w": round(max(step - 2, 1), 1),
                    "h": round(h, 1),
                    "color": STAGE_COLORS.get(column, "#999"),
                    "title": f"{label} {column}: {value:,}",
                }
            )
    return {"bars": bars, "width": width, "height": height, "top": top,
            "legend": [(c, STAGE_COLORS.get(c, "#999")) for c in columns]}  # fmt: skip
