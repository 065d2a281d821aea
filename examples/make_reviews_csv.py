"""Write examples/reviews.csv: product reviews in 4 classes, where 5 % report a safety hazard.

A multi-class, imbalanced text set (praise 45 %, neutral 30 %, complaint 20 %, hazard 5 %).
Hazards are told in 30 different phrasings ("started smoking", "zapped my finger", "began to
smoulder"), each seen a few times in the whole set, as people describe a rare event; everyday
complaints and neutral reviews use some of the same words of heat and smell ("gets warm and
then switches itself off"), and the star rating cannot tell a hazard from a complaint. 3 % of
the labels are flipped, as a hurried annotator would. Deterministic: the same file every time.

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
        "love the {p}, {good}, though {meh}",
        "great value, the {p} is {good}",
    ],
    "neutral": [
        "the {p} does what it says, {meh}",
        "{meh}; the {p} is fine for the price",
        "does the {p} come with a european plug",
        "the {p} is okay, {meh}",
        "average {p}, {meh}",
        "the {p} is {good} but {meh}",
    ],
    "complaint": [
        "the {p} {broke}",
        "disappointed: the {p} {broke}",
        "returned the {p} because it {broke}",
        "poor quality, the {p} {broke}",
        "the {p} {broke}, customer service never answered",
        "looks nice but the {p} {broke}",
    ],
    "hazard": [
        "the {p} {danger}",
        "warning: my {p} {danger}",
        "unplugged the {p} right away, {danger}",
        "be careful, the {p} {danger}",
        "the {p} {danger} while my kids were in the room",
        "nice design but the {p} {danger}",
    ],
}
PARTS = ["", "", "'s plug", "'s cord", "'s battery", "'s base", "'s casing", "'s switch"]
FILLERS = {
    "good": ["works perfectly", "very sturdy", "super quiet", "heats up fast", "looks lovely",
             "easy to clean", "really reliable", "excellent build"],
    "meh": ["nothing special", "as expected", "the manual is thin", "a bit loud",
            "the cable is short", "took a week to arrive", "it gets a little warm",
            "it has a new plastic smell at first"],
    # Everyday faults, some in the words of heat and smell that hazards use too.
    "broke": ["stopped working after a week", "broke on the second day", "arrived scratched",
              "is much smaller than pictured", "makes a rattling noise", "lost its handle",
              "will not turn on anymore", "leaks water everywhere", "button fell off",
              "gets warm and then switches itself off", "smells of plastic for days",
              "takes ages to heat up", "the light flickers", "the display went dark"],
    # A rare event, told in many words: each phrase is seen a few times in the whole set.
    "danger": ["started smoking", "caught fire", "gave me an electric shock", "melted",
               "sparked at the socket", "got hot enough to scorch the table",
               "smelled of burning plastic", "swelled up", "tripped the breaker with a bang",
               "scorched my hand", "left scorch marks on the wall", "exploded with a pop",
               "gave off acrid fumes", "singed the carpet", "blistered", "crackled and flashed",
               "charred the outlet", "overheated and blackened", "burst into flames",
               "zapped my finger", "fizzed and sizzled", "began to smoulder", "glowed red hot",
               "let out a shower of sparks", "went up in smoke", "burned my daughter",
               "got too hot to touch and warped", "emitted a choking smell",
               "shorted out with a flash", "buzzed and then a flame appeared"],
}  # fmt: skip
STARS = {"praise": (3, 5), "neutral": (2, 4), "complaint": (1, 3), "hazard": (1, 3)}
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
        product = str(rng.choice(PRODUCTS))
        if name == "hazard":  # the kettle's cord, the fan's switch, ...
            product += str(rng.choice(PARTS))
        fill = {key: rng.choice(FILLERS[key]) for key in ("good", "meh")}
        text = template.format(p=product, **{**fill, slot: rng.choice(FILLERS[slot])})
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
