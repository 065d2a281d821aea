"""The summary people read: baselines against the best trials, and the verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """One line of the summary table: a named trial's validation and test figures."""

    label: str
    stage: str
    number: int
    gamma: float
    alpha: float | None
    val_objective: float
    val_precision: float
    val_recall: float
    val_f1: float
    val_pr_auc: float
    test_f1: float
    test_f1_ci: tuple[float, float]
    test_pr_auc: float


@dataclass(frozen=True, slots=True)
class Summary:
    """Baseline vs best trials, and the recommendation with its verdict."""

    objective: str
    rows: list[SummaryRow]
    recommended: SummaryRow | None
    verdict: str


def summarize(frame: pd.DataFrame, objective: str) -> Summary:
    """Pick the rows people compare and the recommended gamma/alpha.

    The best validation objective among every trial of the configured model, cross-entropy
    included, is judged on the test split against both baselines, from the bootstrap intervals;
    when its gain does not hold there (inside cross-entropy's interval, or worse), plain
    cross-entropy is the recommendation, and the verdict says why.
    """
    done = frame[frame["state"] == "COMPLETE"]
    if "warm_start_from" in done:
        done = done[done["warm_start_from"].isna()]  # copies of search trials
    configured = done[(done["model"] == "configured") & (done["stage"] != "confirm")]
    baseline = configured[configured["stage"] == "baseline"]
    picks = [
        ("CE", baseline[baseline["alpha"].isna()]),
        ("CE+alpha", baseline[baseline["alpha"].notna()]),
        ("logistic", done[done["model"] == "logistic"]),
        ("logistic bal.", done[done["model"] == "logistic_balanced"]),
        ("search best", configured[configured["stage"] == "search"]),
        ("refine best", configured[configured["stage"] == "refine"]),
    ]
    rows = [_summary_row(label, part) for label, part in picks if len(part)]
    if not len(configured):
        return Summary(objective, rows, None, "No trial has completed yet.")
    best = _summary_row("recommended", configured)
    # Lin et al.'s comparison: focal loss against cross-entropy with the same class weight.
    same_alpha = baseline[
        baseline["alpha"].notna() & ((baseline["alpha"] - (best.alpha or -1)).abs() < 1e-9)
    ]
    references = [
        _summary_row("CE", picks[0][1]) if len(picks[0][1]) else None,
        _summary_row(f"CE at alpha {best.alpha:g}", same_alpha) if len(same_alpha) else None,
    ]
    verdict, holds = _verdict(best, [r for r in references if r])
    if not holds and len(picks[0][1]):  # the validation gain did not hold on test: plain CE
        best = _summary_row("recommended", picks[0][1])
    return Summary(objective, rows, best, verdict)


def _summary_row(label: str, part: pd.DataFrame) -> SummaryRow:
    row = part.loc[part["objective"].idxmax()]

    def get(name: str) -> float:
        value = row.get(name, math.nan)
        return math.nan if value is None else float(value)

    alpha = row.get("alpha")
    return SummaryRow(
        label=label,
        stage=str(row["stage"]),
        number=int(row["number"]),
        gamma=get("gamma"),
        alpha=None if alpha is None or pd.isna(alpha) else float(alpha),
        val_objective=get("objective"),
        val_precision=get("val_precision"),
        val_recall=get("val_recall"),
        val_f1=get("val_f1"),
        val_pr_auc=get("val_pr_auc"),
        test_f1=get("test_f1"),
        test_f1_ci=(get("test_f1_ci_low"), get("test_f1_ci_high")),
        test_pr_auc=get("test_pr_auc"),
    )


def _verdict(best: SummaryRow, references: list[SummaryRow]) -> tuple[str, bool]:
    """The verdict on the best validation trial, and whether its gain holds on test."""
    setting = f"gamma={best.gamma:g}, alpha={'off' if best.alpha is None else f'{best.alpha:g}'}"
    if best.gamma == 0:
        text = f"Best on validation: cross-entropy ({setting}); focal loss does not help here."
        return text, True
    low, high = best.test_f1_ci
    parts = [f"Best on validation: {setting}. Test F1 {best.test_f1:.3f} [{low:.3f}, {high:.3f}]"]
    noisy = worse = False
    for ref in references:
        inside = ref.test_f1_ci[0] <= best.test_f1 <= ref.test_f1_ci[1]
        noisy, worse = noisy or inside, worse or best.test_f1 < ref.test_f1_ci[0]
        parts.append(
            f"vs {ref.label}: F1 {best.test_f1 - ref.test_f1:+.3f}"
            f"{' (inside its 95% interval)' if inside else ''}, "
            f"PR-AUC {best.test_pr_auc - ref.test_pr_auc:+.3f}"
        )
    if worse:
        parts.append("cross-entropy did better on test: the validation gain did not hold")
    elif noisy:
        parts.append("the difference is within the test split's noise: prefer cross-entropy")
    return "; ".join(parts) + ".", not (worse or noisy)


def render_summary(console: Any, summary: Summary) -> None:
    """Print the summary table and the verdict on a rich console."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"validation objective: {summary.objective}; test AP = PR-AUC on the test split",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0, 0, 1),
    )
    table.add_column("", no_wrap=True, min_width=11)
    for name in ("gamma", "alpha", "val obj", "val P", "val R", "test F1 (95% CI)"):
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    table.add_column("test AP", justify="right", no_wrap=True, min_width=7)
    for row in [*summary.rows, *([summary.recommended] if summary.recommended else [])]:
        table.add_row(
            row.label,
            f"{row.gamma:g}",
            "off" if row.alpha is None else f"{row.alpha:g}",
            *(f"{v:.3f}" for v in (row.val_objective, row.val_precision, row.val_recall)),
            f"{row.test_f1:.3f} ({row.test_f1_ci[0]:.2f}-{row.test_f1_ci[1]:.2f})",
            f"{row.test_pr_auc:.3f}",
            style="bold" if row.label == "recommended" else None,
        )
    console.print(table)
    console.print(summary.verdict, markup=False)
