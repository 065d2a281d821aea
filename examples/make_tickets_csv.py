"""Write examples/tickets.csv: support tickets (text) where 5 % are urgent outages.

Deterministic: the same file every time. Run: python examples/make_tickets_csv.py [OUT.csv]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROUTINE = [
    "how do I change my {thing}",
    "question about my {thing} on the last invoice",
    "please update the {thing} on my account",
    "the {thing} page looks different since the update",
    "can you send me a copy of my {thing}",
    "feature request: export my {thing} as pdf",
]
URGENT = [
    "the {thing} is down for all our users",
    "outage: cannot reach the {thing} since this morning",
    "production {thing} returns errors, we are losing orders",
    "urgent: the {thing} stopped working for everyone",
]
THINGS = ["password", "billing address", "dashboard", "api", "login page", "report", "invoice"]
NOISE = ["thanks", "hello", "regards", "asap please", "see attached", "", "best"]


def tickets(n: int = 3000, *, urgent_share: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Return ``n`` tickets: message, n_attachments, account_age_days and label."""
    rng = np.random.default_rng(seed)
    is_urgent = rng.random(n) < urgent_share
    # A few routine tickets borrow urgent words and vice versa, so text alone is not perfect.
    flipped = rng.random(n) < 0.03
    rows = []
    for urgent, flip in zip(is_urgent, flipped, strict=True):
        templates = URGENT if urgent != flip else ROUTINE
        text = str(rng.choice(templates)).format(thing=rng.choice(THINGS))
        rows.append(f"{rng.choice(NOISE)} {text} {rng.choice(NOISE)}".strip())
    return pd.DataFrame(
        {
            "message": rows,
            "n_attachments": rng.poisson(np.where(is_urgent, 1.5, 0.5)),
            "account_age_days": rng.integers(1, 2000, n),
            "label": np.where(is_urgent, "urgent", "routine"),
        }
    )


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("tickets.csv")
    frame = tickets()
    frame.to_csv(out, index=False)
    print(f"wrote {len(frame)} tickets ({int((frame.label == 'urgent').sum())} urgent) to {out}")
