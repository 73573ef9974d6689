"""Hillstrom uplift benchmark: S/T/X learners, cross-fitted, against the datasets README numbers.

Run as ``.venv/bin/python benchmarks/hillstrom_uplift.py``. 5-fold stratified (arm x visit)
cross-fitting with seed 42; every metric is computed on out-of-fold predictions. Writes
``benchmarks/results/hillstrom_uplift.json`` and ``.md``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.config import NboConfig
from training.hillstrom import arm_propensity, load_hillstrom
from training.nbo import fit_and_choose
from training.nbo_policy import choose_policy
from training.uplift import SLearner, TLearner, XLearner
from training.uplift_metrics import (
    paired_policy_difference_ci,
    policy_value_ipw_ci,
    qini_coefficient,
    uplift_at_k,
)

SEED = 42
N_FOLDS = 5
N_BOOT = 1000
RESULTS = ROOT / "benchmarks" / "results"
REFERENCE = {
    "uplift_at_30_womens": 0.066,
    "qini_womens": 0.065,
    "qini_womens_sd": 0.019,
    "always_mens_visit": 0.1828,
}
LGBM = {
    "n_estimators": 100,
    "num_leaves": 15,
    "learning_rate": 0.05,
    "min_child_samples": 100,
    "verbose": -1,
    "n_jobs": 1,
    "random_state": SEED,
}


def make_learners() -> dict:
    return {
        "S": SLearner(LGBMClassifier(**LGBM)),
        "T": TLearner(LGBMClassifier(**LGBM)),
        "X": XLearner(LGBMClassifier(**LGBM), LGBMRegressor(**LGBM)),
    }


def make_folds(y: np.ndarray, arm: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified on arm x outcome, seed 42: the folds every Hillstrom benchmark uses."""
    strata = np.char.add(arm.astype(str), y.astype(str))
    return list(
        StratifiedKFold(N_FOLDS, shuffle=True, random_state=SEED).split(np.zeros(len(y)), strata)
    )


def cross_fit(learner, X: np.ndarray, y, arm, propensity, folds) -> tuple[np.ndarray, list[str]]:
    """Out-of-fold uplift (n, n_offers) and the offers' order."""
    out, offers = None, None
    for train, test in folds:
        model = clone(learner).fit(X[train], y[train], arm[train])
        if offers is None:
            offers = [str(o) for o in model.offers_]
            out = np.zeros((len(X), len(offers)))
        elif [str(o) for o in model.offers_] != offers:
            raise RuntimeError("offers differ between folds")
        out[test] = model.predict(X[test])
    return out, offers


def womens_metrics(uplift_w, y, arm, folds) -> dict:
    """Womens vs control (visit): pooled and per-fold normalized Qini, uplift@30%."""
    keep = np.isin(arm, ["control", "womens"])
    t = (arm == "womens").astype(int)
    per_fold = []
    for _, test in folds:
        rows = test[keep[test]]
        per_fold.append(qini_coefficient(y[rows], uplift_w[rows], t[rows]))
    return {
        "qini_pooled": qini_coefficient(y[keep], uplift_w[keep], t[keep]),
        "qini_fold_mean": float(np.mean(per_fold)),
        "qini_fold_sd": float(np.std(per_fold, ddof=1)),
        "qini_per_fold": [float(q) for q in per_fold],
        "uplift_at_30": uplift_at_k(y[keep], uplift_w[keep], t[keep], k=0.3),
    }


def nbo_training_path(X: np.ndarray, y, arm, propensity, folds) -> dict:
    """The next-best-offer training path (``training.nbo.fit_and_choose``, as `funnel train nbo`
    runs it) on the same folds: learner picked on fold 0, cross-fitted, policy decided on the
    out-of-fold predictions. Offers are worth one visit and cost nothing."""
    conf = NboConfig(
        learners=["s", "t", "x"], n_estimators=LGBM["n_estimators"],
        learning_rate=LGBM["learning_rate"], num_leaves=LGBM["num_leaves"],
        min_child_samples=LGBM["min_child_samples"], n_boot=N_BOOT, seed=SEED, folds=N_FOLDS,
    )  # fmt: skip
    fold = np.zeros(len(y), dtype=np.int64)
    for k, (_, test) in enumerate(folds):
        fold[test] = k
    t0 = time.perf_counter()
    fit = fit_and_choose(
        X, y, arm, propensity, fold, ["mens", "womens"], np.ones(2), np.zeros(2),
        np.ones((len(y), 2), dtype=bool), conf,
    )  # fmt: skip
    womens = womens_metrics(fit.heldout_uplift[:, 1], y, arm, folds)
    mens = np.full(len(y), "mens", dtype=object)
    boot = {"n_boot": N_BOOT, "random_state": SEED}
    learned = policy_value_ipw_ci(y, fit.learned, arm, propensity, **boot)
    always_mens = policy_value_ipw_ci(y, mens, arm, propensity, **boot)
    diff = paired_policy_difference_ci(y, fit.learned, mens, arm, propensity, **boot)
    served = fit.comparison.served
    served_arms = fit.learned if served == "learned" else np.full(len(y), served, dtype=object)
    served_value = policy_value_ipw_ci(y, served_arms, arm, propensity, **boot)
    return {
        "learner": fit.learner_name,
        "validation_mean_qini": {
            n: float(np.mean([m["qini"] for m in v.values()])) for n, v in fit.validation.items()
        },
        **womens,
        "learned_value": list(learned),
        "always_mens_value": list(always_mens),
        "learned_minus_always_mens": list(diff),
        "learned_arm_share": fit.learned_share,
        "served": served,
        "served_value": list(served_value),
        "reason": fit.comparison.reason,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> dict:
    start = time.perf_counter()
    X_df, y, _, arm = load_hillstrom()
    X = X_df.to_numpy(dtype=float)
    propensity = arm_propensity(arm)
    folds = make_folds(y, arm)
    print(f"loaded {len(y)} rows, visit rate {y.mean():.4f}, {N_FOLDS} folds", flush=True)

    results = {}
    for name, learner in make_learners().items():
        t0 = time.perf_counter()
        uplift, offers = cross_fit(learner, X, y, arm, propensity, folds)
        metrics = womens_metrics(uplift[:, offers.index("womens")], y, arm, folds)
        decision = choose_policy(
            uplift, y, arm, propensity, offers, n_boot=N_BOOT, random_state=SEED
        )
        results[name] = {
            **metrics,
            "learned_value": decision.learned_value,
            "learned_ci": list(decision.learned_ci),
            "learned_arm_share": decision.learned_arm_share,
            "single_arm_values": decision.single_arm_values,
            "best_single_arm": decision.best_single_arm,
            "best_single_value": decision.best_single_value,
            "best_single_ci": list(decision.best_single_ci),
            "difference_vs_best_single": list(decision.difference_ci),
            "served": decision.served,
            "served_value": decision.served_value,
            "reason": decision.reason,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        r = results[name]
        print(
            f"{name}-learner: qini {r['qini_pooled']:.4f} (folds {r['qini_fold_mean']:.4f} ± "
            f"{r['qini_fold_sd']:.4f}), uplift@30% {r['uplift_at_30']:.4f}, learned "
            f"{r['learned_value']:.4f} vs always {r['best_single_arm']} "
            f"{r['best_single_value']:.4f} -> serve {r['served']} ({r['seconds']}s)",
            flush=True,
        )

    path = nbo_training_path(X, y, arm, propensity, folds)
    print(
        f"NBO training path: {path['learner']}-learner chosen, qini {path['qini_pooled']:.4f}, "
        f"uplift@30% {path['uplift_at_30']:.4f}, learned {path['learned_value'][0]:.4f} vs "
        f"always mens {path['always_mens_value'][0]:.4f} -> serve {path['served']} "
        f"({path['seconds']}s)",
        flush=True,
    )

    out = {
        "dataset": "hillstrom",
        "outcome": "visit",
        "folds": N_FOLDS,
        "seed": SEED,
        "n_boot": N_BOOT,
        "lgbm": {k: v for k, v in LGBM.items() if k not in ("verbose", "n_jobs")},
        "reference": REFERENCE,
        "learners": results,
        "nbo_training_path": path,
        "seconds": round(time.perf_counter() - start, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "hillstrom_uplift.json").write_text(json.dumps(out, indent=2) + "\n")
    (RESULTS / "hillstrom_uplift.md").write_text(render_markdown(out))
    print(f"wrote {RESULTS}/hillstrom_uplift.{{json,md}} in {out['seconds']}s", flush=True)
    return out


def _verdict(value: float, reference: float, tolerance: float) -> str:
    if value >= reference:
        return "meets or beats"
    if value >= reference - tolerance:
        return "**falls short** of the point estimate (within the stated spread) of"
    return "**falls short** of"


def render_markdown(out: dict) -> str:
    ref = out["reference"]
    lines = [
        "# Hillstrom uplift benchmark (visit)",
        "",
        (
            f"{out['folds']}-fold stratified (arm x visit) cross-fitting, seed {out['seed']}; "
            f"LightGBM {out['lgbm']}. All numbers are on out-of-fold rows. Policy values are IPW "
            f"(empirical arm shares as propensities) with {out['n_boot']}-resample bootstrap "
            "intervals; the learned policy is the argmax of predicted uplift (control if none "
            "positive) over 3 arms. Runtime "
            f"{out['seconds']} s."
        ),
        "",
        "## Womens vs No E-Mail",
        "",
        "| learner | normalized Qini (pooled) | Qini per fold, mean ± sd | uplift@30% |",
        "| --- | --- | --- | --- |",
    ]
    for name, r in out["learners"].items():
        lines.append(
            f"| {name}-learner | {r['qini_pooled']:.4f} | {r['qini_fold_mean']:.4f} ± "
            f"{r['qini_fold_sd']:.4f} | {r['uplift_at_30']:.4f} |"
        )
    lines += [
        (
            f"| reference (datasets README) | - | {ref['qini_womens']} ± {ref['qini_womens_sd']} "
            f"(S-learner LightGBM) | {ref['uplift_at_30_womens']} (class transformation, 50/50) |"
        ),
        "",
        "## 3-arm policy (visits per customer)",
        "",
        (
            "| learner | learned policy [95% CI] | arm share control/mens/womens | always control | "
            "always mens | always womens | learned - best single [95% CI] | served |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in out["learners"].items():
        s, sh = r["single_arm_values"], r["learned_arm_share"]
        d = r["difference_vs_best_single"]
        lines.append(
            f"| {name}-learner | {r['learned_value']:.4f} [{r['learned_ci'][0]:.4f}, "
            f"{r['learned_ci'][1]:.4f}] | {sh['control']:.2f}/{sh['mens']:.2f}/{sh['womens']:.2f}"
            f" | {s['control']:.4f} | {s['mens']:.4f} | {s['womens']:.4f} | {d[0]:+.4f} "
            f"[{d[1]:+.4f}, {d[2]:+.4f}] | {r['served']} |"
        )
    lines += [
        (
            f"| reference (datasets README) | naive argmax 0.1805 | - | - | {ref['always_mens_visit']}"
            " | - | - | always mens |"
        ),
        "",
        "## Against the references",
        "",
    ]
    for name, r in out["learners"].items():
        lines.append(
            f"- {name}-learner: Qini {r['qini_pooled']:.4f} "
            f"{_verdict(r['qini_pooled'], ref['qini_womens'], ref['qini_womens_sd'])} "
            f"reference {ref['qini_womens']} ± {ref['qini_womens_sd']}; uplift@30% "
            f"{r['uplift_at_30']:.4f} {_verdict(r['uplift_at_30'], ref['uplift_at_30_womens'], 0)}"
            f" the reference {ref['uplift_at_30_womens']}; learned policy "
            f"{r['learned_value']:.4f} vs always-Mens reference {ref['always_mens_visit']}. "
            f"Decision: {r['reason']}."
        )
    p = out["nbo_training_path"]
    lv, mv, dv = p["learned_value"], p["always_mens_value"], p["learned_minus_always_mens"]
    sv = p["served_value"]
    lines += [
        "",
        "## The next-best-offer training path (`training.nbo.fit_and_choose`)",
        "",
        (
            f"The {p['learner']}-learner was chosen on fold 0 (validation mean Qini "
            + ", ".join(f"{k} {v:.4f}" for k, v in p["validation_mean_qini"].items())
            + f") and cross-fitted over the {out['folds']} folds. Womens vs control: normalized "
            f"Qini {p['qini_pooled']:.4f} (folds {p['qini_fold_mean']:.4f} ± "
            f"{p['qini_fold_sd']:.4f}), uplift@30% {p['uplift_at_30']:.4f}."
        ),
        "",
        "| policy | IPW visits per customer [95% CI] |",
        "| --- | --- |",
        f"| learned (best uplift per customer) | {lv[0]:.4f} [{lv[1]:.4f}, {lv[2]:.4f}] |",
        f"| always Mens | {mv[0]:.4f} [{mv[1]:.4f}, {mv[2]:.4f}] |",
        f"| learned - always Mens | {dv[0]:+.4f} [{dv[1]:+.4f}, {dv[2]:+.4f}] |",
        f"| **served: {p['served']}** | {sv[0]:.4f} [{sv[1]:.4f}, {sv[2]:.4f}] |",
        "",
        f"Decision (doubly robust, over sending nothing): {p['reason']}.",
    ]
    served_learned = [n for n, r in out["learners"].items() if r["served"] == "learned"]
    lines += [
        "",
        "Verdict: "
        + (
            f"the learned policy of {', '.join(served_learned)} beats the best single arm."
            if served_learned
            else "no learner's policy beats the best single arm on held-out data, so the "
            "service falls back to the best single offer, as the datasets README says is the "
            "honest outcome on this dataset (gains below ~0.004 visits are noise)."
        ),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
