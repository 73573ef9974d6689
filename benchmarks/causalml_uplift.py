"""Our multi-treatment S/T/X uplift learners against causalml's meta-learners, on the same folds.

Run as ``uv run --frozen --group bench python benchmarks/causalml_uplift.py`` (causalml is in the
``bench`` dependency group only; the service and the training code never import it, and a plain
``uv sync --frozen`` removes it again).

Data: the Hillstrom e-mail experiment, outcome ``visit``, arms control / mens / womens. Folds,
seed and LightGBM parameters are those of ``benchmarks/hillstrom_uplift.py`` (5-fold
StratifiedKFold on arm x visit, seed 42), so the numbers are comparable with it. In each fold
every learner is fitted on the training part and predicts the held-out part; causalml's
learners get LightGBM base models with the same parameters. Measured per learner, on the
out-of-fold predictions: normalized Qini and uplift@30% of each offer against control (rows of
that offer and the control only), fit + predict seconds summed over the folds, and the median
latency of ``predict`` on a single row (200 calls, last fold's model).

Where a causalml learner wants propensities (X, DR, R), it gets the constant offer share among
offer + control rows of the training part, which is what our X-learner uses by default (the
experiment is randomized). Writes ``benchmarks/results/causalml_uplift.json`` and ``.md``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np
from lightgbm import LGBMClassifier, LGBMRegressor

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.hillstrom_uplift import LGBM, N_FOLDS, SEED, make_folds
from training.hillstrom import load_hillstrom
from training.uplift import SLearner, TLearner, XLearner
from training.uplift_metrics import qini_coefficient, uplift_at_k

try:
    from causalml.inference.meta import (
        BaseDRLearner,
        BaseRClassifier,
        BaseSClassifier,
        BaseTClassifier,
        BaseXClassifier,
    )
except ImportError as err:  # pragma: no cover - depends on the environment
    raise SystemExit(
        "causalml is not installed; run this benchmark with "
        "`uv run --frozen --group bench python benchmarks/causalml_uplift.py`"
    ) from err

RESULTS = ROOT / "benchmarks" / "results"
TOP_K = 0.3
LATENCY_CALLS = 200


class _Ours:
    """Adapter for ``training.uplift`` learners: uplift columns named by ``offers_``."""

    library = "ours"

    def __init__(self, model):
        self.model = model

    def fit(self, X: np.ndarray, y: np.ndarray, arm: np.ndarray) -> _Ours:
        self.model.fit(X, y, arm)
        self.offers = [str(o) for o in self.model.offers_]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict(X)

    def predict_served(self, X: np.ndarray) -> np.ndarray:
        """What the service calls: the native boosters, no scikit-learn input checks."""
        from training.uplift import predict_uplift_fast

        return predict_uplift_fast(self.model, X)


class _CausalML:
    """Adapter for causalml meta-learners: uplift columns named by ``t_groups``.

    ``propensity`` says where the learner takes propensities: nowhere, in ``fit`` only, or in
    ``fit`` and ``predict``. They are the offer's share among offer + control training rows.
    """

    library = "causalml"

    def __init__(self, model, control: str, propensity: str = "none", fit_kwargs=None):
        self.model = model
        self.control = control
        self.propensity = propensity
        self.fit_kwargs = fit_kwargs or {}

    def _p(self, n: int) -> dict:
        return {group: np.full(n, share) for group, share in self.shares.items()}

    def fit(self, X: np.ndarray, y: np.ndarray, arm: np.ndarray) -> _CausalML:
        n_control = np.sum(arm == self.control)
        self.shares = {
            group: np.sum(arm == group) / (np.sum(arm == group) + n_control)
            for group in np.unique(arm[arm != self.control])
        }
        kwargs = dict(self.fit_kwargs)
        if self.propensity != "none":
            kwargs["p"] = self._p(len(X))
        self.model.fit(X=X, treatment=arm, y=y, **kwargs)
        self.offers = [str(g) for g in self.model.t_groups]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.propensity == "fit_predict":
            return self.model.predict(X, p=self._p(len(X)))
        return self.model.predict(X)


def make_learners(control: str) -> dict[str, Callable[[], object]]:
    """Name -> factory of a fresh, unfitted adapter; every base model has the LGBM params."""

    def clf() -> LGBMClassifier:
        return LGBMClassifier(**LGBM)

    def reg() -> LGBMRegressor:
        return LGBMRegressor(**LGBM)

    return {
        "S ours": lambda: _Ours(SLearner(clf(), control=control)),
        "T ours": lambda: _Ours(TLearner(clf(), control=control)),
        "X ours": lambda: _Ours(XLearner(clf(), reg(), control=control)),
        "S causalml": lambda: _CausalML(BaseSClassifier(clf(), control_name=control), control),
        "T causalml": lambda: _CausalML(BaseTClassifier(clf(), control_name=control), control),
        "X causalml": lambda: _CausalML(
            BaseXClassifier(outcome_learner=clf(), effect_learner=reg(), control_name=control),
            control,
            propensity="fit_predict",
        ),
        # BaseDRClassifier's fit scores its outcome models with predict() (class labels), so the
        # regressor variant is used: LightGBM regressors on the 0/1 outcome and the DR target.
        "DR causalml": lambda: _CausalML(
            BaseDRLearner(learner=reg(), control_name=control),
            control,
            propensity="fit",
            fit_kwargs={"seed": SEED},
        ),
        "R causalml": lambda: _CausalML(
            BaseRClassifier(
                outcome_learner=clf(),
                effect_learner=reg(),
                control_name=control,
                n_fold=5,
                random_state=SEED,
            ),
            control,
            propensity="fit",
            fit_kwargs={"verbose": False},
        ),
    }


def _latency_ms(predict, row: np.ndarray, calls: int = LATENCY_CALLS) -> float:
    """Median wall time of ``predict`` on one row, in milliseconds (after 5 warm-up calls)."""
    for _ in range(5):
        predict(row)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        predict(row)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def _offer_metrics(uplift: np.ndarray, y, arm, offer: str, control: str, folds) -> dict:
    keep = np.isin(arm, [control, offer])
    t = (arm == offer).astype(int)
    per_fold = []
    for _, test in folds:
        rows = test[keep[test]]
        per_fold.append(qini_coefficient(y[rows], uplift[rows], t[rows]))
    return {
        "qini": qini_coefficient(y[keep], uplift[keep], t[keep]),
        "qini_fold_mean": float(np.mean(per_fold)),
        "qini_fold_sd": float(np.std(per_fold, ddof=1)) if len(per_fold) > 1 else 0.0,
        "uplift_at_30": uplift_at_k(y[keep], uplift[keep], t[keep], k=TOP_K),
        "mean_uplift": float(uplift[keep].mean()),
    }


def compare(X, y, arm, folds, control: str = "control") -> dict:
    """Cross-fit every learner on ``folds`` and score its out-of-fold uplift per offer.

    ``X`` (n, d) numeric, ``y`` binary, ``arm`` labels with ``control`` among them, ``folds`` a
    list of (train, test) index arrays covering every row once. Returns, per learner, its
    library, per-offer metrics, fit + predict seconds and single-row predict latency.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y).astype(int)
    arm = np.asarray(arm).astype(str)
    offers = sorted(str(a) for a in np.unique(arm) if a != control)
    covered = np.zeros(len(y), dtype=int)
    for _, test in folds:
        covered[test] += 1
    if not (covered == 1).all():
        raise ValueError("folds must hold every row in exactly one test part")

    results, oof = {}, {}
    for name, factory in make_learners(control).items():
        uplift = np.full((len(y), len(offers)), np.nan)
        seconds, model = 0.0, None
        for train, test in folds:
            t0 = time.perf_counter()
            model = factory().fit(X[train], y[train], arm[train])
            pred = np.asarray(model.predict(X[test]), dtype=float)
            seconds += time.perf_counter() - t0
            if pred.shape != (len(test), len(model.offers)):
                raise RuntimeError(f"{name}: predict returned shape {pred.shape}")
            if sorted(model.offers) != offers:
                raise RuntimeError(f"{name}: offers {model.offers} differ from {offers}")
            for j, offer in enumerate(model.offers):  # map columns by name, not position
                uplift[test, offers.index(offer)] = pred[:, j]
        if not np.isfinite(uplift).all():
            raise RuntimeError(f"{name}: out-of-fold uplift is incomplete or not finite")
        oof[name] = uplift
        results[name] = {
            "library": model.library,
            "offers": {
                offer: _offer_metrics(uplift[:, j], y, arm, offer, control, folds)
                for j, offer in enumerate(offers)
            },
            "fit_predict_seconds": round(seconds, 2),
            "predict_1row_ms": round(_latency_ms(model.predict, X[folds[-1][1][:1]]), 3),
            "served_1row_ms": (
                round(_latency_ms(model.predict_served, X[folds[-1][1][:1]]), 3)
                if hasattr(model, "predict_served")
                else None
            ),
        }
        r = results[name]
        summary = ", ".join(
            f"{o}: qini {m['qini']:.4f} up@30 {m['uplift_at_30']:.4f}"
            for o, m in r["offers"].items()
        )
        print(
            f"{name}: {summary}; fit {r['fit_predict_seconds']}s, "
            f"1-row {r['predict_1row_ms']:.2f} ms",
            flush=True,
        )
    # Largest out-of-fold |uplift difference| between our learner and causalml's of the same kind.
    agreement = {
        kind: float(np.abs(oof[f"{kind} ours"] - oof[f"{kind} causalml"]).max())
        for kind in ("S", "T", "X")
        if f"{kind} ours" in oof and f"{kind} causalml" in oof
    }
    return {"offers": offers, "control": control, "learners": results, "max_abs_diff": agreement}


def render_markdown(out: dict, offers: list[str] | None = None) -> str:
    """The results table; ``offers`` orders the offer columns (default: ``out["offers"]``)."""
    offers = out["offers"] if offers is None else offers
    header = "".join(f" Qini {o} | uplift@30 {o} |" for o in offers)
    lines = [
        "# Uplift meta-learners: ours vs causalml (Hillstrom, visit)",
        "",
        (
            f"{out['folds']}-fold stratified (arm x visit) cross-fitting, seed {out['seed']} (the "
            f"folds of `hillstrom_uplift.py`); every base model is LightGBM {out['lgbm']}, "
            f"n_jobs=1. causalml {out['versions']['causalml']}, LightGBM "
            f"{out['versions']['lightgbm']}. Qini is normalized and pooled over the out-of-fold "
            "rows of the offer and the control; uplift@30% is the treated minus control visit "
            "rate in the top 30% by predicted uplift. fit s is fit + predict summed over the "
            f"folds; 1-row predict is the median of {LATENCY_CALLS} calls on one row. "
            f"Runtime {out['seconds']} s."
        ),
        "",
        f"| learner | library |{header} fit s | 1-row predict ms | 1-row served ms |",
        "| --- | --- |" + " --- | --- |" * len(offers) + " --- | --- | --- |",
    ]
    for name, r in out["learners"].items():
        cells = "".join(
            f" {r['offers'][o]['qini']:.4f} | {r['offers'][o]['uplift_at_30']:.4f} |"
            for o in offers
        )
        lines.append(
            f"| {name.split()[0]} | {r['library']} |{cells} {r['fit_predict_seconds']:.1f} "
            f"| {r['predict_1row_ms']:.2f} | "
            + (f"{r['served_1row_ms']:.2f} |" if r.get("served_1row_ms") is not None else "- |")
        )
    lines += [
        "",
        "Notes:",
        "",
        (
            "- Largest out-of-fold |uplift(ours) - uplift(causalml)|: "
            + ", ".join(f"{k} {v:.2g}" for k, v in out["max_abs_diff"].items())
            + " (0 means the same predictions on every row)."
        ),
        (
            "- causalml fits every offer against the control on its own (S: one model per offer "
            "on that offer's and the control's rows, with a 0/1 treatment column); ours fits one "
            "S model on all arms with a one-hot arm. T and X are the same decomposition in both."
        ),
        (
            "- X, DR and R get the offer's share of offer + control training rows as a constant "
            "propensity, as our X-learner does by default."
        ),
        (
            "- DR uses `BaseDRLearner` with LightGBM regressors (the classifier variant scores "
            "its outcome models with class labels in fit). R (`BaseRClassifier`) cross-fits its "
            "outcome model with `cross_val_predict(n_jobs=-1)`, which causalml hard-codes, so "
            "its fit time uses both cores."
        ),
        "",
    ]
    return "\n".join(lines)


def main() -> dict:
    logging.getLogger("causalml").setLevel(logging.WARNING)
    start = time.perf_counter()
    X_df, y, _, arm = load_hillstrom()
    X = X_df.to_numpy(dtype=float)
    folds = make_folds(y, arm)
    print(f"loaded {len(y)} rows, visit rate {y.mean():.4f}, {N_FOLDS} folds", flush=True)

    result = compare(X, y, arm, folds, control="control")
    out = {
        "dataset": "hillstrom",
        "outcome": "visit",
        "folds": N_FOLDS,
        "seed": SEED,
        "top_k": TOP_K,
        "latency_calls": LATENCY_CALLS,
        "lgbm": {k: v for k, v in LGBM.items() if k not in ("verbose", "n_jobs")},
        "versions": {pkg: version(pkg) for pkg in ("causalml", "lightgbm", "scikit-learn")},
        **result,
        "seconds": round(time.perf_counter() - start, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "causalml_uplift.json").write_text(json.dumps(out, indent=2) + "\n")
    markdown = render_markdown(out, offers=["womens", "mens"])
    (RESULTS / "causalml_uplift.md").write_text(markdown)
    print()
    print(markdown)
    print(f"wrote {RESULTS}/causalml_uplift.{{json,md}} in {out['seconds']}s", flush=True)
    return out


if __name__ == "__main__":
    main()
