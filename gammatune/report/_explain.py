"""The verdict explained beside the forest plot: the rule's rung that decided, and what each
bar compares (docs/concepts/verdict.md states the rule)."""

from __future__ import annotations

import html

from gammatune.record import Setting
from gammatune.report._sentences import format_setting
from gammatune.report._summary import Summary
from gammatune.report._verdict import Comparison, Verdict

_QUESTIONS = {
    "vs_twin": "gamma alone: does gamma add anything beyond the class weight? (against its "
    "twin, cross-entropy with the same weight)",
    "vs_plain_ce": "gamma and weight together: does this focal setting beat plain cross-entropy?",
    "weight_vs_plain_ce": "the weight alone: does this class weight beat plain cross-entropy?",
}


def explanation_html(summary: Summary) -> str:
    """Return the paragraph beside the forest plot: why this recommendation ('' without
    comparisons)."""
    verdict = summary.verdict
    if not verdict.comparisons:
        return ""
    return f'<p class="why"><b>Why this recommendation.</b> {html.escape(why(verdict))}</p>'


def bars_html(summary: Summary) -> str:
    """Return the table under the forest plot: each bar's question, mean, interval and reading
    ('' without comparisons)."""
    verdict = summary.verdict
    return _bars_table(verdict) if verdict.comparisons else ""


def why(verdict: Verdict) -> str:
    """The rung of the rule that decided, in words a reader can check against the bars."""
    chosen = "nothing" if verdict.recommended is None else format_setting(verdict.recommended)
    match verdict.kind:
        case "focal":
            return (
                f"Rung 1 of the rule: {chosen} beats its cross-entropy twin (the same class "
                "weight, gamma 0), the bar that isolates gamma, and its mean is not below the "
                "best cross-entropy's. Gamma measurably helps."
            )
        case "class-weight":
            return (
                "Rung 2: no candidate's bar against its twin lies right of 0, so gamma is not "
                "shown to help; the class weight's bar against plain cross-entropy does. "
                f"{chosen} "
                "is recommended: the simpler setting that carries the measured gain."
            )
        case "focal-with-weight":
            return (
                f"Rung 3: {chosen}'s bar against plain cross-entropy lies right of 0, but neither "
                "its bar against its twin (gamma alone) nor the weight's bar against plain "
                "cross-entropy (weight alone) does. It is recommended because it is the only "
                "setting measured better than plain cross-entropy; which of its two parts gives "
                "the gain is not known."
            )
        case "cross-entropy":
            return (
                "Rung 4: no bar that decides lies right of 0: neither gamma nor the class weight "
                f"made a measurable difference. {chosen} has the best mean of the cross-entropy "
                "settings; the choice among those is by mean alone, not a measured gain."
            )
        case _:
            return (
                f"No rung applies: the verdict is not-measurable ({verdict.reason}). {chosen} is "
                "the best cross-entropy by mean, a safe default rather than a finding; no bar "
                "below is evidence."
            )


def _bars_table(verdict: Verdict) -> str:
    rows = "".join(_bar_row(c, c == verdict.decided_by) for c in verdict.comparisons)
    whole = "; intervals resample whole validation groups" if verdict.resampled == "groups" else ""
    return (
        f'<table class="bars"><caption>What each bar compares (top to bottom{whole})</caption>'
        "<tr><th>bar</th><th>question</th><th>mean</th><th>interval</th><th>reads</th></tr>"
        f"{rows}</table>"
    )


def _bar_row(c: Comparison, decided: bool) -> str:
    label = html.escape(bar_label(c))
    interval = "no spread" if c.degenerate else f"{c.low:+.3f} to {c.high:+.3f}"
    mark = ' class="decided"' if decided else ""
    return (
        f"<tr{mark}><td>{label}</td><td>{html.escape(_QUESTIONS[c.family])}</td>"
        f'<td class="num">{c.mean:+.3f}</td><td class="num">{interval}</td>'
        f"<td>{_reads(c)}</td></tr>"
    )


def _reads(c: Comparison) -> str:
    if c.degenerate:
        return "no spread to judge"
    if c.low > 0:
        return "right of 0: measured gain"
    if c.high < 0:
        return "left of 0: measured loss"
    if c.low == 0 or c.high == 0:
        return "touches 0: not measurable"
    return "crosses 0: not measurable"


def bar_label(c: Comparison) -> str:
    """The bar's label, as the forest plot writes it."""
    weight = " ".join(c.reference.parts()[1:])
    reference = "plain CE" if c.reference == Setting(0.0) else f"CE {weight}"
    return f"{c.setting.name} vs {reference}"
