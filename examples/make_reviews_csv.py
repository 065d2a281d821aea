"""Write examples/reviews.csv: product reviews in 4 classes, where 5 % report a safety hazard.

A multi-class, imbalanced text set (praise 45 %, neutral 30 %, complaint 20 %, hazard 5 %):
hazards are complaints in other words ("started smoking", "gave me an electric shock"), in
more varied phrasing than any other class; the star rating alone cannot tell a hazard from a
complaint. 3 % of the labels are flipped, as a
hurried annotator would. Deterministic: the same file every time.

Run: python examples/make_reviews_csv.py [OUT.csv] [N_ROWS]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

CLASSES = ("praise", "neutral", "complaint", "hazard")
SHARES = (0.45, 0.30, 0.20, 0.05)
PRODUCTS = [
    "kettle", "toaster", "hair dryer", "phone charger", "space heater", "blender",
    "power bank", "desk lamp", "electric blanket", "air fryer", "laptop battery", "fan",
]  # fmt: skip
TEMPLATES = {
    "praise": [
        "love this {p}, {good}",
        "the {p} is {good} and arrived quickly",
        "best {p} I have owned, {good}",
        "{good}, would buy this {p} again",
        "my old {p} died and this one is {good}",
        "great value, the {p} is {good}",
    ],
    "neutral": [
        "the {p} does what it says, {meh}",
        "{meh}; the {p} is fine for the price",
        "does the {p} come with a european plug",
        "the {p} is okay, {meh}",
        "average {p}, {meh}",
        "which size of {p} fits a small kitchen",
    ],
    "complaint": [
        "the {p} {broke}",
        "disappointed: the {p} {broke}",
        "returned the {p} because it {broke}",
        "poor quality, the {p} {broke}",
        "the {p} {broke}, customer service never answered",
        "waste of money, {p} {broke}",
    ],
    "hazard": [
        "the {p} {danger}",
        "warning: my {p} {danger}",
        "unplugged the {p} right away, it {danger}",
        "be careful, the {p} {danger}",
        "the {p} {danger} while my kids were in the room",
        "do not leave the {p} on, it {danger}",
    ],
}
FILLERS = {
    "good": ["works perfectly", "very sturdy", "super quiet", "heats up fast", "looks lovely",
             "easy to clean", "really reliable", "excellent build"],
    "meh": ["nothing special", "as expected", "neither good nor bad", "the manual is thin",
            "a bit loud", "the cable is short", "took a week to arrive", "plain design"],
    "broke": ["stopped working after a week", "broke on the second day", "arrived scratched",
              "is much smaller than pictured", "makes a rattling noise", "lost its handle",
              "will not turn on anymore", "leaks water everywhere", "button fell off"],
    "danger": ["started smoking", "caught fire", "gave me an electric shock", "melted the plug",
               "sparked at the socket", "got hot enough to scorch the table", "smelled of "
               "burning plastic", "the battery swelled up", "tripped the breaker with a bang",
               "scorched my hand", "left scorch marks on the wall", "exploded with a pop",
               "gave off acrid fumes", "singed the carpet", "the casing blistered",
               "crackled and flashed", "charred the outlet", "overheated and blackened"],
}  # fmt: skip
STARS = {"praise": (4, 5), "neutral": (3, 4), "complaint": (1, 2), "hazard": (1, 2)}
CLOSINGS = ["", "", "thanks", "ordered in march", "second one I bought", "gift for my mum"]


def reviews(n: int = 3000, *, seed: int = 0) -> pd.DataFrame:
    """Return ``n`` reviews: review (text), stars (1-5) and label (one of ``CLASSES``)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(CLASSES), size=n, p=SHARES)
    rows, stars = [], []
    for label in labels:
        name = CLASSES[label]
        template = str(rng.choice(TEMPLATES[name]))
        slot = {"praise": "good", "neutral": "meh", "complaint": "broke", "hazard": "danger"}[name]
        text = template.format(p=rng.choice(PRODUCTS), **{slot: rng.choice(FILLERS[slot])})
        rows.append(f"{text} {rng.choice(CLOSINGS)}".strip())
        low, high = STARS[name]
        stars.append(int(rng.integers(low, high + 1)))
    flipped = rng.random(n) < 0.03  # a hurried annotator
    labels = np.where(flipped, rng.integers(0, len(CLASSES), n), labels)
    return pd.DataFrame({"review": rows, "stars": stars, "label": [CLASSES[c] for c in labels]})


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("reviews.csv")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    frame = reviews(n)
    frame.to_csv(out, index=False)
    shares = frame["label"].value_counts(normalize=True).round(3).to_dict()
    print(f"wrote {len(frame)} reviews to {out}: {shares}")
