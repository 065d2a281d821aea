"""The pictures of the report, drawn from the trials table alone (matplotlib, headless).

Each function takes the frame of ``report.trials_frame`` (and the summary) and returns a
matplotlib ``Figure``, or None when the study holds nothing to draw.
"""

from __future__ import annotations

import io
import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gammatune.record import format_alpha
from gammatune.report._explain import bar_label
from gammatune.report._summary import Summary, SummaryRow

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_BASE, _BEST, _ALT = "#7f7f7f", "#d62728", "#1f77b4"


def _figure(width: float, height: float, ncols: int = 1, nrows: int = 1) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure  # the Agg canvas: no display needed

    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    return figure, figure.subplots(nrows, ncols, squeeze=False)


def to_png(figure: Figure) -> bytes:
    """Render a figure to PNG bytes."""
    buffer = io.BytesIO()
    # zlib level 1: a few percent larger, encoded in a fraction of the time.
    figure.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})
    return buffer.getvalue()


def _done(frame: pd.DataFrame) -> pd.DataFrame:
    done = frame[frame["state"] == "COMPLETE"]
    return done[done["warm_start_from"].isna()] if "warm_start_from" in done else done


def _trial(frame: pd.DataFrame, row: SummaryRow | None) -> pd.Series | None:
    if row is None:
        return None
    match = frame[(frame["stage"] == row.stage) & (frame["number"] == row.number)]
    return None if match.empty else match.iloc[0]


def _label(row: SummaryRow) -> str:
    return f"{row.label} (gamma {row.gamma:g}, alpha {format_alpha(row.alpha)})"


def forest(summary: Summary) -> Figure | None:
    """Each confirm comparison: the paired differences of the validation objective (one dot
    per repeat and fold), their mean and corrected interval, against 0."""
    comparisons = summary.verdict.comparisons
    if not comparisons:
        return None
    figure, axes = _figure(8.0, 0.9 + 0.42 * len(comparisons))
    ax = axes[0][0]
    recommended = summary.verdict.recommended
    for y, c in enumerate(reversed(comparisons)):
        color = _BEST if c.setting == recommended else _ALT
        jitter = np.linspace(-0.12, 0.12, len(c.differences)) if len(c.differences) > 1 else [0.0]
        ax.scatter(c.differences, y + np.asarray(jitter), s=12, color=color, alpha=0.45, lw=0)
        ax.plot([c.low, c.high], [y, y], color=color, lw=2.2, solid_capstyle="butt")
        ax.plot([c.mean], [y], marker="D", color=color, ms=6)
    ax.axvline(0.0, color=_BASE, lw=1, ls="--")
    ax.set_yticks(range(len(comparisons)))
    ax.set_yticklabels([bar_label(c) for c in reversed(comparisons)], fontsize=8.5)
    ax.set_xlabel(f"paired difference of the validation {summary.objective} (per seed and fold)")
    ax.set_title(
        "One dot per seed and fold; bars: corrected 95% intervals; red: the recommendation",
        fontsize=9,
    )
    return figure


def objective_vs_gamma(frame: pd.DataFrame, summary: Summary) -> Figure | None:
    """Validation objective, precision and recall against gamma, with both CE baselines."""
    done = _done(frame)
    tuned = done[done["stage"].isin(["search", "refine"]) & (done["model"] == "configured")]
    if tuned.empty:
        return None
    figure, axes = _figure(9.5, 4.2)
    ax = axes[0][0]
    ax.scatter(
        tuned["gamma"], tuned["val_precision"], s=14, color="#9467bd", alpha=0.5, label="precision"
    )
    ax.scatter(
        tuned["gamma"], tuned["val_recall"], s=14, color="#2ca02c", alpha=0.5, label="recall"
    )
    ax.scatter(tuned["gamma"], tuned["objective"], s=30, color=_ALT, label=summary.objective)
    for row, style, color in _baselines(summary):
        ax.axhline(row.val_objective, linestyle=style, color=color, label=f"{_label(row)}")
    if summary.recommended is not None:
        ax.axvline(
            summary.recommended.gamma, color=_BEST, linewidth=1.5, label="recommended gamma"
        )
    ax.set(
        xlabel="gamma", ylabel="validation", title=f"Validation {summary.objective} against gamma"
    )
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return figure


def _baselines(summary: Summary) -> list[tuple[SummaryRow, str, str]]:
    pairs = {"CE": ("--", _BASE), "CE+alpha": (":", "#ff7f0e")}
    return [(row, *pairs[row.label]) for row in summary.rows if row.label in pairs]


def precision_recall_heatmaps(frame: pd.DataFrame) -> Figure | None:
    """Validation precision and recall over the search grid, the best balance boxed."""
    grid = _done(frame)
    grid = grid[grid["stage"] == "search"].assign(
        alpha_label=lambda f: f["alpha"].map(format_alpha)
    )
    if grid.empty:
        return None
    tables = [
        grid.pivot_table(index="alpha_label", columns="gamma", values=f"val_{m}", aggfunc="mean")
        for m in ("precision", "recall")
    ]
    balance = np.minimum(tables[0].to_numpy(), tables[1].to_numpy())
    sweet = (
        tuple(int(i) for i in np.unravel_index(np.nanargmax(balance), balance.shape))
        if np.isfinite(balance).any()
        else None
    )
    figure, axes = _figure(9, 3.6, ncols=2)
    for ax, table, name in zip(axes[0], tables, ("precision", "recall"), strict=True):
        vmin, vmax = fitted_range(table.to_numpy())
        image = ax.imshow(table.to_numpy(), cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_xticks(range(table.shape[1]), [f"{g:g}" for g in table.columns])
        ax.set_yticks(range(table.shape[0]), list(table.index))
        for (i, j), value in np.ndenumerate(table.to_numpy()):
            if math.isfinite(value):
                ax.text(
                    j,
                    i,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    color="white" if (value - vmin) / (vmax - vmin) < 0.6 else "black",
                    fontsize=8,
                )
        if sweet is not None:
            ax.add_patch(_box(sweet))
        ax.set(xlabel="gamma", ylabel="alpha", title=f"Validation {name} (search grid)")
        figure.colorbar(image, ax=ax, shrink=0.8)
    return figure


def fitted_range(values: np.ndarray, *, least: float = 0.02) -> tuple[float, float]:
    """The colour scale of a heatmap: its finite values' range, widened to at least ``least``
    (default 0.02) about their middle, so that 0.83 to 0.93 spans the colours (a 0-1 scale
    painted every cell one green) and equal cells do not divide by zero."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    if high - low < least:
        middle = (low + high) / 2
        low, high = middle - least / 2, middle + least / 2
    return low, high


def _box(cell: tuple[int, ...]) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle(
        (cell[1] - 0.5, cell[0] - 0.5), 1, 1, fill=False, edgecolor=_BEST, linewidth=2.5
    )


def pr_curves(frame: pd.DataFrame, summary: Summary) -> Figure | None:
    """Precision-recall curves of plain CE and the recommendation on validation and test."""
    trials = _compared_trials(frame, summary, "val_pr_curve")
    if not trials:
        return None  # multiclass trials have no single PR curve
    figure, axes = _figure(9, 3.8, ncols=2)
    for ax, split in zip(axes[0], ("val", "test"), strict=True):
        if not any(_nonempty(trial.get(f"{split}_pr_curve")) for _, trial in trials):
            ax.text(0.5, 0.5, "no test scores\n(the trainer returned none)", ha="center")
            ax.set(title=f"PR curve ({split})", xticks=[], yticks=[])
            continue
        for (row, trial), color in zip(trials, (_BASE, _BEST), strict=False):
            curve = trial.get(f"{split}_pr_curve")
            if not _nonempty(curve):
                continue
            recall, precision, thresholds = np.array(curve).T
            ax.plot(recall, precision, color=color, label=_label(row))
            # The validation F1-best threshold, where it falls on this split's curve.
            chosen = trial.get("val_best_threshold")
            if chosen is not None and math.isfinite(chosen):
                k = int(np.argmin(np.abs(thresholds - chosen)))
                ax.plot(recall[k], precision[k], "o", color=color, markersize=6)
        ax.set(
            xlabel="recall",
            ylabel="precision",
            xlim=(0, 1.02),
            ylim=(0, 1.02),
            title=f"PR curve ({split}); dot: F1-best threshold on val",
        )
        ax.legend(fontsize=7, loc="lower left")
    return figure


def _nonempty(value: Any) -> bool:
    return isinstance(value, list) and len(value) > 0


def _first(summary: Summary, label: str) -> SummaryRow | None:
    return next((r for r in summary.rows if r.label == label), None)


def _compared_trials(
    frame: pd.DataFrame, summary: Summary, column: str
) -> list[tuple[SummaryRow, pd.Series]]:
    """The compared rows (see ``_compared``) with their trials, where ``column`` holds data.

    A recommendation from the confirm stage is drawn as one of its trials beside plain
    cross-entropy of the same seed and re-split: the pair the verdict compared."""
    pairs = _paired_with_plain_ce(frame, summary) or [
        (row, _trial(frame, row)) for row in _compared(summary)
    ]
    return [
        (row, trial) for row, trial in pairs if trial is not None and _nonempty(trial.get(column))
    ]


def _paired_with_plain_ce(
    frame: pd.DataFrame, summary: Summary
) -> list[tuple[SummaryRow, pd.Series | None]]:
    best = summary.recommended
    chosen = None if best is None or best.n == 1 else _trial(frame, best)
    if best is None or chosen is None or (best.gamma == 0 and best.alpha is None):
        return []
    alphas = pd.to_numeric(frame["alpha"], errors="coerce")
    same_unit = (frame["repeat"] == chosen["repeat"]) & (frame["fold"] == chosen["fold"])
    plain = frame[(frame["stage"] == "confirm") & (frame["gamma"] == 0) & alphas.isna()
                  & same_unit & (frame["model"] == "configured")]  # fmt: skip
    if plain.empty:
        return []
    reference = replace(best, label="plain CE", gamma=0.0, alpha=None, n=1)
    figure_note = replace(best, label="recommended")  # the same seed and re-split as CE's
    return [(reference, plain.iloc[0]), (figure_note, chosen)]


def _compared(summary: Summary) -> list[SummaryRow]:
    """Plain CE and the recommendation; when CE is the recommendation, the best focal trial."""
    ce, best = _first(summary, "CE"), summary.recommended
    if ce is not None and best is not None and (ce.stage, ce.number) == (best.stage, best.number):
        focal = [r for r in summary.rows if r.label in ("search best", "refine best")]
        best = max(focal, key=lambda r: r.val_objective) if focal else None
    return [r for r in (ce, best) if r is not None]


def confusion_matrices(
    frame: pd.DataFrame, summary: Summary, class_names: list[str]
) -> Figure | None:
    """Test confusion matrices of plain CE and the recommendation (or, when that is plain CE,
    the best focal-loss trial): counts and shares of each true class."""
    trials = _compared_trials(frame, summary, "test_confusion")
    if not trials:
        return None
    figure, axes = _figure(4.2 * len(trials), 7.2, ncols=len(trials), nrows=2)
    for column, (row, trial) in enumerate(trials):
        counts = np.array(trial["test_confusion"], dtype=np.float64)
        shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        for ax, table, fmt, title in (
            (axes[0][column], counts, "{:.0f}", "counts"),
            (axes[1][column], shares, "{:.2f}", "share of true class"),
        ):
            ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
            ticks = range(len(class_names))
            names = class_names if len(class_names) <= 10 else [str(i) for i in ticks]
            ax.set_xticks(ticks, names, rotation=45 if len(names) > 4 else 0, fontsize=7)
            ax.set_yticks(ticks, names, fontsize=7)
            for (i, j), value in np.ndenumerate(table):
                ax.text(
                    j,
                    i,
                    fmt.format(value),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if shares[i, j] > 0.6 else "black",
                )
            ax.set(xlabel="predicted", ylabel="true", title=f"{row.label}: {title} (test)")
    return figure


def training_curves(frame: pd.DataFrame, summary: Summary) -> Figure | None:
    """Per-epoch training loss, validation loss and validation monitor of the key trials."""
    rows = {
        r.label: r
        for r in [*summary.rows, *([summary.recommended] if summary.recommended else [])]
    }
    picked = [rows[k] for k in ("CE", "search best", "refine best", "recommended") if k in rows]
    seen, series = set(), []
    for row in picked:
        trial = _trial(frame, row)
        key = (row.stage, row.number)
        if trial is None or key in seen or not isinstance(trial.get("curves"), dict):
            continue
        seen.add(key)
        series.append((row, trial["curves"]))
    if not series:
        return None
    figure, axes = _figure(12, 3.6, ncols=3)
    colors = [_BASE, _ALT, "#2ca02c", _BEST]
    for (row, curves), color in zip(series, colors, strict=False):
        for ax, name in zip(axes[0], ("train_loss", "val_loss", "val_monitor"), strict=True):
            values = [np.nan if v is None else v for v in curves.get(name, [])]
            ax.plot(range(1, len(values) + 1), values, color=color, marker=".", label=_label(row))
    titles = ("training loss", "validation loss", "validation monitor (PR-AUC or loss)")
    for ax, title in zip(axes[0], titles, strict=True):
        ax.set(xlabel="epoch", title=title)
    axes[0][0].legend(fontsize=7)
    return figure


def per_class(frame: pd.DataFrame, summary: Summary, class_names: list[str]) -> Figure | None:
    """Test recall and F1 per class of plain CE and the recommendation (multiclass only)."""
    if len(class_names) <= 2:
        return None
    trials = _compared_trials(frame, summary, "test_recall_per_class")
    if not trials:
        return None
    figure, axes = _figure(10, 3.6, ncols=2)
    x = np.arange(len(class_names))
    width = 0.8 / len(trials)
    for ax, metric in zip(axes[0], ("recall", "f1"), strict=True):
        for index, ((row, trial), color) in enumerate(zip(trials, (_BASE, _BEST), strict=False)):
            ax.bar(
                x + index * width,
                trial[f"test_{metric}_per_class"],
                width,
                color=color,
                label=_label(row),
            )
        ax.set_xticks(x + width * (len(trials) - 1) / 2, class_names, fontsize=7)
        ax.set(ylim=(0, 1.05), title=f"Test {metric} per class", xlabel="class")
        ax.legend(fontsize=7)
    return figure
