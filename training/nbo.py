"""The next-best-offer training job: randomized (or logged-propensity) offer exposures -> Feast
historical features -> candidate uplift learners cross-fitted, the one with the best mean Qini
over the folds kept -> held-out policy comparison -> MLflow run and registry, like the
classifiers.

The core (``fit_and_choose``) takes arrays, so the same selection and policy rule run on the
generator's funnel, on a user's exposures and on the Hillstrom experiment.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import Config, NboConfig, StagesConfig
from core.errors import InputError
from core.offers import CONTROL, Offers, load_offers
from core.stages import assign_stages, features_needed
from core.tables import read_manifest, read_tables
from features.store import feature_store, historical_features
from training import plots
from training.nbo_learners import EFFECT_PARAMS, SharedBaseLearner
from training.nbo_model import NboInputs, NboMeta, NboModel
from training.nbo_policy import compare_policies
from training.pyfunc import NboPyfunc
from training.registry import (
    NBO_ARTIFACT,
    configure_tracking,
    ensure_experiment,
    log_bundle,
    tag_and_crown,
)
from training.train import Steps, category_levels, feature_columns, input_example
from training.uplift import SLearner, TLearner, XLearner, best_offer
from training.uplift_metrics import auuc, expected_qini_area, qini_coefficient, uplift_at_k

log = logging.getLogger("funnel.training.nbo")
LEARNER_NAMES = {
    "s": "S-learner", "t": "T-learner", "x": "X-learner", "b": "shared-base learner",
}  # fmt: skip
PIP_REQUIREMENTS = ["lightgbm==4.7.*", "pandas<3", "numpy", "scikit-learn==1.9.*", "joblib"]


# -- pure pieces ---------------------------------------------------------------------------------
def make_learner(name: str, conf: NboConfig, control: str = CONTROL) -> Any:
    """An unfitted learner with the configured LightGBM base models."""
    from lightgbm import LGBMClassifier, LGBMRegressor

    params = {
        "n_estimators": conf.n_estimators, "learning_rate": conf.learning_rate,
        "num_leaves": conf.num_leaves, "min_child_samples": conf.min_child_samples,
        "verbose": -1, "n_jobs": 1, "random_state": conf.seed,
    }  # fmt: skip
    if name == "s":
        return SLearner(LGBMClassifier(**params), control=control)
    if name == "t":
        return TLearner(LGBMClassifier(**params), control=control)
    if name == "x":
        return XLearner(LGBMClassifier(**params), LGBMRegressor(**params), control=control)
    if name == "b":
        effect = {**params, **EFFECT_PARAMS}
        return SharedBaseLearner(
            LGBMClassifier(**params), LGBMClassifier(**effect), control=control
        )
    raise ValueError(f"unknown learner {name!r}; choose from {sorted(LEARNER_NAMES)}")


def subject_folds(subjects: np.ndarray, n_folds: int, seed: int = 0) -> np.ndarray:
    """A fold number per row from a hash of the subject: all exposures of one lead share a
    fold, and a lead keeps its fold when rows are added."""
    digest = np.array(
        [int(hashlib.sha256(f"{seed}:{s}".encode()).hexdigest()[:8], 16) for s in subjects]
    )
    return (digest % n_folds).astype(np.int64)


def per_offer_uplift_metrics(
    y: np.ndarray,
    uplift: np.ndarray,
    arm: np.ndarray,
    offers: list[str],
    control: str = CONTROL,
    eligible: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """Per offer, on the rows that got it or control and were eligible for it: normalized
    Qini, AUUC and uplift at 30%.

    Only eligible rows count because only they are ever offered, and because a control row
    that could not have got the offer has no treated counterpart: mixed in, it turns the
    randomized comparison into a confounded one. ``eligible`` is (n, n_offers) in the order of
    ``offers``; None counts every row.
    """
    out = {}
    for j, offer in enumerate(offers):
        rows = (arm == offer) | (arm == control)
        if eligible is not None:
            rows &= eligible[:, j]
        t = (arm[rows] == offer).astype(int)
        if t.sum() == 0 or t.sum() == len(t) or y[rows].sum() == 0:
            continue
        metrics = {"rows": float(rows.sum())}
        for name, fn in (("qini", qini_coefficient), ("auuc", auuc)):
            try:
                metrics[name] = fn(y[rows], uplift[rows, j], t)
            except ValueError:  # no responders in a group: the curve cannot be normalized
                metrics[name] = float("nan")
        try:
            metrics["uplift_at_30"] = uplift_at_k(y[rows], uplift[rows, j], t, k=0.3)
        except ValueError:
            metrics["uplift_at_30"] = float("nan")
        out[offer] = metrics
    return out


def mean_qini(metrics: dict[str, dict[str, float]]) -> float:
    values = [m["qini"] for m in metrics.values() if np.isfinite(m.get("qini", np.nan))]
    return float(np.mean(values)) if values else float("nan")


def policy_arms(
    uplift: np.ndarray,
    offers: list[str],
    values: np.ndarray,
    costs: np.ndarray,
    eligible: np.ndarray,
    control: str = CONTROL,
) -> np.ndarray:
    """The learned policy per row: the eligible offer with the best uplift x value - cost, or
    control when none is worth its cost."""
    index = best_offer(uplift, values, costs, eligible)
    return np.asarray([*offers, control], dtype=object)[index]


def single_offer_policies(
    eligible: np.ndarray, offers: list[str], control: str = CONTROL
) -> dict[str, np.ndarray]:
    """Per offer, the policy that gives it wherever it is eligible (control elsewhere)."""
    return {
        offer: np.where(eligible[:, j], offer, control).astype(object)
        for j, offer in enumerate(offers)
    }


def check_folds(arm: np.ndarray, fold: np.ndarray, arms: list[str]) -> list[int]:
    """The fold numbers, at least two, each holding exposures to every one of ``arms``."""
    folds = sorted(set(fold.tolist()))
    if len(folds) < 2:
        raise ValueError("fit_and_choose needs at least two folds")
    for f in folds:
        seen = set(arm[fold == f])
        lacking = [a for a in arms if a not in seen]
        if lacking:
            raise InputError(
                f"fold {f} has no exposure to {lacking}; every arm needs exposures in each fold "
                "(collect more, or lower training.nbo.folds)"
            )
    return folds


@dataclass
class NboFit:
    learner_name: str
    learner: Any  # fitted on every row
    validation: dict[str, dict[str, dict[str, float]]]  # learner -> offer -> out-of-fold metrics
    heldout_metrics: dict[str, dict[str, float]]  # offer -> out-of-fold metrics of the chosen one
    heldout_uplift: np.ndarray  # out-of-fold uplift, every row
    learned: np.ndarray  # the learned policy's arm per row (out of fold)
    comparison: Any  # nbo_policy.PolicyComparison, doubly robust values, out of fold
    ipw: Any  # the same with plain IPW values
    learned_share: dict[str, float] = field(default_factory=dict)
    fold_qini: dict[str, list[float]] = field(default_factory=dict)  # learner -> per fold


def fit_and_choose(
    X: np.ndarray,
    y: np.ndarray,
    arm: np.ndarray,
    propensity: np.ndarray,
    fold: np.ndarray,
    offers: list[str],
    values: np.ndarray,
    costs: np.ndarray,
    eligible: np.ndarray,
    conf: NboConfig,
    control: str = CONTROL,
    on_candidate: Any = None,
) -> NboFit:
    """Choose a learner, measure it out of fold, decide the policy, fit it on everything.

    1. Each configured learner is cross-fitted over the folds: every row gets an uplift (and
       outcome) prediction from a model that never saw it. The learner with the best mean over
       the folds of its mean Qini over offers is kept (``best_by_folds``).
    2. On the kept learner's held-out predictions the learned policy (best eligible uplift x
       value - cost, control when none is worth it) is compared with always-control and each
       single offer (given where eligible); it is served only if its paired interval against
       the best of them lies above zero.
    3. The kept learner is fitted on every row: that is the model served.

    ``fold`` holds 0 .. k-1 per row (``subject_folds``); ``eligible`` is (n, n_offers) in the
    order of ``offers``; ``on_candidate(name, metrics)`` is called per candidate learner.
    """
    arm = np.asarray(arm).astype(str)
    folds = check_folds(arm, fold, [control, *offers])
    candidates = cross_fit_candidates(
        X, y, arm, fold, folds, offers, conf, control, on_candidate, eligible
    )
    best = best_by_folds({name: c.fold_qini for name, c in candidates.items()})
    uplift, outcome, arms = candidates[best].uplift, candidates[best].outcome, candidates[best].arms
    learned = policy_arms(uplift, offers, values, costs, eligible, control)
    alternatives = {
        control: np.full(len(y), control, dtype=object),
        **single_offer_policies(eligible, offers, control),
    }
    value = dict(zip(offers, values.tolist(), strict=True))
    cost = dict(zip(offers, costs.tolist(), strict=True))
    boot = {"n_boot": conf.n_boot, "random_state": conf.seed, "control": control}
    comparison = compare_policies(
        learned, alternatives, y, arm, propensity, value=value, cost=cost,
        outcome=outcome, arms=arms, **boot,
    )  # fmt: skip
    ipw = compare_policies(
        learned, alternatives, y, arm, propensity, value=value, cost=cost, **boot
    )
    final = make_learner(best, conf, control).fit(X, y, arm)
    return NboFit(
        learner_name=best, learner=final,
        validation={name: c.metrics for name, c in candidates.items()},
        fold_qini={name: c.fold_qini for name, c in candidates.items()},
        heldout_metrics=per_offer_uplift_metrics(y, uplift, arm, offers, control, eligible),
        heldout_uplift=uplift, learned=learned, comparison=comparison, ipw=ipw,
        learned_share={a: float(np.mean(learned == a)) for a in [control, *offers]},
    )  # fmt: skip


@dataclass
class Candidate:
    """One learner's out-of-fold predictions and scores."""

    uplift: np.ndarray  # (n, n_offers)
    outcome: np.ndarray  # (n, n_arms), columns in the order of ``arms``
    arms: list[str]
    metrics: dict[str, dict[str, float]]  # offer -> metrics over every row, out of fold
    fold_qini: list[float]  # mean Qini over offers on each fold's rows


def cross_fit_candidates(
    X: np.ndarray,
    y: np.ndarray,
    arm: np.ndarray,
    fold: np.ndarray,
    folds: list[int],
    offers: list[str],
    conf: NboConfig,
    control: str = CONTROL,
    on_candidate: Any = None,
    eligible: np.ndarray | None = None,
) -> dict[str, Candidate]:
    """Each configured learner cross-fitted over ``folds`` and scored out of fold: per-offer
    uplift metrics (on the rows ``eligible`` for each offer, when given) over every row, and
    the mean Qini on each fold's rows. ``on_candidate(name, metrics)`` sees each as it comes."""
    out: dict[str, Candidate] = {}
    for name in conf.learners:
        uplift, outcome, arms = cross_fit(name, X, y, arm, fold, folds, len(offers), conf, control)
        if arms[1:] != list(offers):
            raise ValueError(f"learner offers {arms[1:]} differ from {offers}")
        per_fold = []
        for f in folds:
            rows = fold == f
            in_fold = None if eligible is None else eligible[rows]
            scores = per_offer_uplift_metrics(
                y[rows], uplift[rows], arm[rows], offers, control, in_fold
            )
            per_fold.append(mean_qini(scores))
        metrics = per_offer_uplift_metrics(y, uplift, arm, offers, control, eligible)
        out[name] = Candidate(uplift, outcome, arms, metrics, per_fold)
        if on_candidate is not None:
            on_candidate(name, metrics)
    return out


def best_by_folds(fold_qini: dict[str, list[float]]) -> str:
    """The learner with the best mean Qini over the folds (a fold where a learner's Qini is
    undefined counts as its worst); ties go to the first listed.

    Averaging the folds, rather than reading one, keeps a lucky split from deciding: on the
    generator the per-fold Qini of two learners cross each other from fold to fold."""
    if not fold_qini:
        raise ValueError("fold_qini is empty: no candidate learner to choose from")

    def score(values: list[float]) -> float:
        v = np.asarray(values, dtype=float)
        if len(v) == 0 or not np.isfinite(v).any():
            return -np.inf
        return float(np.mean(np.where(np.isfinite(v), v, np.nanmin(v))))

    return max(fold_qini, key=lambda name: score(fold_qini[name]))


def cross_fit(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    arm: np.ndarray,
    fold: np.ndarray,
    folds: list[int],
    n_offers: int,
    conf: NboConfig,
    control: str = CONTROL,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Out-of-fold predictions of learner ``name``: each fold's rows scored by a model fitted
    on the other folds. The uplift per offer (n, n_offers), the outcome per arm
    (n, n_offers + 1) and the arms in the outcome's column order."""
    uplift = np.zeros((len(y), n_offers))
    outcome = np.zeros((len(y), n_offers + 1))
    arms: list[str] = []
    for f in folds:
        inside, outside = fold == f, fold != f
        model = make_learner(name, conf, control).fit(X[outside], y[outside], arm[outside])
        uplift[inside] = model.predict(X[inside])
        outcome[inside] = model.predict_outcome(X[inside])
        arms = [str(a) for a in model.arms_]
    return uplift, outcome, arms


# -- data ----------------------------------------------------------------------------------------
def exposure_entities(cfg: Config, offers: Offers) -> pd.DataFrame:
    """Exposures as Feast entity rows with their outcome: lead_id, account_id, event_timestamp
    (= exposed_at), arm, propensity, label (converted within the outcome window). Exposures whose
    window reaches past the data are left out; unknown offers and subjects are errors."""
    tables = read_tables(cfg.raw_dir, ["accounts", "leads", "offer_exposures"])
    ex, leads = tables["offer_exposures"], tables["leads"]
    if ex.empty:
        raise InputError(
            "offer_exposures is empty: the next-best-offer model learns from offers given at "
            "random (or with logged propensities); run a campaign with a holdout first"
        )
    unknown = sorted(set(ex["offer_id"]) - {CONTROL, *offers.ids})
    if unknown:
        raise InputError(
            f"offer_exposures.offer_id has {unknown}, which {offers.source} does not declare "
            f"(declared: {offers.ids}; the no-offer arm is '{CONTROL}')"
        )
    account_of = leads.set_index("lead_id")["account_id"]
    not_leads = ~ex["subject_id"].isin(account_of.index)
    if not_leads.any():
        raise InputError(
            f"offer_exposures.subject_id must be lead ids for nbo_v1; {int(not_leads.sum())} "
            f"row(s) are not, e.g. {ex.loc[not_leads, 'subject_id'].head(3).tolist()}"
        )
    window = pd.Timedelta(days=cfg.training.nbo.outcome_window_days)
    end = pd.Timestamp(read_manifest(cfg.raw_dir)["end"])
    ex = ex[ex["exposed_at"] + window <= end]
    delay = ex["converted_at"] - ex["exposed_at"]
    return pd.DataFrame(
        {
            "lead_id": ex["subject_id"].to_numpy(),
            "account_id": account_of.loc[ex["subject_id"]].to_numpy(),
            "event_timestamp": ex["exposed_at"].to_numpy(),
            "arm": ex["offer_id"].to_numpy(),
            "propensity": ex["propensity"].to_numpy(),
            "label": (delay.notna() & (delay <= window)).to_numpy().astype(np.int8),
        }
    )


def nbo_oracle_report(
    path: Path,
    rows: pd.DataFrame,
    uplift: np.ndarray,
    offers: list[str],
    learned: np.ndarray,
    values: np.ndarray,
    costs: np.ndarray,
    eligible: np.ndarray,
) -> dict[str, float]:
    """Evaluation only: the generator's true conversion probabilities (the oracle file at
    ``path``, when there) on the same rows.

    Per offer, on the rows eligible for it that got it or control (as the held-out metrics),
    the model's Qini over the Qini of the true uplift, twice: on the outcomes drawn
    (``<offer>_qini_vs_oracle``, the mean over offers ``mean_qini_vs_oracle``) and on the
    expected outcomes, each row's outcome replaced by its true probability under the arm it got
    (``<offer>_expected_qini_vs_oracle``, ``mean_expected_qini_vs_oracle``). The first is one
    draw: the oracle's own Qini on it moves by about a tenth from draw to draw, and a model can
    land above it. The second integrates the draws out, as the MQL and churn oracles do: the
    true uplift is then a ceiling (up to the chance balance of treated and control rows along
    the ranking) and the ratio moves only with the ranking. Also the true expected net value per exposure of the learned policy, of the
    oracle's best eligible offer, and of the best single offer.
    """
    if not path.is_file():
        return {}
    oracle = pd.read_parquet(path).rename(
        columns={"subject_id": "lead_id", "exposed_at": "event_timestamp"}
    )
    merged = rows[["lead_id", "event_timestamp"]].merge(
        oracle, on=["lead_id", "event_timestamp"], how="left"
    )
    columns = [f"p_{o}" for o in [CONTROL, *offers]]
    if any(c not in merged for c in columns) or merged[columns].isna().any().any():
        return {}
    p = merged[columns].to_numpy()
    true_uplift = p[:, 1:] - p[:, [0]]
    y, arm = rows["label"].to_numpy(), rows["arm"].to_numpy().astype(str)
    out: dict[str, float] = {}
    ratios: dict[str, list[float]] = {"": [], "expected_": []}
    for j, offer in enumerate(offers):
        rows = ((arm == offer) | (arm == CONTROL)) & eligible[:, j]
        t = (arm[rows] == offer).astype(int)
        expected = np.where(t == 1, p[rows, 1 + j], p[rows, 0])  # under the arm each row got
        try:
            model_q = qini_coefficient(y[rows], uplift[rows, j], t)
            oracle_q = qini_coefficient(y[rows], true_uplift[rows, j], t)
        except ValueError:
            continue
        out[f"{offer}_oracle_qini"] = oracle_q
        if oracle_q > 0:
            out[f"{offer}_qini_vs_oracle"] = model_q / oracle_q
            ratios[""].append(model_q / oracle_q)
        oracle_e = expected_qini_area(expected, true_uplift[rows, j], t)
        if oracle_e > 0:
            ratio = expected_qini_area(expected, uplift[rows, j], t) / oracle_e
            out[f"{offer}_expected_qini_vs_oracle"] = ratio
            ratios["expected_"].append(ratio)
    for kind, values_ in ratios.items():
        if values_:
            out[f"mean_{kind}qini_vs_oracle"] = float(np.mean(values_))
    net = true_uplift * values - costs  # true net value of each offer per row
    index = {o: j for j, o in enumerate(offers)}

    def true_value(chosen: np.ndarray) -> float:
        got = [net[i, index[a]] if a in index else 0.0 for i, a in enumerate(chosen)]
        return float(np.mean(got))

    out["true_value_learned"] = true_value(learned)
    best = np.where(eligible, net, -np.inf)
    out["true_value_oracle_policy"] = float(np.mean(np.maximum(best.max(axis=1), 0.0)))
    singles = {o: true_value(a) for o, a in single_offer_policies(eligible, offers).items()}
    out["true_value_best_single"] = max(singles.values())
    return out


# -- the job -------------------------------------------------------------------------------------
@dataclass
class NboResult:
    model_name: str
    version: str
    run_id: str
    learner: str
    served: str
    reason: str
    validation_qini: dict[str, float]
    metrics: dict[str, float]
    policy_values: dict[str, tuple[float, float, float]]
    became_champion: bool
    timings: dict[str, float] = field(default_factory=dict)


def train_nbo(cfg: Config, progress: bool = True) -> NboResult:
    """Fit, choose, evaluate, log and register the next-best-offer model."""
    conf = cfg.training.nbo
    offers = load_offers(cfg)
    steps = Steps(total=4, echo=progress)
    configure_tracking(cfg)
    ensure_experiment(cfg, conf.experiment)

    with steps.step("build training set (offer exposures + Feast historical features)"):
        entity = exposure_entities(cfg, offers)
        outcome = entity[["arm", "propensity", "label"]].reset_index(drop=True)
        frame = historical_features(
            feature_store(cfg), entity[["lead_id", "account_id", "event_timestamp"]],
            conf.feature_service,
        ).reset_index(drop=True)  # fmt: skip
        frame = pd.concat([frame, outcome], axis=1)
        exposed = sorted(set(frame["arm"]) - {CONTROL})
        never = [o for o in offers.ids if o not in exposed]
        if never:
            log.warning("offers never exposed, left out of the model: %s", never)
        modelled = sorted(o for o in offers.ids if o in exposed)  # the learners sort arms
        if not modelled:
            raise InputError("no declared offer was ever exposed; nothing to learn")
        stage = assign_stages(cfg.stages, frame)
        columns = [offers.ids.index(o) for o in modelled]
        eligible = offers.eligible(stage, frame["is_customer"])[:, columns]
        values = np.array([offers.get(o).value for o in modelled])
        costs = np.array([offers.get(o).cost for o in modelled])
        fold = subject_folds(frame["lead_id"].to_numpy(), conf.folds, conf.seed)

    oracle = cfg.oracle_dir / "nbo_oracle.parquet"
    stages = cfg.stages if conf.stage_feature else None
    return fit_and_register(
        conf, frame, fold, modelled, values, costs, eligible, steps, oracle=oracle, stages=stages
    )


def fit_and_register(
    conf: NboConfig, frame: pd.DataFrame, fold: np.ndarray, modelled: list[str],
    values: np.ndarray, costs: np.ndarray, eligible: np.ndarray, steps: Any, kind: str = "nbo",
    oracle: Path | None = None, stages: StagesConfig | None = None,
) -> NboResult:  # fmt: skip
    """Fit and choose the learner (``fit_and_choose``), evaluate it out of fold, log everything
    to MLflow and register the model. ``frame`` holds the features and label, arm, propensity,
    event_timestamp; ``kind`` tags the model (``nbo``, or an imported table's name); ``oracle``
    is the generator's oracle file of these exposures (none for an imported table); with
    ``stages`` the learners also read each row's funnel stage by those rules."""
    import mlflow

    inputs, categorical = nbo_inputs(frame, stages)
    X = inputs(frame)
    y, arm = frame["label"].to_numpy(), frame["arm"].to_numpy()
    with mlflow.start_run(run_name=f"{kind}-train") as parent:
        mlflow.set_tags({"model_kind": kind, "feature_service": conf.feature_service})
        mlflow.log_params(nbo_params(conf, modelled, len(frame)))
        mlflow.log_param("stage_input", inputs.stages is not None)
        learners = ", ".join(LEARNER_NAMES[n] for n in conf.learners)
        with steps.step(
            f"cross-fit {learners} over {conf.folds} folds, keep the best mean Qini over the "
            "folds; compare policies"
        ):
            fit = fit_and_choose(
                X, y, arm, frame["propensity"].to_numpy(), fold, modelled, values, costs,
                eligible, conf, on_candidate=log_candidate,
            )  # fmt: skip

        with steps.step("evaluate on the held-out folds"):
            truth: dict[str, float] = {}
            if oracle is not None:
                truth = nbo_oracle_report(
                    oracle, frame, fit.heldout_uplift, modelled, fit.learned, values, costs,
                    eligible,
                )  # fmt: skip
            metrics = heldout_metrics(fit, truth)
            log_nbo_evaluation(fit, metrics, y, arm.astype(str), modelled)

        with steps.step("log and register the model in MLflow"):
            meta = nbo_meta(conf.feature_service, inputs, modelled, fit, frame["event_timestamp"])
            tags = {"feature_service": conf.feature_service, "model_kind": kind}
            version, became_champion = register_nbo(
                NboModel(fit.learner, meta), frame, categorical, conf.registered_model, tags
            )
    c = fit.comparison
    return NboResult(
        model_name=conf.registered_model, version=version, run_id=parent.info.run_id,
        learner=fit.learner_name, served=c.served, reason=c.reason,
        validation_qini={n: float(np.mean(q)) for n, q in fit.fold_qini.items()},
        metrics=metrics, policy_values=c.values, became_champion=became_champion,
        timings=steps.timings,
    )  # fmt: skip


def nbo_inputs(
    frame: pd.DataFrame, stages: StagesConfig | None = None
) -> tuple[NboInputs, list[str]]:
    """The learner's inputs of exposure rows: the features (every column but the ids, arm and
    propensity) with their categorical levels, and the stage by ``stages`` when every feature
    the rules read is among them; and the categorical feature names."""
    key_columns = [c for c in frame.columns if c.endswith("_id")]
    names, categorical = feature_columns(frame.drop(columns=["arm", "propensity", *key_columns]))
    categories = category_levels(frame, categorical)
    lacking = [f for f in features_needed(stages) if f not in names] if stages else []
    if lacking:
        log.warning("the stage rules read %s, not among the features: no stage input", lacking)
        stages = None
    return NboInputs(names, categories, stages), categorical


def nbo_params(conf: NboConfig, offers: list[str], rows: int) -> dict[str, Any]:
    """The training run's parameters."""
    return {
        "feature_service": conf.feature_service, "learners": ",".join(conf.learners),
        "offers": ",".join(offers), "outcome_window_days": conf.outcome_window_days,
        "n_estimators": conf.n_estimators, "learning_rate": conf.learning_rate,
        "num_leaves": conf.num_leaves, "min_child_samples": conf.min_child_samples,
        "folds": conf.folds, "rows": rows,
    }  # fmt: skip


def log_candidate(name: str, metrics: dict[str, dict[str, float]]) -> None:
    """A candidate learner's out-of-fold metrics, as a child run of the active MLflow run."""
    import mlflow

    with mlflow.start_run(run_name=f"learner-{name}", nested=True):
        mlflow.log_param("learner", name)
        mlflow.log_metric("val_mean_qini", mean_qini(metrics))
        mlflow.log_metrics({
            f"val_{offer}_{k}": v for offer, m in metrics.items() for k, v in m.items()
            if np.isfinite(v)
        })  # fmt: skip


def interval_metrics(
    prefix: str, values: dict[str, tuple[float, float, float]]
) -> dict[str, float]:
    """``{prefix}_{name}``, ``..._low`` and ``..._high`` of each (value, low, high)."""
    out: dict[str, float] = {}
    for name, (v, lo, hi) in values.items():
        out.update({f"{prefix}_{name}": v, f"{prefix}_{name}_low": lo, f"{prefix}_{name}_high": hi})
    return out


def heldout_metrics(fit: NboFit, oracle: dict[str, float]) -> dict[str, float]:
    """The kept learner's out-of-fold metrics: mean and per-offer uplift metrics, the
    oracle's (when known) and each policy's value with its interval, doubly robust and IPW."""
    metrics: dict[str, float] = {"mean_qini": mean_qini(fit.heldout_metrics)}
    for offer, m in fit.heldout_metrics.items():
        metrics.update({f"{offer}_{k}": v for k, v in m.items()})
    metrics.update(oracle)
    metrics.update(interval_metrics("policy", fit.comparison.values))
    metrics["learned_minus_best_alternative"] = fit.comparison.difference[0]
    metrics.update(interval_metrics("ipw", fit.ipw.values))
    return metrics


def log_nbo_evaluation(
    fit: NboFit, metrics: dict[str, float], y: np.ndarray, arm: np.ndarray, offers: list[str]
) -> None:
    """The held-out metrics, the policy decision and the Qini and policy plots, in the active
    MLflow run."""
    import mlflow

    c = fit.comparison
    mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items() if np.isfinite(v)})
    mlflow.set_tags({"learner": fit.learner_name, "served_policy": c.served})
    mlflow.log_text(c.reason, "policy_decision.txt")
    mlflow.log_figure(plots.qini_plot(y, fit.heldout_uplift, arm, offers), "plots/qini.png")
    mlflow.log_figure(plots.policy_plot(c.values, c.served), "plots/policy_values.png")


def nbo_meta(
    feature_service: str, inputs: NboInputs, offers: list[str], fit: NboFit, stamps: pd.Series,
) -> NboMeta:  # fmt: skip
    """The bundle's contract (features, categorical levels, stage rules) and the policy
    training decided to serve."""
    c = fit.comparison
    return NboMeta(
        feature_service=feature_service, features=inputs.features,
        categories=inputs.categories, offers=offers, control=CONTROL, learner=fit.learner_name,
        stages=None if inputs.stages is None else inputs.stages.model_dump(),
        policy={"served": c.served, "reason": c.reason,
                "values": {k: list(v) for k, v in c.values.items()},
                "learned_share": fit.learned_share},
        extra={"data_window": [str(stamps.min()), str(stamps.max())],
               "validation_mean_qini": {n: float(np.mean(q)) for n, q in fit.fold_qini.items()}},
    )  # fmt: skip


def register_nbo(
    model: NboModel,
    frame: pd.DataFrame,
    categorical: list[str],
    registered_model: str,
    tags: dict[str, str],
) -> tuple[str, bool]:
    """Log and register the model from the active run; crown it champion when the model has
    none. The version and whether it became champion."""
    example = input_example(frame, model.feature_names, categorical)
    version = log_bundle(
        model, NBO_ARTIFACT, NboPyfunc(), registered_model, example, PIP_REQUIREMENTS
    )
    return version, tag_and_crown(registered_model, version, tags)
