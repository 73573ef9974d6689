"""Customers in the synthetic funnel: subscriptions, product usage and churn with a known hazard.

How the data arise
------------------
* Customers are accounts with a subscription. About one account in eight is already a customer
  when the data start (an installed base: subscribed up to two years earlier, its leads imported
  into the CRM a few months before the start); an account whose first opportunity is won
  (``WIN_P``) subscribes one to four weeks after that opportunity.
* A subscription has a plan (by head count, with some noise), seats (the account's product users
  at the start plus a few spare) and an MRR (seats x the plan's seat price x a discount). During a
  week a customer may add seats when most seats are in use or drop seats when few are; each change
  closes the current ``subscriptions`` row and opens a new one at the same instant. Churn closes
  the last row, and nothing follows it.
* Each account's product users are its leads flagged as adopters. Every week a user produces
  ``product_active`` events at ``rate * exp(health)``, where health is the account's latent state:
  an AR(1) walk with occasional shocks (a champion leaves, a budget is cut). Usage runs from nine
  weeks before the data start for the installed base, so the first snapshots already see a full
  60-day usage history.
* At every weekly tick ``t`` a customer churns during ``(t, t + 7d)`` with probability
  ``h_t = sigmoid(churn_logit(...))``, a fixed function of what the feature tables show at ``t``
  (see ``churn_logit``): product events in the last 30 days and in the 30 days before, distinct
  active users in the last 30 days against seats, the MRR change over 90 days, tenure, the
  engagement (non-product events) of the account's leads in the last 30 days, head count and plan.
  Latent health never enters the hazard, only through the usage it caused.

The oracle
----------
For every tick ``t`` and every account that is a customer at ``t``, ``p_true`` is the
probability that it churns within 60 days given everything the generator knows at ``t``: the
observables plus the latent health and its users' rates. Usage evolves predictably (health
reverts to its mean, a contraction stops counting after 90 days), so "the hazard stays at h_t"
would be a poor yardstick; instead ``MC_PATHS`` futures are simulated from the state at ``t``
(health, seat reviews, usage and the hazard at each of the next 8 ticks), with the churn draws
integrated out. The leads' trials and marketing engagement, which do not depend on health, are
taken as they happened. No model can beat this probability in expectation (it knows the latent
state); a good one comes close. Snapshots whose window passes the data end have no label and get
the persistence value ``1 - (1 - h_t) ** (60 / 7)``. Written to
``<out>/oracle/churn_oracle.parquet``, with the weekly hazard ``h_t`` as ``hazard_7d``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from synthetic.stats import auc, sigmoid

WEEK_S = 7 * 86_400
DAY_S = 86_400
CHURN_LABEL_DAYS = 60
PRE_WEEKS = 9  # installed-base usage before the data start: a full 60-day window at tick 0

INSTALLED_BASE_P = 0.25
WIN_P = 0.7
PLANS = ("team", "business", "enterprise")
SEAT_PRICE = {"team": 25.0, "business": 45.0, "enterprise": 80.0}
PLAN_NOISE_P = 0.2  # share of customers whose plan is not the one their head count suggests
USER_RATE_MEDIAN = 1.5  # product sessions per user per week at health 0
SEAT_CHANGE_P = 0.06  # weekly chance that a customer reviews its seats
TRUE_UP_P = 0.5  # the same when more users are active than seats were bought
HEALTH_PHI, HEALTH_SIGMA = 0.9, 0.3  # AR(1) of the latent account health
SHOCK_P, SHOCK_SIZE = 0.015, 1.5  # weekly chance and size of a setback

# Coefficients of the weekly churn logit (see ``churn_logit``).
CHURN_COEF: dict[str, float] = {
    "intercept": -3.9,  # tuned: about 10% of customer snapshots churn within 60 days
    "usage_30d": -0.7,  # log1p product events, last 30 days
    "usage_trend": -1.0,  # log1p(last 30 days) - log1p(30 days before), clipped to [-2, 2]
    "idle_seats": 3.5,  # times max(0, 0.6 - active users / seats)
    "engagement_30d": -0.3,  # log1p non-product events of the account's leads, last 30 days
    "contraction_90d": 0.9,  # MRR fell by more than 5% over 90 days
    "new_customer": 0.6,  # tenure under 90 days
    "small_company": 0.4,  # fewer than 50 employees
    "large_company": -0.3,  # 1,000 employees or more
    "plan_team": 0.3,
    "plan_enterprise": -0.3,
}


def churn_logit(
    usage_30d: np.ndarray,
    usage_prev_30d: np.ndarray,
    active_users_30d: np.ndarray,
    seats: np.ndarray,
    mrr_change_90d: np.ndarray,
    tenure_days: np.ndarray,
    engagement_30d: np.ndarray,
    employees: np.ndarray,
    plan: np.ndarray,
    coef: dict[str, float] = CHURN_COEF,
) -> np.ndarray:
    """Weekly churn logit from what is observable at a tick (arrays per customer account).

    ``plan`` holds indices into ``PLANS``; ``mrr_change_90d`` is relative (-0.2 = 20% lower).
    """
    c = coef
    u30, uprev = np.log1p(usage_30d), np.log1p(usage_prev_30d)
    utilization = active_users_30d / np.maximum(seats, 1)
    return (
        c["intercept"]
        + c["usage_30d"] * u30
        + c["usage_trend"] * np.clip(u30 - uprev, -2.0, 2.0)
        + c["idle_seats"] * np.maximum(0.0, 0.6 - utilization)
        + c["engagement_30d"] * np.log1p(engagement_30d)
        + c["contraction_90d"] * (mrr_change_90d < -0.05)
        + c["new_customer"] * (tenure_days < 90)
        + c["small_company"] * (employees < 50)
        + c["large_company"] * (employees >= 1000)
        + c["plan_team"] * (plan == PLANS.index("team"))
        + c["plan_enterprise"] * (plan == PLANS.index("enterprise"))
    )


def plan_for(employees: np.ndarray) -> np.ndarray:
    """The plan a head count suggests (indices into ``PLANS``)."""
    return np.where(employees < 100, 0, np.where(employees < 1000, 1, 2))


MC_PATHS = 64  # simulated futures per customer snapshot for the oracle
_PAST = 9  # weeks of history the 60-day window at the snapshot itself reaches back
_AHEAD = 8  # ticks after the snapshot whose churn can fall in the 60-day window
# the share of week 8 after the snapshot that is still inside the 60-day window
_LAST_WEEK_SHARE = (CHURN_LABEL_DAYS * DAY_S - _AHEAD * WEEK_S - 1) / (WEEK_S - 1)
_NEVER = np.iinfo(np.int64).max


def step_health(
    rng: np.random.Generator, health: np.ndarray, size: int | tuple[int, ...]
) -> np.ndarray:
    """One week of the latent account health: the AR(1) step with an occasional setback.

    Draws the setbacks first, then the noise (the same order in the data and in the oracle's
    simulated futures)."""
    shock = rng.random(size) < SHOCK_P
    return HEALTH_PHI * health + rng.normal(0.0, HEALTH_SIGMA, size) - SHOCK_SIZE * shock


def _windows(counts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(last 30 days, the 30 days before) at the k-th tick after the snapshot, from segment
    counts indexed by week ``j + _PAST`` (j = -_PAST .. _AHEAD - 1), summed over the last axis
    but one. ``counts`` is (..., weeks, 3)."""
    i = k + _PAST
    last30 = counts[..., i - 4 : i, :].sum(axis=(-1, -2)) + counts[..., i - 5, 2]
    last60 = counts[..., i - 8 : i, :].sum(axis=(-1, -2)) + counts[..., i - 9, 1:].sum(axis=-1)
    return last30, last60 - last30


@dataclass
class _Snapshot:
    """A customer snapshot, as the forward simulation of the oracle starts from it."""

    t: int
    accounts: np.ndarray  # customer accounts (global indices)
    hazard: np.ndarray  # their churn hazard at t
    health: np.ndarray
    seats: np.ndarray
    mrr: np.ndarray
    mrr_then: np.ndarray  # (accounts, _AHEAD + 1): MRR 90 days before each tick ahead
    start: np.ndarray
    employees: np.ndarray
    plan: np.ndarray
    discount: np.ndarray


def _sum_per_account(flat: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(paths, accounts) sums of (paths, users) values; ``flat`` is each pair's output cell."""
    return np.bincount(flat, weights=values.ravel(), minlength=shape[0] * shape[1]).reshape(shape)


def _weekly_exposure(t: int, user_created: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each user's exposure in each of the weeks ahead of ``t``, in weeks: (days 0-4, days 5-6).

    Days 5-6 are the tail a 30-day window at tick j + 5 reads."""
    week_start = t + np.arange(_AHEAD) * WEEK_S
    split = week_start + 5 * DAY_S

    def overlap(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return np.clip(hi[None, :] - np.maximum(user_created[:, None], lo[None, :]), 0, None)

    return overlap(week_start, split) / WEEK_S, overlap(split, week_start + WEEK_S) / WEEK_S


def _path_windows(
    known: tuple[np.ndarray, np.ndarray], cum: list[np.ndarray], tails: list[np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per path and user, the events in the last 30 and 60 days at the k-th tick ahead: what is
    known (fixed) plus the simulated weeks 0..k-1 inside the windows."""
    last30 = known[0] + cum[k] - cum[max(0, k - 4)]
    if k >= 5:
        last30 = last30 + tails[k - 5]
    return last30, known[0] + known[1] + cum[k]


def _path_hazard(
    snap: _Snapshot,
    k: int,
    usage30: np.ndarray,
    usage_prev: np.ndarray,
    active: np.ndarray,
    seats: np.ndarray,
    mrr: np.ndarray,
    engaged: np.ndarray,
) -> np.ndarray:
    """The weekly churn hazard at the k-th tick ahead, per (path, account)."""
    z = churn_logit(
        usage30, usage_prev, active, seats,
        mrr / snap.mrr_then[:, k] - 1.0, (snap.t + k * WEEK_S - snap.start) / DAY_S,
        engaged, snap.employees, snap.plan,
    )  # fmt: skip
    return sigmoid(z)


def _review_seat_paths(
    rng: np.random.Generator,
    active: np.ndarray,
    seats: np.ndarray,
    mrr: np.ndarray,
    price: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """A week's seat reviews on every path (the vectorised form of ``_review_seats``)."""
    shape = seats.shape
    over = active > seats
    review = rng.random(shape) < np.where(over, TRUE_UP_P, SEAT_CHANGE_P)
    util = active / np.maximum(seats, 1)
    grow = np.maximum(seats + 1 + rng.integers(0, 3, shape), active)
    shrink = np.maximum(1, seats - 1 - rng.integers(0, 2, shape))
    new = np.where(util >= 0.85, grow, np.where((util < 0.5) & (seats > 1), shrink, seats))
    changed = review & (new != seats)
    seats = np.where(changed, new, seats).astype(np.int64)
    return seats, np.where(changed, np.round(seats * price, 2), mrr)


def _usage_week_paths(
    rng: np.random.Generator, rate: np.ndarray, head: np.ndarray, tail: np.ndarray, split: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """A week of product events per (path, user), and, when ``split``, those of days 5-6 alone
    (a later 30-day window reads them)."""
    if split:
        week_tail = rng.poisson(rate * tail[None, :])
        return rng.poisson(rate * head[None, :]) + week_tail, week_tail
    return rng.poisson(rate * (head[None, :] + tail[None, :])), None


def _forward_churn_probability(
    rng: np.random.Generator,
    snap: _Snapshot,
    user_account: np.ndarray,
    user_rate: np.ndarray,
    user_created: np.ndarray,
    usage_known: np.ndarray,
    engagement: np.ndarray,
    paths: int = MC_PATHS,
) -> np.ndarray:
    """P(churn within 60 days | everything the generator knows at t), by simulating ``paths``
    futures of each account: health, seat reviews, its users' product usage and the hazard at
    each of the 8 ticks ahead. Churn draws are integrated out: a path contributes
    1 - prod(1 - h_k), with only the part of week 8 inside the window. The leads' trials and
    their marketing engagement are taken as they happened (they do not depend on the account's
    health).

    ``usage_known`` is (users, _PAST + _AHEAD, 3): segment counts of the real product events
    before t and of the trials after it; ``engagement`` the same per account for the people's
    non-product events. ``user_rate`` is 0 for leads that never use the product as customers.
    """
    shape = (paths, len(snap.accounts))
    health = np.broadcast_to(snap.health, shape).copy()
    seats = np.broadcast_to(snap.seats, shape).astype(np.int64)
    mrr = np.broadcast_to(snap.mrr, shape).copy()
    price = np.array([SEAT_PRICE[p] for p in PLANS])[snap.plan] * snap.discount
    log_survive = np.broadcast_to(np.log1p(-snap.hazard), shape).copy()
    flat = (np.arange(paths)[:, None] * shape[1] + user_account[None, :]).ravel()
    known = [_windows(usage_known, k) for k in range(_AHEAD + 1)]
    engaged = [_windows(engagement, k)[0] for k in range(_AHEAD + 1)]
    head, tail = _weekly_exposure(snap.t, user_created)
    cum = [np.zeros((paths, len(user_rate)))]  # simulated events before tick k
    tails: list[np.ndarray] = []  # simulated events in days 5-6 of week j
    for k in range(_AHEAD + 1):
        last30, last60 = _path_windows(known[k], cum, tails, k)
        active = _sum_per_account(flat, last30 > 0, shape)
        if k > 0:
            hazard = _path_hazard(
                snap, k, _sum_per_account(flat, last30, shape),
                _sum_per_account(flat, last60 - last30, shape), active, seats, mrr, engaged[k],
            )  # fmt: skip
            if k == _AHEAD:  # tick 8: only the part of its week inside the window counts
                log_survive += np.log1p(-_LAST_WEEK_SHARE * hazard)
                break
            log_survive += np.log1p(-hazard)
        seats, mrr = _review_seat_paths(rng, active, seats, mrr, price)
        health = step_health(rng, health, shape)
        rate = user_rate[None, :] * np.exp(health[:, user_account])
        # a week's tail is read by the 30-day window at tick k + 5 <= 8
        week, week_tail = _usage_week_paths(rng, rate, head[:, k], tail[:, k], k <= _AHEAD - 5)
        if week_tail is not None:
            tails.append(week_tail)
        cum.append(cum[k] + week)
    return 1.0 - np.exp(log_survive).mean(axis=0)


@dataclass
class CustomerSim:
    """What the customer phase produced (indices are account / lead positions)."""

    sub_account: np.ndarray  # one entry per subscriptions row
    sub_start: np.ndarray  # epoch seconds
    sub_end: np.ndarray  # epoch seconds, -1 = still running
    sub_mrr: np.ndarray
    sub_seats: np.ndarray
    sub_plan: np.ndarray  # indices into PLANS
    usage_lead: np.ndarray  # product_active events of customers' users
    usage_time: np.ndarray
    oracle_account: np.ndarray
    oracle_tick: np.ndarray  # tick index
    oracle_p: np.ndarray
    oracle_hazard: np.ndarray  # the weekly hazard at the tick (a function of the features)
    # per tick (rows) and account (columns), for the offer experiment
    is_customer: np.ndarray  # bool
    utilization: np.ndarray  # active users / seats at the tick, NaN for non-customers
    label_rate: float
    oracle_auc: float


def _segment_counts(
    times: np.ndarray, owners: np.ndarray, t: int, first_week: int, n_weeks: int, size: int
) -> np.ndarray:
    """(size, n_weeks, 3) counts of the time-sorted events in the weeks ``first_week`` ..
    ``first_week + n_weeks - 1`` after ``t``, split into each week's days 0-2, 3-4 and 5-6.

    Every window the churn hazard reads at a weekly tick is a run of whole weeks plus days 5-6
    (the 2 extra days of 30) or days 3-6 (the 4 extra days of 60) of the week before the run.
    Owners below 0 are skipped.
    """
    lo = t + first_week * WEEK_S
    a, b = np.searchsorted(times, [lo, lo + n_weeks * WEEK_S], side="left")
    rel, own = times[a:b] - lo, owners[a:b]
    keep = own >= 0
    rel, own = rel[keep], own[keep]
    off = rel % WEEK_S
    seg = (off >= 3 * DAY_S).astype(np.int64) + (off >= 5 * DAY_S)
    index = (own * n_weeks + rel // WEEK_S) * 3 + seg
    return np.bincount(index, minlength=size * n_weeks * 3).reshape(size, n_weeks, 3)


def _window_counts(
    times: np.ndarray, owners: np.ndarray, lo: int, hi: int, size: int
) -> np.ndarray:
    """How many of the time-sorted events fall in ``[lo, hi)``, per owner index."""
    a, b = np.searchsorted(times, [lo, hi], side="left")
    return np.bincount(owners[a:b], minlength=size)


def _draw_customers(
    rng: np.random.Generator,
    acc_of: np.ndarray,
    opp_time: np.ndarray,
    installed: np.ndarray,
    installed_start: np.ndarray,
    employees: np.ndarray,
    end: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per account: subscription start (int64 max = never), initial health, plan and discount;
    per lead: its product usage rate as a customer's user. Returns
    ``(start, health, user_rate, plan, discount)``."""
    n_acc = len(employees)
    first_opp = np.full(n_acc, _NEVER)
    np.minimum.at(first_opp, acc_of, opp_time)
    won = (first_opp < _NEVER) & (rng.random(n_acc) < WIN_P) & ~installed
    won_start = np.where(
        won, first_opp + (rng.uniform(7, 28, n_acc) * DAY_S).astype(np.int64), _NEVER
    )
    start = np.where(installed, installed_start, np.where(won_start < end, won_start, _NEVER))
    health = rng.normal(0.0, 0.6, n_acc)
    user_rate = USER_RATE_MEDIAN * np.exp(rng.normal(0.0, 0.5, len(acc_of)))
    plan = np.where(
        rng.random(n_acc) < PLAN_NOISE_P, rng.integers(0, 3, n_acc), plan_for(employees)
    )
    discount = rng.uniform(0.8, 1.0, n_acc)
    return start, health, user_rate, plan, discount


class _Subscriptions:
    """The subscriptions rows as they are opened and closed, and each account's MRR history."""

    def __init__(self, plan: np.ndarray, discount: np.ndarray) -> None:
        self.plan = plan
        self.discount = discount
        self.seats = np.zeros(len(plan), dtype=np.int64)  # of the open row
        self.open_row = np.full(len(plan), -1)
        self.account: list[int] = []
        self.start: list[int] = []
        self.end: list[int] = []  # -1 while open
        self.mrr: list[float] = []
        self.row_seats: list[int] = []
        # (time, mrr) per account, appended in time order, for the 90-day MRR change
        self.history: list[list[tuple[int, float]]] = [[] for _ in range(len(plan))]

    def open(self, a: int, at: int, n_seats: int) -> None:
        price = SEAT_PRICE[PLANS[self.plan[a]]]
        mrr = round(float(n_seats) * price * float(self.discount[a]), 2)
        self.open_row[a] = len(self.account)
        self.account.append(a)
        self.start.append(at)
        self.end.append(-1)
        self.mrr.append(mrr)
        self.row_seats.append(n_seats)
        self.seats[a] = n_seats
        self.history[a].append((at, mrr))

    def close(self, a: int, at: int) -> None:
        self.end[self.open_row[a]] = at

    def mrr_at(self, a: int, when: int) -> float:
        """MRR of the row in force at ``when``, or the first row's when none was yet."""
        hist = self.history[a]
        value = hist[0][1]
        for at, mrr in hist:
            if at < when:
                value = mrr
            else:
                break
        return value


@dataclass(frozen=True)
class _People:
    """The leads of each account, as slices of one array (no per-account scan of all leads)."""

    acc_of: np.ndarray
    created: np.ndarray
    adopter: np.ndarray
    by_account: np.ndarray
    bounds: np.ndarray

    @classmethod
    def index(
        cls, acc_of: np.ndarray, created: np.ndarray, adopter: np.ndarray, n_acc: int
    ) -> _People:
        by_account = np.argsort(acc_of, kind="stable")
        bounds = np.searchsorted(acc_of[by_account], np.arange(n_acc + 1))
        return cls(acc_of, created, adopter, by_account, bounds)

    @property
    def n_accounts(self) -> int:
        return len(self.bounds) - 1

    def of(self, a: int) -> np.ndarray:
        """The leads of account ``a``."""
        return self.by_account[self.bounds[a] : self.bounds[a + 1]]


@dataclass(frozen=True)
class _LeadActivity:
    """The leads' own time-sorted events the churn hazard reads: their product usage before they
    became customers' users (trials) and their non-product (engagement) events."""

    trial_lead: np.ndarray
    trial_time: np.ndarray
    engagement_lead: np.ndarray
    engagement_time: np.ndarray
    engagement_acc: np.ndarray  # the account of each engagement event


@dataclass(frozen=True)
class _Usage:
    """What the account_usage feature table shows at a tick, per account."""

    usage30: np.ndarray  # product events in the last 30 days
    usage_prev: np.ndarray  # in the 30 days before
    active_users: np.ndarray  # distinct users in the last 30 days
    engagement30: np.ndarray  # the leads' non-product events in the last 30 days
    recent: np.ndarray  # time-sorted product events of about the last 10 weeks, with trials
    recent_lead: np.ndarray


def _observe_usage(
    t: int,
    activity: _LeadActivity,
    usage_times: list[np.ndarray],
    usage_leads: list[np.ndarray],
    acc_of: np.ndarray,
    n_acc: int,
) -> _Usage:
    """The observables at ``t`` from the trials and the customers' recent weeks of usage,
    exactly as the account_usage feature table computes them."""
    n = len(acc_of)
    recent = np.concatenate([activity.trial_time, *usage_times])
    recent_lead = np.concatenate([activity.trial_lead, *usage_leads])
    order = np.argsort(recent, kind="stable")
    recent, recent_lead = recent[order], recent_lead[order]
    per_lead_30 = _window_counts(recent, recent_lead, t - 30 * DAY_S, t, n)
    per_lead_prev = _window_counts(recent, recent_lead, t - 60 * DAY_S, t - 30 * DAY_S, n)
    engaged = _window_counts(
        activity.engagement_time, activity.engagement_lead, t - 30 * DAY_S, t, n
    )
    return _Usage(
        usage30=np.bincount(acc_of, weights=per_lead_30, minlength=n_acc),
        usage_prev=np.bincount(acc_of, weights=per_lead_prev, minlength=n_acc),
        active_users=np.bincount(acc_of, weights=(per_lead_30 > 0), minlength=n_acc),
        engagement30=np.bincount(acc_of, weights=engaged, minlength=n_acc),
        recent=recent,
        recent_lead=recent_lead,
    )


def _churn_hazard(
    t: int,
    active: np.ndarray,
    usage: _Usage,
    book: _Subscriptions,
    start: np.ndarray,
    employees: np.ndarray,
    plan: np.ndarray,
) -> np.ndarray:
    """The weekly churn hazard at ``t`` of the customer accounts ``active``."""
    change = np.array([book.mrr_at(a, t) / book.mrr_at(a, t - 90 * DAY_S) - 1.0 for a in active])
    tenure = (t - start[active]) / DAY_S
    return sigmoid(churn_logit(
        usage.usage30[active], usage.usage_prev[active], usage.active_users[active],
        book.seats[active], change, tenure, usage.engagement30[active], employees[active],
        plan[active],
    ))  # fmt: skip


def _snapshot(
    t: int,
    accounts: np.ndarray,
    hazard: np.ndarray,
    health: np.ndarray,
    book: _Subscriptions,
    start: np.ndarray,
    employees: np.ndarray,
) -> _Snapshot:
    """The state at ``t`` of the customer ``accounts`` that the oracle's futures start from."""
    mrr_then = [[book.mrr_at(a, t + k * WEEK_S - 90 * DAY_S) for k in range(_AHEAD + 1)]
                for a in accounts]  # fmt: skip
    return _Snapshot(
        t=t, accounts=accounts, hazard=hazard, health=health[accounts],
        seats=book.seats[accounts], mrr=np.array([book.mrr_at(a, t) for a in accounts]),
        mrr_then=np.array(mrr_then).reshape(len(accounts), _AHEAD + 1),
        start=start[accounts], employees=employees[accounts], plan=book.plan[accounts],
        discount=book.discount[accounts],
    )  # fmt: skip


def _churn_oracle(
    rng: np.random.Generator,
    snap: _Snapshot,
    people: _People,
    user_rate: np.ndarray,
    activity: _LeadActivity,
    usage: _Usage,
) -> np.ndarray:
    """The oracle at ``snap.t`` for its customer accounts (see _forward_churn_probability)."""
    accounts, t, weeks_span = snap.accounts, snap.t, _PAST + _AHEAD
    mine = np.concatenate([people.of(a) for a in accounts])
    # every lead counts (trials are product usage too); only adopters use it as customers
    mine = mine[people.created[mine] < t + _AHEAD * WEEK_S]
    local = np.full(len(people.acc_of), -1)
    local[mine] = np.arange(len(mine))
    acc_local = np.full(people.n_accounts, -1)
    acc_local[accounts] = np.arange(len(accounts))
    past = np.zeros((len(mine), weeks_span, 3), dtype=np.int64)
    past[:, :_PAST] = _segment_counts(
        usage.recent, local[usage.recent_lead], t, -_PAST, _PAST, len(mine)
    )
    known = past.copy()
    known[:, _PAST:] = _segment_counts(
        activity.trial_time, local[activity.trial_lead], t, 0, _AHEAD, len(mine)
    )
    engagement = _segment_counts(
        activity.engagement_time, acc_local[activity.engagement_acc], t, -_PAST, weeks_span,
        len(accounts),
    )  # fmt: skip
    # the snapshot's own windows must be the ones the hazard read
    u30, uprev = _windows(past, 0)
    user_acc = acc_local[people.acc_of[mine]]
    check30 = np.bincount(user_acc, weights=u30, minlength=len(accounts))
    checkprev = np.bincount(user_acc, weights=uprev, minlength=len(accounts))
    if not (np.array_equal(check30, usage.usage30[accounts])
            and np.array_equal(checkprev, usage.usage_prev[accounts])):  # fmt: skip
        raise AssertionError("forward simulation windows differ from the hazard's")
    return _forward_churn_probability(
        rng, snap, user_acc, user_rate[mine] * people.adopter[mine], people.created[mine],
        known, engagement,
    )  # fmt: skip


def _begin_subscriptions(
    rng: np.random.Generator,
    book: _Subscriptions,
    begin: np.ndarray,
    start: np.ndarray,
    people: _People,
) -> None:
    """Open the first subscription row of the accounts ``begin``: seats for the product users
    they have at the start, plus a few spare."""
    for a in begin.tolist():
        mine = people.of(a)
        users = int(np.sum(people.adopter[mine] & (people.created[mine] < start[a])))
        book.open(a, int(start[a]), max(1, users + int(rng.poisson(0.8))))


def _draw_churn(
    rng: np.random.Generator, active: np.ndarray, hazard: np.ndarray, t: int
) -> tuple[np.ndarray, np.ndarray]:
    """Which of the customer accounts ``active`` churn during ``(t, t + 7d)``, and when."""
    leaving = active[rng.random(len(active)) < hazard]
    return leaving, t + 1 + (rng.random(len(leaving)) * (WEEK_S - 1)).astype(np.int64)


def _review_seats(
    rng: np.random.Generator,
    book: _Subscriptions,
    stay: np.ndarray,
    active_users: np.ndarray,
    t: int,
) -> None:
    """A week's seat reviews of the customers who stay: a review adds seats when most are in
    use and drops some when few are; a change closes the open row and opens the next."""
    # more active users than seats: a true-up is likely soon
    over = active_users[stay] > book.seats[stay]
    review = stay[rng.random(len(stay)) < np.where(over, TRUE_UP_P, SEAT_CHANGE_P)]
    util = active_users[review] / np.maximum(book.seats[review], 1)
    for a, u in zip(review.tolist(), util.tolist(), strict=True):
        if u >= 0.85:
            grow = book.seats[a] + 1 + int(rng.integers(0, 3))
            new = max(grow, int(active_users[a]))
        elif u < 0.5 and book.seats[a] > 1:
            new = max(1, book.seats[a] - 1 - int(rng.integers(0, 2)))
        else:
            continue
        at = t + 1 + int(rng.random() * (WEEK_S - 1))
        book.close(a, at)
        book.open(a, at, new)


def _draw_usage(
    rng: np.random.Generator,
    t: int,
    customers: np.ndarray,
    people: _People,
    start: np.ndarray,
    churn_at: np.ndarray,
    user_rate: np.ndarray,
    health: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """This week's ``product_active`` events (lead, time) of the users at the ``customers``."""
    if not len(customers):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    t_next = t + WEEK_S
    is_customer = np.zeros(len(start), dtype=bool)
    is_customer[customers] = True
    users = np.flatnonzero(people.adopter & is_customer[people.acc_of] & (people.created < t_next))
    a_of = people.acc_of[users]
    lo = np.maximum(np.maximum(people.created[users], t), start[a_of])
    hi = np.minimum(t_next, churn_at[a_of])
    span = np.maximum(hi - lo, 0)
    counts = rng.poisson(user_rate[users] * np.exp(health[a_of]) * span / WEEK_S)
    ev_user = np.repeat(users, counts)
    ev_lo, ev_span = np.repeat(lo, counts), np.repeat(span, counts)
    ev_time = ev_lo + np.minimum(
        (rng.random(len(ev_user)) * ev_span).astype(np.int64), np.maximum(ev_span - 1, 0)
    )
    return ev_user.astype(np.int64), ev_time.astype(np.int64)


class _Tracks:
    """What the weeks record besides the subscriptions: the customers' product usage, the
    oracle rows, and per tick and account the customer flag and seat utilization."""

    def __init__(self, n_ticks: int, n_acc: int) -> None:
        self.usage_lead: list[np.ndarray] = []
        self.usage_time: list[np.ndarray] = []
        self.oracle: dict[str, list[np.ndarray]] = {"acc": [], "tick": [], "p": [], "h": []}
        self.is_customer = np.zeros((n_ticks, n_acc), dtype=bool)
        self.utilization = np.full((n_ticks, n_acc), np.nan)

    def add_tick(
        self,
        w: int,
        accounts: np.ndarray,
        p: np.ndarray,
        hazard: np.ndarray,
        utilization: np.ndarray,
    ) -> None:
        """The oracle rows of tick ``w`` and its customers' flag and seat utilization."""
        self.oracle["acc"].append(accounts.astype(np.int32))
        self.oracle["tick"].append(np.full(len(accounts), w, dtype=np.int16))
        self.oracle["p"].append(p)
        self.oracle["h"].append(hazard)
        self.is_customer[w, accounts] = True
        self.utilization[w, accounts] = utilization

    def oracle_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(account, tick, p, hazard), empty arrays when there were no customer snapshots."""
        o = self.oracle
        return (
            np.concatenate(o["acc"]) if o["acc"] else np.zeros(0, dtype=np.int32),
            np.concatenate(o["tick"]) if o["tick"] else np.zeros(0, dtype=np.int16),
            np.concatenate(o["p"]) if o["p"] else np.zeros(0),
            np.concatenate(o["h"]) if o["h"] else np.zeros(0),
        )


def simulate_customers(
    rng: np.random.Generator,
    *,
    t0: int,
    weeks: int,
    acc_of: np.ndarray,
    lead_created: np.ndarray,
    adopter: np.ndarray,
    employees: np.ndarray,
    installed: np.ndarray,
    installed_start: np.ndarray,
    opp_time: np.ndarray,
    trial_usage_lead: np.ndarray,
    trial_usage_time: np.ndarray,
    engagement_lead: np.ndarray,
    engagement_time: np.ndarray,
    progress: bool = False,
) -> CustomerSim:
    """Run the customer weeks (see the module docstring); deterministic for a given ``rng``.

    ``opp_time`` is each lead's opportunity time (int64 max if none); ``installed`` marks the
    installed-base accounts and ``installed_start`` their subscription start. The product events
    of leads before they became customers (trial usage) and the leads' non-product events are
    passed time-sorted, because the hazard reads them too.
    """
    n_acc, end = len(employees), t0 + weeks * WEEK_S
    # the oracle's simulated futures draw from their own stream: the data do not depend on them
    rng_mc = np.random.default_rng(rng.integers(0, 2**63))
    start, health, user_rate, plan, discount = _draw_customers(
        rng, acc_of, opp_time, installed, installed_start, employees, end
    )
    people = _People.index(acc_of, lead_created, adopter, n_acc)
    activity = _LeadActivity(
        trial_usage_lead, trial_usage_time, engagement_lead, engagement_time,
        acc_of[engagement_lead],
    )  # fmt: skip
    book = _Subscriptions(plan, discount)
    churn_at = np.full(n_acc, _NEVER)
    started = np.zeros(n_acc, dtype=bool)
    tracks = _Tracks(weeks + 1, n_acc)
    bar = tqdm(
        total=PRE_WEEKS + weeks + 1,
        desc="simulating customers",
        unit="week",
        disable=None if progress else True,
    )
    for w in range(-PRE_WEEKS, weeks + 1):
        t = t0 + w * WEEK_S
        # subscriptions that begin before this tick (the installed base starts before the data)
        begin = np.flatnonzero(~started & (start < t))
        _begin_subscriptions(rng, book, begin, start, people)
        started[begin] = True
        active = np.flatnonzero(started & (churn_at >= t))
        if w >= 0:
            usage = _observe_usage(
                t, activity, tracks.usage_time[-10:], tracks.usage_lead[-10:], acc_of, n_acc
            )
            if len(active):
                hazard = _churn_hazard(t, active, usage, book, start, employees, plan)
                if t + CHURN_LABEL_DAYS * DAY_S <= end:
                    snap = _snapshot(t, active, hazard, health, book, start, employees)
                    p = _churn_oracle(rng_mc, snap, people, user_rate, activity, usage)
                else:  # the window passes the data end: no label, persistence is enough
                    p = 1.0 - (1.0 - hazard) ** (CHURN_LABEL_DAYS / 7)
                utilization = usage.active_users[active] / np.maximum(book.seats[active], 1)
                tracks.add_tick(w, active, p, hazard, utilization)
            if w == weeks:  # the end tick only gets oracle rows
                break
            if len(active):
                leaving, when = _draw_churn(rng, active, hazard, t)
                churn_at[leaving] = when
                for a in leaving.tolist():
                    book.close(a, int(churn_at[a]))
                stay = active[churn_at[active] == _NEVER]
                _review_seats(rng, book, stay, usage.active_users, t)
        # latent health, then this week's product usage of the customers' users
        health = step_health(rng, health, n_acc)
        lead, at = _draw_usage(rng, t, active, people, start, churn_at, user_rate, health)
        tracks.usage_lead.append(lead)
        tracks.usage_time.append(at)
        bar.update(1)
    bar.update(1)  # the end tick, which the loop leaves by its break
    bar.close()
    return _result(book, tracks, t0, end, churn_at)


def _result(
    book: _Subscriptions, tracks: _Tracks, t0: int, end: int, churn_at: np.ndarray
) -> CustomerSim:
    o_acc, o_tick, o_p, o_h = tracks.oracle_arrays()
    label_rate, oracle_auc = _label_stats(o_acc, o_tick, o_p, t0, end, churn_at)
    rows_acc = np.asarray(book.account, dtype=np.int64)
    return CustomerSim(
        sub_account=rows_acc,
        sub_start=np.asarray(book.start, dtype=np.int64),
        sub_end=np.asarray(book.end, dtype=np.int64),
        sub_mrr=np.asarray(book.mrr, dtype=np.float64),
        sub_seats=np.asarray(book.row_seats, dtype=np.int64),
        sub_plan=book.plan[rows_acc] if book.account else np.zeros(0, int),
        usage_lead=np.concatenate(tracks.usage_lead) if tracks.usage_lead else np.zeros(0, int),
        usage_time=np.concatenate(tracks.usage_time) if tracks.usage_time else np.zeros(0, int),
        oracle_account=o_acc,
        oracle_tick=o_tick,
        oracle_p=o_p,
        oracle_hazard=o_h,
        is_customer=tracks.is_customer,
        utilization=tracks.utilization,
        label_rate=label_rate,
        oracle_auc=oracle_auc,
    )


def _label_stats(
    o_acc: np.ndarray, o_tick: np.ndarray, o_p: np.ndarray, t0: int, end: int, churn_at: np.ndarray
) -> tuple[float, float]:
    """Churn-within-60-days rate and the oracle's AUC over fully observed customer snapshots."""
    tick_s = t0 + o_tick.astype(np.int64) * WEEK_S
    observed = tick_s + CHURN_LABEL_DAYS * DAY_S <= end
    if not observed.any():
        return float("nan"), float("nan")
    when = churn_at[o_acc]
    label = (when >= tick_s) & (when < tick_s + CHURN_LABEL_DAYS * DAY_S)
    return float(label[observed].mean()), auc(label[observed], o_p[observed])
