"""Dates in a flat table's text columns: one format per column, found from all its values.

ISO dates (``2018-02-13``, with or without a time) read as they are. A column of numeric dates
with separators (``13/02/2018``, ``13-02-2018``, ``13.02.2018``, ``2/13/18``) reads day-first
when some first field is over 12, month-first when some second field is, and is refused as
ambiguous when every value could be either: ``01/02/2018`` is not guessed. Dots are always
day-first (no calendar writes month.day.year). The whole column is then parsed with that one
format, so no value is read one way and its neighbour the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

ISO = re.compile(r"^\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:?\d\d)?)?$")
NUMERIC = re.compile(
    r"^(?P<a>\d{1,2})(?P<sep>[/.-])(?P<b>\d{1,2})(?P=sep)(?P<year>\d{4}|\d{2})"
    r"(?P<time>[ T]\d{1,2}:\d\d(?::\d\d)?)?$"
)


class AmbiguousDates(ValueError):
    """Every value of the column reads both day-first and month-first."""


@dataclass(frozen=True)
class DateFormat:
    """How a column's dates are written: ``iso``, or a strptime format."""

    format: str  # "ISO8601" or e.g. "%d/%m/%Y %H:%M"
    dayfirst: bool | None  # None for ISO


def looks_like_dates(text: pd.Series) -> bool:
    """Every value is an ISO date or a numeric date with separators (one kind for the column)."""
    if not len(text):
        return False
    return bool(text.str.match(ISO).all() or text.str.match(NUMERIC).all())


def detect_format(text: pd.Series, dayfirst: bool | None = None) -> DateFormat:
    """The one format of a column of date strings (see the module's rules).

    ``dayfirst`` (the user's word) settles an ambiguous column; a column that contradicts it
    (a day over 12 where it says months) is refused.
    """
    if text.str.match(ISO).all():
        return DateFormat("ISO8601", None)
    parts = text.str.extract(NUMERIC)
    if parts["a"].isna().any():
        raise ValueError("not one date format in the column")
    seps = set(parts["sep"])
    if len(seps) > 1:
        raise ValueError(f"the dates mix separators {sorted(seps)}")
    sep = seps.pop()
    first, second = parts["a"].astype(int), parts["b"].astype(int)
    day_first_possible = bool((second <= 12).all() and (first <= 31).all())
    month_first_possible = bool((first <= 12).all() and (second <= 31).all())
    if sep == ".":
        month_first_possible = False
    if dayfirst is True and not day_first_possible:
        raise ValueError("dayfirst is set but some dates have a month over 12 when read so")
    if dayfirst is False and not month_first_possible:
        raise ValueError("month-first is set but some dates have a month over 12 when read so")
    if dayfirst is None:
        if day_first_possible and month_first_possible:
            telling = text[(first != second).to_numpy()]
            example = (telling if len(telling) else text).iloc[0]
            raise AmbiguousDates(
                f"dates such as {example!r} that read both day-first and month-first"
            )
        if not (day_first_possible or month_first_possible):
            raise ValueError("some dates read neither day-first nor month-first")
        dayfirst = day_first_possible
    year = "%Y" if parts["year"].str.len().eq(4).all() else "%y"
    if parts["year"].str.len().nunique() > 1:
        raise ValueError("the dates mix 2- and 4-digit years")
    date = f"%d{sep}%m{sep}{year}" if dayfirst else f"%m{sep}%d{sep}{year}"
    times = parts["time"].dropna()
    if len(times) and len(times) < len(parts):
        raise ValueError("some dates carry a time and others do not")
    if len(times):
        clock = "%H:%M:%S" if times.str.count(":").eq(2).all() else "%H:%M"
        date += ("T" if times.str.startswith("T").all() else " ") + clock
    return DateFormat(date, dayfirst)


def parse_dates(text: pd.Series, fmt: DateFormat) -> pd.Series:
    """The column as UTC timestamps, every value with the same format (an unreadable value,
    such as 31/02/2018, is an error naming it)."""
    try:
        return pd.to_datetime(text, format=fmt.format, utc=True)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"cannot read the dates with {fmt.format}: {exc}") from None
