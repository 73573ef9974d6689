"""The next-best-offer training job: randomized (or logged-propensity) offer exposures -> Feast
historical features -> candidate uplift learners, the one with the best validation Qini kept ->
held-out policy comparison -> MLflow run and registry, like the classifiers.

The core (``fit_and_choose``) takes arrays, so the same selection and policy rule run on the
generator's funnel, on a user's exposures and on the Hillstrom experiment.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import Config, NboConfig
from core.offers import CONTROL, Offers

log = logging.getLogger("funnel.training.nbo")
LEARNER_NAMES = {"s": "S-learner", "t": "T-learner", "x": "X-learner"}
PIP_REQUIREMENTS = ["lightgbm==4.7.*", "pandas<3", "numpy", "scikit-learn==1.9.*", "joblib"]


# -- pure pieces ---------------------------------------------------------------------------------
def make_learner(name: str, conf: NboConfig, control: str = CONTROL) -> Any:
    """An unfitted learner with the configured LightGBM base models."""
    from lightgbm import LGBMClassifier, LGBMRegressor

    from training.uplift import SLearner, TLearner, XLearner

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
    raise ValueError(f"unknown learner {name!r}; choose from {sorted(LEARNER_NAMES)}")


def subject_folds(subjects: np.ndarray, n_folds: int, seed: int = 0) -> np.ndarray:
    """A fold number per row from a hash of the subject: all exposures of one lead share a
    fold, and a lead keeps its fold when rows are added."""
    digest = np.array(
        [int(hashlib.sha256(f"{seed}:{s}".encode()).hexdigest()[:8], 16) for s in subjects]
    )
    return (digest % n_folds).astype(np.int64)


def per_offer_uplift_metrics(
    y: np.ndarray, uplift: np.ndarray, arm: np.ndarray, offers: list[str], control: str = CONTROL
) -> dict[str, dict[str, float]]:
    """Per offer, on the rows that got it or control: normalized Qini, AUUC and uplift at 30%."""
    from training.uplift_metrics import auuc, qini_coefficient, uplift_at_k

    out = {}
    for j, offer in enumerate(offers):
        rows = (arm == offer) | (arm == control)
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
    uplift: np.ndarray, offers: list[str], values: np.ndarray, costs: np.ndarray,
    eligible: np.ndarray, control: str = CONTROL,
) -> np.ndarray:
    """The learned policy per row: the eligible offer with the best uplift x value - cost, or
    control when none is worth its cost."""
    from training.uplift import best_offer

    index = best_offer(uplift, values, costs, eligible)
    return np.asarray([*offers, control], dtype=object)[index]


@dataclass
class NboFit:
    learner_name: str
    learner: Any  # fitted on every row
    validation: dict[str, dict[str, dict[str, float]]]  # learner -> offer -> metrics
    heldout_metrics: dict[str, dict[str, float]]  # offer -> out-of-fold metrics of the chosen one
    heldout_uplift: np.ndarray  # out-of-fold uplift, every row
    learned: np.ndarray  # the learned policy's arm per row (out of fold)
    comparison: Any  # nbo_policy.PolicyComparison, doubly robust values, out of fold
    ipw: Any  # the same with plain IPW values
    learned_share: dict[str, float] = field(default_factory=dict)


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

    1. Each configured learner is fitted on the rows outside fold 0 and scored on fold 0 by
       its mean Qini over offers; the best is kept.
    2. The kept learner is cross-fitted over the folds: every row gets an uplift (and outcome)
       prediction from a model that never saw it. On those held-out predictions the learned
       policy (best eligible uplift x value - cost, control when none is worth it) is compared
       with always-control and each single offer (given where eligible); it is served only if
       its paired interval against the best of them lies above zero.
    3. The kept learner is fitted on every row: that is the model served.

    ``fold`` holds 0 .. k-1 per row (``subject_folds``); ``eligible`` is (n, n_offers) in the
    order of ``offers``; ``on_candidate(name, metrics)`` is called per candidate learner.
    """
    from training.nbo_policy import compare_policies

    arm = np.asarray(arm).astype(str)
    folds = sorted(set(fold.tolist()))
    if len(folds) < 2:
        raise ValueError("fit_and_choose needs at least two folds")
    for f in folds:
        seen = set(arm[fold == f])
        lacking = [a for a in [control, *offers] if a not in seen]
        if lacking:
            raise ValueError(
                f"fold {f} has no exposure to {lacking}; every arm needs exposures in each fold "
                "(collect more, or lower training.nbo.folds)"
            )
    valid, train = np.flatnonzero(fold == folds[0]), np.flatnonzero(fold != folds[0])
    scores: dict[str, dict[str, dict[str, float]]] = {}
    for name in conf.learners:
        learner = make_learner(name, conf, control).fit(X[train], y[train], arm[train])
        if [str(o) for o in learner.offers_] != list(offers):
            raise ValueError(f"learner offers {list(learner.offers_)} differ from {offers}")
        scores[name] = per_offer_uplift_metrics(
            y[valid], learner.predict(X[valid]), arm[valid], offers, control
        )
        if on_candidate is not None:
            on_candidate(name, scores[name])
    best = max(scores, key=lambda n: np.nan_to_num(mean_qini(scores[n]), nan=-np.inf))

    uplift = np.zeros((len(y), len(offers)))
    outcome = np.zeros((len(y), len(offers) + 1))
    arms: list[str] = []
    for f in folds:
        inside, outside = fold == f, fold != f
        model = make_learner(best, conf, control).fit(X[outside], y[outside], arm[outside])
        uplift[inside] = model.predict(X[inside])
        outcome[inside] = model.predict_outcome(X[inside])
        arms = [str(a) for a in model.arms_]
    learned = policy_arms(uplift, offers, values, costs, eligible, control)
    alternatives = {control: np.full(len(y), control, dtype=object)}
    for j, offer in enumerate(offers):
        alternatives[offer] = np.where(eligible[:, j], offer, control).astype(object)
    value = dict(zip(offers, values.tolist(), strict=True))
    cost = dict(zip(offers, costs.tolist(), strict=True))
    boot = {"n_boot": conf.n_boot, "random_state": conf.seed, "control": control}
    comparison = compare_policies(
        learned, alternatives, y, arm, propensity, value=value, cost=cost,
        outcome=outcome, arms=arms, **boot,
    )  # fmt: skip
    ipw = compare_policies(learned, alternatives, y, arm, propensity, value=value, cost=cost, **boot)
    final = make_learner(best, conf, control).fit(X, y, arm)
    return NboFit(
        learner_name=best, learner=final, validation=scores,
        heldout_metrics=per_offer_uplift_metrics(y, uplift, arm, offers, control),
        heldout_uplift=uplift, learned=learned, comparison=comparison, ipw=ipw,
        learned_share={a: float(np.mean(learned == a)) for a in [control, *offers]},
    )  # fmt: skip


# -- data ----------------------------------------------------------------------------------------
def exposure_entities(cfg: Config, offers: Offers) -> pd.DataFrame:
    """Exposures as Feast entity rows with their outcome: lead_id, account_id, event_timestamp
    (= exposed_at), arm, propensity, label (converted within the outcome window). Exposures whose
    window reaches past the data are left out; unknown offers and subjects are errors."""
    from core.tables import read_tables
    from training.train import read_manifest

    tables = read_tables(cfg.raw_dir, ["accounts", "leads", "offer_exposures"])
    ex, leads = tables["offer_exposures"], tables["leads"]
    if ex.empty:
        raise ValueError(
            "offer_exposures is empty: the next-best-offer model learns from offers given at "
            "random (or with logged propensities); run a campaign with a holdout first"
        )
    unknown = sorted(set(ex["offer_id"]) - {CONTROL, *offers.ids})
    if unknown:
        raise ValueError(
            f"offer_exposures.offer_id has {unknown}, which {offers.source} does not declare "
            f"(declared: {offers.ids}; the no-offer arm is '{CONTROL}')"
        )
    account_of = leads.set_index("lead_id")["account_id"]
    not_leads = ~ex["subject_id"].isin(account_of.index)
    if not_leads.any():
        raise ValueError(
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
    cfg: Config, rows: pd.DataFrame, uplift: np.ndarray, offers: list[str], learned: np.ndarray,
    values: np.ndarray, costs: np.ndarray, eligible: np.ndarray,
) -> dict[str, float]:
    """Evaluation only: the generator's true conversion probabilities on the same rows.

    Per offer, the Qini of the true uplift next to the model's; and the true expected net
    value per exposure of the learned policy, of the oracle's best eligible offer, and of the
    best single offer.
    """
    from training.uplift_metrics import qini_coefficient

    path = cfg.oracle_dir / "nbo_oracle.parquet"
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
    ratios = []
    for j, offer in enumerate(offers):
        rows = (arm == offer) | (arm == CONTROL)
        t = (arm[rows] == offer).astype(int)
        try:
            model_q = qini_coefficient(y[rows], uplift[rows, j], t)
            oracle_q = qini_coefficient(y[rows], true_uplift[rows, j], t)
        except ValueError:
            continue
        out[f"{offer}_oracle_qini"] = oracle_q
        if oracle_q > 0:
            out[f"{offer}_qini_vs_oracle"] = model_q / oracle_q
            ratios.append(model_q / oracle_q)
    if ratios:
        out["mean_qini_vs_oracle"] = float(np.mean(ratios))
    net = true_uplift * values - costs  # true net value of each offer per row
    index = {o: j for j, o in enumerate(offers)}

    def true_value(chosen: np.ndarray) -> float:
        got = [net[i, index[a]] if a in index else 0.0 for i, a in enumerate(chosen)]
        return float(np.mean(got))

    out["true_value_learned"] = true_value(learned)
    best = np.where(eligible, net, -np.inf)
    out["true_value_oracle_policy"] = float(np.mean(np.maximum(best.max(axis=1), 0.0)))
    singles = {o: true_value(np.where(eligible[:, j], o, CONTROL)) for j, o in enumerate(offers)}
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

    from app.pipeline import feature_store
    from core.offers import load_offers
    from core.stages import assign_stages
    from features.store import historical_features
    from training.registry import configure_tracking, ensure_experiment
    from training.train import Steps

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
            raise ValueError("no declared offer was ever exposed; nothing to learn")
        stage = assign_stages(cfg.stages, frame)
        eligible = offers.eligible(stage, frame["is_customer"])[:, [offers.ids.index(o) for o in modelled]]
        values = np.array([offers.get(o).value for o in modelled])
        costs = np.array([offers.get(o).cost for o in modelled])
        fold = subject_folds(frame["lead_id"].to_numpy(), conf.folds, conf.seed)

    return fit_and_register(cfg, conf, frame, fold, modelled, values, costs, eligible, steps)


def fit_and_register(
    cfg: Config, conf: NboConfig, frame: pd.DataFrame, fold: np.ndarray, modelled: list[str],
    values: np.ndarray, costs: np.ndarray, eligible: np.ndarray, steps: Any, kind: str = "nbo",
) -> NboResult:  # fmt: skip
    """Fit and choose the learner (``fit_and_choose``), evaluate it out of fold, log everything
    to MLflow and register the model. ``frame`` holds the features and label, arm, propensity,
    event_timestamp; ``kind`` tags the model (``nbo``, or an imported table's name)."""
    import mlflow

    from training import plots
    from training.nbo_model import NboMeta, NboModel
    from training.pyfunc import NboPyfunc
    from training.registry import tag_and_crown
    from training.scoring import FeatureMatrix
    from training.train import _categories, feature_columns

    key_columns = [c for c in frame.columns if c.endswith("_id")]
    names, categorical = feature_columns(frame.drop(columns=["arm", "propensity", *key_columns]))
    categories = _categories(frame, categorical)
    X = FeatureMatrix(names, categories)(frame)

    with mlflow.start_run(run_name=f"{kind}-train") as parent:
        mlflow.set_tags({"model_kind": kind, "feature_service": conf.feature_service})
        mlflow.log_params({
            "feature_service": conf.feature_service, "learners": ",".join(conf.learners),
            "offers": ",".join(modelled), "outcome_window_days": conf.outcome_window_days,
            "n_estimators": conf.n_estimators, "learning_rate": conf.learning_rate,
            "num_leaves": conf.num_leaves, "min_child_samples": conf.min_child_samples,
            "folds": conf.folds, "rows": len(frame),
        })  # fmt: skip

        def log_candidate(name: str, metrics: dict[str, dict[str, float]]) -> None:
            with mlflow.start_run(run_name=f"learner-{name}", nested=True):
                mlflow.log_param("learner", name)
                mlflow.log_metric("val_mean_qini", mean_qini(metrics))
                mlflow.log_metrics({
                    f"val_{offer}_{k}": v for offer, m in metrics.items() for k, v in m.items()
                    if np.isfinite(v)
                })  # fmt: skip

        learners = ", ".join(LEARNER_NAMES[n] for n in conf.learners)
        with steps.step(
            f"fit {learners}, keep the best validation Qini; cross-fit it over {conf.folds} "
            "folds; compare policies"
        ):
            fit = fit_and_choose(
                X, frame["label"].to_numpy(), frame["arm"].to_numpy(), frame["propensity"].to_numpy(),
                fold, modelled, values, costs, eligible, conf, on_candidate=log_candidate,
            )  # fmt: skip

        with steps.step("evaluate on the held-out folds"):
            metrics: dict[str, float] = {"mean_qini": mean_qini(fit.heldout_metrics)}
            for offer, m in fit.heldout_metrics.items():
                metrics.update({f"{offer}_{k}": v for k, v in m.items()})
            if kind == "nbo":  # the generator's oracle knows the synthetic exposures only
                metrics.update(nbo_oracle_report(
                    cfg, frame, fit.heldout_uplift, modelled, fit.learned, values, costs, eligible
                ))  # fmt: skip
            c = fit.comparison
            for name, (v, lo, hi) in c.values.items():
                metrics.update({f"policy_{name}": v, f"policy_{name}_low": lo, f"policy_{name}_high": hi})
            metrics["learned_minus_best_alternative"] = c.difference[0]
            for name, (v, lo, hi) in fit.ipw.values.items():
                metrics.update({f"ipw_{name}": v, f"ipw_{name}_low": lo, f"ipw_{name}_high": hi})
            mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items() if np.isfinite(v)})
            mlflow.set_tags({"learner": fit.learner_name, "served_policy": c.served})
            mlflow.log_text(c.reason, "policy_decision.txt")
            mlflow.log_figure(
                plots.qini_plot(
                    frame["label"].to_numpy(), fit.heldout_uplift,
                    frame["arm"].to_numpy().astype(str), modelled,
                ),
                "plots/qini.png",
            )  # fmt: skip
            mlflow.log_figure(plots.policy_plot(c.values, c.served), "plots/policy_values.png")

        with steps.step("log and register the model in MLflow"):
            meta = NboMeta(
                feature_service=conf.feature_service, features=names, categories=categories,
                offers=modelled, control=CONTROL, learner=fit.learner_name,
                policy={"served": c.served, "reason": c.reason,
                        "values": {k: list(v) for k, v in c.values.items()},
                        "learned_share": fit.learned_share},
                extra={"data_window": [str(frame["event_timestamp"].min()),
                                       str(frame["event_timestamp"].max())],
                       "validation_mean_qini": {n: mean_qini(m) for n, m in fit.validation.items()}},
            )  # fmt: skip
            model = NboModel(fit.learner, meta)
            with tempfile.TemporaryDirectory() as tmp:
                bundle = model.save(Path(tmp) / "nbo")
                x_example = frame[names].head(5).copy()
                for col in names:
                    if col not in categorical:
                        x_example[col] = x_example[col].astype("float64")
                info = mlflow.pyfunc.log_model(
                    name="model", python_model=NboPyfunc(), artifacts={"nbo": str(bundle)},
                    input_example=x_example, pip_requirements=PIP_REQUIREMENTS,
                    registered_model_name=conf.registered_model,
                )  # fmt: skip
            version = str(info.registered_model_version)
            became_champion = tag_and_crown(
                conf.registered_model, version,
                {"feature_service": conf.feature_service, "model_kind": kind},
            )
            mlflow.set_tag("registered_version", version)
    return NboResult(
        model_name=conf.registered_model, version=version, run_id=parent.info.run_id,
        learner=fit.learner_name, served=c.served, reason=c.reason,
        validation_qini={n: mean_qini(m) for n, m in fit.validation.items()},
        metrics=metrics, policy_values=c.values, became_champion=became_champion,
        timings=steps.timings,
    )  # fmt: skip
