"""The charts of a detection or segmentation study, from the trials table alone: the task's
metric against gamma with the cross-entropy references, and its per-class values.

Each function returns a matplotlib ``Figure``, or None when the study holds nothing to draw.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gammatune.record import format_alpha
from gammatune.report._plots import _BASE, _BEST, _compared_trials, _done, _figure, _label
from gammatune.report._summary import Summary

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# The metrics drawn against gamma, per task: the objective's family first.
METRICS = {"detection": ("ap", "ap50"), "segmentation": ("dice", "dice_micro")}
NAMES = {
    "ap": "AP@[.5:.95]",
    "ap50": "AP50",
    "ap75": "AP75",
    "dice": "Dice (mean per image)",
    "dice_micro": "Dice (pooled pixels)",
    "iou": "IoU (mean per image)",
}
_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
_LINES = ("--", ":", "-.", (0, (5, 1)), (0, (1, 3)), (0, (3, 1, 1, 1)))


def setting_name(alpha: Any, dice: Any = None) -> str:
    """``alpha 0.25, Dice 0.5``: the parts of a setting beside gamma that a point or line has."""
    parts = [] if _missing(alpha) else [f"alpha {format_alpha(alpha)}"]
    if not _missing(dice) and float(dice) > 0:
        parts.append(f"Dice {float(dice):g}")
    return ", ".join(parts)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _settings(frame: pd.DataFrame) -> pd.Series:
    dice = frame["dice"] if "dice" in frame else pd.Series(None, index=frame.index, dtype=object)
    return pd.Series(
        [setting_name(a, d) for a, d in zip(frame["alpha"], dice, strict=True)],
        index=frame.index,
        dtype=object,
    )


def references(frame: pd.DataFrame, metric: str) -> list[tuple[str, float]]:
    """The gamma-0 settings of the study (plain cross-entropy, with a class weight, with a Dice
    term: CE+Dice) and the mean validation ``metric`` of their trials, plain CE first."""
    done = _done(frame)
    column = f"val_{metric}"
    if column not in done:
        return []
    zero = done[(done["gamma"] == 0) & (done["model"] == "configured")]
    zero = zero[zero["stage"].isin(["baseline", "search", "refine"])]
    zero = zero[pd.to_numeric(zero[column], errors="coerce").notna()]
    if zero.empty:
        return []
    means = pd.to_numeric(zero[column]).groupby(_settings(zero)).mean()
    named = [(f"CE, {name}" if name else "CE", float(v)) for name, v in means.items()]
    return sorted(named, key=lambda item: (item[0] != "CE", item[0]))


def metric_vs_gamma(frame: pd.DataFrame, summary: Summary, task: str) -> Figure | None:
    """The validation metrics of ``task`` (AP and AP50; Dice per image and pooled) against gamma
    for each tuned trial, coloured by alpha (and Dice weight); the horizontal lines are the
    gamma-0 references, the red line the recommended gamma."""
    done = _done(frame)
    tuned = done[done["stage"].isin(["search", "refine"]) & (done["model"] == "configured")]
    metrics = [m for m in METRICS.get(task, ()) if f"val_{m}" in tuned]
    if tuned.empty or not metrics:
        return None
    figure, axes = _figure(5.2 * len(metrics) + 2.4, 4.2, ncols=len(metrics))
    settings = _settings(tuned)
    names = sorted(set(settings), key=str)
    for ax, metric in zip(axes[0], metrics, strict=False):
        values = pd.to_numeric(tuned[f"val_{metric}"], errors="coerce")
        for name, color in zip(names, _COLORS * len(names), strict=False):
            mine = settings == name
            ax.scatter(tuned["gamma"][mine], values[mine], s=24, color=color, alpha=0.75,
                       label=f"gamma > 0, {name}" if name else "gamma > 0")  # fmt: skip
        for (name, value), style in zip(references(frame, metric), _LINES * 4, strict=False):
            color = _BASE if name == "CE" else "#ff7f0e"
            ax.axhline(value, linestyle=style, color=color, lw=1.3, label=f"{name} (gamma 0)")
        if summary.recommended is not None:
            ax.axvline(summary.recommended.gamma, color=_BEST, lw=1.5, label="recommended gamma")
        ax.set(xlabel="gamma", ylabel=f"validation {NAMES.get(metric, metric)}",
               title=f"Validation {NAMES.get(metric, metric)} against gamma")  # fmt: skip
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return figure


def per_class_metric(
    frame: pd.DataFrame, summary: Summary, class_names: list[str], metric: str
) -> Figure | None:
    """``metric`` per class (``ap``: AP per object class; ``dice``: Dice per pixel class,
    background first) of plain cross-entropy and the recommendation, on the test split where
    both have it, else on validation; a class without ground truth has no bar."""
    for split in ("test", "val"):
        trials = _compared_trials(frame, summary, f"{split}_{metric}_per_class")
        if trials:
            break
    else:
        return None
    n_classes = max(len(trial[f"{split}_{metric}_per_class"]) for _, trial in trials)
    names = class_names if len(class_names) == n_classes else [str(i) for i in range(n_classes)]
    figure, axes = _figure(max(5.0, 1.1 * n_classes + 3.5), 3.8)
    ax = axes[0][0]
    x = np.arange(n_classes)
    width = 0.8 / len(trials)
    for index, ((row, trial), color) in enumerate(zip(trials, (_BASE, _BEST), strict=False)):
        values = np.array(trial[f"{split}_{metric}_per_class"], dtype=np.float64)
        bars = ax.bar(x[: len(values)] + index * width, np.nan_to_num(values), width,
                      color=color, label=_label(row))  # fmt: skip
        for bar, value in zip(bars, values, strict=True):
            text = "n/a" if math.isnan(value) else f"{value:.2f}"
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01, text,
                    ha="center", va="bottom", fontsize=7)  # fmt: skip
    ax.set_xticks(x + width * (len(trials) - 1) / 2, names, fontsize=8)
    label = NAMES.get(metric, metric).split(" (")[0]
    highest = max((np.nanmax(t[f"{split}_{metric}_per_class"], initial=0.0) for _, t in trials))
    ax.set(ylim=(0, min(1.08, 1.2 * float(highest) + 0.05)), xlabel="class", ylabel=label,
           title=f"{'Test' if split == 'test' else 'Validation'} {label} per class")  # fmt: skip
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def pr_at_iou(frame: pd.DataFrame, summary: Summary) -> Figure | None:
    """Precision against recall at IoU 0.5 (all classes averaged) of plain cross-entropy and
    the recommendation, on validation and test: a detector's ``val_pr_curve``."""
    trials = _compared_trials(frame, summary, "val_pr_curve")
    if not trials:
        return None
    figure, axes = _figure(9, 3.8, ncols=2)
    for ax, split in zip(axes[0], ("val", "test"), strict=True):
        for (row, trial), color in zip(trials, (_BASE, _BEST), strict=False):
            curve = trial.get(f"{split}_pr_curve")
            if isinstance(curve, list) and curve:
                recall, precision = np.array(curve, dtype=np.float64).T[:2]
                ax.plot(recall, precision, color=color, label=_label(row))
        name = "validation" if split == "val" else "test"
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02),
               title=f"Precision-recall at IoU 0.5 ({name})")  # fmt: skip
        if ax.lines:
            ax.legend(fontsize=7, loc="lower left")
        else:
            ax.text(0.5, 0.5, "no test detections\n(the trainer returned none)", ha="center")
    return figure
