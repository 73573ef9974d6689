"""Job-title normalization on real-looking, messy titles."""

from __future__ import annotations

import pandas as pd
import pytest

from features.titles import DEPARTMENTS, SENIORITIES, TitleInfo, normalize_title, normalize_titles

# (raw title, seniority, department, decision maker)
TITLES = [
    ("VP Eng", "vp", "engineering", True),
    ("VP of Engineering", "vp", "engineering", True),
    ("Sr. Director, Marketing Ops", "director", "marketing", True),
    ("CTO & co-founder", "c_level", "engineering", True),
    ("head of growth", "head", "marketing", True),
    ("Chief Revenue Officer", "c_level", "sales", True),
    ("marketing manager", "manager", "marketing", False),
    ("Software Engineer II", "individual_contributor", "engineering", False),
    ("intern", "intern", "other", False),
    ("Founder/CEO", "c_level", "executive", True),
    ("Dir. of Sales", "director", "sales", True),
    ("SVP Sales", "vp", "sales", True),
    ("EVP", "vp", "other", True),
    ("Head of Data", "head", "data", True),
    ("analyst", "individual_contributor", "data", False),
    ("MARKETING MANAGER", "manager", "marketing", False),
    ("  vP   oF   eNgInEeRiNg  ", "vp", "engineering", True),
    ("Marketing Mangaer", "manager", "marketing", False),
    ("Senior Software Engeneer", "individual_contributor", "engineering", False),
    ("Directr of Product", "director", "product", True),
    ("Chief Executive Officer", "c_level", "executive", True),
    ("Chief Marketing Officer", "c_level", "marketing", True),
    ("Chief Information Security Officer", "c_level", "it", True),
    ("Executive Vice President of Sales", "vp", "sales", True),
    ("Vice-President, Operations", "vp", "operations", True),
    ("Managing Director", "c_level", "executive", True),
    ("Owner", "c_level", "executive", True),
    ("President", "c_level", "executive", True),
    ("Account Executive", "individual_contributor", "sales", False),
    ("Executive Assistant to the CEO", "individual_contributor", "operations", False),
    ("Product Marketing Manager", "manager", "marketing", False),
    ("Product Manager", "manager", "product", False),
    ("Product Owner", "individual_contributor", "product", False),
    ("Data Scientist", "individual_contributor", "data", False),
    ("Senior Data Engineer", "individual_contributor", "data", False),
    ("Machine Learning Engineer", "individual_contributor", "data", False),
    ("Financial Analyst", "individual_contributor", "finance", False),
    ("HR Business Partner", "individual_contributor", "hr", False),
    ("Head of People", "head", "hr", True),
    ("Recruiter", "individual_contributor", "hr", False),
    ("IT Manager", "manager", "it", False),
    ("Director of IT", "director", "it", True),
    ("SDR", "individual_contributor", "sales", False),
    ("Sales Development Representative", "individual_contributor", "sales", False),
    ("Business Development Manager", "manager", "sales", False),
    ("Customer Success Manager", "manager", "sales", False),
    ("Revenue Operations Manager", "manager", "sales", False),
    ("Operations Manager", "manager", "operations", False),
    ("Team Lead, Backend", "manager", "engineering", False),
    ("Engineering Intern", "intern", "engineering", False),
    ("Marketing Intern", "intern", "marketing", False),
    ("Principal Engineer", "individual_contributor", "engineering", False),
    ("UX Designer", "individual_contributor", "product", False),
    ("Growth Marketer", "individual_contributor", "marketing", False),
    ("Controller", "individual_contributor", "finance", False),
    ("General Manager", "director", "executive", True),
    ("Chief of Staff", "director", "executive", True),
    ("R&D Manager", "manager", "engineering", False),
    ("Co-Founder & Head of Product", "c_level", "executive", True),
    ("cfo", "c_level", "finance", True),
    ("Marketing", "unknown", "marketing", False),
    ("asdf qwerty", "unknown", "other", False),
    ("", "unknown", "other", False),
    ("   ", "unknown", "other", False),
    (None, "unknown", "other", False),
]


@pytest.mark.parametrize(("raw", "seniority", "department", "decision_maker"), TITLES)
def test_normalize_title(raw, seniority, department, decision_maker):
    assert normalize_title(raw) == TitleInfo(seniority, department, decision_maker)


def test_table_is_large_and_outputs_are_in_the_vocabularies():
    assert len(TITLES) >= 30
    for raw, *_ in TITLES:
        info = normalize_title(raw)
        assert info.seniority in SENIORITIES
        assert info.department in DEPARTMENTS
        assert isinstance(info.is_decision_maker, bool)


def test_decision_maker_follows_seniority():
    for raw, seniority, _, decision_maker in TITLES:
        if seniority in {"c_level", "vp", "director", "head"}:
            assert decision_maker, raw


def test_non_string_input_is_unknown():
    assert normalize_title(float("nan")) == TitleInfo("unknown", "other", False)  # type: ignore[arg-type]


def test_normalize_titles_vectorized_matches_scalar_and_keeps_index():
    raws = pd.Series([t[0] for t in TITLES], index=[f"r{i}" for i in range(len(TITLES))])
    out = normalize_titles(raws)
    assert list(out.index) == list(raws.index)
    assert list(out.columns) == ["title_seniority", "title_department", "is_decision_maker"]
    for (raw, seniority, department, decision_maker), row in zip(TITLES, out.itertuples()):
        assert (row.title_seniority, row.title_department) == (seniority, department), raw
        assert row.is_decision_maker == int(decision_maker)
    assert out["is_decision_maker"].dtype == "int64"


def test_normalize_titles_handles_missing_values():
    out = normalize_titles(pd.Series([None, pd.NA, float("nan"), "VP Eng"], dtype=object))
    assert out["title_seniority"].tolist() == ["unknown", "unknown", "unknown", "vp"]
