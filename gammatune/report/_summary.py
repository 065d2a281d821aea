"""The summary people read: baselines against the best trials, and the verdict."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from gammatune.bootstrap import PairedDifference
from gammatune.metrics import METRIC_NAMES
from gammatune.record import EXTRA_FIELDS, Setting, format_alpha
from gammatune.report._arms import order, row_arms, setting_mask
from gammatune.report._health import training_health
from gammatune.report._sentences import found_words
from gammatune.report._verdict import Resampled, Spread, Verdict, decide


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """One line of the summary table: a trial's validation and test figures, or (confirm) the
    mean over ``n`` trials of one setting, whose test interval is then left NaN."""

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
    test_ece: float = math.nan
    test_brier: float = math.nan
    n: int = 1
    test_objective: float = math.nan  # the objective on test (Dice, AP: the task's figure)


@dataclass(frozen=True, slots=True)
class TestCheck:
    """The decision reported once on the test split: the recommendation against a reference,
    paired over the confirm repeats (``difference`` is None where that cannot be computed)."""

    reference: str
    difference: PairedDifference | None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Summary:
    """The comparison table, the verdict of the confirm stage, and its report on test."""

    objective: str
    rows: list[SummaryRow]
    recommended: SummaryRow | None
    verdict: Verdict
    n_val_positives: int | None = None
    true_positives_found: tuple[int, int] | None = None  # fewest and most, over trials
    test_checks: tuple[TestCheck, ...] = ()
    constraints: dict[str, float] = field(default_factory=dict)
    pareto: bool = False  # a multi-objective study, or constraints: draw the front
    minority: str | None = None  # the rarest class's name, where the data facts give it
    n_classes: int = 2
    task: str = "classification"  # or segmentation, detection: what the positives are
    health: tuple[str, ...] = ()  # training health in sentences (see report._health)
    # why the intervals resample samples though data.groups is declared (report._resample)
    interval_warning: str | None = None

    def __str__(self) -> str:
        return self.text

    @property
    def text(self) -> str:
        """The verdict, the data's limits, and the test report, as sentences."""
        parts = [self.verdict.sentence]
        if self.interval_warning:
            parts.append(self.interval_warning)
        if not self.rows:
            parts.insert(0, "No trial has completed yet.")
        if self.n_val_positives is not None and self.true_positives_found is not None:
            parts.append(self._found_words(*self.true_positives_found))
        if self.test_checks:
            parts.append(_test_words(self.test_checks, self.verdict.kind == "not-measurable"))
        return " ".join(parts)

    def _found_words(self, low: int, high: int) -> str:
        assert self.n_val_positives is not None
        return found_words(self.n_val_positives, low, high, self)


CAPTION = (
    "The rows above 'confirm' are single trials on the configured split; each 'confirm' row is "
    "the mean of one setting over fresh seeds on re-splits of train+val (other validation "
    "samples, and no selection: compare those rows with each other)."
)


def summarize(
    frame: pd.DataFrame,
    objective: str,
    *,
    facts: dict[str, Any] | None = None,
    spread: Spread | None = None,
    min_positives: int = 5,
    planned_units: int | None = None,
    constraints: dict[str, float] | None = None,
    pareto: bool = False,
    resampled: Resampled = "samples",
    interval_warning: str | None = None,
) -> Summary:
    """Pick the rows people compare, and decide the verdict from the confirm stage alone.

    The verdict (see :func:`decide`) reads only the confirm trials' paired validation
    differences; the test split never enters it. ``facts`` (the class counts stored on the
    studies) give the validation positives; without them the minority class is the positive
    class and its validation count is read from the trials' confusion matrices. ``spread``,
    ``min_positives``, ``planned_units`` and ``resampled`` go to :func:`decide`;
    ``interval_warning`` is said after the verdict.
    """
    done = frame[frame["state"] == "COMPLETE"]
    if "warm_start_from" in done:
        done = done[done["warm_start_from"].isna()]  # copies of search trials
    configured = done[done["model"] == "configured"]
    baseline = configured[configured["stage"] == "baseline"]
    weighted = pd.Series([a.is_weighted for a in row_arms(baseline)], index=baseline.index)
    dice = baseline.get("dice", pd.Series(index=baseline.index, dtype=float)).fillna(0) > 0
    picks = [
        ("CE", baseline[~weighted & ~dice]),
        ("CE+Dice", baseline[~weighted & dice]),
        ("CE+alpha", baseline[weighted]),
        ("logistic", done[done["model"] == "logistic"]),
        ("logistic bal.", done[done["model"] == "logistic_balanced"]),
        ("search best", configured[configured["stage"] == "search"]),
        ("refine best", configured[configured["stage"] == "refine"]),
    ]
    rows = [_summary_row(label, part) for label, part in picks if len(part)]
    confirm_rows = configured[configured["stage"] == "confirm"]
    confirm = _confirm_table(confirm_rows, facts)
    positives = _val_positives(done, facts)
    verdict = decide(
        confirm,
        n_val_positives=positives,
        objective=objective,
        min_positives=min_positives,
        spread=spread,
        planned_units=planned_units,
        constraints=constraints,
        resampled=resampled,
    )
    rows += [
        _mean_row(f"confirm {_setting_text(s)}", _of(confirm_rows, s)) for s in _settings(confirm)
    ]
    recommended = (
        _mean_row("recommended", _of(confirm_rows, verdict.recommended))
        if verdict.recommended is not None and len(confirm)
        else None
    )
    found = (confirm if len(confirm) else _confirm_table(configured, facts))["val_true_positive"]
    tps = (int(found.min()), int(found.max())) if len(found) else None
    names = [str(n) for n in (facts or {}).get("class_names", [])]
    n_classes = len(names) or len(_first_confusion(done)) or 2
    minority = names[_minority(facts, len(names))] if names else None
    return Summary(
        objective, rows, recommended, verdict, positives, tps,
        constraints=dict(constraints or {}), pareto=pareto or bool(constraints),
        minority=minority, n_classes=n_classes, health=training_health(frame, objective),
        interval_warning=interval_warning, task=_task(done),
    )  # fmt: skip


def _task(done: pd.DataFrame) -> str:
    tasks = done.get("task", pd.Series(dtype=object)).dropna()
    return str(tasks.iloc[0]) if len(tasks) else "classification"


def _first_confusion(done: pd.DataFrame) -> list[list[int]]:
    confusions = done.get("val_confusion", pd.Series(dtype=object)).dropna()
    return list(confusions.iloc[0]) if len(confusions) else []


def _minority(facts: dict[str, Any] | None, n_classes: int) -> int:
    counts = (facts or {}).get("class_counts", {}).get("train")
    return int(min(range(len(counts)), key=counts.__getitem__)) if counts else n_classes - 1


def _val_positives(done: pd.DataFrame, facts: dict[str, Any] | None) -> int:
    if "val_positives" in done and done["val_positives"].notna().any():  # images with objects
        return int(done["val_positives"].min())
    counts = (facts or {}).get("class_counts", {}).get("val")
    if counts:
        return int(counts[_minority(facts, len(counts))])
    confusions = done.get("val_confusion", pd.Series(dtype=object)).dropna()
    if not len(confusions):
        return 0
    matrix = confusions.iloc[0]
    return int(sum(matrix[_minority(facts, len(matrix))]))


def _confirm_table(part: pd.DataFrame, facts: dict[str, Any] | None) -> pd.DataFrame:
    """The columns :func:`decide` reads, with the minority class's predictions counted."""
    columns = (
        "gamma", "alpha", *EXTRA_FIELDS, "repeat", "fold", "objective", "best_epoch",
        "epochs_run", "arm",
    )  # fmt: skip
    table = part[[c for c in (*columns, *_VAL_METRICS) if c in part]].copy()
    for column in ("repeat", "fold"):
        table[column] = part.get(column, pd.Series(0, index=part.index)).fillna(0).astype(int)
    confusions = part.get("val_confusion", pd.Series([[]] * len(part), index=part.index))
    minority = [_minority(facts, len(m)) if m else 0 for m in confusions]
    pairs = list(zip(confusions, minority, strict=True))
    counted = {
        "val_predicted_positive": [sum(row[k] for row in m) if m else 0 for m, k in pairs],
        "val_true_positive": [m[k][k] if m else 0 for m, k in pairs],
    }
    for column, values in counted.items():  # segmentation and detection trials count their own
        found = pd.Series(values, index=part.index, dtype=float)
        table[column] = part[column].fillna(found) if column in part else found
    return table.astype({"alpha": float}) if len(table) else table


_VAL_METRICS = [f"val_{m}" for m in ("f1", "recall", "precision", "pr_auc", "roc_auc", "f1_macro")]


def _settings(confirm: pd.DataFrame) -> list[Setting]:
    return sorted({a.key(): a for a in row_arms(confirm)}.values(), key=order)


def _of(part: pd.DataFrame, setting: Setting) -> pd.DataFrame:
    return part[setting_mask(part, setting)]


def _setting_text(setting: Setting) -> str:
    """``'g=2 a=0.25'``, with the setting's other fields after."""
    short = {"gamma": "g", "alpha": "a"}
    return " ".join(
        short.get(name, name) + "=" + value
        for name, value in (p.split("=", 1) for p in setting.parts())
    )


def _summary_row(label: str, part: pd.DataFrame) -> SummaryRow:
    """The best row by the objective, a tie by validation PR-AUC (as the stages rank)."""
    keys = [c for c in ("objective", "val_pr_auc") if c in part]
    row = part.sort_values(keys, ascending=False, kind="stable").iloc[0]
    return _row_of(label, row, n=1)


def _mean_row(label: str, part: pd.DataFrame) -> SummaryRow:
    """The mean over a setting's confirm trials (fold and repeat vary, nothing else)."""
    columns = ["gamma", "objective", "val_precision", "val_recall", "val_f1", "val_pr_auc",
               "test_f1", "test_pr_auc", "test_ece", "test_brier", "test_objective"]  # fmt: skip
    means = part.reindex(columns=columns).apply(pd.to_numeric, errors="coerce").mean()
    first = part.iloc[0]
    row = pd.Series({**means.to_dict(), "stage": "confirm", "number": first.get("number", -1),
                     "alpha": first.get("alpha"), "test_f1_ci_low": math.nan,
                     "test_f1_ci_high": math.nan})  # fmt: skip
    return _row_of(label, row, n=len(part))


def _row_of(label: str, row: pd.Series, *, n: int) -> SummaryRow:
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
        test_ece=get("test_ece"),
        test_brier=get("test_brier"),
        n=n,
        test_objective=get("test_objective"),
    )


def _test_words(checks: tuple[TestCheck, ...], unmeasurable: bool) -> str:
    """The test checks as one sentence; under ``not-measurable`` said to be no evidence."""
    head = "On the test split (used once, after the decision"
    if not unmeasurable:  # a test interval that excludes 0 is no gain the verdict missed
        head += "; a check that cannot change the verdict"
    if unmeasurable:
        head += (
            "; descriptive only: the verdict is not-measurable, so no difference here is a gain"
        )
    notes = {c.note for c in checks if c.difference is None}
    if len(notes) == 1 and all(c.difference is None for c in checks):
        return f"{head}): no paired difference, {notes.pop()}."
    return f"{head}): " + "; ".join(_check_words(c) for c in checks) + "."


def _check_words(check: TestCheck) -> str:
    d = check.difference
    if d is None:
        return f"against {check.reference}, no paired difference ({check.note})"
    name = METRIC_NAMES.get(d.metric, d.metric)
    if d.low == d.high:
        spread = f"the {d.n_resamples} resamples all gave {d.difference:+.3f}"
    else:
        spread = f"95% paired bootstrap interval {d.low:+.3f} to {d.high:+.3f}"
    return (
        f"against {check.reference}, {name} {d.value_a:.3f} vs {d.value_b:.3f}, difference "
        f"{d.difference:+.3f} ({spread}" + (f", {check.note}" if check.note else "") + ")"
    )


def summary_json(summary: Summary, frame: pd.DataFrame) -> str:
    """``summary.json``: the verdict with its paired comparisons, the test report, and the
    largest score difference of a trial trained twice (``confirm.check_determinism``). A
    figure that is not there (NaN: no test scores, an interval of a mean) is null."""
    twice = frame.get("repeat_difference", pd.Series(dtype=float)).dropna()
    data = {
        "determinism_max_difference": None if twice.empty else float(twice.max()),
        "objective": summary.objective,
        "verdict": summary.verdict.to_json(),
        "interval_warning": summary.interval_warning,
        "text": summary.text,
        "n_val_positives": summary.n_val_positives,
        "true_positives_found": summary.true_positives_found,
        "health": list(summary.health),
        "test": [
            {"reference": c.reference, "note": c.note,
             "difference": None if c.difference is None else dataclasses.asdict(c.difference)}
            for c in summary.test_checks
        ],
        "rows": [dataclasses.asdict(r) for r in summary.rows],
    }  # fmt: skip
    plain = json.loads(json.dumps(data, default=str), parse_constant=lambda _: None)  # NaN: null
    return json.dumps(plain, indent=2) + "\n"


def render_summary(console: Any, summary: Summary) -> None:
    """Print the summary table and the verdict on a rich console."""
    from rich import box
    from rich.table import Table

    task = summary.task != "classification"  # the objective on test; there is no PR-AUC
    last, test_name = ("test obj", "") if task else ("test AP", "; test AP = PR-AUC on test")
    table = Table(
        title=f"validation objective: {summary.objective}{test_name}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0, 0, 1),
    )
    table.add_column("", no_wrap=True, min_width=13)
    for name in ("gamma", "alpha", "val obj", "val P", "val R", "test F1 (95% CI)"):
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    table.add_column(last, justify="right", no_wrap=True, min_width=len(last))
    for row in [*summary.rows, *([summary.recommended] if summary.recommended else [])]:
        table.add_row(
            row.label,
            f"{row.gamma:g}",
            format_alpha(row.alpha),
            *(f"{v:.3f}" for v in (row.val_objective, row.val_precision, row.val_recall)),
            figure_text(row.test_f1)
            + ("" if math.isnan(row.test_f1) else f" ({interval_text(row)})"),
            figure_text(row.test_objective if task else row.test_pr_auc),
            style="bold" if row.label == "recommended" else None,
        )
    console.print(table)
    if any(row.n > 1 for row in summary.rows):
        console.print(CAPTION, markup=False, style="dim")
    console.print(summary.text, markup=False)
    for sentence in summary.health:
        console.print(sentence, markup=False, style="yellow")


def interval_text(row: SummaryRow) -> str:
    """The test F1 interval of one trial; a mean over confirm trials says so instead."""
    low, high = row.test_f1_ci
    if math.isnan(row.test_f1):  # no test scores (a user's trainer may return none)
        return "n/a"
    if row.n > 1:
        return f"mean of {row.n}"
    if math.isnan(low):
        return "n/a"
    return "no spread" if low == high else f"{low:.2f}-{high:.2f}"


def figure_text(value: float) -> str:
    """A figure with 3 decimals; ``n/a`` where there is none (NaN: no test scores)."""
    return "n/a" if math.isnan(value) else f"{value:.3f}"
