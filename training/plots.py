"""Diagnostic plots logged with every model: calibration, lift and feature importance."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from training.metrics import lift_curve

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(width: float = 6.0, height: float = 4.5) -> tuple[Figure, object]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)  # no pyplot: no global state, no display
    return fig, fig.add_subplot(1, 1, 1)


def calibration_plot(y_true: np.ndarray, y_prob: np.ndarray, bins: int = 10) -> Figure:
    from sklearn.calibration import calibration_curve

    frac_pos, mean_pred = calibration_curve(y_true, y_prob, n_bins=bins, strategy="quantile")
    fig, ax = _figure()
    top = max(float(mean_pred.max()), float(frac_pos.max())) * 1.05
    ax.plot([0, top], [0, top], "--", color="grey", label="perfectly calibrated")
    ax.plot(mean_pred, frac_pos, "o-", label="model (test rows)")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed conversion rate")
    ax.set_title("Calibration (quantile bins)")
    ax.legend()
    return fig


def lift_plot(y_true: np.ndarray, y_prob: np.ndarray, oracle: np.ndarray | None = None) -> Figure:
    fig, ax = _figure()
    table = lift_curve(y_true, y_prob)
    width = 0.4 if oracle is not None else 0.8
    ax.bar(table["bin"] - (width / 2 if oracle is not None else 0), table["lift"], width, label="model")
    if oracle is not None:
        ot = lift_curve(y_true, oracle)
        ax.bar(ot["bin"] + width / 2, ot["lift"], width, label="oracle", alpha=0.7)
    ax.axhline(1.0, color="grey", linestyle="--")
    ax.set_xlabel("score decile (1 = highest scores)")
    ax.set_ylabel("lift over the average conversion rate")
    ax.set_title("Lift by decile (test rows)")
    ax.legend()
    return fig


def importance_plot(names: list[str], gains: np.ndarray, top: int = 20) -> Figure:
    order = np.argsort(gains)[::-1][:top][::-1]
    fig, ax = _figure(7.0, 0.3 * len(order) + 1.5)
    ax.barh([names[i] for i in order], gains[order] / max(gains.sum(), 1e-12))
    ax.set_xlabel("share of total split gain")
    ax.set_title("Feature importance (gain)")
    fig.tight_layout()
    return fig
