"""Compaction: stopped members leave their stack. Wall time against the epochs trained.

Run: python bench/compaction.py [--repeats 3] [--threads 2] [--quick] [--skip-workflow] [--json]

Two measurements, each variant in this process, interleaved, medians over --repeats:

1. The engine (``fit_stacked``), a refine-like group: K members (MLP 32-128-128-1, the default
   model's dropout 0.1, precision auto, batch 256) on make_classification (N x 32, 5 %
   positives), E epochs at most; member i is pruned after epoch ceil(E (i + 1) / K), so the
   stops are spread evenly and the epochs trained are about half of K x E. Variants:
   ``full`` (nobody stops), ``compacted`` (the stops; stopped members leave the stack, the
   default) and ``uncompacted`` (the same stops, ``compact_below=0``: a stopped member
   computes on, unheard, until the stack ends, as before compaction). Printed: each wall time,
   the epochs-trained share, and each variant's wall share of ``full``; with compaction the
   wall share should come close to the epochs share.
2. The workflow (``refine`` stage alone, after one shared baseline + search): the README's
   pruning workload (its demo experiment: 20,000 synthetic rows x 20, 3 % positives, MLP
   128-128 dropout 0.1, 30 epochs, batch 512, patience 5, the 4 x 3 grid; 30 refine trials in
   rounds of 6). Variants: ``none`` (refine.pruner none) and ``median`` (refine.pruner
   median). Printed: wall time, the epochs trained (refine trials that trained, each once) and
   both as shares of ``none``, the trials pruned, and the best refine value of each. Before
   compaction the README measured this workload at 57 % of the epochs for 90 % of the time.

--quick shrinks both (a few seconds a variant) to show the script works; figures from a
machine that other work shares are noise. Never asserts.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from sklearn.datasets import make_classification

from gammatune.config import Config, TrainConfig
from gammatune.device import autocast_dtype
from gammatune.report import trials_frame
from gammatune.training import Member, fit_stacked
from gammatune.tuning import run_workflow

SIZES = {  # (K, rows, epochs) for the engine; (rows, refine trials, epochs) for the workflow
    "full": {"engine": (16, 20000, 16), "workflow": (20000, 30, 30)},
    "quick": {"engine": (8, 4000, 8), "workflow": (4000, 12, 10)},
}


# ---- 1. the engine --------------------------------------------------------------------------


def engine_data(rows: int) -> tuple[torch.Tensor, ...]:
    x, y = make_classification(
        n_samples=rows, n_features=32, n_informative=12, weights=[0.95, 0.05], random_state=0
    )
    x = torch.tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32)
    y = torch.tensor(y)
    cut = rows * 4 // 5
    return x[:cut], y[:cut], x[cut:], y[cut:]


def engine_members(k: int, epochs: int, *, stops: bool) -> list[Member]:
    members = []
    for i in range(k):
        torch.manual_seed(i)
        model = torch.nn.Sequential(
            torch.nn.Linear(32, 128), torch.nn.ReLU(), torch.nn.Dropout(0.1),
            torch.nn.Linear(128, 128), torch.nn.ReLU(), torch.nn.Dropout(0.1),
            torch.nn.Linear(128, 1),
        )  # fmt: skip
        last = math.ceil(epochs * (i + 1) / k)
        prune = (lambda event, last=last: event.epoch >= last) if stops else None
        members.append(Member(model, 0.25 * (i % 9), 0.25 + 0.5 * (i % 2), i, prune))
    return members


def engine_run(data, k: int, epochs: int, variant: str) -> tuple[float, int]:
    """Wall seconds of one ``fit_stacked`` and the epochs its members trained."""
    config = TrainConfig(epochs=epochs, batch_size=256, patience=epochs, min_epochs=epochs)
    members = engine_members(k, epochs, stops=variant != "full")
    cpu = torch.device("cpu")
    start = time.perf_counter()
    results = fit_stacked(
        members, data, n_classes=2, minority=1, config=config, device=cpu,
        autocast=autocast_dtype(cpu, "auto"), compact_below=0.0 if variant == "uncompacted" else 1.0,
    )  # fmt: skip
    return time.perf_counter() - start, sum(r.epochs_run for r in results)


def bench_engine(size: tuple[int, int, int], repeats: int) -> dict[str, Any]:
    k, rows, epochs = size
    data = engine_data(rows)
    variants = ("full", "compacted", "uncompacted")
    walls: dict[str, list[float]] = {v: [] for v in variants}
    trained: dict[str, int] = {}
    engine_run(data, 2, 1, "full")  # warm-up: first-call costs fall on no variant
    for _ in range(repeats):
        for variant in variants:
            wall, trained[variant] = engine_run(data, k, epochs, variant)
            walls[variant].append(wall)
    median = {v: statistics.median(w) for v, w in walls.items()}
    return {
        "k": k, "rows": rows, "epochs": epochs, "wall_s": median, "runs_s": walls,
        "epochs_share": trained["compacted"] / trained["full"],
        "wall_share": {v: median[v] / median["full"] for v in variants},
        "uncompacted_over_compacted": median["uncompacted"] / median["compacted"],
        "steps_per_epoch": math.ceil(rows * 4 // 5 / 256),
    }  # fmt: skip


# ---- 2. the workflow ------------------------------------------------------------------------


def workflow_config(folder: Path, rows: int, trials: int, epochs: int, pruner: str) -> Config:
    return Config.model_validate({
        "name": "compaction", "seed": 0, "output_dir": str(folder),
        "data": {"source": "synthetic", "n_samples": rows, "n_features": 20,
                 "minority_fraction": 0.03},
        "split": {"val": 0.2, "test": 0.2},
        "model": {"kind": "mlp", "hidden": [128, 128], "dropout": 0.1},
        "train": {"epochs": epochs, "batch_size": 512, "lr": 0.001, "weight_decay": 0.0001,
                  "patience": 5, "min_epochs": 5, "monitor": "pr_auc", "device": "cpu"},
        "baseline": {"repeats": 1, "balanced": False, "linear": False},
        "search": {"gamma": [0.5, 1.0, 1.5, 2.0], "alpha": [0.25, 0.5, 0.75]},
        "refine": {"n_trials": trials, "batch": 6, "pruner": pruner},
    })  # fmt: skip


def refine_run(prepared: Path, size: tuple[int, int, int], pruner: str) -> dict[str, float]:
    """Time ``refine`` on a copy of the prepared folder (baseline and search done)."""
    with tempfile.TemporaryDirectory() as folder:
        shutil.copytree(prepared, folder, dirs_exist_ok=True)
        config = workflow_config(Path(folder), *size, pruner)
        start = time.perf_counter()
        run_workflow(config, ["refine"])
        wall = time.perf_counter() - start
        frame = trials_frame(config)
    refine = frame[(frame["stage"] == "refine") & frame["state"].isin(["COMPLETE", "PRUNED"])]
    trained = refine[refine["reused_from"].isna() & refine["warm_start_from"].isna()]
    done = refine[refine["state"] == "COMPLETE"]
    return {
        "wall_s": wall,
        "epochs": float(trained["epochs_run"].sum()),
        "pruned": float((refine["state"] == "PRUNED").sum()),
        "best": float(done["objective"].max()) if len(done) else math.nan,
    }


def bench_workflow(size: tuple[int, int, int], repeats: int) -> dict[str, Any]:
    variants = ("none", "median")
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as prepared:
        run_workflow(workflow_config(Path(prepared), *size, "none"), ["baseline", "search"])
        for _ in range(repeats):
            for variant in variants:
                runs[variant].append(refine_run(Path(prepared), size, variant))
    median = {
        v: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for v, rs in runs.items()
    }
    none = median["none"]
    return {
        "rows": size[0], "trials": size[1], "epochs": size[2], "median": median,
        "wall_share": {v: m["wall_s"] / none["wall_s"] for v, m in median.items()},
        "epochs_share": {v: m["epochs"] / none["epochs"] for v, m in median.items()},
        "runs": runs,
    }  # fmt: skip


# ---- output ---------------------------------------------------------------------------------


def show_engine(row: dict[str, Any]) -> None:
    print(f"\n1. engine: K {row['k']}, {row['rows']} rows, {row['epochs']} epochs "
          f"({row['steps_per_epoch']} steps an epoch), member i pruned after epoch "
          f"ceil(E (i+1) / K)")  # fmt: skip
    for variant, wall in row["wall_s"].items():
        print(
            f"  {variant:>12}: {wall:7.2f} s  ({100 * row['wall_share'][variant]:5.1f} % of full)"
        )
    print(f"  epochs trained: {100 * row['epochs_share']:.1f} % of full; uncompacted / compacted "
          f"wall time: x{row['uncompacted_over_compacted']:.2f}")  # fmt: skip


def show_workflow(row: dict[str, Any]) -> None:
    print(f"\n2. workflow refine: {row['rows']} rows, {row['trials']} trials in rounds of 6, "
          f"{row['epochs']} epochs")  # fmt: skip
    for variant, m in row["median"].items():
        print(f"  {variant:>20}: {m['wall_s']:7.2f} s ({100 * row['wall_share'][variant]:5.1f} %), "
              f"{m['epochs']:5.0f} epochs ({100 * row['epochs_share'][variant]:5.1f} %), "
              f"{m['pruned']:3.0f} pruned, best {m['best']:.4f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="small sizes: shows that it runs")
    parser.add_argument("--skip-workflow", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(args.threads)
    sizes = SIZES["quick" if args.quick else "full"]
    dtype = autocast_dtype(torch.device("cpu"), "auto")
    print(f"torch {torch.__version__}, CPU {torch.backends.cpu.get_cpu_capability()}, "
          f"{args.threads} threads, training in {dtype or torch.float32}, "
          f"medians of {args.repeats}")  # fmt: skip
    result: dict[str, Any] = {"engine": bench_engine(sizes["engine"], args.repeats)}
    show_engine(result["engine"])
    if not args.skip_workflow:
        result["workflow"] = bench_workflow(sizes["workflow"], args.repeats)
        show_workflow(result["workflow"])
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
