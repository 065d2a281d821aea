"""Per class: the recommendation against the baselines, and which class each setting helped.

"Helped" is read on validation, over the confirm trials paired per (repeat, fold) unit with
plain cross-entropy; test is shown beside it, marked, and never decides it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from gammatune.record import Setting
from gammatune.report._arms import row_arms, setting_mask
from gammatune.report._verdict import Verdict

Split = Literal["val", "test"]
MIN_CHANGE = 0.01  # the mean F1 change, either way, that names a class helped or hurt
_METRICS = ("precision", "recall", "f1")
_PLAIN_CE = Setting(gamma=0.0)
_LABELS = {"plain_ce": "plain CE", "best_weighted_ce": "best CE+alpha", "logistic": "logistic",
           "logistic_balanced": "logistic bal.", "recommended": "recommended"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ClassFigures:
    """A compared setting's precision, recall and F1 per class: the mean of its ``n`` trials."""

    key: str
    setting: str
    n: int
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    f1: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class ClassChange:
    """A confirm setting minus plain CE per class, (n_classes,) each, over ``n`` paired units,
    and the classes whose mean F1 rose (``helped``; on test ``test_helped``) or fell that much."""

    setting: str
    recommended: bool
    n: int
    f1: tuple[float, ...]
    recall: tuple[float, ...]
    test_f1: tuple[float, ...]
    helped: tuple[str, ...]
    hurt: tuple[str, ...]
    test_helped: tuple[str, ...]


def compare_classes(frame: pd.DataFrame, verdict: Verdict, *, split: Split) -> list[ClassFigures]:
    """Return the per-class figures of plain CE, the best weighted CE (the alpha of the best mean
    validation objective), the logistic yardsticks and the recommendation, where they ran; CE is
    read from the confirm stage (baseline where confirm has none)."""
    found = []
    for key, part in _compared(frame, verdict).items():
        means = {m: _mean(part, f"{split}_{m}_per_class") for m in _METRICS}
        if key in _LABELS and all(means.values()):
            found.append(ClassFigures(key, _words(part), len(part), **means))
    return found


def class_changes(
    frame: pd.DataFrame, verdict: Verdict, names: list[str], *, min_change: float = MIN_CHANGE
) -> list[ClassChange]:
    """Return, in confirm's plan order, each confirm setting's per-class change against plain
    CE over the (repeat, fold) units both completed; ``min_change`` (default 0.01) is the mean
    validation F1 change that names a class (one of ``names``) helped or hurt."""
    compared = _compared(frame, verdict)
    reference, confirm = compared["plain_ce"], compared["confirm"]
    changes = []
    for _, part in confirm.groupby("arm_key", sort=False) if len(reference) else []:
        n, (f1, recall, test_f1) = _change(part, reference)
        named = _names(names, len(f1))
        moved = [tuple(c for c, d in zip(named, v, strict=True) if d * sign >= min_change)
                 for v, sign in ((f1, 1), (f1, -1), (test_f1, 1))]  # fmt: skip
        mine = verdict.recommended is not None and setting_mask(part, verdict.recommended).any()
        changes.append(ClassChange(_words(part), bool(mine), n, f1, recall, test_f1, *moved))
    return changes


def per_class_html(frame: pd.DataFrame, verdict: Verdict, class_names: list[str]) -> str:
    """Return the page's per-class section ('' where no trial has per-class figures)."""
    val = compare_classes(frame, verdict, split="val")
    if not val:
        return ""
    names = _names(class_names, len(val[0].f1))
    return "\n".join([
        '<h2 id="per-class">Per class: the recommendation against the baselines</h2>',
        _figures_table(val, names),
        _changes_table(class_changes(frame, verdict, names), names),
    ])  # fmt: skip


def _figures_table(figures: list[ClassFigures], names: list[str]) -> str:
    caption = ("Validation precision, recall and F1 per class: the mean of each setting's trials "
               "(confirm's: re-splits of train+val; logistic: one baseline trial).")  # fmt: skip
    top = "".join(f'<th colspan="3">{html.escape(f"{_LABELS[f.key]}: {f.setting}")}'
                  f"{f' (mean of {f.n})' if f.n > 1 else ''}</th>" for f in figures)  # fmt: skip
    rows = [
        f'<tr data-class="{html.escape(name)}"><td>{html.escape(name)}</td>'
        + "".join(f'<td class="{f.key}-{m}">{getattr(f, m)[i]:.3f}</td>'
                  for f in figures for m in _METRICS) + "</tr>"
        for i, name in enumerate(names)
    ]  # fmt: skip
    metrics = "<th>P</th><th>R</th><th>F1</th>" * len(figures)
    header = f"<tr><th></th>{top}</tr><tr><th>class</th>{metrics}</tr>"
    return (f'<div class="scroll"><table class="per-class"><caption>{caption}'
            f"</caption>{header}{''.join(rows)}</table></div>")  # fmt: skip


def _changes_table(changes: list[ClassChange], names: list[str]) -> str:
    if not changes:
        return ""
    rows = [
        f'<tr class="{"recommended" if c.recommended else ""}" '
        f'data-setting="{html.escape(c.setting)}"><td>{html.escape(c.setting)}</td><td>{c.n}</td>'
        + "".join(f"<td>{c.f1[i]:+.3f}</td><td>{c.recall[i]:+.3f}</td>" for i in range(len(names)))
        + "".join(f'<td class="{kind}">{html.escape(", ".join(classes) or "none")}</td>'
                  for kind, classes in (("helped", c.helped), ("hurt", c.hurt),
                                        ("test-helped", c.test_helped)))
        + "</tr>"
        for c in changes
    ]  # fmt: skip
    deltas = "".join(f"<th>&Delta;F1 {html.escape(n)}</th><th>&Delta;R {html.escape(n)}</th>"
                     for n in names)  # fmt: skip
    header = (f"<tr><th>setting</th><th>units</th>{deltas}<th>F1 up (val)</th>"
              "<th>F1 down (val)</th><th>F1 up (test)</th></tr>")  # fmt: skip
    caption = ("Descriptive, not a finding: each confirm setting's mean change of validation F1 "
               "and recall per class against plain cross-entropy of the same seeds and "
               "re-splits. A class is listed as up or down where its mean F1 moved "
               f"{MIN_CHANGE:g} or more; no interval is tested here, so a class listed beside "
               "a verdict of no measurable difference is no contradiction: the verdict above "
               "decides. Test: shown only.")  # fmt: skip
    return (f'<div class="scroll"><table class="class-changes"><caption>{caption}</caption>'
            f"{header}{''.join(rows)}</table></div>")  # fmt: skip


def _compared(frame: pd.DataFrame, verdict: Verdict) -> dict[str, pd.DataFrame]:
    """Each compared setting's completed trials, and ``confirm``: the finalists', weighted CE's."""
    done = frame[frame["state"] == "COMPLETE"]
    if "warm_start_from" in done:  # copies of search trials are not trials of their own
        done = done[done["warm_start_from"].isna()]
    arms = row_arms(done)
    done = done.assign(arm_key=[repr(a.key()) for a in arms])  # key: float noise aside
    configured, confirm = done["model"] == "configured", done["stage"] == "confirm"
    ce = configured & pd.Series([not a.is_focal for a in arms], index=done.index, dtype=bool)
    is_plain = ce & pd.Series([a == _PLAIN_CE for a in arms], index=done.index, dtype=bool)
    # CE from confirm, with the finalists' seeds and re-splits; from baseline where it has none.
    plain, weighted = (done[m & (confirm if (m & confirm).any() else done["stage"] == "baseline")]
                       for m in (is_plain, ce & ~is_plain))  # fmt: skip
    best = weighted.groupby("arm_key")["objective"].mean().idxmax() if len(weighted) else None
    recommended = done.iloc[:0]
    if verdict.recommended is not None:
        recommended = done[configured & confirm & setting_mask(done, verdict.recommended)]
    return {
        "plain_ce": plain,
        "best_weighted_ce": weighted[weighted["arm_key"] == best],
        "logistic": done[done["model"] == "logistic"],
        "logistic_balanced": done[done["model"] == "logistic_balanced"],
        "recommended": recommended,
        "confirm": done[configured & confirm & ~is_plain],
    }


def _mean(part: pd.DataFrame, column: str) -> tuple[float, ...]:
    """The mean of the rows' per-class lists, (n_classes,); () where they have none."""
    values = [list(v) for v in part.get(column, []) if isinstance(v, list | tuple)]
    return tuple(float(v) for v in np.mean(values, axis=0)) if values else ()


def _change(part: pd.DataFrame, reference: pd.DataFrame) -> tuple[int, list[tuple[float, ...]]]:
    """The units paired, and the per-class mean differences of val F1, val recall and test F1."""
    ours, theirs = part.set_index(["repeat", "fold"]), reference.set_index(["repeat", "fold"])
    shared = ours.index.intersection(theirs.index)
    if len(shared):  # none shared (baseline's CE): compare all
        ours, theirs = ours[ours.index.isin(shared)], theirs[theirs.index.isin(shared)]
    k = len(_mean(ours, "val_f1_per_class"))
    deltas = []
    for column in ("val_f1_per_class", "val_recall_per_class", "test_f1_per_class"):
        a, b = np.array(_mean(ours, column)), np.array(_mean(theirs, column))
        deltas.append(tuple(map(float, a - b)) if len(a) == len(b) == k else (np.nan,) * k)
    return len(ours), deltas


def _words(part: pd.DataFrame) -> str:
    return (
        row_arms(part.iloc[:1])[0].label
        if part["model"].iloc[0] == "configured"
        else "scikit-learn"
    )


def _names(class_names: list[str], n_classes: int) -> list[str]:
    names = [str(n) for n in class_names]
    return names if len(names) == n_classes else [f"class {i}" for i in range(n_classes)]
