"""Diagnostic plots logged with every model: calibration, lift and feature importance."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from training.metrics import lift_curve
from training.uplift_metrics import qini_curve

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
    ax.bar(
        table["bin"] - (width / 2 if oracle is not None else 0), table["lift"], width, label="model"
    )
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


def qini_plot(
    y: np.ndarray, uplift: np.ndarray, arm: np.ndarray, offers: list[str], control: str = "control"
) -> Figure:
    """Qini curve of each offer against control on held-out rows, with the random line."""
    fig, ax = _figure()
    for j, offer in enumerate(offers):
        rows = (arm == offer) | (arm == control)
        t = (arm[rows] == offer).astype(int)
        if t.sum() == 0 or t.sum() == len(t):
            continue
        x, q = qini_curve(y[rows], uplift[rows, j], t)
        line = ax.plot(x / x[-1], q / max(len(t), 1), label=offer)[0]
        ax.plot([0, 1], [0, q[-1] / max(len(t), 1)], ":", color=line.get_color())
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_xlabel("share of units targeted, by predicted uplift")
    ax.set_ylabel("incremental conversions per unit")
    ax.set_title("Qini curves (test rows; dotted: random targeting)")
    ax.legend()
    return fig


def policy_plot(values: dict[str, tuple[float, float, float]], served: str) -> Figure:
    """IPW net value per unit of each policy with its bootstrap interval; the served one
    highlighted."""
    names = list(values)
    mid = np.array([values[n][0] for n in names])
    low = mid - np.array([values[n][1] for n in names])
    high = np.array([values[n][2] for n in names]) - mid
    fig, ax = _figure(7.0, 0.45 * len(names) + 1.5)
    colors = ["tab:orange" if n == served else "tab:blue" for n in names]
    ax.barh(names, mid, xerr=[low, high], color=colors, capsize=3)
    ax.axvline(0, color="grey", linewidth=0.5)
    ax.set_xlabel("net value per unit over sending nothing (IPW, 95% interval)")
    ax.set_title(f"Policies on held-out rows (served: {served})")
    fig.tight_layout()
    return fig
