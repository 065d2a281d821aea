"""How a study's wall time grows with trials, rows and features, and where the time goes.

Run: python bench/scaling.py [--quick] [--json]

From the workload of bench/workflow.py (an MLP 128-128 trained 8 epochs, batch 256, on a
make_classification table with 5 % positives; baseline + a 4-point grid + TPE trials), one
dimension at a time: trials 20 / 100 / 400 (at 40,000 x 32), rows 10k / 100k / 1M (20 trials,
32 features), features 8 / 32 / 128 (20 trials, 40,000 rows). Each row prints the wall time of
baseline + search + refine in one process, the time per trial, and the share of it spent in
training (the trials' own stacked training time; the rest is evaluation, TPE, storage). The
first row of each series is the reference the others are ratios of. Never asserts.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from gammatune.config import Config
from gammatune.report import trials_frame
from gammatune.tuning import run_workflow

BASE = {"trials": 20, "rows": 40000, "features": 32}
SERIES = {
    "trials": [20, 100, 400],
    "rows": [10000, 100000, 1000000],
    "features": [8, 32, 128],
}


def config(folder: Path, *, trials: int, rows: int, features: int) -> Config:
    return Config.model_validate({
        "name": "scaling", "seed": 0, "output_dir": str(folder),
        "data": {"source": "synthetic", "n_samples": rows, "n_features": features,
                 "n_informative": max(2, features * 3 // 8), "minority_fraction": 0.05},
        "split": {"val": 0.2, "test": 0.01},
        "model": {"kind": "mlp", "hidden": [128, 128], "dropout": 0.1},
        "train": {"epochs": 8, "batch_size": 256, "patience": 100, "min_epochs": 8,
                  "device": "cpu"},
        "baseline": {"repeats": 1, "balanced": False, "linear": False},
        "search": {"gamma": [0.5, 1.0, 1.5, 2.0], "alpha": [0.25]},
        "refine": {"n_trials": trials - 5, "gamma_window": 5.0, "alpha_window": 1.0},
    })  # fmt: skip


def measure(**size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        experiment = config(Path(folder), **size)
        start = time.perf_counter()
        run_workflow(experiment, ["baseline", "search", "refine"])
        wall = time.perf_counter() - start
        frame = trials_frame(experiment)
    done = frame[frame["state"] == "COMPLETE"]
    # Reused points and warm-start copies carry their twin's duration: count each training once.
    trained = done[done["reused_from"].isna() & done["warm_start_from"].isna()]
    training = float(trained["duration_s"].sum())
    return {
        **size,
        "wall_s": wall,
        "per_trial_s": wall / len(done),
        "training_share": training / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the two smaller sizes only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    rows = []
    for dimension, values in SERIES.items():
        reference = None
        for value in values[:2] if args.quick else values:
            row = measure(**{**BASE, dimension: value})
            reference = reference or row
            row["ratio"] = row["wall_s"] / reference["wall_s"]
            row["dimension"] = dimension
            rows.append(row)
            print(f"{dimension:>8} = {value:>8}: {row['wall_s']:7.1f} s  "
                  f"({row['per_trial_s']:.2f} s a trial, x{row['ratio']:.1f} of the first), "
                  f"{100 * row['training_share']:.0f} % in training", flush=True)  # fmt: skip
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
