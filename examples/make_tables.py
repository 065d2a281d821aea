"""Write three tables as people have them, for the examples cancer.yaml, transactions.yaml and
severity.yaml: none needs hand preprocessing before `gammatune run`.

- cancer.csv: scikit-learn's breast-cancer table thinned to 25 malignant of 382 rows (6.5 %),
  a numeric ``patient_id`` and string labels (``benign`` / ``malignant``).
- transactions.csv: 3,000 card transactions, 5 % fraud, a string ``tx_id``, two categorical
  columns (``merchant_category``, ``country``: 30 countries, more than the 20 that get a column
  each), and missing values in ``account_age_days``, ``amount`` and ``country``.
- severity.csv: a 4-class table (``low`` / ``medium`` / ``high`` / ``critical``, 2,000 rows,
  the rarest 4 %) with an ``incident`` id and a ``team`` category.

Run: python examples/make_tables.py [folder]   (default: this file's folder)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, make_classification


def cancer(rng: np.random.Generator) -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.drop(columns="target").round(4)
    malignant = data.target.to_numpy() == 0  # scikit-learn codes malignant as 0
    keep = np.r_[np.flatnonzero(~malignant), rng.choice(np.flatnonzero(malignant), 25, False)]
    frame = frame.iloc[np.sort(keep)].reset_index(drop=True)
    frame.insert(0, "patient_id", rng.choice(np.arange(100_000, 999_999), len(frame), False))
    frame["diagnosis"] = np.where(malignant[np.sort(keep)], "malignant", "benign")
    return frame


def transactions(rng: np.random.Generator, n: int = 3000) -> pd.DataFrame:
    categories = ["grocery", "fuel", "travel", "online", "electronics", "restaurants"]
    countries = [f"C{i:02d}" for i in range(30)]
    category = rng.choice(categories, n, p=[0.3, 0.2, 0.1, 0.2, 0.1, 0.1])
    country = rng.choice(countries, n, p=np.r_[np.full(10, 0.07), np.full(20, 0.015)])
    amount = rng.lognormal(3.5, 1.0, n)
    hour = rng.integers(0, 24, n)
    age = rng.gamma(2.0, 400.0, n)
    risk = (
        1.6 * np.isin(category, ["online", "electronics"])
        + 1.2 * np.isin(country, countries[20:])
        + 0.9 * (np.log(amount) - 3.5)
        + 0.8 * ((hour < 5) | (hour > 22))
        - 0.002 * age
    )
    score = risk + rng.logistic(size=n)
    fraud = score > np.quantile(score, 0.95)
    frame = pd.DataFrame(
        {
            "tx_id": [f"tx-{i:06d}" for i in rng.permutation(n)],
            "amount": amount.round(2),
            "hour": hour,
            "merchant_category": category,
            "country": country,
            "account_age_days": age.round(0),
        }
    )
    for column, k in (("account_age_days", 120), ("amount", 31), ("country", 20)):
        frame.loc[rng.choice(n, k, replace=False), column] = np.nan  # 171 missing values
    frame["label"] = np.where(fraud, "fraud", "ok")
    return frame


def severity(rng: np.random.Generator, n: int = 2000) -> pd.DataFrame:
    x, y = make_classification(
        n_samples=n, n_features=8, n_informative=5, n_redundant=1, n_classes=4,
        n_clusters_per_class=1, weights=[0.55, 0.3, 0.11, 0.04], class_sep=1.0, random_state=3,
    )  # fmt: skip
    frame = pd.DataFrame(x.round(4), columns=[f"m{i}" for i in range(1, 9)])
    frame.insert(0, "incident", [f"INC{i:05d}" for i in range(n)])
    teams = np.array(["db", "network", "storage", "web"])
    frame["team"] = np.where(rng.random(n) < 0.5, teams[y], rng.choice(teams, n))
    frame["severity"] = np.array(["low", "medium", "high", "critical"])[y]
    return frame


def main(folder: Path) -> None:
    rng = np.random.default_rng(20)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in (
        ("cancer", cancer(rng)),
        ("transactions", transactions(rng)),
        ("severity", severity(rng)),
    ):
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        print(f"wrote {len(frame)} rows to {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
