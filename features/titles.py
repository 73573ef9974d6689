"""Job-title normalization: raw CRM title text -> seniority, department, decision-maker flag.

Pure Python (no feast import): the on-demand view `job_title_odfv` calls `normalize_title` per
request, and the training path calls `normalize_titles` on whole columns.

How a title is read:
1. lowercase, split on anything that is not a letter or digit ("Sr. Director, Marketing Ops"
   -> sr director marketing ops); "R&D" and "co-founder" are kept as one word;
2. each unknown word of 5+ letters is matched to the vocabulary with difflib (typos such as
   "Mangaer", "Engeneer", "Directr");
3. abbreviations and two-word phrases are folded into canonical words ("vice president" -> vp,
   "managing director", "product owner", "account executive", ...);
4. seniority is the highest rank any word signals (c_level > vp > director > head > intern >
   manager > individual_contributor); department is the first word that names a function,
   so "Marketing Ops" is marketing and "Sales Operations" is sales.
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from typing import NamedTuple

import pandas as pd

SENIORITIES = (
    "c_level",
    "vp",
    "director",
    "head",
    "manager",
    "individual_contributor",
    "intern",
    "unknown",
)
DEPARTMENTS = (
    "engineering",
    "marketing",
    "sales",
    "product",
    "data",
    "finance",
    "operations",
    "executive",
    "hr",
    "it",
    "other",
)
DECISION_MAKER_SENIORITIES = frozenset({"c_level", "vp", "director", "head"})


class TitleInfo(NamedTuple):
    seniority: str
    department: str
    is_decision_maker: bool


UNKNOWN_TITLE = TitleInfo("unknown", "other", False)

# Words rewritten before anything else (abbreviations, plural forms, spelling variants).
_ALIASES: dict[str, str] = {
    "sr": "senior",
    "snr": "senior",
    "jr": "junior",
    "mgr": "manager",
    "mngr": "manager",
    "dir": "director",
    "eng": "engineering",
    "engg": "engineering",
    "engr": "engineer",
    "dev": "developer",
    "swe": "engineer",
    "mktg": "marketing",
    "mkt": "marketing",
    "mkting": "marketing",
    "ops": "operations",
    "svp": "vp",
    "evp": "vp",
    "avp": "vp",
    "vicepresident": "vp",
    "co-founder": "founder",
    "cofounder": "founder",
    "founders": "founder",
    "directors": "director",
    "managers": "manager",
    "engineers": "engineer",
    "analysts": "analyst",
    "acct": "account",
    "biz": "business",
    "dept": "department",
    "tech": "technology",
    "technical": "technology",
    "financial": "finance",
    "fp&a": "finance",
    "r&d": "engineering",
    "devops": "engineer",
    "sre": "engineer",
    "ml": "machinelearning",
    "ai": "machinelearning",
    "bi": "analytics",
    "ux": "design",
    "ui": "design",
    "hrbp": "hr",
    "revops": "revenueoperations",
    "sdr": "salesrep",
    "bdr": "salesrep",
    "ae": "salesrep",
    "pm": "productmanager",
}

# Two-word phrases folded into one canonical word (applied left to right).
_PHRASES: dict[tuple[str, str], str] = {
    ("vice", "president"): "vp",
    ("managing", "director"): "managingdirector",
    ("managing", "partner"): "managingpartner",
    ("founding", "partner"): "managingpartner",
    ("general", "manager"): "generalmanager",
    ("chief", "of"): "chiefof",  # "chief of staff": see _STAFF below
    ("product", "owner"): "productowner",
    ("product", "marketing"): "marketing",
    ("product", "manager"): "productmanager",
    ("account", "executive"): "salesrep",
    ("sales", "executive"): "salesrep",
    ("account", "manager"): "accountmanager",
    ("business", "development"): "sales",
    ("customer", "success"): "sales",
    ("revenue", "operations"): "revenueoperations",
    ("human", "resources"): "hr",
    ("people", "operations"): "hr",
    ("machine", "learning"): "machinelearning",
    ("data", "science"): "data",
    ("information", "technology"): "it",
    ("information", "security"): "it",
    ("supply", "chain"): "operations",
    ("team", "lead"): "manager",
    ("tech", "lead"): "manager",
    ("technology", "lead"): "manager",
    ("assistant", "to"): "assistantto",
    ("executive", "assistant"): "assistantto",
    ("chief", "executive"): "ceo",
    ("chief", "technology"): "cto",
    ("chief", "marketing"): "cmo",
    ("chief", "revenue"): "cro",
    ("chief", "financial"): "cfo",
    ("chief", "finance"): "cfo",
    ("chief", "operating"): "coo",
    ("chief", "operations"): "coo",
    ("chief", "information"): "cio",
    ("chief", "product"): "cpo",
    ("chief", "data"): "cdo",
    ("chief", "people"): "chro",
    ("chief", "security"): "ciso",
    ("chief", "commercial"): "cro",
    ("chief", "sales"): "cro",
    ("chief", "growth"): "cmo",
    ("chief", "business"): "cro",
    ("chief", "customer"): "cro",
    ("chief", "analytics"): "cdo",
}

_C_LEVEL_DEPARTMENT: dict[str, str] = {
    "ceo": "executive",
    "cto": "engineering",
    "cmo": "marketing",
    "cro": "sales",
    "cco": "sales",
    "cso": "sales",
    "cfo": "finance",
    "coo": "operations",
    "cio": "it",
    "ciso": "it",
    "cpo": "product",
    "cdo": "data",
    "chro": "hr",
    "cxo": "executive",
    "founder": "executive",
    "owner": "executive",
    "president": "executive",
    "chairman": "executive",
    "chairwoman": "executive",
    "chairperson": "executive",
    "managingdirector": "executive",
    "managingpartner": "executive",
}
_C_LEVEL = frozenset(_C_LEVEL_DEPARTMENT) | {"chief"}
_FOUNDER_OWNER = frozenset({"founder", "owner", "managingpartner"})
_VP = frozenset({"vp"})
_DIRECTOR = frozenset({"director", "generalmanager", "chiefofstaff"})
_HEAD = frozenset({"head"})
_INTERN = frozenset({"intern", "interns", "internship", "trainee", "apprentice", "student"})
_MANAGER = frozenset(
    {"manager", "supervisor", "lead", "foreman", "accountmanager", "productmanager"}
)
_IC = frozenset(
    {
        "engineer",
        "developer",
        "programmer",
        "analyst",
        "scientist",
        "specialist",
        "coordinator",
        "associate",
        "representative",
        "rep",
        "salesrep",
        "designer",
        "consultant",
        "architect",
        "administrator",
        "admin",
        "accountant",
        "bookkeeper",
        "controller",
        "recruiter",
        "executive",
        "marketer",
        "strategist",
        "writer",
        "copywriter",
        "editor",
        "technician",
        "officer",
        "assistant",
        "assistantto",
        "advisor",
        "adviser",
        "generalist",
        "researcher",
        "productowner",
        "agent",
        "clerk",
        "principal",
        "staff",
        "partner",
        "buyer",
        "planner",
        "evangelist",
        "advocate",
        "contributor",
        "member",
        "tester",
        "auditor",
        "receptionist",
        "secretary",
        "freelancer",
        "contractor",
    }
)

# Word -> department; the first word in the title that names one wins.
_DEPARTMENT_WORDS: dict[str, str] = {
    # engineering
    "engineering": "engineering",
    "engineer": "engineering",
    "developer": "engineering",
    "programmer": "engineering",
    "software": "engineering",
    "technology": "engineering",
    "platform": "engineering",
    "backend": "engineering",
    "frontend": "engineering",
    "fullstack": "engineering",
    "architect": "engineering",
    "qa": "engineering",
    "tester": "engineering",
    "cto": "engineering",
    # marketing
    "marketing": "marketing",
    "marketer": "marketing",
    "growth": "marketing",
    "brand": "marketing",
    "content": "marketing",
    "demand": "marketing",
    "seo": "marketing",
    "sem": "marketing",
    "communications": "marketing",
    "pr": "marketing",
    "social": "marketing",
    "digital": "marketing",
    "campaign": "marketing",
    "campaigns": "marketing",
    "copywriter": "marketing",
    "creative": "marketing",
    "events": "marketing",
    "evangelist": "marketing",
    "advocate": "marketing",
    "cmo": "marketing",
    # sales
    "sales": "sales",
    "salesrep": "sales",
    "revenue": "sales",
    "revenueoperations": "sales",
    "accountmanager": "sales",
    "commercial": "sales",
    "partnerships": "sales",
    "channel": "sales",
    "presales": "sales",
    "solutions": "sales",
    "cro": "sales",
    "cco": "sales",
    "cso": "sales",
    # product
    "product": "product",
    "productowner": "product",
    "productmanager": "product",
    "design": "product",
    "designer": "product",
    "cpo": "product",
    # data
    "data": "data",
    "analytics": "data",
    "analyst": "data",
    "scientist": "data",
    "machinelearning": "data",
    "insights": "data",
    "cdo": "data",
    # finance
    "finance": "finance",
    "accounting": "finance",
    "accountant": "finance",
    "bookkeeper": "finance",
    "controller": "finance",
    "treasury": "finance",
    "treasurer": "finance",
    "auditor": "finance",
    "tax": "finance",
    "payroll": "finance",
    "cfo": "finance",
    # operations
    "operations": "operations",
    "logistics": "operations",
    "procurement": "operations",
    "buyer": "operations",
    "facilities": "operations",
    "office": "operations",
    "assistantto": "operations",
    "receptionist": "operations",
    "secretary": "operations",
    "coo": "operations",
    # executive
    "ceo": "executive",
    "founder": "executive",
    "owner": "executive",
    "president": "executive",
    "chairman": "executive",
    "chairwoman": "executive",
    "chairperson": "executive",
    "managingdirector": "executive",
    "managingpartner": "executive",
    "generalmanager": "executive",
    "chiefofstaff": "executive",
    "cxo": "executive",
    "board": "executive",
    # hr
    "hr": "hr",
    "people": "hr",
    "talent": "hr",
    "recruiter": "hr",
    "recruiting": "hr",
    "recruitment": "hr",
    "chro": "hr",
    # it
    "it": "it",
    "information": "it",
    "security": "it",
    "sysadmin": "it",
    "helpdesk": "it",
    "network": "it",
    "infrastructure": "it",
    "systems": "it",
    "cio": "it",
    "ciso": "it",
}

# Words that carry no signal but must not be "corrected" into a keyword.
_NEUTRAL = frozenset(
    {
        "senior",
        "junior",
        "associate",
        "global",
        "regional",
        "national",
        "international",
        "group",
        "corporate",
        "enterprise",
        "strategic",
        "strategy",
        "business",
        "account",
        "accounts",
        "customer",
        "customers",
        "client",
        "services",
        "service",
        "support",
        "success",
        "field",
        "inside",
        "outside",
        "north",
        "south",
        "america",
        "europe",
        "emea",
        "apac",
        "americas",
        "team",
        "department",
        "acting",
        "interim",
        "deputy",
        "assistant",
        "general",
        "managing",
        "founding",
        "vice",
        "chief",
        "human",
        "resources",
        "learning",
        "machine",
        "science",
        "supply",
        "chain",
        "and",
        "the",
        "for",
        "with",
        "of",
        "to",
        "ii",
        "iii",
        "iv",
        "first",
        "second",
        "third",
        "level",
        "staff",
        "project",
        "program",
        "programs",
        "web",
        "mobile",
        "cloud",
        "full",
        "stack",
        "worldwide",
        "sdr",
        "bdr",
        "growth",
    }
)

_VOCABULARY: tuple[str, ...] = tuple(
    sorted(
        set(_DEPARTMENT_WORDS)
        | _C_LEVEL
        | _VP
        | _DIRECTOR
        | _HEAD
        | _INTERN
        | _MANAGER
        | _IC
        | _NEUTRAL
        | {"president", "director", "manager", "engineer", "operations", "marketing", "sales"}
        | {word for pair in _PHRASES for word in pair}
        | set(_ALIASES)
        | set(_ALIASES.values())
    )
)
_VOCABULARY_SET = frozenset(_VOCABULARY)
# A typo rarely changes a word's length by more than 2 letters (and a 0.8 similarity cutoff
# rules out larger gaps anyway): comparing only within that band keeps an uncached call fast.
_BY_LENGTH: dict[int, tuple[str, ...]] = {
    n: tuple(w for w in _VOCABULARY if abs(len(w) - n) <= 2)
    for n in range(1, max(map(len, _VOCABULARY)) + 3)
}

_SPLIT = re.compile(r"[^a-z0-9&]+")
_KEEP_TOGETHER = (
    ("co-founder", "cofounder"),
    ("co founder", "cofounder"),
    ("r & d", "r&d"),
    ("fp & a", "fp&a"),
    ("vice-president", "vice president"),
    ("full-stack", "fullstack"),
    ("front-end", "frontend"),
    ("back-end", "backend"),
    ("pre-sales", "presales"),
    ("c-level", "cxo"),
)


@lru_cache(maxsize=8192)
def _correct_word(word: str) -> str:
    """The vocabulary word a typo most likely meant, or the word itself."""
    if word in _VOCABULARY_SET or len(word) < 5 or not word.isalpha():
        return word
    candidates = _BY_LENGTH.get(len(word), ())
    match = difflib.get_close_matches(word, candidates, n=1, cutoff=0.8)
    return match[0] if match else word


def _words(raw: str) -> list[str]:
    text = raw.lower()
    for old, new in _KEEP_TOGETHER:
        text = text.replace(old, new)
    # "&" joins words only inside short acronyms (r&d, fp&a); elsewhere it is "and".
    words = [w for part in _SPLIT.split(text) for w in re.split(r"(?<=\w{3})&|&(?=\w{3})", part)]
    words = [_ALIASES.get(w, w) for w in (_correct_word(w) for w in words if w and w != "&")]
    words = [_ALIASES.get(w, w) for w in words]
    folded: list[str] = []
    i = 0
    while i < len(words):
        pair = (words[i], words[i + 1]) if i + 1 < len(words) else None
        if pair in _PHRASES:
            folded.append(_PHRASES[pair])
            i += 2
        else:
            folded.append(words[i])
            i += 1
    # "chief of staff" is a director-level executive role, not a C-level one.
    out: list[str] = []
    for i, w in enumerate(folded):
        if w == "chiefof":
            nxt = folded[i + 1] if i + 1 < len(folded) else ""
            out.append("chiefofstaff" if nxt == "staff" else "chief")
        elif w == "staff" and out and out[-1] == "chiefofstaff":
            continue
        else:
            out.append(w)
    return out


def _seniority(words: list[str]) -> str:
    present = set(words)
    if "assistantto" in present:  # "Executive Assistant to the CEO" supports the C-level
        return "individual_contributor"
    if "president" in present or present & _C_LEVEL:
        return "c_level"
    if present & _VP:
        return "vp"
    if present & _DIRECTOR:
        return "director"
    if present & _HEAD:
        return "head"
    if present & _INTERN:
        return "intern"
    if present & _MANAGER:
        return "manager"
    if present & _IC:
        return "individual_contributor"
    return "unknown"


def _department(words: list[str]) -> str:
    for w in words:
        dept = _DEPARTMENT_WORDS.get(w)
        if dept is not None:
            return dept
    return "other"


@lru_cache(maxsize=65536)
def normalize_title(raw: str | None) -> TitleInfo:
    """Seniority, department and decision-maker flag of a raw job title ("" / None -> unknown)."""
    if raw is None or not isinstance(raw, str) or not raw.strip():
        return UNKNOWN_TITLE
    words = _words(raw)
    if not words:
        return UNKNOWN_TITLE
    seniority = _seniority(words)
    department = _department(words)
    decision_maker = seniority in DECISION_MAKER_SENIORITIES or bool(set(words) & _FOUNDER_OWNER)
    # An owner of a backlog is not an owner of the budget.
    if "productowner" in words and seniority == "individual_contributor":
        decision_maker = False
    return TitleInfo(seniority, department, decision_maker)


def normalize_titles(titles: pd.Series) -> pd.DataFrame:
    """Vectorized `normalize_title` over a Series: columns title_seniority, title_department,
    is_decision_maker (int 0/1), same index. Each distinct title is parsed once."""
    values = titles.astype(object).where(titles.notna(), None)
    uniques = pd.unique(values.to_numpy())
    parsed = {u: normalize_title(u) for u in uniques}
    info = [parsed[v] for v in values.to_numpy()]
    return pd.DataFrame(
        {
            "title_seniority": [i.seniority for i in info],
            "title_department": [i.department for i in info],
            "is_decision_maker": [int(i.is_decision_maker) for i in info],
        },
        index=titles.index,
    )
