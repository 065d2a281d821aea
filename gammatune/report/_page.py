"""The report as one self-contained HTML page (pictures embedded), or as PNG files."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from gammatune.config import Config
from gammatune.errors import GammatuneError
from gammatune.fingerprint import CONTENT, TRAINER_SOURCE, check_studies, config_facts
from gammatune.outputs import refuse_inputs, write_whole
from gammatune.record import format_alpha
from gammatune.report._arms import setting_mask
from gammatune.report._explain import bars_html, explanation_html
from gammatune.report._health import health_html
from gammatune.report._holdout import check_on_test
from gammatune.report._pareto import pareto_figure, pareto_text
from gammatune.report._perclass import per_class_html
from gammatune.report._plots import (
    confusion_matrices,
    forest,
    objective_vs_gamma,
    per_class,
    pr_curves,
    precision_recall_heatmaps,
    to_png,
    training_curves,
)
from gammatune.report._resample import declared_groups, validation_spread
from gammatune.report._summary import (
    CAPTION,
    Summary,
    SummaryRow,
    figure_text,
    interval_text,
    summarize,
    summary_json,
)
from gammatune.report._table import confirm_plan, experiment_facts, trials_frame, write_csv
from gammatune.report._tasks import figure_entries, scored_classes, task_of, with_task_figures
from gammatune.storage import open_storage

# (file stem, the question it answers, caption)
_FIGURES = [
    (
        "forest",
        "Does gamma help beyond the class weight?",
        "The verdict's evidence: each finalist against its same-alpha cross-entropy twin and "
        "against plain cross-entropy, and each class weight against plain cross-entropy, over "
        "fresh seeds; an interval right of 0 is a measured gain.",
    ),
    (
        "objective_vs_gamma",
        "Which gamma?",
        "The validation objective against gamma; the lines are cross-entropy without and with "
        "the class weight.",
    ),
    (
        "heatmaps",
        "Where do precision and recall balance?",
        "The search grid; each colour scale spans its own map's values (read the colour bar), "
        "so colours compare cells within a map; the boxed cell has the highest "
        "min(precision, recall).",
    ),
    (
        "pr_curves",
        "Is the gain a threshold effect?",
        "Precision-recall curves of plain cross-entropy and the recommendation (for a confirm "
        "recommendation: one trial of each, with the same seed and re-split).",
    ),
    (
        "confusion",
        "Which errors changed?",
        "Test confusion matrices: counts, and shares of each true class. A recommendation of "
        "the confirm stage is shown as one of its trials beside plain cross-entropy of the same "
        "seed and re-split.",
    ),
    ("training", "Did training behave?", "Per-epoch curves of the baseline and the best trials."),
    ("per_class", "Did the rare classes gain?", "Test recall and F1 per class."),
    (
        "pareto",
        "Which trade-off between precision and recall?",
        "Validation precision against recall of every tuned trial; red: the Pareto front; "
        "dashed: the constraints.",
    ),
]

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1240px;color:#222;line-height:1.45;padding:0 1em}
h1{margin-bottom:.2em} .sub{color:#666;margin-top:0}
.verdict{background:#f3f7ff;border-left:5px solid #1f77b4;padding:.8em 1em;font-size:1.05em}
.verdict b{color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border-bottom:1px solid #ddd;padding:.3em .45em;text-align:right;white-space:nowrap}
th{white-space:normal;vertical-align:bottom;min-width:3.2em}
.scroll{overflow-x:auto}
th:first-child,td:first-child{text-align:left}
tr.recommended{font-weight:bold;background:#eef4fb}
.facts{display:flex;gap:2.5em;flex-wrap:wrap;align-items:flex-start}
figure{margin:1.5em 0} figcaption{color:#555} img{max-width:100%}
.health{background:#fffaf0;border-left:5px solid #c98a1b;padding:.5em 1em}
.forest-row{display:flex;gap:1.5em;flex-wrap:wrap;align-items:flex-start}
.forest-row img{flex:0 1 880px;min-width:0} .why{flex:1 1 260px;min-width:0;margin-top:2em}
table.bars td,table.bars th{white-space:normal;text-align:left}
table.bars td.num{white-space:nowrap}
table.bars tr.decided{font-weight:bold}
"""


@dataclass(frozen=True, slots=True)
class Written:
    """What ``write_report`` produced."""

    summary: Summary
    n_trials: int
    csv: Path
    html: Path
    plots: list[Path]
    trials: pd.DataFrame  # the trials the summary was decided on (``study_summary``'s frame)


def write_report(
    config: Config,
    *,
    csv_path: str | Path | None = None,
    html_path: str | Path | None = None,
    plots_dir: str | Path | None = None,
    experiment_file: str | Path | None = None,
) -> Written:
    """Read the storage once and write the CSV, the HTML page and (if asked) the PNG files.

    Defaults: ``runs/<name>/trials.csv`` and ``runs/<name>/report.html``; each file written
    whole or not at all. An output path that is an input (``experiment_file``, the storage, the
    data, the model: :func:`~gammatune.outputs.experiment_inputs`) is a ConfigError.
    """
    csv_file = Path(csv_path or config.run_dir / "trials.csv")
    page = Path(html_path or config.run_dir / "report.html")
    plots = None if plots_dir is None else Path(plots_dir)
    refuse_inputs({"--out": csv_file, "--html": page, "--plots": plots}, config, experiment_file)
    storage = open_storage(config)
    frame, summary, facts = study_summary(config, storage)
    try:
        csv = write_csv(_with_verdict(frame, summary), csv_file)
        config.run_dir.mkdir(parents=True, exist_ok=True)
        write_whole(config.run_dir / "summary.json", summary_json(summary, frame))
        classes = scored_classes(facts)
        drawn = with_task_figures(
            config, frame, summary, classes, figures(frame, summary, classes)
        )
        # Each figure rendered once, for the page and --plots; a str is a figure's note.
        pngs = {k: f if isinstance(f, str) else to_png(f) for k, f in drawn.items()}
        written = write_plots(plots, pngs) if plots is not None else []
        page.parent.mkdir(parents=True, exist_ok=True)
        write_whole(page, render_html(frame, summary, facts, pngs, name=config.name))
    except OSError as exc:  # a folder where a file should go, no permission, disk full
        raise GammatuneError(
            f"report: cannot write {exc.filename}: {exc.strerror}; the study is untouched, and "
            "an earlier report stays as it was."
        ) from None
    return Written(summary, len(frame), csv, page, written, frame)


def study_summary(
    config: Config, storage: optuna.storages.BaseStorage | None = None
) -> tuple[pd.DataFrame, Summary, dict[str, Any]]:
    """Read every trial, decide the verdict from the confirm stage's current plan, and report
    it once on the test split. Returns the trials, the summary and the data facts.

    Raises:
        StudyError: A study was run on a different experiment file (its data is not loaded
            here, so only the file's facts are compared).
    """
    storage = storage or open_storage(config)
    check_studies(
        config, storage, config_facts(config), ignore=frozenset({CONTENT, TRAINER_SOURCE})
    )
    frame = trials_frame(config, storage)
    facts = experiment_facts(config, storage)
    planned = confirm_plan(config, storage)
    # Trials of an earlier confirm plan (other finalists, seeds or folds) stay in the study,
    # but neither the verdict, the CSV's verdict columns nor the figures use them.
    current = frame[~((frame["stage"] == "confirm") & ~frame["plan_key"].isin(planned))]
    confirm = current[(current["stage"] == "confirm") & (current["state"] == "COMPLETE")]
    groups = declared_groups(config)
    spread = validation_spread(config, confirm[confirm["model"] == "configured"], groups=groups)
    summary = summarize(
        current, config.metric, facts=facts, spread=spread,
        min_positives=config.confirm.min_positives,
        planned_units=config.confirm.repeats * config.confirm.folds,
        constraints={str(k): v for k, v in config.constraints.items()},
        pareto=len(config.objectives) > 1,
        resampled="samples" if spread is None else spread.unit,
        interval_warning=None if spread is None else spread.warning,
    )  # fmt: skip
    return current, check_on_test(config, current, summary, groups=groups), facts


def _with_verdict(frame: pd.DataFrame, summary: Summary) -> pd.DataFrame:
    """The CSV's ``verdict`` (the study's, on every row) and ``recommended`` (its trials)."""
    table = frame.assign(verdict=summary.verdict.kind, recommended=False)
    if summary.verdict.recommended is not None:
        mine = setting_mask(table, summary.verdict.recommended)
        table["recommended"] = (table["stage"] == "confirm") & mine
    return table


def figures(frame: pd.DataFrame, summary: Summary, class_names: list[str]) -> dict[str, Any]:
    """Return the report's figures by file stem; those with nothing to draw are left out."""
    drawn = {
        "forest": forest(summary),
        "objective_vs_gamma": objective_vs_gamma(frame, summary),
        "heatmaps": precision_recall_heatmaps(frame),
        "pr_curves": pr_curves(frame, summary),
        "confusion": confusion_matrices(frame, summary, class_names),
        "training": training_curves(frame, summary),
        "per_class": per_class(frame, summary, class_names),
        "pareto": pareto_figure(frame, summary.constraints) if summary.pareto else None,
    }
    return {name: figure for name, figure in drawn.items() if figure is not None}


def write_plots(folder: str | Path, pngs: dict[str, bytes | str]) -> list[Path]:
    """Write each figure's PNG as ``folder/<stem>.png`` and return the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, png in pngs.items():
        if isinstance(png, str):  # a figure's note: nothing to draw
            continue
        path = folder / f"{name}.png"
        write_whole(path, png)
        paths.append(path)
    return paths


def render_html(
    frame: pd.DataFrame,
    summary: Summary,
    facts: dict[str, Any],
    pngs: dict[str, bytes | str],
    *,
    name: str,
) -> str:
    """Return the report page: data and budget, the verdict, the comparison, the pictures
    (``pngs``: each figure's PNG by stem)."""
    parts = [
        f"<h1>gammatune report: {html.escape(name)}</h1>",
        f'<p class="sub">validation objective: {html.escape(summary.objective)}; '
        "every figure is drawn from the study storage.</p>",
        f'<p class="verdict">{_verdict(summary)}</p>',
        f"<p>{html.escape(pareto_text(frame, summary.constraints))}</p>" if summary.pareto else "",
        '<div class="facts">',
        _data_table(facts),
        _budget_table(frame),
        "</div>",
        "<h2>Baselines against the best settings</h2>",
        _summary_table(summary),
        health_html(summary.health),
        per_class_html(frame, summary.verdict, scored_classes(facts)),
    ]
    for stem, question, caption in figure_entries(task_of(frame), _FIGURES):
        png = pngs.get(stem)
        if isinstance(png, str):
            parts.append(f'<p class="note" id="{stem}">{html.escape(png)}</p>')
        elif png is not None:
            data = base64.b64encode(png).decode("ascii")
            image = f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            if stem == "forest":  # the words beside the plot: why, and what each bar compares
                image = (
                    f'<div class="forest-row">{image}{explanation_html(summary)}</div>'
                    + bars_html(summary)
                )
            parts.append(
                f'<figure id="{stem}"><h2>{html.escape(question)}</h2>{image}'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>gammatune: {html.escape(name)}</title><style>{_STYLE}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def _verdict(summary: Summary) -> str:
    verdict = summary.verdict
    if verdict.recommended is None:
        return f"<b>Verdict: {verdict.kind}.</b> " + html.escape(summary.text)
    recommended = ", ".join(p.replace("=", " = ", 1) for p in verdict.recommended.parts())
    return (
        f"<b>Verdict: {verdict.kind}. Recommended: {html.escape(recommended)}.</b> "
        + html.escape(summary.text)
    )


def _data_table(facts: dict[str, Any]) -> str:
    names, counts = facts.get("class_names", []), facts.get("class_counts", {})
    if not names:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(str(n))}</td>"
        + "".join(
            f"<td>{counts.get(s, [0] * len(names))[i]}</td>" for s in ("train", "val", "test")
        )
        + "</tr>"
        for i, n in enumerate(names)
    )
    ratio = facts.get("imbalance_ratio")
    caption = f"Data: imbalance {ratio:.1f}:1" if ratio else "Data"
    if facts.get("scored_classes"):  # the labels are strata: which classes an image holds
        caption = "Data: images per stratum (the target column)"
    return (
        f'<table class="data"><caption>{caption}</caption>'
        "<tr><th>class</th><th>train</th><th>val</th><th>test</th></tr>"
        f"{rows}</table>"
    )


def _budget_table(frame: pd.DataFrame) -> str:
    counts = frame.groupby(["stage", "state"]).size().unstack(fill_value=0)
    header = "".join(f"<th>{html.escape(s)}</th>" for s in counts.columns)
    rows = "".join(
        f"<tr><td>{html.escape(stage)}</td>"
        + "".join(f"<td>{v}</td>" for v in counts.loc[stage])
        + "</tr>"
        for stage in counts.index
    )
    seconds = float(frame.get("duration_s", pd.Series(dtype=float)).fillna(0).sum())
    devices = ", ".join(
        sorted({str(d) for d in frame.get("device", pd.Series(dtype=str)).dropna()})
    )
    return (
        f'<table class="budget"><caption>Budget: {len(frame)} trials, '
        f"{seconds:.1f} s of training, on {html.escape(devices or 'n/a')}</caption>"
        f"<tr><th>stage</th>{header}</tr>{rows}</table>"
    )


_COLUMNS = [
    ("gamma", lambda r: f"{r.gamma:g}"),
    ("alpha", lambda r: format_alpha(r.alpha)),
    ("objective", lambda r: f"{r.val_objective:.3f}"),
    ("val_precision", lambda r: f"{r.val_precision:.3f}"),
    ("val_recall", lambda r: f"{r.val_recall:.3f}"),
    ("val_f1", lambda r: f"{r.val_f1:.3f}"),
    ("val_pr_auc", lambda r: f"{r.val_pr_auc:.3f}"),
    ("test_f1", lambda r: figure_text(r.test_f1)),
    ("test_f1_ci", lambda r: interval_text(r)),
    ("test_pr_auc", lambda r: figure_text(r.test_pr_auc)),
    ("test_ece", lambda r: figure_text(r.test_ece)),
    ("test_brier", lambda r: figure_text(r.test_brier)),
]
_HEADERS = ["", "trial", "gamma", "alpha", "val objective", "val precision", "val recall",
            "val F1", "val PR-AUC", "test F1", "95% interval", "test PR-AUC", "test ECE",
            "test Brier"]  # fmt: skip
_TASK_COLUMNS = [*_COLUMNS[:6], ("test_objective", lambda r: figure_text(r.test_objective)),
                 _COLUMNS[7]]  # fmt: skip
_TASK_HEADERS = [*_HEADERS[:8], "test objective", "test F1"]


def _summary_table(summary: Summary) -> str:
    rows: list[SummaryRow] = [
        *summary.rows,
        *([summary.recommended] if summary.recommended else []),
    ]
    tasks = summary.task != "classification"  # the task's figure on test; no PR-AUC, ECE
    columns, headers = (_TASK_COLUMNS, _TASK_HEADERS) if tasks else (_COLUMNS, _HEADERS)
    header = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join(
        f'<tr class="{"recommended" if r.label == "recommended" else ""}" {_source(r)}>'
        f"<td>{html.escape(r.label)}</td><td>{_trials_text(r)}</td>"
        + "".join(f'<td class="{key}">{fmt(r)}</td>' for key, fmt in columns)
        + "</tr>"
        for r in rows
    )
    caption = f"<caption>{html.escape(CAPTION)}</caption>" if any(r.n > 1 for r in rows) else ""
    return (
        f'<div class="scroll"><table class="summary">{caption}<tr>{header}</tr>{body}</table>'
        "</div>"
    )


def _source(row: SummaryRow) -> str:
    """Which trials a row shows: one (stage and number), or the mean of a confirm setting."""
    if row.n > 1:
        return f'data-stage="confirm" data-mean="{row.gamma:g}|{format_alpha(row.alpha)}"'
    return f'data-stage="{row.stage}" data-number="{row.number}"'


def _trials_text(row: SummaryRow) -> str:
    return f"mean of {row.n} confirm" if row.n > 1 else f"{row.stage} #{row.number}"
