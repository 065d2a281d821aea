"""Use a tuned model from Python: load what `gammatune run` exported and score a CSV.

Run (after `gammatune run --config examples/fraud.yaml`):
    python examples/use_model.py runs/fraud/model examples/fraud.csv
"""

from __future__ import annotations

import sys

import pandas as pd

from gammatune import load_model

model_dir, csv = (
    (sys.argv[1], sys.argv[2]) if len(sys.argv) > 2 else ("runs/fraud/model", "examples/fraud.csv")
)
model = load_model(model_dir)  # a fitted FocalClassifier, with the tuned gamma and alpha
frame = pd.read_csv(csv)
X = frame[list(model.preprocessing_.columns)].to_numpy()  # the features, in training order
scores = model.predict_proba(X)[:, 1]  # raw features in: it standardizes as in training
labels = model.predict(X)  # at the exported decision threshold
positive = str(model.classes_[1])
print(f"{len(frame)} rows, {int((labels == positive).sum())} predicted {positive!r}")
print(f"gamma {model.gamma}, alpha {model.alpha}; top score {scores.max():.3f}")
