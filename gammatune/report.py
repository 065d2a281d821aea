"""Trials -> one tidy DataFrame -> CSV, and the summary people read: baselines vs best."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from gammatune.config import Config
from gammatune.errors import StudyError
from gammatune.metrics import OBJECTIVES
from gammatune.storage import STAGES, load_study, open_storage, trial_attrs

_LEADING = ["stage", "number", "state", "gamma", "alpha", "repeat", "model", "seed", "objective"]
_SPLIT_FIELDS = [
    "threshold",
    "precision",
    "recall",
    "f1",
    "f1_macro",
    "pr_auc",
    "roc_auc",
    "f1_at_0_5",
    "best_threshold",
    "f1_at_best_threshold",
    "f1_ci_low",
    "f1_ci_high",
    "tn",
    "fp",
    "fn",
    "tp",
]
_PER_CLASS = ["precision_per_class", "recall_per_class", "f1_per_class", "confusion"]
_OBJECTS = ["val_pr_curve", "test_pr_curve", "curves"]  # for the plots; not in the CSV
_TRAILING = [
    "curve_flags",
    "delta_vs_ce",
    "delta_vs_balanced_ce",
    "test_delta_vs_ce",
    "test_delta_vs_balanced_ce",
    "epochs_run",
    "best_epoch",
    "stop_reason",
    "duration_s",
    "device",
    "fail_reason",
    "warm_start_from",
    "reused_from",
]


def trials_frame(
    config: Config, storage: optuna.storages.BaseStorage | None = None
) -> pd.DataFrame:
    """Return one row per trial of every stage, read from the study storage alone.

    ``objective`` is the validation objective. ``delta_vs_ce`` compares it with plain
    cross-entropy (gamma 0, alpha off; the mean over its repeats) and ``delta_vs_balanced_ce``
    with cross-entropy at the trial's own alpha; ``test_*`` deltas do the same on the test split.

    Raises:
        StudyError: No stage of this experiment has been run in the storage.
    """
    storage = storage or open_storage(config)
    rows = []
    for stage in STAGES:
        study = load_study(config, stage, storage)
        for trial in [] if study is None else study.get_trials(deepcopy=False):
            rows.append(_row(stage, trial))
    if not rows:
        raise StudyError(
            f"report: no trials of {config.name!r} in {config.storage_url}; "
            "run `gammatune baseline` (or `gammatune run`) with this config first."
        )
    frame = pd.DataFrame(rows)
    _add_deltas(frame, OBJECTIVES[config.objective])
    ordered = _LEADING + [f"{split}_{f}" for split in ("val", "test") for f in _SPLIT_FIELDS]
    ordered += [f"{split}_{f}" for split in ("val", "test") for f in _PER_CLASS] + _TRAILING
    ordered += _OBJECTS
    return frame.reindex(columns=[c for c in ordered if c in frame.columns])


def curve_flags(curves: dict[str, list[float | None]], best_epoch: int | None = None) -> str:
    """Name what the training curves show, up to the kept (best) epoch; '' if nothing.

    ``overfitting``: by the kept epoch the validation loss had risen 20 % above its minimum
    while the training loss kept falling (a generalization gap the model was kept with).
    ``unstable``: the validation monitor changed direction on most epochs, by more than 0.05
    on average.
    """
    train = [v for v in curves.get("train_loss", []) if v is not None]
    val = [v for v in curves.get("val_loss", []) if v is not None]
    monitor = [v for v in curves.get("val_monitor", []) if v is not None]
    kept = min(best_epoch or len(val), len(val), len(train))
    flags = []
    if kept >= 3:
        lowest = min(range(kept), key=val.__getitem__)
        if val[kept - 1] > 1.2 * val[lowest] and train[kept - 1] < train[lowest]:
            flags.append("overfitting")
    steps = [b - a for a, b in zip(monitor, monitor[1:], strict=False)]
    if len(steps) >= 3:
        turns = sum(x * y < 0 for x, y in zip(steps, steps[1:], strict=False)) / (len(steps) - 1)
        if turns > 0.6 and sum(map(abs, steps)) / len(steps) > 0.05:
            flags.append("unstable")
    return ";".join(flags)


def experiment_facts(
    config: Config, storage: optuna.storages.BaseStorage | None = None
) -> dict[str, Any]:
    """The data facts the stages stored on their studies (class names and counts, imbalance)."""
    storage = storage or open_storage(config)
    for stage in STAGES:
        study = load_study(config, stage, storage)
        if study is not None and study.user_attrs:
            return dict(study.user_attrs)
    return {}


def _row(stage: str, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    attrs = trial_attrs(trial)
    row: dict[str, Any] = dict(trial.params)
    row.update({k: v for k, v in attrs.items() if not isinstance(v, (list, dict))})
    # A warm-start copy carries its search trial's attributes; its row is the refine study's.
    row.update(stage=stage, number=trial.number, state=trial.state.name)
    for owner in ("host", "pid"):  # which process ran it: for resuming, not for the table
        row.pop(owner, None)
    for split in ("val", "test"):
        # Lists (per class, confusion, PR curve) stay objects here; write_csv encodes them.
        row.update({f"{split}_{k}": v for k, v in attrs.get(split, {}).items()})
    row["curves"] = attrs.get("curves")
    row["curve_flags"] = curve_flags(attrs.get("curves") or {}, attrs.get("best_epoch"))
    row["objective"] = trial.value if trial.state == TrialState.COMPLETE else math.nan
    if trial.state == TrialState.FAIL and "fail_reason" not in attrs:
        row["fail_reason"] = "interrupted (the process ended during the trial)"
    row.setdefault("repeat", 0)
    row.setdefault("model", "configured")
    return row


def _add_deltas(frame: pd.DataFrame, field: str) -> None:
    """Add the validation-objective and test deltas against plain and alpha-balanced CE."""
    for column in ("objective", f"test_{field}", "alpha", "model"):
        if column not in frame:
            frame[column] = math.nan
    done = frame["state"] == "COMPLETE"
    ce = frame[done & (frame["stage"] == "baseline") & (frame["model"] != "linear")]
    plain = ce[ce["alpha"].isna()]
    for prefix, column in (("", "objective"), ("test_", f"test_{field}")):
        frame[f"{prefix}delta_vs_ce"] = frame[column] - plain[column].mean()
        balanced = ce.groupby(ce["alpha"].fillna(-1.0))[column].mean()  # -1: alpha off
        reference = frame["alpha"].fillna(-1.0).map(balanced)
        frame[f"{prefix}delta_vs_balanced_ce"] = frame[column] - reference


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write the trials to ``path`` (folders created) and return it.

    Per-class lists and confusion matrices are written as JSON; curves and PR curves, which
    the HTML report draws, are left out.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = frame.drop(columns=[c for c in _OBJECTS if c in frame])
    for column in table.columns:
        if table[column].map(lambda v: isinstance(v, list)).any():
            table[column] = table[column].map(
                lambda v: json.dumps(v) if isinstance(v, list) else v
            )
    table.to_csv(path, index=False)
    return path


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
    configured = done[done["model"] != "linear"]
    baseline = configured[configured["stage"] == "baseline"]
    picks = [
        ("CE", baseline[baseline["alpha"].isna()]),
        ("CE+alpha", baseline[baseline["alpha"].notna()]),
        ("linear CE", done[done["model"] == "linear"]),
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
