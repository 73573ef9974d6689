"""Synthetic B2B funnel with a known conversion probability (the oracle).

How the data arise
------------------
* Accounts (about one per four leads, 1-10 leads each) have an industry, a lognormal head count,
  revenue tied to it, a country and a latent account intent. Leads of one account share that
  intent plus account-wide "buying windows" (bursts lasting weeks), so colleagues are correlated.
* A lead's intent = account intent + a lead deviation + a slow AR(1) drift + occasional lead-level
  bursts + a novelty boost in its first weeks + a shift by source. Each week it produces Poisson
  counts per event type, rate ``base * exp(beta * intent)`` (email opens/clicks also scale with a
  per-lead email responsiveness, docs views with a technical department), at times uniform within
  the week, never before the lead's ``created_at`` and never at or after the data end. Every lead
  has one creation event (its source's typical touch) at ``created_at``.
* At each weekly tick ``t`` a lead that exists (``created_at < t``) and has no opportunity yet
  converts during ``(t, t + 7d)`` with probability ``h_t = sigmoid(mql_logit(...))``. The logit is
  a fixed function of what is observable at ``t`` only (see ``mql_logit``): the lead's own
  pricing/demo/trial/webinar/content counts in the last 7 and 30 days (``log1p``), days since its
  last event, firmographic fit (industry, head-count band), seniority and department as written
  in its job title (an empty title gives "unknown"), and its colleagues' pricing views in the last
  30 days and demo requests in the last 90 days (the lead's own events excluded), with
  interactions so trees can beat linear models. The windows match the feature tables' 7/30/90
  days. Latent intent never enters the hazard directly, only through the events it caused.
* After converting a lead keeps some events (at half the rate). Product usage before conversion
  comes from trials; customers (subscriptions, product usage, churn) are simulated afterwards by
  ``synthetic.customers``, and the randomized offer experiment by ``synthetic.exposures``,
  each with its own oracle.

The oracle
----------
For every tick ``t`` of ``snapshot_grid(start, end)`` and every lead existing at ``t`` without an
opportunity created before ``t``: ``p_true = 1 - (1 - h_t) ** (30 / 7)``, the probability of an
opportunity within 30 days *if the hazard stayed at h_t*. ``h_t`` is exact for the first week;
later weeks' hazards move with events not yet seen, so ``p_true`` is the best a model can do from
the observables up to that persistence approximation (a model may match it, it should not
meaningfully beat it). It is written to ``<out>/oracle/mql_oracle.parquet`` with
``<out>/oracle/titles.parquet`` (each lead's canonical seniority/department, for judging the title
parser), beside ``churn_oracle.parquet`` and ``nbo_oracle.parquet`` (see those modules). Oracle
files are for evaluation only.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.contract import EVENT_TYPES, LEAD_SOURCES
from core.timegrid import snapshot_grid, to_utc
from synthetic import customers as cust
from synthetic import exposures as expo

WEEK_S = 7 * 86_400
DAY_S = 86_400
LABEL_DAYS = 30

# ----------------------------------------------------------------------------------------------
# Catalogues
# ----------------------------------------------------------------------------------------------


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# fmt: off
INDUSTRIES = ("software", "fintech", "healthcare", "retail", "manufacturing", "education",
              "media", "logistics", "telecom", "consulting")
INDUSTRY_P = (0.22, 0.11, 0.10, 0.10, 0.10, 0.07, 0.08, 0.07, 0.06, 0.09)
TARGET_INDUSTRIES = frozenset({"software", "fintech", "media"})
FIT_EMPLOYEES = (50, 5000)  # inclusive head-count band of the ideal customer profile

COUNTRIES = ("US", "GB", "DE", "FR", "CA", "AU", "IN", "NL", "BR", "ES", "SE", "SG")
COUNTRY_P = (0.42, 0.11, 0.09, 0.06, 0.06, 0.04, 0.06, 0.04, 0.04, 0.03, 0.03, 0.02)
COUNTRY_TLD = {"US": ".com", "GB": ".co.uk", "DE": ".de", "FR": ".fr", "CA": ".ca",
               "AU": ".com.au", "IN": ".in", "NL": ".nl", "BR": ".com.br", "ES": ".es",
               "SE": ".se", "SG": ".sg"}

# in LEAD_SOURCES order: share of leads, intent shift, the touch that created the lead
SOURCE_P = (0.30, 0.17, 0.12, 0.08, 0.09, 0.12, 0.05, 0.07)
SOURCE_INTENT = (0.0, 0.05, -0.25, 0.30, 0.15, -0.35, 0.25, 0.10)
SOURCE_FIRST_EVENT = ("page_view", "page_view", "page_view", "page_view", "webinar_attended",
                      "email_open", "content_download", "page_view")

NAME_HEADS = _words("""
    acme nova blue quant data cloud bright north iron silver green hyper peak swift terra zen
    omni vertex lumen atlas orbit pixel cobalt delta ember falcon granite harbor indigo juniper
    kite lattice maple nimbus onyx prism quartz river summit tidal umber vivid willow xeno yonder
    zephyr aster birch cedar drift""")
NAME_TAILS = _words("""
    ly ify io labs works soft tech systems hub logic grid base wave stack path forge scale point
    bit mind flow sync line craft ware""")
FIRST_NAMES = _words("""
    james mary john patricia robert jennifer michael linda david elizabeth william barbara
    richard susan joseph jessica thomas sarah charles karen wei priya arjun ana lucas sofia mateo
    emma noah olivia liam mia hans julia pierre camille yuki kenji fatima omar chen aisha lars
    ingrid diego valentina raj ananya tom zoe""")
LAST_NAMES = _words("""
    smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez
    wilson anderson thomas taylor moore jackson martin lee patel shah kumar singh nguyen kim wang
    li zhang mueller schmidt schneider dubois laurent rossi bianchi silva santos tanaka sato
    johansson andersson vandijk devries oconnor murphy cohen ali khan novak""")

SENIORITIES = ("c_level", "vp", "director", "head", "manager", "individual_contributor",
               "intern", "unknown")
DEPARTMENTS = ("engineering", "marketing", "sales", "product", "data", "finance", "operations",
               "executive", "hr", "it", "other")
DECISION_MAKERS = frozenset({"c_level", "vp", "director", "head"})
BUYING_DEPARTMENTS = frozenset({"engineering", "data", "it", "product", "executive"})
TECH_DEPARTMENTS = frozenset({"engineering", "data", "it"})

# (seniority, department, weight, variants): canonical pairs and the raw titles people type
TITLE_CATALOGUE: tuple[tuple[str, str, float, tuple[str, ...]], ...] = (
    ("c_level", "executive", 1.6, ("CEO", "Founder/CEO", "Chief Executive Officer",
                                   "Co-Founder & CEO", "Founder")),
    ("c_level", "engineering", 1.0, ("CTO", "CTO & co-founder", "Chief Technology Officer")),
    ("c_level", "sales", 0.5, ("Chief Revenue Officer", "CRO")),
    ("c_level", "marketing", 0.5, ("CMO", "Chief Marketing Officer")),
    ("c_level", "finance", 0.4, ("CFO", "Chief Financial Officer")),
    ("c_level", "operations", 0.4, ("COO", "Chief Operating Officer")),
    ("c_level", "data", 0.4, ("Chief Data Officer", "CDO")),
    ("c_level", "it", 0.4, ("CIO", "Chief Information Officer")),
    ("c_level", "product", 0.3, ("Chief Product Officer", "CPO")),
    ("vp", "engineering", 1.3, ("VP Eng", "VP of Engineering", "Vice President of Engineering",
                                "SVP Engineering")),
    ("vp", "sales", 1.1, ("SVP Sales", "VP Sales", "VP of Sales", "Vice President, Sales")),
    ("vp", "marketing", 1.1, ("VP Marketing", "VP of Marketing", "VP, Demand Generation")),
    ("vp", "product", 0.7, ("VP Product", "Vice President, Product")),
    ("vp", "data", 0.7, ("VP Data", "VP of Data & Analytics")),
    ("vp", "finance", 0.4, ("VP Finance",)),
    ("vp", "operations", 0.4, ("VP Operations", "VP of Ops")),
    ("vp", "hr", 0.3, ("VP People", "VP of Human Resources")),
    ("vp", "it", 0.4, ("VP IT", "VP of Information Technology")),
    ("director", "marketing", 1.6, ("Sr. Director, Marketing Ops", "Director of Marketing",
                                    "Marketing Director")),
    ("director", "sales", 1.3, ("Dir. of Sales", "Sales Director", "Director, Sales")),
    ("director", "engineering", 1.6, ("Director of Engineering", "Engineering Director",
                                      "Sr. Director, Engineering")),
    ("director", "product", 0.9, ("Director, Product Management", "Product Director")),
    ("director", "data", 1.0, ("Director of Data Science", "Analytics Director")),
    ("director", "finance", 0.5, ("Finance Director", "Director of Finance")),
    ("director", "operations", 0.6, ("Director of Operations", "Ops Director")),
    ("director", "it", 0.8, ("IT Director", "Director of IT")),
    ("director", "hr", 0.4, ("HR Director", "Director of People")),
    ("head", "marketing", 1.4, ("Head of Growth", "head of growth", "Head of Marketing",
                                "Head of Demand Gen")),
    ("head", "data", 1.2, ("Head of Data", "Head of Analytics")),
    ("head", "engineering", 1.2, ("Head of Engineering", "Head of Platform")),
    ("head", "product", 0.8, ("Head of Product",)),
    ("head", "sales", 0.7, ("Head of Sales", "Head of Revenue")),
    ("head", "it", 0.5, ("Head of IT",)),
    ("head", "hr", 0.4, ("Head of People", "Head of Talent")),
    ("head", "finance", 0.3, ("Head of Finance",)),
    ("head", "operations", 0.4, ("Head of Operations",)),
    ("manager", "marketing", 3.5, ("marketing manager", "Marketing Manager",
                                   "Growth Marketing Manager", "Demand Generation Manager",
                                   "Marketing Ops Manager")),
    ("manager", "engineering", 3.0, ("Engineering Manager", "Software Development Manager",
                                     "Eng Manager")),
    ("manager", "sales", 2.5, ("Sales Manager", "Account Manager", "Regional Sales Manager")),
    ("manager", "product", 0.6, ("Manager, Product Management",)),
    ("manager", "data", 1.8, ("Analytics Manager", "Data Science Manager", "BI Manager")),
    ("manager", "finance", 1.0, ("Finance Manager", "Accounting Manager")),
    ("manager", "operations", 1.5, ("Operations Manager", "Ops Manager", "Project Manager")),
    ("manager", "it", 1.5, ("IT Manager", "IT Operations Manager")),
    ("manager", "hr", 1.0, ("HR Manager", "Talent Acquisition Manager")),
    # a product manager manages a product, not people: an individual contributor
    ("individual_contributor", "product", 3.5, ("Product Manager", "Senior Product Manager",
                                                "Product Designer", "UX Designer",
                                                "Product Owner")),
    ("individual_contributor", "engineering", 9.0, (
        "Software Engineer", "Software Engineer II", "Senior Software Engineer",
        "Sr. Software Engineer", "Backend Developer", "DevOps Engineer", "Full Stack Developer",
        "Staff Engineer", "Engineer")),
    ("individual_contributor", "data", 6.0, (
        "Data Scientist", "Data Engineer", "analyst", "Data Analyst", "BI Analyst",
        "Business Analyst", "Machine Learning Engineer", "Analytics Engineer")),
    ("individual_contributor", "marketing", 5.0, (
        "Marketing Specialist", "Content Marketer", "SEO Specialist", "Marketing Coordinator",
        "Growth Marketer")),
    ("individual_contributor", "sales", 4.0, (
        "Account Executive", "SDR", "Sales Development Representative", "BDR", "Sales Rep")),
    ("individual_contributor", "finance", 1.2, ("Accountant", "Financial Analyst")),
    ("individual_contributor", "operations", 1.2, ("Operations Analyst",
                                                   "Operations Specialist")),
    ("individual_contributor", "it", 2.0, ("Sysadmin", "System Administrator", "IT Specialist",
                                           "Network Engineer")),
    ("individual_contributor", "hr", 1.0, ("Recruiter", "HR Generalist", "Talent Partner")),
    ("individual_contributor", "other", 1.2, ("Consultant", "Freelancer",
                                              "Independent Consultant")),
    ("intern", "other", 1.0, ("intern", "Intern", "Student", "student")),
    ("intern", "engineering", 0.7, ("Software Engineering Intern", "Engineering Intern")),
    ("intern", "marketing", 0.5, ("Marketing Intern",)),
    ("intern", "data", 0.4, ("Data Science Intern",)),
    # titles that say nothing about rank or function
    ("unknown", "other", 1.5, ("Team Member", "Evangelist", "Ninja", "Staff", "N/A", "-")),
)
TYPOS = (("Manager", "Mangaer"), ("Engineer", "Engeneer"), ("Director", "Directr"),
         ("Marketing", "Marekting"), ("Software", "Sofware"), ("Analyst", "Anaylst"),
         ("Operations", "Opertions"), ("President", "Presdient"), ("Product", "Prodcut"),
         ("Sales", "Saels"), ("Officer", "Oficer"), ("Head", "Haed"), ("Developer", "Develper"))
# noise applied to a title: as typed, lower, UPPER, typo, typo lower, padded with spaces
TITLE_NOISE_P = (0.66, 0.17, 0.04, 0.04, 0.02, 0.07)
EMPTY_TITLE_P = 0.05  # of all leads: "" or None

PROPERTY_POOLS: dict[str, tuple[str | None, ...]] = {
    "page_view": tuple(json.dumps({"path": p}) for p in (
        "/", "/product", "/customers", "/integrations", "/about", "/careers", "/security",
        "/blog/feature-stores-101", "/blog/lead-scoring-guide", "/blog/churn-playbook",
        "/blog/uplift-modeling", "/blog/release-notes", "/solutions/marketing",
        "/solutions/data-teams")),
    "pricing_view": (json.dumps({"path": "/pricing"}),
                     json.dumps({"path": "/pricing", "plan": "team"}),
                     json.dumps({"path": "/pricing", "plan": "enterprise"})),
    "docs_view": tuple(json.dumps({"path": p}) for p in (
        "/docs/quickstart", "/docs/api", "/docs/sdk/python", "/docs/integrations/segment",
        "/docs/security", "/docs/self-hosting")),
    "email_open": tuple(json.dumps({"campaign": f"nurture_{i:02d}"}) for i in range(1, 13)),
    "email_click": tuple(json.dumps({"campaign": f"nurture_{i:02d}"}) for i in range(1, 13)),
    "webinar_attended": tuple(json.dumps({"webinar_id": f"WEB-2026-{i:02d}"})
                              for i in range(1, 11)),
    "content_download": tuple(json.dumps({"asset": a}) for a in (
        "ebook-mql-scoring", "whitepaper-feature-stores", "report-state-of-growth",
        "template-churn-analysis", "case-study-fintech")),
    "demo_request": (json.dumps({"form": "book_demo"}), json.dumps({"form": "contact_sales"})),
    "trial_signup": (json.dumps({"plan": "trial"}), None),
    "product_active": (None, json.dumps({"feature": "dashboards"}),
                       json.dumps({"feature": "scoring"}), json.dumps({"feature": "audiences"})),
}
# fmt: on

# ----------------------------------------------------------------------------------------------
# Event process
# ----------------------------------------------------------------------------------------------

N_TYPES = len(EVENT_TYPES)
T = {name: i for i, name in enumerate(EVENT_TYPES)}
# weekly rate at intent 0 and the intent elasticity, in EVENT_TYPES order
BASE_RATE = np.array([0.55, 0.05, 0.18, 0.45, 0.07, 0.015, 0.05, 0.006, 0.004, 0.0])
BETA = np.array([0.5, 1.0, 0.6, 0.25, 0.6, 0.6, 0.6, 1.3, 1.2, 0.5])
POST_CONVERSION_FACTOR = 0.5  # engagement after an opportunity exists
TRIAL_ACTIVE_RATE = 1.0  # weekly product usage of a lead with a trial before converting
POST_TRIAL_RATE = 0.08
# the five behaviours the hazard reads, and where they sit in the per-lead count arrays
HAZARD_TYPES = (
    "pricing_view",
    "demo_request",
    "trial_signup",
    "webinar_attended",
    "content_download",
)
H = {name: i for i, name in enumerate(HAZARD_TYPES)}
RING = 14  # weeks of counts kept: the 90-day window needs the 13 weeks before a tick

# ----------------------------------------------------------------------------------------------
# The hazard
# ----------------------------------------------------------------------------------------------

# Coefficients of the weekly conversion logit (see ``mql_logit``).
COEF: dict[str, float] = {
    "intercept": -8.6,  # tuned: about 3% of (lead, snapshot) rows convert within 30 days
    "pricing_7d": 1.1,
    "pricing_30d": 0.9,  # log1p counts
    "demo_7d": 2.0,
    "demo_30d": 1.2,
    "trial_30d": 1.4,
    "webinar_30d": 0.6,
    "content_30d": 0.5,
    "recency_per_day": -0.05,  # days since the last event, capped at 60
    "dormant_3w": -0.8,  # no event for more than 21 days
    "seniority_scale": 2.0,  # times SENIORITY_EFFECT
    "industry_fit": 0.7,
    "size_fit": 0.6,
    "industry_x_size_fit": 0.7,
    "colleague_pricing_30d": 0.7,
    "colleague_demo_90d": 0.5,  # log1p counts
    "dm_buying_dept_x_pricing": 1.2,  # decision maker in a buying department reading pricing
    "dm_buying_dept": 0.5,
    "colleague_pricing_x_engaged": 0.6,  # colleagues' interest counts more when the lead is active
}
SENIORITY_EFFECT = {
    "c_level": 0.5,
    "vp": 0.6,
    "director": 0.5,
    "head": 0.45,
    "manager": 0.15,
    "individual_contributor": -0.15,
    "intern": -1.0,
    "unknown": 0.0,
}


def mql_logit(
    own_7d: np.ndarray,
    own_30d: np.ndarray,
    days_since_last_event: np.ndarray,
    industry_fit: np.ndarray,
    size_fit: np.ndarray,
    seniority: np.ndarray,
    department: np.ndarray,
    colleague_pricing_30d: np.ndarray,
    colleague_demo_90d: np.ndarray,
    coef: dict[str, float] = COEF,
) -> np.ndarray:
    """Weekly conversion logit from observables at a tick (all arrays per lead).

    ``own_7d``/``own_30d`` are (n, 5) counts of ``HAZARD_TYPES`` in the 7/30 days before the tick;
    ``seniority``/``department`` are indices into ``SENIORITIES``/``DEPARTMENTS``; the fits are
    0/1; ``days_since_last_event`` may be NaN (no event yet: treated as 60 days).
    """
    c = coef
    l7, l30 = np.log1p(own_7d), np.log1p(own_30d)
    sen_effect = np.array([SENIORITY_EFFECT[s] for s in SENIORITIES])[seniority]
    decision_maker = np.isin(seniority, [SENIORITIES.index(s) for s in DECISION_MAKERS])
    buying_dept = np.isin(department, [DEPARTMENTS.index(d) for d in BUYING_DEPARTMENTS])
    dm_buying = (decision_maker & buying_dept).astype(float)
    recency = np.minimum(np.nan_to_num(days_since_last_event, nan=60.0), 60.0)
    col_pricing, col_demo = np.log1p(colleague_pricing_30d), np.log1p(colleague_demo_90d)
    engaged_7d = (recency < 7).astype(float)
    return (
        c["intercept"]
        + c["pricing_7d"] * l7[:, H["pricing_view"]]
        + c["pricing_30d"] * l30[:, H["pricing_view"]]
        + c["demo_7d"] * l7[:, H["demo_request"]]
        + c["demo_30d"] * l30[:, H["demo_request"]]
        + c["trial_30d"] * l30[:, H["trial_signup"]]
        + c["webinar_30d"] * l30[:, H["webinar_attended"]]
        + c["content_30d"] * l30[:, H["content_download"]]
        + c["recency_per_day"] * recency
        + c["dormant_3w"] * (recency > 21)
        + c["seniority_scale"] * sen_effect
        + c["industry_fit"] * industry_fit
        + c["size_fit"] * size_fit
        + c["industry_x_size_fit"] * industry_fit * size_fit
        + c["colleague_pricing_30d"] * col_pricing
        + c["colleague_demo_90d"] * col_demo
        + c["dm_buying_dept_x_pricing"] * dm_buying * (own_30d[:, H["pricing_view"]] > 0)
        + c["dm_buying_dept"] * dm_buying
        + c["colleague_pricing_x_engaged"] * col_pricing * engaged_7d
    )


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def format_ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """``prefix`` + zero-padded numbers as an object array of str (arrow does the formatting)."""
    digits = pc.utf8_lpad(
        pc.cast(pa.array(np.asarray(numbers, dtype=np.int64)), pa.string()),
        width=width,
        padding="0",
    )
    ids = pc.binary_join_element_wise(pa.scalar(prefix), digits, pa.scalar(""))
    return ids.to_numpy(zero_copy_only=False).astype(object, copy=False)


def _typo(title: str) -> str:
    for right, wrong in TYPOS:
        for r, w in ((right, wrong), (right.lower(), wrong.lower())):
            if r in title:
                return title.replace(r, w, 1)
    words = title.split()
    longest = max(range(len(words)), key=lambda i: len(words[i]))
    w = words[longest]
    if len(w) >= 4:  # swap two letters in the middle of the longest word
        m = len(w) // 2
        words[longest] = w[: m - 1] + w[m] + w[m - 1] + w[m + 1 :]
    return " ".join(words)


def _title_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flattened catalogue: raw variants x noise kinds, and per variant its pair and weight."""
    texts, pair_of_variant, variant_w = [], [], []
    pair_sen, pair_dep = [], []
    for p, (sen, dep, weight, variants) in enumerate(TITLE_CATALOGUE):
        pair_sen.append(SENIORITIES.index(sen))
        pair_dep.append(DEPARTMENTS.index(dep))
        for v in variants:
            typo = _typo(v)
            texts.append([v, v.lower(), v.upper(), typo, typo.lower(), f"  {v} "])
            pair_of_variant.append(p)
            variant_w.append(weight / len(variants))
    return (
        np.array(texts, dtype=object),
        np.array(pair_of_variant),
        np.array(variant_w),
        np.array(pair_sen),
        np.array(pair_dep),
    )


def _choice(rng: np.random.Generator, p: tuple[float, ...] | np.ndarray, size: int) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    return rng.choice(len(p), size=size, p=p / p.sum())


def _uniform_int(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Integers uniform in [lo, hi) elementwise (hi > lo)."""
    span = hi - lo
    return lo + np.minimum((rng.random(len(span)) * span).astype(np.int64), span - 1)


def _to_ts(seconds: np.ndarray) -> pd.Series:
    return pd.Series(
        pd.to_datetime(np.asarray(seconds, dtype=np.int64), unit="s", utc=True)
    ).dt.as_unit("ns")


@dataclass
class Simulation:
    """Everything the generator produced, before it is written."""

    tables: dict[str, pd.DataFrame]
    oracle: pd.DataFrame
    titles: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp
    label_rate: float
    oracle_auc: float
    churn_oracle: pd.DataFrame
    nbo_oracle: pd.DataFrame
    churn_label_rate: float
    churn_oracle_auc: float


def _start_monday(start: object) -> pd.Timestamp:
    ts = to_utc(start).normalize()
    return ts - pd.Timedelta(days=ts.dayofweek)


# ----------------------------------------------------------------------------------------------
# Simulation
# ----------------------------------------------------------------------------------------------


def simulate(
    n_leads: int,
    seed: int,
    start: object = "2026-01-05",
    weeks: int = 39,
    progress: bool = False,
    offer_effect_scale: float = 1.0,
) -> Simulation:
    """Run the funnel simulation in memory (see the module docstring); deterministic per seed.

    Customers, churn and the offer experiment are simulated after the leads' weeks by
    ``synthetic.customers`` and ``synthetic.exposures``; ``offer_effect_scale`` multiplies
    every offer's true effect (tests use a strong effect).
    """
    if n_leads < 1:
        raise ValueError(f"n_leads must be positive, got {n_leads}")
    if weeks < 1:
        raise ValueError(f"weeks must be positive, got {weeks}")
    start_ts = _start_monday(start)
    end_ts = start_ts + pd.Timedelta(weeks=weeks)
    t0 = int(start_ts.timestamp())
    horizon = weeks * WEEK_S
    seeds = np.random.SeedSequence(seed).spawn(8)
    rng_acc, rng_lead, rng_title, rng_intent, rng_event, rng_opp, rng_cust, rng_offer = (
        np.random.default_rng(s) for s in seeds
    )
    n = int(n_leads)

    # --- accounts ---------------------------------------------------------------------------
    size_p = np.array([0.22, 0.17, 0.14, 0.11, 0.09, 0.075, 0.06, 0.05, 0.045, 0.04])
    sizes = 1 + _choice(rng_acc, size_p, n)
    cum = np.cumsum(sizes)
    n_acc = int(np.searchsorted(cum, n) + 1)
    sizes = sizes[:n_acc].copy()
    sizes[-1] -= int(cum[n_acc - 1] - n)
    industry = _choice(rng_acc, INDUSTRY_P, n_acc)
    log_emp = np.log(120) + 0.35 * np.log(sizes) + rng_acc.normal(0, 1.5, n_acc)
    employees = np.clip(np.round(np.exp(log_emp)), 5, 50_000).astype(np.int64)
    rev_per_emp = np.exp(np.log(160_000) + rng_acc.normal(0, 0.45, n_acc))
    revenue = np.round(employees * rev_per_emp, -3)
    country = _choice(rng_acc, COUNTRY_P, n_acc)
    heads = rng_acc.integers(0, len(NAME_HEADS), n_acc)
    heads2 = rng_acc.integers(0, len(NAME_HEADS), n_acc)
    tails = rng_acc.integers(0, len(NAME_TAILS), n_acc)
    form = rng_acc.random(n_acc)  # head+tail, head+head, head+head+tail: few clashes to number
    tld_local = rng_acc.random(n_acc) < 0.45
    acc_intent = rng_acc.normal(0, 1, n_acc)
    acc_created_draw = t0 + (rng_acc.uniform(-3 * 365, 14, n_acc) * DAY_S).astype(np.int64)
    # the installed base: customers before the data start, their people imported into the CRM
    installed = rng_cust.random(n_acc) < cust.INSTALLED_BASE_P
    installed_start = t0 - (rng_cust.uniform(63, 700, n_acc) * DAY_S).astype(np.int64)

    head_s = pd.Series(np.array(NAME_HEADS, dtype=object)[heads])
    head2_s = pd.Series(np.array(NAME_HEADS, dtype=object)[heads2])
    tail_s = pd.Series(np.array(NAME_TAILS, dtype=object)[tails])
    names = pd.Series(
        np.select(
            [form < 0.2, form < 0.45],
            [head_s + tail_s, head_s + head2_s],
            head_s + head2_s + tail_s,
        )
    )
    dup = names.groupby(names).cumcount().to_numpy()
    names = names.where(dup == 0, names + (dup + 1).astype(str))
    tld = np.where(
        tld_local, np.array([COUNTRY_TLD[c] for c in COUNTRIES], dtype=object)[country], ".com"
    )
    domains = (names + pd.Series(tld)).to_numpy(dtype=object)

    # --- leads --------------------------------------------------------------------------------
    acc_of = np.repeat(np.arange(n_acc), sizes)
    early = rng_lead.random(n) < 0.3  # a backlog imported or captured in the first weeks
    created_off = np.where(
        early, rng_lead.uniform(0, 3 * WEEK_S, n), rng_lead.uniform(0, horizon - 3600, n)
    )
    created = t0 + created_off.astype(np.int64)
    imported = installed[acc_of]  # contacts of installed-base customers, in the CRM already
    created = np.where(
        imported, t0 - (rng_cust.uniform(63, 150, n) * DAY_S).astype(np.int64), created
    )
    order = np.lexsort((acc_of, created))  # lead ids follow creation time
    acc_of, created = acc_of[order], created[order]
    source = _choice(rng_lead, SOURCE_P, n)
    first = rng_lead.integers(0, len(FIRST_NAMES), n)
    last = rng_lead.integers(0, len(LAST_NAMES), n)
    lead_dev = rng_lead.normal(0, 0.6, n)
    email_resp = np.exp(rng_lead.normal(-0.1, 0.7, n))
    adopter = rng_lead.random(n) < 0.7

    first_seen = np.full(n_acc, np.iinfo(np.int64).max)
    np.minimum.at(first_seen, acc_of, created)
    acc_created = np.minimum(acc_created_draw, first_seen - 3600)
    acc_created = np.where(installed, np.minimum(acc_created, installed_start - DAY_S), acc_created)

    local = (
        pd.Series(np.array(FIRST_NAMES, dtype=object)[first])
        + "."
        + pd.Series(np.array(LAST_NAMES, dtype=object)[last])
    )
    addr = local + "@" + pd.Series(domains[acc_of])
    dup = addr.groupby(addr).cumcount().to_numpy()
    local = local.where(dup == 0, local + (dup + 1).astype(str))
    emails = (local + "@" + pd.Series(domains[acc_of])).to_numpy(dtype=object)

    # job titles: canonical pair -> raw variant -> noise; empty for a few
    texts, pair_of_variant, variant_w, pair_sen, pair_dep = _title_table()
    variant = _choice(rng_title, variant_w, n)
    noise = _choice(rng_title, TITLE_NOISE_P, n)
    title = texts[variant, noise]
    empty_draw = rng_title.random(n)
    title = np.where(empty_draw < EMPTY_TITLE_P * 0.6, "", title).astype(object)
    title[empty_draw >= 1 - EMPTY_TITLE_P * 0.4] = None
    has_title = (empty_draw >= EMPTY_TITLE_P * 0.6) & (empty_draw < 1 - EMPTY_TITLE_P * 0.4)
    true_sen = pair_sen[pair_of_variant[variant]]
    true_dep = pair_dep[pair_of_variant[variant]]
    # what the title text tells: an empty title carries no seniority/department
    obs_sen = np.where(has_title, true_sen, SENIORITIES.index("unknown"))
    obs_dep = np.where(has_title, true_dep, DEPARTMENTS.index("other"))

    industry_fit = np.isin(industry, [INDUSTRIES.index(i) for i in TARGET_INDUSTRIES])[
        acc_of
    ].astype(float)
    emp_lead = employees[acc_of]
    size_fit = ((emp_lead >= FIT_EMPLOYEES[0]) & (emp_lead <= FIT_EMPLOYEES[1])).astype(float)
    tech = np.isin(true_dep, [DEPARTMENTS.index(d) for d in TECH_DEPARTMENTS])
    static_intent = -0.45 + np.array(SOURCE_INTENT)[source] + 0.7 * acc_intent[acc_of] + lead_dev

    # per-type multipliers that do not depend on time
    type_mult = np.ones((n, N_TYPES))
    type_mult[:, T["email_open"]] = email_resp
    type_mult[:, T["email_click"]] = email_resp
    type_mult[:, T["docs_view"]] = np.where(tech, 2.0, 0.5)
    first_event = np.array([T[e] for e in SOURCE_FIRST_EVENT])[source]

    # --- weekly loop --------------------------------------------------------------------------
    ticks = snapshot_grid(start_ts, end_ts)  # weekly, ends on the data end (a week boundary)
    n_ticks = len(ticks)  # weeks + 1
    n_h = len(HAZARD_TYPES)
    h_cols = np.array([T[h] for h in HAZARD_TYPES])
    h_of_type = np.full(N_TYPES, -1)
    h_of_type[h_cols] = np.arange(n_h)
    # per-lead weekly counts of the hazard's event types, in a ring of the last RING weeks (the
    # 90-day window reaches 13 weeks back)
    week_counts = np.zeros((RING, n, n_h), dtype=np.int16)
    tail2 = np.zeros((RING, n, n_h), dtype=np.int16)  # events in the week's last 2 days
    tail6_demo = np.zeros((RING, n), dtype=np.int16)  # demo requests in the week's last 6 days
    last_event = np.full(n, -1, dtype=np.int64)
    trial_seen = np.zeros(n, dtype=bool)
    converted_week = np.full(n, -1)
    opp_time = np.full(n, np.iinfo(np.int64).max)

    ar_phi, ar_sigma = 0.85, 0.35
    ar = rng_intent.normal(0, ar_sigma / np.sqrt(1 - ar_phi**2), n)
    acc_window = np.zeros(n_acc, dtype=bool)
    lead_burst = np.zeros(n, dtype=bool)

    oracle_lead, oracle_tick, oracle_p = [], [], []
    ev_lead, ev_type, ev_time = [], [], []
    campaigns = set(expo.campaign_weeks(weeks))
    campaign_own30: dict[int, np.ndarray] = {}  # what the offer experiment reads at its ticks

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_ticks, desc="simulating weeks", unit="week")
    for w in range(n_ticks):
        t = t0 + w * WEEK_S
        # 1) hazard from what is observable at t (events strictly before t)
        # [t-7d, t) is week w-1; [t-30d, t) weeks w-4..w-1 plus the last 2 days of week w-5;
        # [t-90d, t) weeks w-12..w-1 plus the last 6 days of week w-13
        last4 = [(w - k) % RING for k in range(1, min(w, 4) + 1)]
        last12 = [(w - k) % RING for k in range(1, min(w, 12) + 1)]
        own7 = week_counts[(w - 1) % RING].astype(np.float64) if w >= 1 else np.zeros((n, n_h))
        own30 = week_counts[last4].sum(axis=0, dtype=np.float64)
        if w >= 5:
            own30 = own30 + tail2[(w - 5) % RING]
        demo90 = week_counts[last12, :, H["demo_request"]].sum(axis=0, dtype=np.float64)
        if w >= 13:
            demo90 = demo90 + tail6_demo[(w - 13) % RING]
        pricing30 = own30[:, H["pricing_view"]]
        col_pricing = np.bincount(acc_of, weights=pricing30, minlength=n_acc)[acc_of] - pricing30
        col_demo = np.bincount(acc_of, weights=demo90, minlength=n_acc)[acc_of] - demo90
        days_since = np.where(last_event >= 0, (t - last_event) / DAY_S, np.nan)
        hazard = sigmoid(
            mql_logit(
                own7,
                own30,
                days_since,
                industry_fit,
                size_fit,
                obs_sen,
                obs_dep,
                col_pricing,
                col_demo,
            )
        )
        if w in campaigns:
            campaign_own30[w] = own30.astype(np.int32)  # counts, exact
        eligible = np.flatnonzero((created < t) & (converted_week < 0))
        oracle_lead.append(eligible.astype(np.int32))
        oracle_tick.append(np.full(len(eligible), w, dtype=np.int16))
        oracle_p.append(1.0 - (1.0 - hazard[eligible]) ** (LABEL_DAYS / 7))
        if w == weeks:  # the end tick only gets oracle rows
            if bar is not None:
                bar.update(1)
            break

        # 2) conversions during (t, t + 7d)
        conv = eligible[rng_opp.random(len(eligible)) < hazard[eligible]]
        converted_week[conv] = w
        opp_time[conv] = t + 1 + (rng_opp.random(len(conv)) * (WEEK_S - 1)).astype(np.int64)

        # 3) intent this week
        ar = ar_phi * ar + rng_intent.normal(0, ar_sigma, n)
        acc_window = np.where(
            acc_window, rng_intent.random(n_acc) > 1 / 6, rng_intent.random(n_acc) < 0.02
        )
        lead_burst = np.where(lead_burst, rng_intent.random(n) > 1 / 3, rng_intent.random(n) < 0.03)
        age_weeks = np.maximum(0.0, (t - created) / WEEK_S)
        intent = (
            static_intent
            + ar
            + 1.2 * acc_window[acc_of]
            + 0.8 * lead_burst
            + 0.6 * np.exp(-age_weeks / 2.0)
        )

        # 4) events of week w for leads that exist during it
        t_next = t + WEEK_S
        active = np.flatnonzero(created < t_next)
        lo = np.maximum(created[active], t)
        frac = (t_next - lo) / WEEK_S
        rates = (
            BASE_RATE[None, :] * np.exp(BETA[None, :] * intent[active, None]) * type_mult[active]
        )
        post = (converted_week[active] >= 0) & (converted_week[active] < w)
        rates[post] *= POST_CONVERSION_FACTOR
        # trial usage until the lead converts; customers' usage comes from synthetic.customers
        rates[:, T["product_active"]] = np.where(
            trial_seen[active] & ~post, TRIAL_ACTIVE_RATE, 0.0
        ) * np.exp(0.3 * intent[active])
        rates[post, T["trial_signup"]] = POST_TRIAL_RATE
        counts = rng_event.poisson(rates * frac[:, None])
        flat = np.repeat(np.arange(counts.size), counts.ravel())
        e_lead = active[flat // N_TYPES]
        e_type = (flat % N_TYPES).astype(np.int8)
        e_lo = lo[flat // N_TYPES]
        e_time = _uniform_int(rng_event, e_lo, np.full(len(e_lo), t_next))
        born = np.flatnonzero((created >= t) & (created < t_next))  # creation touch at created_at
        e_lead = np.concatenate([e_lead, born])
        e_type = np.concatenate([e_type, first_event[born].astype(np.int8)])
        e_time = np.concatenate([e_time, created[born]])
        order = np.lexsort((e_type, e_lead, e_time))
        e_lead, e_type, e_time = e_lead[order], e_type[order], e_time[order]
        ev_lead.append(e_lead.astype(np.int32))
        ev_type.append(e_type)
        ev_time.append(e_time)

        # 5) bookkeeping for the next ticks' observables
        hidx = h_of_type[e_type]
        m = hidx >= 0
        key = e_lead[m].astype(np.int64) * n_h + hidx[m]
        slot = w % RING  # overwrites week w - RING, which no window reaches any more
        week_counts[slot] = np.bincount(key, minlength=n * n_h).reshape(n, n_h)
        late2 = e_time[m] >= t_next - 2 * DAY_S
        tail2[slot] = np.bincount(key[late2], minlength=n * n_h).reshape(n, n_h)
        demo_late = (e_type == T["demo_request"]) & (e_time >= t_next - 6 * DAY_S)
        tail6_demo[slot] = np.bincount(e_lead[demo_late], minlength=n)
        # recency as the feature tables read it: engagement only, product usage is not a touch
        engaged = e_type != T["product_active"]
        np.maximum.at(last_event, e_lead[engaged], e_time[engaged])
        trial_seen[e_lead[e_type == T["trial_signup"]]] = True
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    # --- customers: subscriptions, product usage, churn ---------------------------------------
    e_lead = np.concatenate(ev_lead)
    e_type = np.concatenate(ev_type)
    e_time = np.concatenate(ev_time)
    is_product = e_type == T["product_active"]
    customers = cust.simulate_customers(
        rng_cust,
        t0=t0,
        weeks=weeks,
        acc_of=acc_of,
        lead_created=created,
        adopter=adopter,
        employees=employees,
        installed=installed,
        installed_start=installed_start,
        opp_time=opp_time,
        trial_usage_lead=e_lead[is_product].astype(np.int64),
        trial_usage_time=e_time[is_product],
        engagement_lead=e_lead[~is_product].astype(np.int64),
        engagement_time=e_time[~is_product],
        progress=progress,
    )
    # all events in time order: the leads' weeks, then the customers' product usage
    e_lead = np.concatenate([e_lead, customers.usage_lead.astype(np.int32)])
    e_type = np.concatenate(
        [e_type, np.full(len(customers.usage_lead), T["product_active"], dtype=np.int8)]
    )
    e_time = np.concatenate([e_time, customers.usage_time])
    order = np.lexsort((e_type, e_lead, e_time))
    e_lead, e_type, e_time = e_lead[order], e_type[order], e_time[order]

    # --- the offer experiment -----------------------------------------------------------------
    decision_maker = np.isin(obs_sen, [SENIORITIES.index(s) for s in DECISION_MAKERS])
    low_seniority = np.isin(obs_sen, [SENIORITIES.index(s) for s in expo.LOW_SENIORITY])
    has_opp = opp_time < np.iinfo(np.int64).max
    parts = []
    for w in sorted(campaign_own30):
        t = t0 + w * WEEK_S
        leads_now = np.flatnonzero(created < t)
        own30 = campaign_own30[w][leads_now]
        recent_opp = has_opp & (opp_time >= t - 90 * DAY_S) & (opp_time < t)
        acc_opps = np.bincount(acc_of, weights=recent_opp, minlength=n_acc)
        acc_now = acc_of[leads_now]
        state = expo.LeadState(
            pricing_30d=own30[:, H["pricing_view"]],
            demo_30d=own30[:, H["demo_request"]],
            trial_30d=own30[:, H["trial_signup"]],
            webinar_30d=own30[:, H["webinar_attended"]],
            content_30d=own30[:, H["content_download"]],
            decision_maker=decision_maker[leads_now],
            low_seniority=low_seniority[leads_now],
            employees=employees[acc_now],
            industry_fit=industry_fit[leads_now],
            is_customer=customers.is_customer[w, acc_now],
            utilization=customers.utilization[w, acc_now],
            account_opportunities_90d=acc_opps[acc_now],
        )
        parts.append(expo.expose(rng_offer, leads_now, state, t, offer_effect_scale))
    exposures = expo.concat(parts)

    # --- tables -------------------------------------------------------------------------------
    account_ids = format_ids("A", np.arange(1, n_acc + 1), 6)
    lead_ids = format_ids("L", np.arange(1, n + 1), 7)
    accounts = pd.DataFrame(
        {
            "account_id": account_ids,
            "domain": domains,
            "industry": np.array(INDUSTRIES, dtype=object)[industry],
            "employee_count": employees,
            "annual_revenue": revenue.astype(np.float64),
            "country": np.array(COUNTRIES, dtype=object)[country],
            "created_at": _to_ts(acc_created),
        }
    )
    leads = pd.DataFrame(
        {
            "lead_id": lead_ids,
            "account_id": account_ids[acc_of],
            "email": emails,
            "job_title": title,
            "source": np.array(LEAD_SOURCES, dtype=object)[source],
            "created_at": _to_ts(created),
        }
    )
    events = pd.DataFrame(
        copy=False,
        data={
            "event_id": format_ids("E", np.arange(1, len(e_lead) + 1), 9),
            "lead_id": lead_ids[e_lead],
            "account_id": account_ids[acc_of[e_lead]],
            "event_type": np.array(EVENT_TYPES, dtype=object)[e_type],
            "timestamp": _to_ts(e_time),
            "properties": _properties(rng_event, e_type),
        },
    )
    conv_leads = np.flatnonzero(converted_week >= 0)
    conv_leads = conv_leads[np.argsort(opp_time[conv_leads], kind="stable")]
    amount = np.round(
        np.exp(
            np.log(9_000)
            + 0.25 * np.log(emp_lead[conv_leads] / 50)
            + rng_opp.normal(0, 0.7, len(conv_leads))
        ),
        -2,
    )
    stage = np.where(rng_opp.random(len(conv_leads)) < 0.6, "qualified", "created").astype(object)
    # the opportunity that made its account a customer is closed won
    sub_start = np.full(n_acc, np.iinfo(np.int64).max)
    np.minimum.at(sub_start, customers.sub_account, customers.sub_start)
    first_of_account = ~pd.Series(acc_of[conv_leads]).duplicated().to_numpy()
    won = first_of_account & (sub_start[acc_of[conv_leads]] > opp_time[conv_leads])
    won &= (sub_start[acc_of[conv_leads]] < np.iinfo(np.int64).max) & ~installed[acc_of[conv_leads]]
    stage[won] = "closed_won"
    opportunities = pd.DataFrame(
        {
            "opportunity_id": format_ids("O", np.arange(1, len(conv_leads) + 1), 7),
            "lead_id": lead_ids[conv_leads],
            "account_id": account_ids[acc_of[conv_leads]],
            "created_at": _to_ts(opp_time[conv_leads]),
            "amount": amount.astype(np.float64),
            "stage": stage,
        }
    )
    tables = {
        "accounts": accounts,
        "leads": leads,
        "events": events,
        "opportunities": opportunities,
        "subscriptions": _subscriptions(customers, account_ids),
        "offer_exposures": pd.DataFrame(
            {
                "subject_id": lead_ids[exposures.lead],
                "offer_id": np.array(expo.ARMS, dtype=object)[exposures.arm],
                "exposed_at": _to_ts(exposures.exposed_at),
                "propensity": exposures.propensity.astype(np.float64),
                "converted_at": _to_ts_or_nat(exposures.converted_at),
            }
        ),
    }
    churn_oracle = pd.DataFrame(
        {
            "account_id": account_ids[customers.oracle_account],
            "snapshot_ts": pd.Series(ticks[customers.oracle_tick]).dt.as_unit("ns"),
            "p_true": customers.oracle_p.astype(np.float64),
            "hazard_7d": customers.oracle_hazard.astype(np.float64),
        }
    )
    nbo_oracle = pd.DataFrame(
        {
            "subject_id": lead_ids[exposures.lead],
            "exposed_at": _to_ts(exposures.exposed_at),
            "stage": np.array(expo.STAGES, dtype=object)[exposures.stage],
            **{f"p_{arm}": exposures.p_true[:, j] for j, arm in enumerate(expo.ARMS)},
        }
    )

    # --- oracle -------------------------------------------------------------------------------
    o_lead = np.concatenate(oracle_lead)
    o_tick = np.concatenate(oracle_tick)
    o_p = np.concatenate(oracle_p)
    oracle = pd.DataFrame(
        {
            "lead_id": lead_ids[o_lead],
            "snapshot_ts": pd.Series(ticks[o_tick]).dt.as_unit("ns"),
            "p_true": o_p.astype(np.float64),
        }
    )
    tick_s = t0 + o_tick.astype(np.int64) * WEEK_S
    observed = tick_s + LABEL_DAYS * DAY_S <= t0 + horizon  # windows fully inside the data
    label = (opp_time[o_lead] > tick_s) & (opp_time[o_lead] <= tick_s + LABEL_DAYS * DAY_S)
    label_rate = float(label[observed].mean()) if observed.any() else float("nan")
    titles = pd.DataFrame(
        {
            "lead_id": lead_ids,
            "job_title": title,
            "seniority": np.array(SENIORITIES, dtype=object)[true_sen],
            "department": np.array(DEPARTMENTS, dtype=object)[true_dep],
        }
    )
    return Simulation(
        tables=tables,
        oracle=oracle,
        titles=titles,
        start=start_ts,
        end=end_ts,
        label_rate=label_rate,
        oracle_auc=auc(label[observed], o_p[observed]),
        churn_oracle=churn_oracle,
        nbo_oracle=nbo_oracle,
        churn_label_rate=customers.label_rate,
        churn_oracle_auc=customers.oracle_auc,
    )


def _subscriptions(customers: cust.CustomerSim, account_ids: np.ndarray) -> pd.DataFrame:
    order = np.lexsort((customers.sub_start, customers.sub_account))
    return pd.DataFrame(
        {
            "account_id": account_ids[customers.sub_account[order]],
            "started_at": _to_ts(customers.sub_start[order]),
            "ended_at": _to_ts_or_nat(customers.sub_end[order]),
            "mrr": customers.sub_mrr[order],
            "seats": customers.sub_seats[order],
            "plan": np.array(cust.PLANS, dtype=object)[customers.sub_plan[order]],
        }
    )


def _to_ts_or_nat(seconds: np.ndarray) -> pd.Series:
    """Like ``_to_ts``, with -1 meaning "not yet" (NaT)."""
    out = _to_ts(np.where(seconds < 0, 0, seconds))
    return out.where(pd.Series(seconds >= 0), pd.NaT)


def _properties(rng: np.random.Generator, e_type: np.ndarray) -> np.ndarray:
    pools = [PROPERTY_POOLS[name] for name in EVENT_TYPES]
    sizes = np.array([len(p) for p in pools])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    flat = np.array([v for p in pools for v in p], dtype=object)
    pick = (rng.random(len(e_type)) * sizes[e_type]).astype(np.int64)
    return flat[offsets[e_type] + np.minimum(pick, sizes[e_type] - 1)]


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by ranks (ties averaged); NaN when only one class is present."""
    y = np.asarray(y, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(score).rank(method="average").to_numpy()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------


def generate(
    n_leads: int,
    seed: int,
    start: object = "2026-01-05",
    weeks: int = 39,
    *,
    out_dir: str | Path,
    progress: bool = True,
    offer_effect_scale: float = 1.0,
) -> dict:
    """Simulate and write ``<out_dir>/raw/*.parquet`` + manifest and ``<out_dir>/oracle/``.

    ``start`` is moved back to its Monday; the data end is ``start + weeks``. Returns a summary:
    counts, lead conversion rate, the 30-day label rate over fully observed snapshot rows, the
    oracle's AUC against that label, and the seconds taken.
    """
    from core.tables import write_tables

    began = time.perf_counter()
    start_ts = _start_monday(start)
    end_ts = start_ts + pd.Timedelta(weeks=weeks)
    if end_ts > pd.Timestamp.now(tz="UTC"):
        raise ValueError(
            f"data end {end_ts.isoformat()} is in the future; choose an earlier start "
            "or fewer weeks"
        )
    sim = simulate(
        n_leads, seed, start=start_ts, weeks=weeks, progress=progress,
        offer_effect_scale=offer_effect_scale,
    )  # fmt: skip
    out = Path(out_dir)
    raw_dir = out / "raw"
    write_tables(sim.tables, raw_dir)
    oracle_dir = out / "oracle"
    oracle_dir.mkdir(parents=True, exist_ok=True)
    sim.oracle.to_parquet(oracle_dir / "mql_oracle.parquet", index=False)
    sim.titles.to_parquet(oracle_dir / "titles.parquet", index=False)
    sim.churn_oracle.to_parquet(oracle_dir / "churn_oracle.parquet", index=False)
    sim.nbo_oracle.to_parquet(oracle_dir / "nbo_oracle.parquet", index=False)
    manifest = {
        "seed": int(seed),
        "leads": int(n_leads),
        "accounts": len(sim.tables["accounts"]),
        "start": sim.start.isoformat(),
        "end": sim.end.isoformat(),
        "generated_at": pd.Timestamp.now(tz="UTC").isoformat(),
    }
    (raw_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    n_conv = len(sim.tables["opportunities"])
    return {
        "out_dir": str(out),
        "leads": int(n_leads),
        "accounts": manifest["accounts"],
        "events": len(sim.tables["events"]),
        "opportunities": n_conv,
        "lead_conversion_rate": n_conv / n_leads,
        "mql_label_rate": sim.label_rate,
        "oracle_rows": len(sim.oracle),
        "oracle_auc": sim.oracle_auc,
        "customers": int(sim.tables["subscriptions"]["account_id"].nunique()),
        "churn_label_rate": sim.churn_label_rate,
        "churn_oracle_auc": sim.churn_oracle_auc,
        "offer_exposures": len(sim.tables["offer_exposures"]),
        "start": manifest["start"],
        "end": manifest["end"],
        "seconds": round(time.perf_counter() - began, 2),
    }
