"""The report's figures of a detection or a segmentation study, and where the page shows them.

A classification study's page is untouched. A detection study (the trials' ``task`` column)
gets AP against gamma, AP per class, precision-recall at IoU 0.5 and a few validation images
with two models' boxes; a segmentation study Dice against gamma, Dice per class and a few
validation images with the true and predicted masks. The two models drawn are plain
cross-entropy and the recommendation (a confirm recommendation: one of its trials beside plain
CE of the same seed and re-split; a cross-entropy verdict: the best focal trial). A figure whose
inputs are missing (no stored detections, no ``masks.npz``, an unreadable image) is replaced by
a one-line note.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pandas as pd

from gammatune.config import Config
from gammatune.report._detection_view import detections_figure
from gammatune.report._images import ImageMissing, image_source
from gammatune.report._mask_view import load_masks, masks_file, overlay_figure
from gammatune.report._plots import _compared, _first, _paired_with_plain_ce, _trial
from gammatune.report._summary import Summary, SummaryRow
from gammatune.report._task_plots import metric_vs_gamma, per_class_metric, pr_at_iou

Entry = tuple[str, str, str]  # (file stem, the question it answers, caption)

_ENTRIES: dict[str, list[Entry]] = {
    "detection": [
        (
            "ap_vs_gamma",
            "Which gamma?",
            "Validation COCO AP@[.5:.95] and AP50 of each tuned trial against gamma; the lines "
            "are the gamma-0 settings (plain cross-entropy, and with each class weight).",
        ),
        (
            "ap_per_class",
            "Which object classes gained?",
            "AP@[.5:.95] per object class of plain cross-entropy and the recommendation (test "
            "where both have test detections, else validation); n/a: no object of the class.",
        ),
        (
            "pr_curves",
            "Is the gain a threshold effect?",
            "Precision against recall at IoU 0.5 of plain cross-entropy and the recommendation: "
            "every detection of every class, ranked by score (a box is found when it takes a "
            "same-class object, COCO's matching).",
        ),
        (
            "detections",
            "What changed in the images?",
            "Validation images where the two models' errors differ most. Dashed yellow: the "
            "objects; green: a box that finds one (IoU >= 0.5, same class); red: a false box. "
            "Each model's boxes score at least its own F1-best threshold on validation.",
        ),
    ],
    "segmentation": [
        (
            "dice_vs_gamma",
            "Which gamma?",
            "Validation Dice (mean foreground Dice per image, and pooled over pixels) of each "
            "tuned trial against gamma; the lines are the gamma-0 settings: plain "
            "cross-entropy, with a class weight, and CE+Dice (a Dice term on).",
        ),
        (
            "dice_per_class",
            "Which classes gained?",
            "Dice per class (background first) of plain cross-entropy and the recommendation "
            "(test where both have it, else validation).",
        ),
        (
            "overlay",
            "What changed in the masks?",
            "Validation images where the two models' Dice differs most: the image, its true "
            "mask, and each model's predicted mask, classes coloured over the image.",
        ),
    ],
}
_REPLACED = {"objective_vs_gamma", "per_class"}  # classification's: the task's own replace them
_DETECTION_SKIPS = {"confusion"}  # a detector has no confusion matrix of samples


def task_of(frame: pd.DataFrame) -> str:
    """The study's task from its trials' ``task`` column: ``classification`` without one."""
    if "task" not in frame:
        return "classification"
    tasks = frame["task"].dropna()
    return str(tasks.iloc[0]) if len(tasks) else "classification"


def figure_entries(task: str, base: Sequence[Entry]) -> list[Entry]:
    """The page's figures in order: ``base`` (classification's) as it is, or for a task its own
    after the forest plot, and the task's caption where it reuses a stem (``pr_curves``)."""
    if task not in _ENTRIES:
        return list(base)
    own = _ENTRIES[task]
    stems = {stem for stem, _, _ in own}
    skipped = _REPLACED | stems | (_DETECTION_SKIPS if task == "detection" else set())
    kept = [entry for entry in base if entry[0] not in skipped]
    return kept[:1] + own + kept[1:]


def with_task_figures(
    config: Config,
    frame: pd.DataFrame,
    summary: Summary,
    class_names: list[str],
    drawn: dict[str, Any],
) -> dict[str, Any]:
    """``drawn`` (classification's figures by stem) as the task's page shows them: a
    classification study's unchanged; a task's with its own figures (a ``Figure``, or a
    ``str``: the note of one whose inputs are missing), and without those it replaces."""
    task = task_of(frame)
    names = [str(n) for n in (getattr(config.data, "classes", None) or class_names)]
    if task == "detection":
        own = {
            "ap_vs_gamma": metric_vs_gamma(frame, summary, task),
            "ap_per_class": per_class_metric(frame, summary, names, "ap"),
            "pr_curves": pr_at_iou(frame, summary),
            "detections": _detections(config, frame, summary, names),
        }
    elif task == "segmentation":
        own = {
            "dice_vs_gamma": metric_vs_gamma(frame, summary, task),
            "dice_per_class": per_class_metric(frame, summary, names, "dice"),
            "overlay": _overlay(config, frame, summary, names),
        }
    else:
        return drawn
    dropped = _REPLACED | (_DETECTION_SKIPS if task == "detection" else set())
    kept = {stem: figure for stem, figure in drawn.items() if stem not in dropped}
    return {**kept, **{stem: figure for stem, figure in own.items() if figure is not None}}


def compared_pair(frame: pd.DataFrame, summary: Summary) -> list[tuple[SummaryRow, pd.Series]]:
    """Plain cross-entropy and the recommendation (see the module), with their trials: two
    trials of the same split, or fewer where the study has no such pair."""
    pairs = (
        _paired_with_plain_ce(frame, summary)
        or _finalist_beside_ce(frame, summary)
        or [(row, _trial(frame, row)) for row in _compared(summary)]
    )
    found = [(row, trial) for row, trial in pairs if trial is not None]
    if len(found) == 2 and found[0][1]["fold"] != found[1][1]["fold"]:
        # A confirm trial beside a baseline: other validation images. Fall back to the single
        # trials of the configured split, CE and the best tuned one.
        ce = _first(summary, "CE")
        tuned = [r for r in summary.rows if r.label in ("search best", "refine best")]
        single = [ce, max(tuned, key=lambda r: r.val_objective)] if ce and tuned else []
        found = [(row, trial) for row in single if (trial := _trial(frame, row)) is not None]
    return found


def _finalist_beside_ce(
    frame: pd.DataFrame, summary: Summary
) -> list[tuple[SummaryRow, pd.Series | None]]:
    """A plain cross-entropy recommendation of the confirm stage: one of its trials, after the
    trial of the best focal finalist (by mean objective) with the same seed and re-split."""
    best = summary.recommended
    chosen = None if best is None or best.n == 1 else _trial(frame, best)
    finalists = [r for r in summary.rows if r.stage == "confirm" and r.n > 1 and r.gamma > 0]
    if best is None or chosen is None or best.gamma != 0 or best.alpha is not None:
        return []
    if not finalists:
        return []
    top = max(finalists, key=lambda r: r.val_objective)
    alphas = pd.to_numeric(frame["alpha"], errors="coerce")
    alpha = (alphas == top.alpha) if top.alpha is not None else alphas.isna()
    unit = (frame["repeat"] == chosen["repeat"]) & (frame["fold"] == chosen["fold"])
    setting = (frame["gamma"] == top.gamma) & alpha & (frame["model"] == "configured")
    same = frame[(frame["stage"] == "confirm") & (frame["state"] == "COMPLETE") & unit & setting]
    if same.empty:
        return []
    candidate = replace(top, label="best focal", n=1)
    return [(candidate, same.iloc[0]), (replace(best, label="recommended", n=1), chosen)]


def _detections(config: Config, frame: pd.DataFrame, summary: Summary, names: list[str]) -> Any:
    from gammatune.scores_files import load_detections_file

    pair = compared_pair(frame, summary)
    if len(pair) < 2:
        return "No images drawn: the study has no cross-entropy and focal trial to compare."
    loaded = []
    for row, trial in pair:
        stored = trial.get("scores_file")
        found = load_detections_file(config, stored) if isinstance(stored, str) else None
        if found is None:
            where = f"{trial['stage']} #{trial['number']}"
            return f"No images drawn: {row.label} ({where}) has no stored detections."
        loaded.append((row, found.val))
    if list(loaded[0][1].ids) != list(loaded[-1][1].ids):
        return "No images drawn: the two trials scored different validation images."
    try:
        return detections_figure(loaded, image_source(config), names)
    except ImageMissing as exc:
        return f"No images drawn: {exc}."


def _overlay(config: Config, frame: pd.DataFrame, summary: Summary, names: list[str]) -> Any:
    pair = compared_pair(frame, summary)
    if len(pair) < 2:
        return "No masks drawn: the study has no cross-entropy and focal trial to compare."
    try:
        masks = [
            (row, load_masks(masks_file(config.run_dir, trial["stage"], trial["number"])))
            for row, trial in pair
        ]
        return overlay_figure(masks, image_source(config), names)
    except ImageMissing as exc:
        return f"No masks drawn: {exc}."


def scored_classes(facts: dict[str, Any]) -> list[str]:
    """The classes the trials' per-class figures are over: a segmentation or detection
    trainer's ``data.classes``, else the label column's."""
    return [str(n) for n in facts.get("scored_classes") or facts.get("class_names", [])]
