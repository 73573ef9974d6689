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
opportunity created before ``t``, ``p_true`` is the probability of an opportunity within 30 days
given everything the generator knows at ``t``: the observables plus the latent state (the lead's
intent drift, its account's buying window and its own burst with what remains of them, its
novelty). ``h_t`` holds for the first week only; later weeks' hazards move with events not yet
seen, so "the hazard stays at h_t" would be a poor yardstick (a model that learns where the hazard
is heading beats it). Instead ``MC_PATHS`` futures of the 30 days are simulated from the state at
``t``, on a random stream of their own so that the data do not depend on them: intent, every
lead's events, the windows and recency the hazard reads, and each week's hazard from them by
``mql_logit``. The lead's own conversion is integrated out: ``p_true = 1 - mean over paths of
prod_k (1 - s_k h_k)``, with ``h_0 = h_t`` and ``s_k`` the share of week ``k`` inside the window
(1 for four weeks, then the first 2 days of the fifth: an opportunity's time is uniform in its
week). Colleagues convert on the paths too and then engage at ``POST_CONVERSION_FACTOR``, which
the lead's colleague features see; the one simplification is that on a path where the lead
itself converts, its colleagues see its events thinned while its own hazards keep counting, an
effect on its own probability of second order. No model can beat this probability in
expectation (it knows the latent state); a good one comes close. Snapshots whose window passes
the data end have no label and get the persistence value ``1 - (1 - h_t) ** (30 / 7)``.

It is written to ``<out>/oracle/mql_oracle.parquet``, with the weekly hazard ``h_t`` as
``hazard_7d``, beside ``<out>/oracle/titles.parquet`` (each lead's canonical
seniority/department, for judging the title parser), ``churn_oracle.parquet`` and
``nbo_oracle.parquet`` (see those modules). Oracle files are for evaluation only.
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
from tqdm.auto import tqdm

from core.config import ViolationRates
from core.contract import EVENT_TYPES, LEAD_SOURCES
from core.errors import InputError
from core.tables import write_tables
from core.timegrid import snapshot_grid, to_utc
from core.tracking import DEFAULT_PLAN, TrackingPlan, check_events, load_plan, write_quarantine
from synthetic import customers as cust
from synthetic import exposures as expo
from synthetic.stats import auc, sigmoid
from synthetic.violations import deliver

SOURCE = "synthetic"  # the tracking plan's source of the generator's event loads
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
    t0, n = int(start_ts.timestamp()), int(n_leads)
    # one stream per step, so that each step's draws do not depend on the others'; within a
    # stream the order of the draws is part of the output for a seed
    # (the ninth, the MQL oracle's futures, came last: the eight before it are unchanged)
    streams = np.random.SeedSequence(seed).spawn(9)
    rng_acc, rng_lead, rng_title, rng_intent, rng_event, rng_opp, rng_cust, rng_offer = (
        np.random.default_rng(s) for s in streams[:8]
    )
    rng_oracle = np.random.default_rng(streams[8])
    accounts = _draw_accounts(rng_acc, n, t0)
    installed, installed_start = _draw_installed_base(rng_cust, len(accounts.sizes), t0)
    leads = _draw_leads(rng_lead, rng_cust, n, accounts.sizes, installed, t0, weeks * WEEK_S)
    acc_of = leads.acc_of
    titles = _draw_titles(rng_title, n)
    profile = _lead_profile(accounts.industry[acc_of], accounts.employees[acc_of], titles)
    behaviour = _lead_behaviour(leads, accounts.intent[acc_of], titles.true_department)
    lead_weeks = _simulate_lead_weeks(
        rng_intent, rng_event, rng_opp, rng_oracle, t0=t0, weeks=weeks, acc_of=acc_of,
        n_acc=len(accounts.sizes), created=leads.created, profile=profile, behaviour=behaviour,
        campaigns=set(expo.campaign_weeks(weeks)), progress=progress,
    )  # fmt: skip
    customers = _simulate_customers(
        rng_cust, lead_weeks, t0=t0, weeks=weeks, leads=leads, employees=accounts.employees,
        installed=installed, installed_start=installed_start, progress=progress,
    )  # fmt: skip
    exposures = _offer_experiment(
        rng_offer, lead_weeks.campaign_own30, t0=t0, created=leads.created,
        opp_time=lead_weeks.opp_time, acc_of=acc_of, employees=accounts.employees,
        profile=profile, customers=customers, scale=offer_effect_scale,
    )  # fmt: skip
    account_ids = format_ids("A", np.arange(1, len(accounts.sizes) + 1), 6)
    lead_ids = format_ids("L", np.arange(1, n + 1), 7)
    lead_acc_ids = account_ids[acc_of]
    acc_created = _account_created(
        accounts.created_draw, acc_of, leads.created, installed, installed_start
    )
    events = _sort_events(lead_weeks.events, _customer_usage(customers))
    opps = _draw_opportunities(
        rng_opp, lead_weeks.converted_week, lead_weeks.opp_time,
        accounts.employees[acc_of], acc_of, installed, customers,
    )  # fmt: skip
    tables = {
        "accounts": _accounts_table(account_ids, accounts, acc_created),
        "leads": _leads_table(lead_ids, account_ids, leads, titles.text, accounts.domains),
        "events": _events_table(rng_event, lead_ids, lead_acc_ids, *events),
        "opportunities": _opportunities_table(lead_ids, lead_acc_ids, lead_weeks.opp_time, *opps),
        "subscriptions": _subscriptions(customers, account_ids),
        "offer_exposures": _exposures_table(lead_ids, exposures),
    }
    ticks = snapshot_grid(start_ts, end_ts)  # weekly, ends on the data end (a week boundary)
    oracle, label_rate, oracle_auc = _mql_oracle(lead_ids, ticks, lead_weeks, t0, weeks * WEEK_S)
    return Simulation(
        tables=tables,
        oracle=oracle,
        titles=_titles_table(lead_ids, titles),
        start=start_ts,
        end=end_ts,
        label_rate=label_rate,
        oracle_auc=oracle_auc,
        churn_oracle=_churn_oracle_table(account_ids, ticks, customers),
        nbo_oracle=_nbo_oracle_table(lead_ids, exposures),
        churn_label_rate=customers.label_rate,
        churn_oracle_auc=customers.oracle_auc,
    )


# ----------------------------------------------------------------------------------------------
# Accounts and leads
# ----------------------------------------------------------------------------------------------

_NEVER = np.iinfo(np.int64).max
ACCOUNT_SIZE_P = (0.22, 0.17, 0.14, 0.11, 0.09, 0.075, 0.06, 0.05, 0.045, 0.04)  # 1..10 leads


@dataclass(frozen=True)
class _Accounts:
    """The drawn accounts, one entry per account."""

    sizes: np.ndarray  # leads per account
    industry: np.ndarray  # indices into INDUSTRIES
    employees: np.ndarray
    revenue: np.ndarray
    country: np.ndarray  # indices into COUNTRIES
    domains: np.ndarray
    intent: np.ndarray  # the latent account intent its leads share
    created_draw: np.ndarray  # before it is moved ahead of its first lead (_account_created)


def _account_sizes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Leads per account (1-10), as many accounts as it takes to hold exactly ``n`` leads."""
    sizes = 1 + _choice(rng, np.array(ACCOUNT_SIZE_P), n)
    cum = np.cumsum(sizes)
    n_acc = int(np.searchsorted(cum, n) + 1)
    sizes = sizes[:n_acc].copy()
    sizes[-1] -= int(cum[n_acc - 1] - n)
    return sizes


def _draw_accounts(rng: np.random.Generator, n: int, t0: int) -> _Accounts:
    """Accounts for ``n`` leads: firmographics, a domain, the latent intent and a creation time."""
    sizes = _account_sizes(rng, n)
    n_acc = len(sizes)
    industry = _choice(rng, INDUSTRY_P, n_acc)
    log_emp = np.log(120) + 0.35 * np.log(sizes) + rng.normal(0, 1.5, n_acc)
    employees = np.clip(np.round(np.exp(log_emp)), 5, 50_000).astype(np.int64)
    rev_per_emp = np.exp(np.log(160_000) + rng.normal(0, 0.45, n_acc))
    revenue = np.round(employees * rev_per_emp, -3)
    country = _choice(rng, COUNTRY_P, n_acc)
    heads = rng.integers(0, len(NAME_HEADS), n_acc)
    heads2 = rng.integers(0, len(NAME_HEADS), n_acc)
    tails = rng.integers(0, len(NAME_TAILS), n_acc)
    form = rng.random(n_acc)  # head+tail, head+head, head+head+tail: few clashes to number
    tld_local = rng.random(n_acc) < 0.45
    intent = rng.normal(0, 1, n_acc)
    created_draw = t0 + (rng.uniform(-3 * 365, 14, n_acc) * DAY_S).astype(np.int64)
    return _Accounts(
        sizes=sizes,
        industry=industry,
        employees=employees,
        revenue=revenue,
        country=country,
        domains=_domains(heads, heads2, tails, form, tld_local, country),
        intent=intent,
        created_draw=created_draw,
    )


def _domains(
    heads: np.ndarray,
    heads2: np.ndarray,
    tails: np.ndarray,
    form: np.ndarray,
    tld_local: np.ndarray,
    country: np.ndarray,
) -> np.ndarray:
    """Company domains from name parts; a clash gets a number, some use the country's TLD."""
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
    return (names + pd.Series(tld)).to_numpy(dtype=object)


def _draw_installed_base(
    rng: np.random.Generator, n_acc: int, t0: int
) -> tuple[np.ndarray, np.ndarray]:
    """The installed base: which accounts were customers before the data start, and since when."""
    installed = rng.random(n_acc) < cust.INSTALLED_BASE_P
    installed_start = t0 - (rng.uniform(63, 700, n_acc) * DAY_S).astype(np.int64)
    return installed, installed_start


@dataclass(frozen=True)
class _Leads:
    """The drawn leads, one entry per lead, in creation order (the lead ids follow it)."""

    acc_of: np.ndarray  # account index
    created: np.ndarray  # epoch seconds
    source: np.ndarray  # indices into LEAD_SOURCES
    first_name: np.ndarray  # indices into FIRST_NAMES
    last_name: np.ndarray  # indices into LAST_NAMES
    deviation: np.ndarray  # the lead's intent around its account's
    email_response: np.ndarray  # multiplies its email open and click rates
    adopter: np.ndarray  # uses the product once its account is a customer


def _draw_lead_times(
    rng: np.random.Generator,
    rng_import: np.random.Generator,
    n: int,
    sizes: np.ndarray,
    installed: np.ndarray,
    t0: int,
    horizon: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(account, creation time) per lead, sorted by creation time. Contacts of the installed
    base were imported into the CRM before the data start (drawn from ``rng_import``)."""
    acc_of = np.repeat(np.arange(len(sizes)), sizes)
    early = rng.random(n) < 0.3  # a backlog imported or captured in the first weeks
    created_off = np.where(early, rng.uniform(0, 3 * WEEK_S, n), rng.uniform(0, horizon - 3600, n))
    created = t0 + created_off.astype(np.int64)
    imported = installed[acc_of]  # contacts of installed-base customers, in the CRM already
    created = np.where(
        imported, t0 - (rng_import.uniform(63, 150, n) * DAY_S).astype(np.int64), created
    )
    order = np.lexsort((acc_of, created))  # lead ids follow creation time
    return acc_of[order], created[order]


def _draw_leads(
    rng: np.random.Generator,
    rng_import: np.random.Generator,
    n: int,
    sizes: np.ndarray,
    installed: np.ndarray,
    t0: int,
    horizon: int,
) -> _Leads:
    """``n`` leads spread over the accounts (``sizes`` each): when, from where, who."""
    acc_of, created = _draw_lead_times(rng, rng_import, n, sizes, installed, t0, horizon)
    return _Leads(
        acc_of=acc_of,
        created=created,
        source=_choice(rng, SOURCE_P, n),
        first_name=rng.integers(0, len(FIRST_NAMES), n),
        last_name=rng.integers(0, len(LAST_NAMES), n),
        deviation=rng.normal(0, 0.6, n),
        email_response=np.exp(rng.normal(-0.1, 0.7, n)),
        adopter=rng.random(n) < 0.7,
    )


def _account_created(
    created_draw: np.ndarray,
    acc_of: np.ndarray,
    lead_created: np.ndarray,
    installed: np.ndarray,
    installed_start: np.ndarray,
) -> np.ndarray:
    """Account creation times: before the account's first lead, and before an installed-base
    subscription began."""
    first_seen = np.full(len(created_draw), _NEVER)
    np.minimum.at(first_seen, acc_of, lead_created)
    acc_created = np.minimum(created_draw, first_seen - 3600)
    return np.where(installed, np.minimum(acc_created, installed_start - DAY_S), acc_created)


def _emails(first_name: np.ndarray, last_name: np.ndarray, domain: np.ndarray) -> np.ndarray:
    """first.last@domain per lead, numbered where two people at one domain share a name."""
    local = (
        pd.Series(np.array(FIRST_NAMES, dtype=object)[first_name])
        + "."
        + pd.Series(np.array(LAST_NAMES, dtype=object)[last_name])
    )
    addr = local + "@" + pd.Series(domain)
    dup = addr.groupby(addr).cumcount().to_numpy()
    local = local.where(dup == 0, local + (dup + 1).astype(str))
    return (local + "@" + pd.Series(domain)).to_numpy(dtype=object)


@dataclass(frozen=True)
class _Titles:
    """Each lead's job title as typed, its canonical meaning and what the text tells."""

    text: np.ndarray  # object: the raw title, "" or None
    true_seniority: np.ndarray  # indices into SENIORITIES
    true_department: np.ndarray  # indices into DEPARTMENTS
    seniority: np.ndarray  # as written: "unknown" for an empty title
    department: np.ndarray  # as written: "other" for an empty title


def _draw_titles(rng: np.random.Generator, n: int) -> _Titles:
    """Job titles: canonical pair -> raw variant -> noise; empty for a few."""
    texts, pair_of_variant, variant_w, pair_sen, pair_dep = _title_table()
    variant = _choice(rng, variant_w, n)
    noise = _choice(rng, TITLE_NOISE_P, n)
    title = texts[variant, noise]
    empty_draw = rng.random(n)
    title = np.where(empty_draw < EMPTY_TITLE_P * 0.6, "", title).astype(object)
    title[empty_draw >= 1 - EMPTY_TITLE_P * 0.4] = None
    has_title = (empty_draw >= EMPTY_TITLE_P * 0.6) & (empty_draw < 1 - EMPTY_TITLE_P * 0.4)
    true_sen = pair_sen[pair_of_variant[variant]]
    true_dep = pair_dep[pair_of_variant[variant]]
    return _Titles(
        text=title,
        true_seniority=true_sen,
        true_department=true_dep,
        # what the title text tells: an empty title carries no seniority/department
        seniority=np.where(has_title, true_sen, SENIORITIES.index("unknown")),
        department=np.where(has_title, true_dep, DEPARTMENTS.index("other")),
    )


@dataclass(frozen=True)
class _Profile:
    """What the hazard observes about each lead that does not change: fit and title."""

    industry_fit: np.ndarray  # 0/1
    size_fit: np.ndarray  # 0/1
    seniority: np.ndarray  # as the title tells
    department: np.ndarray


def _lead_profile(industry: np.ndarray, employees: np.ndarray, titles: _Titles) -> _Profile:
    """The static observables from each lead's account ``industry`` and ``employees``."""
    industry_fit = np.isin(industry, [INDUSTRIES.index(i) for i in TARGET_INDUSTRIES])
    size_fit = (employees >= FIT_EMPLOYEES[0]) & (employees <= FIT_EMPLOYEES[1])
    return _Profile(
        industry_fit=industry_fit.astype(float),
        size_fit=size_fit.astype(float),
        seniority=titles.seniority,
        department=titles.department,
    )


@dataclass(frozen=True)
class _Behaviour:
    """What drives each lead's events and does not change."""

    static_intent: np.ndarray  # source shift + account intent + the lead's deviation
    type_mult: np.ndarray  # (n, N_TYPES) multipliers of the weekly rates
    first_event: np.ndarray  # the touch that created the lead (index into EVENT_TYPES)


def _lead_behaviour(
    leads: _Leads, account_intent: np.ndarray, department: np.ndarray
) -> _Behaviour:
    """Static intent and per-type rate multipliers; ``account_intent`` and the canonical
    ``department`` are per lead."""
    tech = np.isin(department, [DEPARTMENTS.index(d) for d in TECH_DEPARTMENTS])
    static_intent = (
        -0.45 + np.array(SOURCE_INTENT)[leads.source] + 0.7 * account_intent + leads.deviation
    )
    type_mult = np.ones((len(leads.source), N_TYPES))
    type_mult[:, T["email_open"]] = leads.email_response
    type_mult[:, T["email_click"]] = leads.email_response
    type_mult[:, T["docs_view"]] = np.where(tech, 2.0, 0.5)
    first_event = np.array([T[e] for e in SOURCE_FIRST_EVENT])[leads.source]
    return _Behaviour(static_intent, type_mult, first_event)


# ----------------------------------------------------------------------------------------------
# The weekly loop: hazard, conversions, intent, events
# ----------------------------------------------------------------------------------------------

INTENT_AR_PHI, INTENT_AR_SIGMA = 0.85, 0.35  # the slow AR(1) drift of a lead's intent
_H_OF_TYPE = np.full(N_TYPES, -1)  # position in HAZARD_TYPES of each event type, -1 if none
_H_OF_TYPE[[T[h] for h in HAZARD_TYPES]] = np.arange(len(HAZARD_TYPES))


@dataclass(frozen=True)
class _History:
    """What the hazard's windows read, kept as the weeks go by.

    Per-lead weekly counts of the hazard's event types sit in a ring of the last RING weeks (the
    90-day window reaches 13 weeks back), with the counts of each week's last 2 days and its
    demo requests in the last 6 days for the windows' partial weeks."""

    week_counts: np.ndarray  # (RING, n, n_h)
    tail2: np.ndarray  # (RING, n, n_h): events in the week's last 2 days
    tail6_demo: np.ndarray  # (RING, n): demo requests in the week's last 6 days
    last_event: np.ndarray  # time of the last engagement event, -1 if none
    trial_seen: np.ndarray  # has signed up for a trial

    @classmethod
    def empty(cls, n: int) -> _History:
        n_h = len(HAZARD_TYPES)
        return cls(
            week_counts=np.zeros((RING, n, n_h), dtype=np.int16),
            tail2=np.zeros((RING, n, n_h), dtype=np.int16),
            tail6_demo=np.zeros((RING, n), dtype=np.int16),
            last_event=np.full(n, -1, dtype=np.int64),
            trial_seen=np.zeros(n, dtype=bool),
        )


def _own_windows(history: _History, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each lead's counts at tick ``w`` (events strictly before it): the hazard types in the last
    7 and 30 days, and demo requests in the last 90 days.

    [t-7d, t) is week w-1; [t-30d, t) weeks w-4..w-1 plus the last 2 days of week w-5;
    [t-90d, t) weeks w-12..w-1 plus the last 6 days of week w-13."""
    counts = history.week_counts
    last4 = [(w - k) % RING for k in range(1, min(w, 4) + 1)]
    last12 = [(w - k) % RING for k in range(1, min(w, 12) + 1)]
    own7 = counts[(w - 1) % RING].astype(np.float64) if w >= 1 else np.zeros(counts.shape[1:])
    own30 = counts[last4].sum(axis=0, dtype=np.float64)
    if w >= 5:
        own30 = own30 + history.tail2[(w - 5) % RING]
    demo90 = counts[last12, :, H["demo_request"]].sum(axis=0, dtype=np.float64)
    if w >= 13:
        demo90 = demo90 + history.tail6_demo[(w - 13) % RING]
    return own7, own30, demo90


def _tick_hazard(
    t: int, w: int, history: _History, acc_of: np.ndarray, n_acc: int, profile: _Profile
) -> tuple[np.ndarray, np.ndarray]:
    """Every lead's weekly conversion hazard at tick ``w`` (time ``t``) from what is observable
    then, and its own 30-day counts (the offer experiment reads them)."""
    own7, own30, demo90 = _own_windows(history, w)
    pricing30 = own30[:, H["pricing_view"]]
    col_pricing = np.bincount(acc_of, weights=pricing30, minlength=n_acc)[acc_of] - pricing30
    col_demo = np.bincount(acc_of, weights=demo90, minlength=n_acc)[acc_of] - demo90
    last = history.last_event
    days_since = np.where(last >= 0, (t - last) / DAY_S, np.nan)
    z = mql_logit(
        own7, own30, days_since, profile.industry_fit, profile.size_fit, profile.seniority,
        profile.department, col_pricing, col_demo,
    )  # fmt: skip
    return sigmoid(z), own30


def _draw_conversions(
    rng: np.random.Generator, eligible: np.ndarray, hazard: np.ndarray, t: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``eligible`` leads that convert during ``(t, t + 7d)``, and their opportunity times."""
    conv = eligible[rng.random(len(eligible)) < hazard[eligible]]
    return conv, t + 1 + (rng.random(len(conv)) * (WEEK_S - 1)).astype(np.int64)


@dataclass(frozen=True)
class _Intent:
    """The moving parts of intent: the AR(1) drift per lead, the accounts' buying windows and
    the leads' own bursts."""

    ar: np.ndarray
    acc_window: np.ndarray  # bool per account
    lead_burst: np.ndarray  # bool per lead

    @classmethod
    def initial(cls, rng: np.random.Generator, n: int, n_acc: int) -> _Intent:
        """The drift from its stationary distribution; no windows or bursts open."""
        sd = INTENT_AR_SIGMA / np.sqrt(1 - INTENT_AR_PHI**2)
        return cls(rng.normal(0, sd, n), np.zeros(n_acc, dtype=bool), np.zeros(n, dtype=bool))

    def step(self, rng: np.random.Generator) -> _Intent:
        """A week later: windows last about 6 weeks, bursts about 3. The arrays may carry a
        leading axis of simulated futures (the oracle's), drawn in the same order."""
        n, n_acc = self.ar.shape, self.acc_window.shape
        ar = INTENT_AR_PHI * self.ar + rng.normal(0, INTENT_AR_SIGMA, n)
        acc_window = np.where(self.acc_window, rng.random(n_acc) > 1 / 6, rng.random(n_acc) < 0.02)
        lead_burst = np.where(self.lead_burst, rng.random(n) > 1 / 3, rng.random(n) < 0.03)
        return _Intent(ar, acc_window, lead_burst)

    def of_leads(
        self, static_intent: np.ndarray, acc_of: np.ndarray, created: np.ndarray, t: int
    ) -> np.ndarray:
        """Each lead's intent in the week from ``t``, with a novelty boost in its first weeks."""
        age_weeks = np.maximum(0.0, (t - created) / WEEK_S)
        return (
            static_intent
            + self.ar
            + 1.2 * self.acc_window[..., acc_of]
            + 0.8 * self.lead_burst
            + 0.6 * np.exp(-age_weeks / 2.0)
        )


def _touch_rates(
    intent: np.ndarray, type_mult: np.ndarray, post: np.ndarray, types: np.ndarray | slice
) -> np.ndarray:
    """(len(types), leads) weekly rates of the event ``types`` from intent, types first;
    ``post`` marks the leads converted before this week. ``intent`` and ``post`` may carry a
    leading axis of simulated futures (the oracle's: the types-first layout and the in-place
    products keep those large arrays fast)."""
    lead_axes = (1,) * intent.ndim
    rates = np.exp(BETA[types].reshape(-1, *lead_axes) * intent)
    rates *= BASE_RATE[types].reshape(-1, *lead_axes)
    rates *= type_mult.T[types].reshape(-1, *lead_axes[1:], type_mult.shape[0])
    rates[:, post] *= POST_CONVERSION_FACTOR
    return rates


def _event_rates(
    intent: np.ndarray, type_mult: np.ndarray, post: np.ndarray, trial_seen: np.ndarray
) -> np.ndarray:
    """(leads, N_TYPES) weekly event rates of the given leads; ``post`` marks those converted
    before this week."""
    rates = np.ascontiguousarray(_touch_rates(intent, type_mult, post, slice(None)).T)
    # trial usage until the lead converts; customers' usage comes from synthetic.customers
    trial_rate = np.where(trial_seen & ~post, TRIAL_ACTIVE_RATE, 0.0)
    rates[:, T["product_active"]] = trial_rate * np.exp(0.3 * intent)
    rates[post, T["trial_signup"]] = POST_TRIAL_RATE
    return rates


def _draw_events(
    rng: np.random.Generator, rates: np.ndarray, leads: np.ndarray, lo: np.ndarray, t_next: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poisson counts per lead and type over ``[lo, t_next)``, at times uniform within it:
    (lead, type, time) per event."""
    frac = (t_next - lo) / WEEK_S
    counts = rng.poisson(rates * frac[:, None])
    flat = np.repeat(np.arange(counts.size), counts.ravel())
    e_lead = leads[flat // N_TYPES]
    e_type = (flat % N_TYPES).astype(np.int8)
    e_lo = lo[flat // N_TYPES]
    return e_lead, e_type, _uniform_int(rng, e_lo, np.full(len(e_lo), t_next))


def _sort_events(
    *triples: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (lead, type, time) events of all ``triples`` together, in time, lead, type order."""
    e_lead, e_type, e_time = (np.concatenate(parts) for parts in zip(*triples, strict=True))
    order = np.lexsort((e_type, e_lead, e_time))
    return e_lead[order], e_type[order], e_time[order]


def _week_events(
    rng: np.random.Generator,
    w: int,
    t: int,
    intent: np.ndarray,
    created: np.ndarray,
    converted_week: np.ndarray,
    trial_seen: np.ndarray,
    behaviour: _Behaviour,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The events of week ``w`` (from ``t``) of the leads that exist during it, with the
    creation touch of the leads created in it, in time order."""
    t_next = t + WEEK_S
    active = np.flatnonzero(created < t_next)
    lo = np.maximum(created[active], t)
    post = (converted_week[active] >= 0) & (converted_week[active] < w)
    rates = _event_rates(intent[active], behaviour.type_mult[active], post, trial_seen[active])
    drawn = _draw_events(rng, rates, active, lo, t_next)
    born = np.flatnonzero((created >= t) & (created < t_next))  # creation touch at created_at
    touches = (born, behaviour.first_event[born].astype(np.int8), created[born])
    return _sort_events(drawn, touches)


def _record_week(
    history: _History,
    w: int,
    t_next: int,
    e_lead: np.ndarray,
    e_type: np.ndarray,
    e_time: np.ndarray,
) -> None:
    """Add week ``w``'s events (ending at ``t_next``) to what the next ticks observe."""
    n, n_h = history.week_counts.shape[1:]
    hidx = _H_OF_TYPE[e_type]
    m = hidx >= 0
    key = e_lead[m].astype(np.int64) * n_h + hidx[m]
    slot = w % RING  # overwrites week w - RING, which no window reaches any more
    history.week_counts[slot] = np.bincount(key, minlength=n * n_h).reshape(n, n_h)
    late2 = e_time[m] >= t_next - 2 * DAY_S
    history.tail2[slot] = np.bincount(key[late2], minlength=n * n_h).reshape(n, n_h)
    demo_late = (e_type == T["demo_request"]) & (e_time >= t_next - 6 * DAY_S)
    history.tail6_demo[slot] = np.bincount(e_lead[demo_late], minlength=n)
    # recency as the feature tables read it: engagement only, product usage is not a touch
    engaged = e_type != T["product_active"]
    np.maximum.at(history.last_event, e_lead[engaged], e_time[engaged])
    history.trial_seen[e_lead[e_type == T["trial_signup"]]] = True


# ----------------------------------------------------------------------------------------------
# The oracle: the label window simulated forward from the generator's state
# ----------------------------------------------------------------------------------------------

MC_PATHS = 64  # simulated futures per tick for the MQL oracle
_AHEAD = LABEL_DAYS // 7  # full weeks in the window; the week from tick _AHEAD is in it 2 days
# an opportunity of the week from tick _AHEAD falls in the window's last 2 days with this
# probability (its time is uniform in the week, see _draw_conversions)
_LAST_WEEK_SHARE = (LABEL_DAYS * DAY_S - _AHEAD * WEEK_S) / (WEEK_S - 1)
# every marketing touch, the hazard's types first: the others only move the recency feature
_TOUCHES = np.array(
    [T[h] for h in HAZARD_TYPES]
    + [T[e] for e in EVENT_TYPES if e not in HAZARD_TYPES and e != "product_active"]
)
_SEEN = [H["pricing_view"], H["demo_request"]]  # the counts colleagues' hazards read
# sums the _TOUCHES rates into (hazard types, other touches)
_TOUCH_GROUPS = np.zeros((len(_TOUCHES), 2))
_TOUCH_GROUPS[: len(HAZARD_TYPES), 0] = _TOUCH_GROUPS[len(HAZARD_TYPES) :, 1] = 1.0


def _known_windows(history: _History, w: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The part before tick ``w`` of every lead's windows at tick ``w + k`` (k <= _AHEAD): the
    hazard types' 30-day counts and the demo requests' 90-day count (see ``_own_windows``)."""
    u, counts = w + k, history.week_counts
    own30 = counts[[j % RING for j in range(max(0, u - 4), w)]].sum(axis=0, dtype=np.float64)
    if u >= 5:  # week u - 5 is before w: k <= 4
        own30 = own30 + history.tail2[(u - 5) % RING]
    weeks90 = [j % RING for j in range(max(0, u - 12), w)]
    demo90 = counts[weeks90, :, H["demo_request"]].sum(axis=0, dtype=np.float64)
    if u >= 13:
        demo90 = demo90 + history.tail6_demo[(u - 13) % RING]
    return own30, demo90


@dataclass
class _Futures:
    """``paths`` simulated futures of the leads in scope from a tick on, as the hazard reads
    them: counts are (types, paths, leads) arrays of ``HAZARD_TYPES`` or ``_SEEN``, the rest
    (paths, leads)."""

    week: np.ndarray  # the last simulated week's counts: the 7-day window
    own: np.ndarray  # all simulated weeks' counts, as the lead itself produced them
    seen: np.ndarray  # pricing views and demo requests as colleagues see them (_SEEN)
    last_event: np.ndarray  # time of the last engagement event (seconds), -1 if none
    converted: np.ndarray  # tick (0.._AHEAD - 1) of the simulated conversion, -1 if none


def _future_hazard(
    futures: _Futures,
    known: tuple[np.ndarray, np.ndarray],
    t: int,
    rows: np.ndarray,
    acc: np.ndarray,
    n_acc: int,
    profile: _Profile,
) -> np.ndarray:
    """The weekly hazard at time ``t`` on every path, of the leads ``rows`` (positions in the
    scope): ``mql_logit`` on the known part of the windows (``known``: (types, leads) 30-day
    counts, 90-day demo requests) plus the simulated weeks. The lead's own counts are as it
    produced them; its colleagues' as they were recorded (thinned after a colleague's
    simulated conversion)."""
    paths = futures.last_event.shape[0]
    known30, known_demo90 = known
    seen_pricing = known30[H["pricing_view"]] + futures.seen[0]
    seen_demo = known_demo90 + futures.seen[1]
    cell = (np.arange(paths)[:, None] * n_acc + acc).ravel()

    def colleagues(seen: np.ndarray) -> np.ndarray:
        per_account = np.bincount(cell, weights=seen.ravel(), minlength=paths * n_acc)
        return (per_account.reshape(paths, n_acc)[:, acc[rows]] - seen[:, rows]).ravel()

    def per_path(static: np.ndarray) -> np.ndarray:
        return np.broadcast_to(static[rows], (paths, len(rows))).ravel()

    n_h = len(HAZARD_TYPES)
    last = futures.last_event[:, rows]
    z = mql_logit(
        futures.week[:, :, rows].reshape(n_h, -1).T,  # (rows, types) views: no copies
        (known30[:, None, rows] + futures.own[:, :, rows]).reshape(n_h, -1).T,
        np.where(last >= 0, (t - last) / DAY_S, np.nan).ravel(),
        per_path(profile.industry_fit), per_path(profile.size_fit),
        per_path(profile.seniority), per_path(profile.department),
        colleagues(seen_pricing), colleagues(seen_demo),
    )  # fmt: skip
    return sigmoid(z).reshape(last.shape)


def _future_week(
    rng: np.random.Generator,
    futures: _Futures,
    k: int,
    t: int,
    intent: np.ndarray,
    created: np.ndarray,
    post: np.ndarray,
    behaviour: _Behaviour,
) -> None:
    """Add the k-th simulated week (from ``t``) to ``futures``: the hazard types' counts, the
    creation touches, the last engagement event. ``intent`` is (paths, leads); ``post`` marks
    the leads converted before the snapshot, ``behaviour`` is restricted to the scope."""
    lo = np.maximum(created, t)
    span = np.clip(t + WEEK_S - lo, 0, None)  # 0 for a lead created later
    n_h = len(HAZARD_TYPES)
    rates = _touch_rates(intent, behaviour.type_mult, np.broadcast_to(post, intent.shape), _TOUCHES)
    # the hazard types' counts: their Poisson total, split among the types where it is not 0
    # (the same law as one Poisson per type, at a fifth of the draws)
    hazard_rate = rates[:n_h].sum(axis=0)
    n_hazard = rng.poisson(hazard_rate * (span / WEEK_S)).ravel()
    hit = np.flatnonzero(n_hazard)
    week = np.zeros((n_h, n_hazard.size), dtype=np.int64)
    split = rates[:n_h].reshape(n_h, -1)[:, hit] / hazard_rate.ravel()[hit]
    week[:, hit] = rng.multinomial(n_hazard[hit], split.T).T
    week = week.reshape(n_h, *intent.shape)
    # the last touch of the week: the latest of the hazard types' events (the maximum of c
    # uniform times is lo + span * U ** (1/c)) and of the other touches' (a Poisson process seen
    # back from the week's end: an exponential gap)
    lo_p, span_p = np.broadcast_to(lo, intent.shape), np.broadcast_to(span, intent.shape)
    last = np.full(n_hazard.size, -np.inf)
    last[hit] = lo_p.ravel()[hit] + span_p.ravel()[hit] * rng.random(len(hit)) ** (
        1.0 / n_hazard[hit]
    )
    last = last.reshape(intent.shape)
    gap = rng.exponential(1.0, intent.shape) * (WEEK_S / rates[n_h:].sum(axis=0))
    last = np.maximum(last, np.where(gap <= span_p, t + WEEK_S - gap, -np.inf))
    # the creation touch at created_at, the lead's first event
    born = np.flatnonzero((created >= t) & (created < t + WEEK_S))
    last[:, born] = np.maximum(last[:, born], created[born])
    touch = _H_OF_TYPE[behaviour.first_event[born]]
    week[touch[touch >= 0], :, born[touch >= 0]] += 1
    seen = week[_SEEN]
    # a lead converted before this week on its path produces these at POST_CONVERSION_FACTOR
    # of the rate: thin its draws (its creation touch came before)
    thinned = (futures.converted >= 0) & (futures.converted < k)
    seen[:, thinned] = rng.binomial(seen[:, thinned], POST_CONVERSION_FACTOR)
    futures.week = week
    futures.own += week
    futures.seen += seen
    futures.last_event = np.where(last > -np.inf, last, futures.last_event)


def _forward_mql_probability(
    rng: np.random.Generator,
    *,
    t: int,
    w: int,
    history: _History,
    intent: _Intent,
    hazard: np.ndarray,
    eligible: np.ndarray,
    converted_week: np.ndarray,
    acc_of: np.ndarray,
    n_acc: int,
    created: np.ndarray,
    profile: _Profile,
    behaviour: _Behaviour,
    paths: int = MC_PATHS,
) -> np.ndarray:
    """P(opportunity within 30 days | everything the generator knows at tick ``w``) of the
    ``eligible`` leads, by simulating ``paths`` futures of every lead existing in the window:
    intent (drift, buying windows, bursts, novelty), events and the hazard at each tick ahead.
    A lead's own conversion is integrated out (a path contributes 1 - prod_k (1 - h_k), with
    only the window's part of the last week); its colleagues convert on their paths and then
    emit at POST_CONVERSION_FACTOR, which their hazards see. ``intent`` is the state before the
    week's step and ``hazard`` every lead's hazard at ``t``."""
    scope = np.flatnonzero(created < t + _AHEAD * WEEK_S)  # every lead that exists in the window
    rows = np.searchsorted(scope, eligible)  # eligible is a subset of scope
    acc, born = acc_of[scope], created[scope]
    shape = (paths, len(scope))
    # the snapshot's own windows must be the ones the hazard read
    _, own30, demo90 = _own_windows(history, w)
    known0 = _known_windows(history, w, 0)
    if not (np.array_equal(own30, known0[0]) and np.array_equal(demo90, known0[1])):
        raise AssertionError("the oracle's windows differ from the hazard's")
    known = [(c30[scope].T, c90[scope]) for c30, c90 in
             (_known_windows(history, w, k) for k in range(_AHEAD + 1))]  # fmt: skip
    n_h = len(HAZARD_TYPES)
    futures = _Futures(
        week=np.zeros((n_h, *shape), dtype=np.int64),
        own=np.zeros((n_h, *shape), dtype=np.int64),
        seen=np.zeros((len(_SEEN), *shape), dtype=np.int64),
        last_event=np.broadcast_to(history.last_event[scope].astype(np.float64), shape).copy(),
        converted=np.full(shape, -1, dtype=np.int8),
    )
    state = _Intent(
        np.broadcast_to(intent.ar[scope], shape).copy(),
        np.broadcast_to(intent.acc_window, (paths, n_acc)).copy(),
        np.broadcast_to(intent.lead_burst[scope], shape).copy(),
    )
    post = converted_week[scope] >= 0
    scoped = _Behaviour(
        behaviour.static_intent[scope], behaviour.type_mult[scope], behaviour.first_event[scope]
    )
    profile = _Profile(
        profile.industry_fit[scope], profile.size_fit[scope], profile.seniority[scope],
        profile.department[scope],
    )  # fmt: skip
    log_survive = np.zeros((paths, len(eligible)))
    for k in range(_AHEAD + 1):
        t_k = t + k * WEEK_S
        if k == _AHEAD:  # only the window's part of this week counts
            h_rows = _future_hazard(futures, known[k], t_k, rows, acc, n_acc, profile)
            log_survive += np.log1p(-_LAST_WEEK_SHARE * h_rows)
            break
        # the leads that may convert at tick k: the eligible ones and those created since
        at_risk = np.flatnonzero((born < t_k) & ~post)
        if k == 0:  # tick 0's hazard is known
            h_now = np.broadcast_to(hazard[scope[at_risk]], (paths, len(at_risk)))
        else:
            h_now = _future_hazard(futures, known[k], t_k, at_risk, acc, n_acc, profile)
        log_survive += np.log1p(-h_now[:, np.searchsorted(at_risk, rows)])
        # the paths' conversions, for what colleagues see afterwards
        converted = futures.converted[:, at_risk]
        converted[(converted < 0) & (rng.random(h_now.shape) < h_now)] = k
        futures.converted[:, at_risk] = converted
        state = state.step(rng)
        _future_week(
            rng, futures, k, t_k, state.of_leads(scoped.static_intent, acc, born, t_k), born,
            post, scoped,
        )  # fmt: skip
    return 1.0 - np.exp(log_survive).mean(axis=0)


@dataclass(frozen=True)
class _LeadWeeks:
    """What the leads' weeks produced."""

    events: tuple[np.ndarray, np.ndarray, np.ndarray]  # (lead, type, time), time-sorted
    converted_week: np.ndarray  # -1 if never
    opp_time: np.ndarray  # int64 max if none
    oracle: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # (lead, tick, p_true, h_t)
    campaign_own30: dict[int, np.ndarray]  # own 30-day counts at the campaign ticks


def _simulate_lead_weeks(
    rng_intent: np.random.Generator,
    rng_event: np.random.Generator,
    rng_opp: np.random.Generator,
    rng_oracle: np.random.Generator,
    *,
    t0: int,
    weeks: int,
    acc_of: np.ndarray,
    n_acc: int,
    created: np.ndarray,
    profile: _Profile,
    behaviour: _Behaviour,
    campaigns: set[int],
    progress: bool,
) -> _LeadWeeks:
    """Run the weekly ticks: at each, the hazard and the oracle rows, then the week's
    conversions, intent and events (see the module docstring). The oracle's futures draw from
    ``rng_oracle`` alone, so the data do not depend on them."""
    n = len(created)
    history = _History.empty(n)
    converted_week = np.full(n, -1)
    opp_time = np.full(n, _NEVER)
    intent = _Intent.initial(rng_intent, n, n_acc)
    oracle_lead, oracle_tick, oracle_p, oracle_h = [], [], [], []
    ev_lead, ev_type, ev_time = [], [], []
    campaign_own30: dict[int, np.ndarray] = {}  # what the offer experiment reads at its ticks
    bar = tqdm(
        total=weeks + 1, desc="simulating weeks", unit="week", disable=None if progress else True
    )
    for w in range(weeks + 1):
        t = t0 + w * WEEK_S
        hazard, own30 = _tick_hazard(t, w, history, acc_of, n_acc, profile)
        if w in campaigns:
            campaign_own30[w] = own30.astype(np.int32)  # counts, exact
        eligible = np.flatnonzero((created < t) & (converted_week < 0))
        oracle_lead.append(eligible.astype(np.int32))
        oracle_tick.append(np.full(len(eligible), w, dtype=np.int16))
        if t + LABEL_DAYS * DAY_S <= t0 + weeks * WEEK_S:
            p_true = _forward_mql_probability(
                rng_oracle, t=t, w=w, history=history, intent=intent, hazard=hazard,
                eligible=eligible, converted_week=converted_week, acc_of=acc_of, n_acc=n_acc,
                created=created, profile=profile, behaviour=behaviour,
            )  # fmt: skip
        else:  # the window passes the data end: no label, persistence is enough
            p_true = 1.0 - (1.0 - hazard[eligible]) ** (LABEL_DAYS / 7)
        oracle_p.append(p_true)
        oracle_h.append(hazard[eligible])
        if w == weeks:  # the end tick only gets oracle rows
            break
        conv, converted_at = _draw_conversions(rng_opp, eligible, hazard, t)
        converted_week[conv] = w
        opp_time[conv] = converted_at
        intent = intent.step(rng_intent)
        e_lead, e_type, e_time = _week_events(
            rng_event, w, t, intent.of_leads(behaviour.static_intent, acc_of, created, t),
            created, converted_week, history.trial_seen, behaviour,
        )  # fmt: skip
        ev_lead.append(e_lead.astype(np.int32))
        ev_type.append(e_type)
        ev_time.append(e_time)
        _record_week(history, w, t + WEEK_S, e_lead, e_type, e_time)
        bar.update(1)
    bar.update(1)  # the end tick, which the loop leaves by its break
    bar.close()
    return _LeadWeeks(
        events=(np.concatenate(ev_lead), np.concatenate(ev_type), np.concatenate(ev_time)),
        converted_week=converted_week,
        opp_time=opp_time,
        oracle=tuple(  # type: ignore[arg-type]
            np.concatenate(parts) for parts in (oracle_lead, oracle_tick, oracle_p, oracle_h)
        ),
        campaign_own30=campaign_own30,
    )


# ----------------------------------------------------------------------------------------------
# Customers and the offer experiment
# ----------------------------------------------------------------------------------------------


def _simulate_customers(
    rng: np.random.Generator,
    lead_weeks: _LeadWeeks,
    *,
    t0: int,
    weeks: int,
    leads: _Leads,
    employees: np.ndarray,
    installed: np.ndarray,
    installed_start: np.ndarray,
    progress: bool,
) -> cust.CustomerSim:
    """The customer weeks, fed with the leads' trial usage and engagement."""
    e_lead, e_type, e_time = lead_weeks.events
    is_product = e_type == T["product_active"]
    return cust.simulate_customers(
        rng,
        t0=t0,
        weeks=weeks,
        acc_of=leads.acc_of,
        lead_created=leads.created,
        adopter=leads.adopter,
        employees=employees,
        installed=installed,
        installed_start=installed_start,
        opp_time=lead_weeks.opp_time,
        trial_usage_lead=e_lead[is_product].astype(np.int64),
        trial_usage_time=e_time[is_product],
        engagement_lead=e_lead[~is_product].astype(np.int64),
        engagement_time=e_time[~is_product],
        progress=progress,
    )


def _customer_usage(customers: cust.CustomerSim) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The customers' product usage as (lead, type, time) events."""
    n = len(customers.usage_lead)
    return (
        customers.usage_lead.astype(np.int32),
        np.full(n, T["product_active"], dtype=np.int8),
        customers.usage_time,
    )


def _campaign_state(
    t: int,
    leads_now: np.ndarray,
    own30: np.ndarray,
    opp_time: np.ndarray,
    acc_of: np.ndarray,
    employees: np.ndarray,
    profile: _Profile,
    is_customer: np.ndarray,
    utilization: np.ndarray,
) -> expo.LeadState:
    """What the feature tables show at campaign tick ``t`` about the existing ``leads_now``;
    ``own30`` holds their 30-day counts, ``is_customer``/``utilization`` are per account."""
    recent_opp = (opp_time < _NEVER) & (opp_time >= t - 90 * DAY_S) & (opp_time < t)
    acc_opps = np.bincount(acc_of, weights=recent_opp, minlength=len(employees))
    acc_now = acc_of[leads_now]
    seniority = profile.seniority[leads_now]
    return expo.LeadState(
        pricing_30d=own30[:, H["pricing_view"]],
        demo_30d=own30[:, H["demo_request"]],
        trial_30d=own30[:, H["trial_signup"]],
        webinar_30d=own30[:, H["webinar_attended"]],
        content_30d=own30[:, H["content_download"]],
        decision_maker=np.isin(seniority, [SENIORITIES.index(s) for s in DECISION_MAKERS]),
        low_seniority=np.isin(seniority, [SENIORITIES.index(s) for s in expo.LOW_SENIORITY]),
        employees=employees[acc_now],
        industry_fit=profile.industry_fit[leads_now],
        is_customer=is_customer[acc_now],
        utilization=utilization[acc_now],
        account_opportunities_90d=acc_opps[acc_now],
    )


def _offer_experiment(
    rng: np.random.Generator,
    campaign_own30: dict[int, np.ndarray],
    *,
    t0: int,
    created: np.ndarray,
    opp_time: np.ndarray,
    acc_of: np.ndarray,
    employees: np.ndarray,
    profile: _Profile,
    customers: cust.CustomerSim,
    scale: float,
) -> expo.Exposures:
    """One campaign at each campaign tick over the leads existing then."""
    parts = []
    for w in sorted(campaign_own30):
        t = t0 + w * WEEK_S
        leads_now = np.flatnonzero(created < t)
        state = _campaign_state(
            t, leads_now, campaign_own30[w][leads_now], opp_time, acc_of, employees, profile,
            customers.is_customer[w], customers.utilization[w],
        )  # fmt: skip
        parts.append(expo.expose(rng, leads_now, state, t, scale))
    return expo.concat(parts)


def _draw_opportunities(
    rng: np.random.Generator,
    converted_week: np.ndarray,
    opp_time: np.ndarray,
    lead_employees: np.ndarray,
    acc_of: np.ndarray,
    installed: np.ndarray,
    customers: cust.CustomerSim,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The converted leads in opportunity order, each opportunity's amount and stage. The
    opportunity that made its account a customer is closed won."""
    conv_leads = np.flatnonzero(converted_week >= 0)
    conv_leads = conv_leads[np.argsort(opp_time[conv_leads], kind="stable")]
    amount = np.round(
        np.exp(
            np.log(9_000)
            + 0.25 * np.log(lead_employees[conv_leads] / 50)
            + rng.normal(0, 0.7, len(conv_leads))
        ),
        -2,
    )
    stage = np.where(rng.random(len(conv_leads)) < 0.6, "qualified", "created").astype(object)
    sub_start = np.full(len(installed), _NEVER)
    np.minimum.at(sub_start, customers.sub_account, customers.sub_start)
    acc = acc_of[conv_leads]
    first_of_account = ~pd.Series(acc).duplicated().to_numpy()
    won = first_of_account & (sub_start[acc] > opp_time[conv_leads])
    won &= (sub_start[acc] < _NEVER) & ~installed[acc]
    stage[won] = "closed_won"
    return conv_leads, amount, stage


# ----------------------------------------------------------------------------------------------
# Tables and oracles
# ----------------------------------------------------------------------------------------------


def _accounts_table(
    account_ids: np.ndarray, accounts: _Accounts, created: np.ndarray
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": account_ids,
            "domain": accounts.domains,
            "industry": np.array(INDUSTRIES, dtype=object)[accounts.industry],
            "employee_count": accounts.employees,
            "annual_revenue": accounts.revenue.astype(np.float64),
            "country": np.array(COUNTRIES, dtype=object)[accounts.country],
            "created_at": _to_ts(created),
        }
    )


def _leads_table(
    lead_ids: np.ndarray,
    account_ids: np.ndarray,
    leads: _Leads,
    job_title: np.ndarray,
    domains: np.ndarray,
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": lead_ids,
            "account_id": account_ids[leads.acc_of],
            "email": _emails(leads.first_name, leads.last_name, domains[leads.acc_of]),
            "job_title": job_title,
            "source": np.array(LEAD_SOURCES, dtype=object)[leads.source],
            "created_at": _to_ts(leads.created),
        }
    )


def _events_table(
    rng: np.random.Generator,
    lead_ids: np.ndarray,
    lead_account_ids: np.ndarray,
    e_lead: np.ndarray,
    e_type: np.ndarray,
    e_time: np.ndarray,
) -> pd.DataFrame:
    """The events table; ``lead_account_ids`` is each lead's account id. Draws the properties."""
    return pd.DataFrame(
        copy=False,
        data={
            "event_id": format_ids("E", np.arange(1, len(e_lead) + 1), 9),
            "lead_id": lead_ids[e_lead],
            "account_id": lead_account_ids[e_lead],
            "event_type": np.array(EVENT_TYPES, dtype=object)[e_type],
            "timestamp": _to_ts(e_time),
            "properties": _properties(rng, e_type),
        },
    )


def _opportunities_table(
    lead_ids: np.ndarray,
    lead_account_ids: np.ndarray,
    opp_time: np.ndarray,
    conv_leads: np.ndarray,
    amount: np.ndarray,
    stage: np.ndarray,
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "opportunity_id": format_ids("O", np.arange(1, len(conv_leads) + 1), 7),
            "lead_id": lead_ids[conv_leads],
            "account_id": lead_account_ids[conv_leads],
            "created_at": _to_ts(opp_time[conv_leads]),
            "amount": amount.astype(np.float64),
            "stage": stage,
        }
    )


def _exposures_table(lead_ids: np.ndarray, exposures: expo.Exposures) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject_id": lead_ids[exposures.lead],
            "offer_id": np.array(expo.ARMS, dtype=object)[exposures.arm],
            "exposed_at": _to_ts(exposures.exposed_at),
            "propensity": exposures.propensity.astype(np.float64),
            "converted_at": _to_ts_or_nat(exposures.converted_at),
        }
    )


def _churn_oracle_table(
    account_ids: np.ndarray, ticks: pd.DatetimeIndex, customers: cust.CustomerSim
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": account_ids[customers.oracle_account],
            "snapshot_ts": pd.Series(ticks[customers.oracle_tick]).dt.as_unit("ns"),
            "p_true": customers.oracle_p.astype(np.float64),
            "hazard_7d": customers.oracle_hazard.astype(np.float64),
        }
    )


def _nbo_oracle_table(lead_ids: np.ndarray, exposures: expo.Exposures) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject_id": lead_ids[exposures.lead],
            "exposed_at": _to_ts(exposures.exposed_at),
            "stage": np.array(expo.STAGES, dtype=object)[exposures.stage],
            **{f"p_{arm}": exposures.p_true[:, j] for j, arm in enumerate(expo.ARMS)},
        }
    )


def _mql_oracle(
    lead_ids: np.ndarray, ticks: pd.DatetimeIndex, lead_weeks: _LeadWeeks, t0: int, horizon: int
) -> tuple[pd.DataFrame, float, float]:
    """The MQL oracle table, the 30-day label rate over the fully observed rows and the
    oracle's AUC against that label."""
    o_lead, o_tick, o_p, o_h = lead_weeks.oracle
    oracle = pd.DataFrame(
        {
            "lead_id": lead_ids[o_lead],
            "snapshot_ts": pd.Series(ticks[o_tick]).dt.as_unit("ns"),
            "p_true": o_p.astype(np.float64),
            "hazard_7d": o_h.astype(np.float64),
        }
    )
    opp_time = lead_weeks.opp_time[o_lead]
    tick_s = t0 + o_tick.astype(np.int64) * WEEK_S
    observed = tick_s + LABEL_DAYS * DAY_S <= t0 + horizon  # windows fully inside the data
    label = (opp_time > tick_s) & (opp_time <= tick_s + LABEL_DAYS * DAY_S)
    label_rate = float(label[observed].mean()) if observed.any() else float("nan")
    return oracle, label_rate, auc(label[observed], o_p[observed])


def _titles_table(lead_ids: np.ndarray, titles: _Titles) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": lead_ids,
            "job_title": titles.text,
            "seniority": np.array(SENIORITIES, dtype=object)[titles.true_seniority],
            "department": np.array(DEPARTMENTS, dtype=object)[titles.true_department],
        }
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
    plan: TrackingPlan | None = None,
    violations: ViolationRates | None = None,
) -> dict:
    """Simulate and write ``<out_dir>/raw/*.parquet`` + manifest and ``<out_dir>/oracle/``.

    ``start`` is moved back to its Monday; the data end is ``start + weeks``. The events are
    delivered with the tracking-plan ``violations`` (``synthetic.violations``; default rates)
    and loaded through the ``plan``'s check (default: ``configs/tracking_plan.yaml``), like any
    event load: the raw events hold the admitted rows, ``<out_dir>/quarantine/`` the others.
    Returns a summary: counts, lead conversion rate, the 30-day label rate over fully observed
    snapshot rows, the oracle's AUC against that label, the seconds taken, and under
    ``tracking`` the check's counts.
    """
    began = time.perf_counter()
    start_ts = _start_monday(start)
    end_ts = start_ts + pd.Timedelta(weeks=weeks)
    if end_ts > pd.Timestamp.now(tz="UTC"):
        raise InputError(
            f"data end {end_ts.isoformat()} is in the future; choose an earlier start "
            "or fewer weeks"
        )
    sim = simulate(
        n_leads, seed, start=start_ts, weeks=weeks, progress=progress,
        offer_effect_scale=offer_effect_scale,
    )  # fmt: skip
    out = Path(out_dir)
    raw_dir = out / "raw"
    plan = plan or load_plan(DEFAULT_PLAN)
    # a stream of its own, after the simulation's nine: the clean data do not depend on it
    rng_delivery = np.random.default_rng(np.random.SeedSequence(seed).spawn(10)[9])
    delivery = deliver(sim.tables["events"], plan, violations or ViolationRates(), rng_delivery)
    checked = check_events(delivery.events, plan, SOURCE)
    write_tables({**sim.tables, "events": checked.admitted}, raw_dir)
    write_quarantine(checked, out / "quarantine", plan_file=plan.source_file)
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
        "events": len(checked.admitted),
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
        "tracking": checked.counts,
    }
