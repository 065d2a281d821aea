"""Write examples/fraud.csv: a small synthetic card-fraud table (4 % fraud) for the CSV example.

Run: python examples/make_fraud_csv.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification

x, y = make_classification(
    n_samples=4000,
    n_features=10,
    n_informative=6,
    n_redundant=2,
    weights=[0.96, 0.04],
    flip_y=0.01,
    class_sep=0.8,
    random_state=7,
)
columns = ["amount", "hour", "merchant_risk", "distance_km", "n_tx_24h"]
columns += [f"v{i}" for i in range(1, 6)]
frame = pd.DataFrame(np.round(x, 4), columns=columns)
frame["label"] = np.where(y == 1, "fraud", "ok")
path = Path(__file__).with_name("fraud.csv")
frame.to_csv(path, index=False)
print(f"wrote {len(frame)} rows ({int((y == 1).sum())} fraud) to {path}")
