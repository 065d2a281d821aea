"""Precision against recall: the Pareto front of the tuned trials, and the setting at the
user's operating point (``constraints``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from gammatune.report._arms import row_arms

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_AXES = ("val_recall", "val_precision")


def pareto_front(frame: pd.DataFrame) -> pd.DataFrame:
    """The completed search and refine trials that no other beats on both validation recall
    and precision, by recall; each with its setting's ``name``."""
    done = frame[(frame["state"] == "COMPLETE") & frame["stage"].isin(["search", "refine"])]
    if "warm_start_from" in done:
        done = done[done["warm_start_from"].isna()]
    done = done[done["model"] == "configured"].dropna(subset=list(_AXES))
    if done.empty:
        return done
    points = done[list(_AXES)].to_numpy(dtype=float)
    dominated = [
        bool(np.any(np.all(points >= p, axis=1) & np.any(points > p, axis=1))) for p in points
    ]
    front = done[~np.asarray(dominated, dtype=bool)]
    front = front.assign(name=[a.name for a in row_arms(front)])
    return front.sort_values("val_recall").drop_duplicates(subset=["name"])


def at_operating_point(front: pd.DataFrame, constraints: dict[str, float]) -> pd.Series | None:
    """The front's trial with the best first unconstrained figure (precision, else recall)
    among those meeting every minimum; None when none does."""
    ok = front
    for metric, low in constraints.items():
        column = f"val_{metric}"
        ok = ok[ok[column] >= low] if column in ok else ok.iloc[:0]
    if ok.empty:
        return None
    free = [c for c in _AXES[::-1] if c.removeprefix("val_") not in constraints] or ["objective"]
    return ok.loc[ok[free[0]].idxmax()]


def pareto_text(frame: pd.DataFrame, constraints: dict[str, float]) -> str:
    """One sentence: how many settings are on the front, and the one at the constraint."""
    front = pareto_front(frame)
    if front.empty:
        return ""
    text = f"{len(front)} tuned settings are on the validation precision/recall front"
    if not constraints:
        return text + "."
    wanted = " and ".join(f"{m} >= {low:g}" for m, low in constraints.items())
    chosen = at_operating_point(front, constraints)
    if chosen is None:
        return f"{text}; none meets {wanted}."
    figures = f"precision {chosen['val_precision']:.3f}, recall {chosen['val_recall']:.3f}"
    where = f"{chosen['stage']} #{chosen['number']}"
    return f"{text}; at {wanted} the front's best is {chosen['name']} ({figures}, {where})."


def pareto_figure(frame: pd.DataFrame, constraints: dict[str, float]) -> Figure | None:
    """Every tuned trial's validation precision against recall, the front joined, the
    constraint drawn and the setting at it marked."""
    from matplotlib.figure import Figure

    front = pareto_front(frame)
    if front.empty:
        return None
    tuned = frame[(frame["state"] == "COMPLETE") & frame["stage"].isin(["search", "refine"])]
    figure = Figure(figsize=(6.0, 4.2), dpi=110, layout="constrained")
    ax = figure.subplots()
    ax.scatter(tuned["val_recall"], tuned["val_precision"], s=12, color="#1f77b4", alpha=0.4)
    ax.plot(front["val_recall"], front["val_precision"], "o-", color="#d62728", ms=4, lw=1.2)
    for metric, low in constraints.items():
        if metric in ("recall", "precision"):
            draw = ax.axvline if metric == "recall" else ax.axhline
            draw(low, color="#7f7f7f", ls="--", lw=1)
    chosen = at_operating_point(front, constraints) if constraints else None
    if chosen is not None:
        ax.annotate(
            str(chosen["name"]), (chosen["val_recall"], chosen["val_precision"]), fontsize=7,
            xytext=(6, -12), textcoords="offset points",
        )  # fmt: skip
    ax.set(xlabel="validation recall", ylabel="validation precision", title="Pareto front")
    return figure
