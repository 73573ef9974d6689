"""One date format per column: day-first found, month-first found, ambiguity refused."""

from __future__ import annotations

import pandas as pd
import pytest

from core.dates import AmbiguousDates, DateFormat, detect_format, looks_like_dates, parse_dates


def s(*values: str) -> pd.Series:
    return pd.Series(list(values))


@pytest.mark.parametrize(
    ("values", "fmt"),
    [
        (("2018-02-13", "2018-01-02"), "ISO8601"),
        (("2018-02-13 10:30:00", "2018-01-02T08:00:00Z"), "ISO8601"),
        (("13/02/2018", "01/02/2018"), "%d/%m/%Y"),
        (("13-02-2018", "01-02-2018"), "%d-%m-%Y"),
        (("01.02.2018", "02.03.2018"), "%d.%m.%Y"),  # dots are day-first
        (("02/13/2018", "01/02/2018"), "%m/%d/%Y"),
        (("2/13/18", "1/2/18"), "%m/%d/%y"),
        (("13/02/2018 10:30", "01/02/2018 08:00"), "%d/%m/%Y %H:%M"),
    ],
)
def test_the_column_format_is_found_from_all_values(values, fmt):
    text = s(*values)
    assert looks_like_dates(text)
    assert detect_format(text).format == fmt


def test_one_parse_per_column_reads_every_value_the_same_way():
    """The failure this prevents: 01/02/2018 read as 2 January beside 13/02/2018 as 13 February."""
    text = s("01/02/2018", "13/02/2018")
    parsed = parse_dates(text, detect_format(text))
    assert list(parsed.dt.month) == [2, 2]
    assert list(parsed.dt.day) == [1, 13]
    assert str(parsed.dt.tz) == "UTC"


def test_ambiguous_columns_are_refused_unless_the_user_says():
    text = s("01/02/2018", "03/04/2018")
    with pytest.raises(AmbiguousDates, match="01/02/2018"):
        detect_format(text)
    assert detect_format(text, dayfirst=True) == DateFormat("%d/%m/%Y", True)
    assert detect_format(text, dayfirst=False) == DateFormat("%m/%d/%Y", False)


def test_the_users_word_cannot_contradict_the_data():
    with pytest.raises(ValueError, match="month over 12"):
        detect_format(s("13/02/2018"), dayfirst=False)
    with pytest.raises(ValueError, match="month over 12"):
        detect_format(s("02/13/2018"), dayfirst=True)


def test_mixed_columns_are_not_dates():
    assert not looks_like_dates(s("2018-01-02", "hello"))
    assert not looks_like_dates(s())
    with pytest.raises(ValueError, match="neither"):
        detect_format(s("13/02/2018", "02/13/2018"))
    with pytest.raises(ValueError, match="separators"):
        detect_format(s("13/02/2018", "13-02-2018"))


def test_an_impossible_date_is_named():
    text = s("31/02/2018", "13/02/2018")
    with pytest.raises(ValueError, match="cannot read the dates"):
        parse_dates(text, detect_format(text))
