"""The verdict in words: the claims, intervals and settings its sentences are made of."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gammatune.record import Setting

if TYPE_CHECKING:
    from gammatune.report._summary import Summary
    from gammatune.report._verdict import Comparison

_PLAIN_CE = Setting(0.0)


def claim(
    c: Comparison, name: str, level: float, *, subject: str = "", verb: str = "beats"
) -> str:
    repeats = plural(c.n, "paired repeat", "paired repeats")
    return (
        f"{subject or format_setting(c.setting)} {verb} {reference_words(c)} by "
        f"{c.mean:+.3f} {name} on average over {repeats} ({spread_words(c, level)})"
    )


def headline_words(c: Comparison, name: str, level: float) -> str:
    label = "candidate" if c.family == "vs_twin" else "class weight"
    subject = f"the best {label} ({format_setting(c.setting)})"
    return claim(c, name, level, subject=subject, verb="differs from")


def neither_alone(alone: list[Comparison], level: float) -> str:
    """Why a combination measured against plain cross-entropy is not credited to either part:
    ``alone`` holds the candidate's comparison with its twin and its weight's with plain CE."""
    said = {c.family: f"{c.mean:+.3f}, {spread_words(c, level)}" for c in alone}
    gamma = f" ({said['vs_twin']})" if "vs_twin" in said else ""
    weight = f" ({said['weight_vs_plain_ce']})" if "weight_vs_plain_ce" in said else ""
    return (
        f"neither gamma against its same-weight cross-entropy twin{gamma} nor the class weight "
        f"alone against plain cross-entropy{weight} made a measurable difference: the gain is "
        "the combination, and how it splits between gamma and the weight cannot be told apart"
    )


def spread_words(c: Comparison, level: float) -> str:
    """The interval in words; a degenerate one is never printed as "0.00-0.00"."""
    tally = f"{plural(c.wins, 'win', 'wins')}, {plural(c.ties, 'tie', 'ties')}, "
    tally += plural(c.losses, "loss", "losses")
    if c.n < 2:
        return f"a single repeat: no spread to judge; {tally}"
    if c.degenerate:
        return f"every repeat gave the same difference, {c.mean:+.3f}: no spread to judge; {tally}"
    noun = "candidates" if c.family != "weight_vs_plain_ce" else "class weights"
    corrected = f" corrected for {c.family_size} {noun}" if c.family_size > 1 else ""
    corrected += ", resampling whole validation groups" if c.resampled == "groups" else ""
    return f"{100 * level:g}% interval{corrected}: {c.low:+.3f} to {c.high:+.3f}; {tally}"


def reference_words(c: Comparison) -> str:
    if c.reference == _PLAIN_CE:
        return "plain cross-entropy"
    same = "cross-entropy with the same class weight"
    return same + (" and learning rate" if c.reference.lr is not None else "")


def format_setting(setting: Setting) -> str:
    """``'gamma 2, alpha 0.25'``, with the setting's other fields likewise."""
    return ", ".join(part.replace("=", " ", 1) for part in setting.parts())


def safe_choice(setting: Setting | None, means: dict[Setting, float], name: str) -> str:
    if setting is None:
        return "nothing to recommend"
    best = f"the best cross-entropy by mean {name}, {means[setting]:.3f}"
    return f"use {format_setting(setting)} ({best})"


def join(parts: list[str]) -> str:
    return "; ".join(parts) + "."


def plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def found_words(positives: int, low: int, high: int, summary: Summary) -> str:
    """What validation holds and what the trials found of it: rows of the rarest class,
    images with a foreground pixel (and foreground pixels found), or images with an object
    (and boxes matched)."""
    found = f"{low}" if low == high else f"{low} to {high}"
    if summary.task == "segmentation":
        return (
            f"Validation holds {positives} images with a foreground pixel; the trials found "
            f"{found} foreground pixels."
        )
    if summary.task == "detection":
        return (
            f"Validation holds {positives} images with an object; the trials matched {found} "
            "boxes at IoU 0.5 (scoring at least the decision threshold)."
        )
    name = f" (class {summary.minority})" if summary.minority else ""
    if summary.n_classes > 2:
        return (
            f"Validation holds {positives} samples of the rarest class{name}; the trials "
            f"predicted {found} of them correctly."
        )
    return (
        f"Validation holds {positives} positives{name}; the trials found {found} of them at "
        "the decision threshold."
    )
