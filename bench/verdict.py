"""The verdict: what `confirm` costs against the rest of a run, and what it says on data made to
favour focal loss and on data made not to.

Run: python bench/verdict.py [--repeats 3] [--seeds 5] [--skip-cost] [--skip-verdicts] [--json]

1. Cost (medians of --repeats, in one process, fresh storage each time): the wall time of
   baseline + search + refine, and of confirm after them, on scikit-learn's digits (the demo
   config) and on a synthetic table; printed as the ratio confirm / the rest.
2. Verdicts over --seeds seeds (each seed changes the split, the data and the training seeds):
   - "easy negatives": the regime of Lin et al. 2017: 0.5 % positives, nearly all negatives far
     from them (easy), a few hard ones beside them, and a short budget (3 epochs);
   - "easy mass, linear": a linear model, positives beside hard negatives, and 40,000 easy
     negatives whose summed cross-entropy tilts its one boundary;
   - "no focal gain": a plain table with 20 % positives and a long budget.
   For each: the verdict, the recommendation, and the best finalist against its twin.
Never asserts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gammatune.config import Config, load_config
from gammatune.data import Splits
from gammatune.report import study_summary
from gammatune.tuning import run_workflow

ROOT = Path(__file__).resolve().parents[1]
TUNE = ["baseline", "search", "refine"]


def timed(config: Config, stages: list[str], splits: Splits | None) -> float:
    start = time.perf_counter()
    run_workflow(config, stages, splits=splits)  # type: ignore[arg-type]
    return time.perf_counter() - start


def cost(name: str, make: Any, repeats: int) -> dict[str, Any]:
    rest, confirm = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as folder:
            config, splits = make(Path(folder))
            rest.append(timed(config, TUNE, splits))
            confirm.append(timed(config, ["confirm"], splits))
            n_confirm = len(study_summary(config)[0].query("stage == 'confirm'"))
    r, c = statistics.median(rest), statistics.median(confirm)
    return {
        "workload": name,
        "rest_s": r,
        "confirm_s": c,
        "ratio": c / r,
        "confirm_trials": n_confirm,
    }


def demo(folder: Path) -> tuple[Config, None]:
    config = load_config(ROOT / "configs" / "demo.yaml")
    return Config.model_validate({**config.model_dump(), "output_dir": str(folder)}), None


def synthetic(folder: Path) -> tuple[Config, None]:
    return experiment(folder, "synthetic", seed=0, data={
        "source": "synthetic", "n_samples": 40000, "n_features": 32, "minority_fraction": 0.05,
    }, train={"epochs": 8, "batch_size": 256}), None  # fmt: skip


def experiment(
    folder: Path, name: str, *, seed: int, data: dict, train: dict, **more: Any
) -> Config:
    return Config.model_validate({
        "name": name, "seed": seed, "data": data, "output_dir": str(folder),
        "model": {"kind": "mlp", "hidden": [64, 64], "dropout": 0.1},
        "train": {"lr": 3e-3, "patience": 3, "min_epochs": 3, "device": "cpu", **train},
        "search": {"gamma": [0.5, 1.0, 2.0, 3.0], "alpha": [0.25, 0.5, 0.75]},
        "refine": {"n_trials": 16}, **more,
    })  # fmt: skip


def split_arrays(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> Splits:
    """Stratified 60/20/20, standardized on train."""
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == c))
        cut = [int(len(idx) * 0.6), int(len(idx) * 0.8)]
        for part, piece in zip(parts, np.split(idx, cut), strict=True):
            part.append(piece)
    train, val, test = (np.sort(np.concatenate(p)) for p in parts)
    mean, std = x[train].mean(0), x[train].std(0) + 1e-12
    t = lambda i: (torch.tensor((x[i] - mean) / std, dtype=torch.float32), torch.tensor(y[i]))  # noqa: E731
    return Splits(*t(train), *t(val), *t(test), class_names=("0", "1"))


def easy_negatives(seed: int) -> Splits:
    """0.5 % positives beside 3 % hard negatives; the other negatives far away (easy)."""
    rng = np.random.default_rng(seed)
    n, f = 80000, 8
    n_pos, n_hard = int(n * 0.005), int(n * 0.03)
    shift = np.zeros(f)
    shift[0] = 1.0
    pos = rng.normal(size=(n_pos, f)) + 1.2 * shift
    hard = rng.normal(size=(n_hard, f))
    easy = rng.normal(size=(n - n_pos - n_hard, f)) - 5.0 * shift
    x = np.vstack([pos, hard, easy])
    x[:, 1] += np.sin(2 * x[:, 0])  # a curved boundary between positives and hard negatives
    y = np.r_[np.ones(n_pos, np.int64), np.zeros(n - n_pos, np.int64)]
    return split_arrays(x, y, rng)


def easy_mass(seed: int) -> Splits:
    """For a linear model: positives and hard negatives side by side, and 40,000 easy negatives
    whose summed cross-entropy tilts the one boundary a linear model has away from the hard
    region; focal loss mutes them once they are classified."""
    rng = np.random.default_rng(seed)
    pos = rng.normal([3.0, 0.0], 0.5, (300, 2))
    hard = rng.normal([3.0, 1.5], 0.5, (600, 2))
    easy = rng.normal([0.0, -2.0], 1.0, (40000, 2))
    x = np.vstack([pos, hard, easy])
    y = np.r_[np.ones(300, np.int64), np.zeros(40600, np.int64)]
    return split_arrays(x, y, rng)


def no_gain(seed: int) -> Splits:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=20000, n_features=16, n_informative=8,
                               weights=[0.8, 0.2], flip_y=0.02, random_state=seed)  # fmt: skip
    return split_arrays(x, y.astype(np.int64), np.random.default_rng(seed))


def verdicts(seeds: int, only: str | None = None) -> list[dict[str, Any]]:
    cases = [
        ("easy mass, linear", easy_mass, {"epochs": 30, "batch_size": 1024, "lr": 0.05}, "linear"),
        ("easy negatives", easy_negatives, {"epochs": 3, "batch_size": 512}, "mlp"),
        ("no focal gain", no_gain, {"epochs": 30, "batch_size": 256}, "mlp"),
    ]
    out = []
    for name, make, train, model in [c for c in cases if only is None or only in c[0]]:
        for seed in range(seeds):
            with tempfile.TemporaryDirectory() as folder:
                config = experiment(
                    Path(folder), "verdict", seed=seed, train=train, objective="pr_auc",
                    data={"source": "synthetic"},  # replaced by the splits below
                    model={"kind": model, "hidden": [64, 64], "dropout": 0.1},
                )  # fmt: skip
                start = time.perf_counter()
                run_workflow(config, [*TUNE, "confirm"], splits=make(seed))
                _, summary, _ = study_summary(config)
                out.append(_verdict_row(name, seed, summary, time.perf_counter() - start))
    return out


def _verdict_row(name: str, seed: int, summary: Any, seconds: float) -> dict[str, Any]:
    verdict = summary.verdict
    twins = [c for c in verdict.comparisons if c.family == "vs_twin"]
    best = max(twins, key=lambda c: c.mean, default=None)
    return {
        "data": name, "seed": seed, "verdict": verdict.kind, "recommended": verdict.recommended,
        "best_vs_twin": None if best is None else
        {"setting": best.setting, "mean": best.mean, "low": best.low, "high": best.high},
        "seconds": seconds,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--skip-verdicts", action="store_true")
    parser.add_argument("--only", help="run only the verdict cases whose name contains this")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results: dict[str, Any] = {"threads": torch.get_num_threads()}
    if not args.skip_cost:
        results["cost"] = [cost("digits (demo)", demo, args.repeats),
                           cost("synthetic 40k x 32", synthetic, args.repeats)]  # fmt: skip
        for row in results["cost"]:
            print(f"{row['workload']:<20} baseline+search+refine {row['rest_s']:6.2f} s   "
                  f"confirm ({row['confirm_trials']} trials) {row['confirm_s']:6.2f} s   "
                  f"confirm / rest = {row['ratio']:.2f}")  # fmt: skip
    if not args.skip_verdicts:
        results["verdicts"] = verdicts(args.seeds, args.only)
        for row in results["verdicts"]:
            best = row["best_vs_twin"]
            twin = "" if best is None else (
                f"best finalist {best['setting']} vs twin {best['mean']:+.4f} "
                f"[{best['low']:+.4f}, {best['high']:+.4f}]")  # fmt: skip
            print(f"{row['data']:<15} seed {row['seed']}: {row['verdict']:<15} "
                  f"recommended {row['recommended']}  {twin}  ({row['seconds']:.0f} s)")  # fmt: skip
    if args.json:
        print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
