"""Training health: which trials stopped too soon, which grew overconfident, and whether a
logistic yardstick beat every network, each with what to do about it."""

from __future__ import annotations

import html

import pandas as pd

_NETWORK_STAGES = ("baseline", "search", "refine")  # trials on the configured split


def training_health(frame: pd.DataFrame, objective: str) -> tuple[str, ...]:
    """Return the training-health findings of the study as sentences, each with advice; ()
    when the trials trained well. Reads ``undertrained``, ``curve_flags`` and, for the
    yardstick, the validation objective of the configured-split trials."""
    done = frame[frame["state"] == "COMPLETE"] if "state" in frame else frame
    if "warm_start_from" in done:
        done = done[done["warm_start_from"].isna()]  # copies of search trials
    found = [
        _undertrained(done),
        _overconfident(done),
        _unstable(done),
        _yardstick(done, objective),
    ]
    return tuple(s for s in found if s)


def health_html(sentences: tuple[str, ...]) -> str:
    """The page's training-health section: each finding in its own paragraph."""
    if not sentences:
        return (
            '<p class="health">Training health: no trial stopped at the epoch limit while still '
            "improving, and no validation monitor oscillated.</p>"
        )
    items = "".join(f"<li>{html.escape(s)}</li>" for s in sentences)
    return f'<div class="health"><b>Training health</b><ul>{items}</ul></div>'


def _undertrained(done: pd.DataFrame) -> str:
    marks = done.get("undertrained", pd.Series(False, index=done.index))
    flagged = done[marks.fillna(False).astype(bool)]
    if flagged.empty:
        return ""
    limit = int(flagged["epochs_run"].max())
    stages = ", ".join(f"{n} {stage}" for stage, n in flagged["stage"].value_counts().items())
    return (
        f"Undertrained: {len(flagged)} of {len(done)} trials ({stages}) ran to the "
        f"{limit}-epoch limit with their best epoch among the last few, so their validation "
        "monitor was still rising when training stopped; their figures understate those "
        f"settings. Raise train.epochs (for example to {2 * limit}) or train.lr, and run again."
    )


def _flagged(done: pd.DataFrame, flag: str) -> pd.DataFrame:
    flags = done.get("curve_flags", pd.Series("", index=done.index)).fillna("").astype(str)
    return done[flags.str.split(";").map(lambda names: flag in names)]


def _overconfident(done: pd.DataFrame) -> str:
    flagged = _flagged(done, "overconfident")
    if flagged.empty:
        return ""
    return (
        f"Overconfident (not a fault): {len(flagged)} of {len(done)} trials kept an epoch at "
        "which the validation loss had risen 20 % above its lowest while the monitor still "
        "improved: the model ranks better but its scores grew more extreme. The objective is "
        "unaffected; where the scores are read as probabilities, check test ECE and Brier, or "
        "set train.monitor: val_loss."
    )


def _unstable(done: pd.DataFrame) -> str:
    flagged = _flagged(done, "unstable")
    if flagged.empty:
        return ""
    return (
        f"Unstable: the validation monitor of {len(flagged)} of {len(done)} trials changed "
        "direction on most epochs; lower train.lr or raise train.batch_size."
    )


def _yardstick(done: pd.DataFrame, objective: str) -> str:
    """A logistic regression better than every network on the same split says the network is
    not earning its keep (too little training, or too much model for the data)."""
    model = done.get("model", pd.Series("configured", index=done.index))
    linear = done[model.isin(["logistic", "logistic_balanced"])]
    networks = done[(model == "configured") & done["stage"].isin(_NETWORK_STAGES)]
    if linear.empty or networks.empty:
        return ""
    best_linear, best_network = linear["objective"].max(), networks["objective"].max()
    if not best_linear > best_network:
        return ""
    name = (
        "balanced logistic regression"
        if (linear.loc[linear["objective"].idxmax(), "model"] == "logistic_balanced")
        else "logistic regression"
    )
    return (
        f"A {name} yardstick (validation {objective} {best_linear:.3f}) beats every network "
        f"trial on the same split (best {best_network:.3f}): the network is not earning its "
        "keep. Give it more optimizer steps (train.epochs up, train.batch_size down), or use "
        "the linear model."
    )
