"""How a study's wall time and peak memory grow with trials, rows and features, and where the
time goes.

Run: python bench/scaling.py [--quick] [--only trials rows features] [--device cpu|cuda]
     [--threads N] [--profile] [--json]

From the workload of bench/workflow.py (an MLP 128-128 trained 8 epochs, batch 256, on a
make_classification table with 5 % positives; baseline + a 4-point grid + TPE trials), one
dimension at a time: trials 20 / 100 / 400 (at 40,000 x 32), rows 10k / 100k / 1M (20 trials,
32 features), features 8 / 32 / 128 (20 trials, 40,000 rows). Each row prints the wall time of
baseline + search + refine in one process, the time per trial, and the share of it spent in
training (the trials' own stacked training time; the rest is evaluation, TPE, storage) and
the peak memory: each size runs in a fresh process of its own, whose peak resident set is read
at its end (the data, generated in that process, included; on CUDA also torch's peak allocated
GPU memory). The first row of each series is the reference the others are ratios of.

--quick runs the two smaller sizes of each series (the large ends, 400 trials and 1M rows, take
minutes and GBs); --profile adds, per size, the functions with the most own time (cProfile), to
say where the time goes at the large end. Never asserts.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import resource
import subprocess
import sys
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


def config(folder: Path, *, trials: int, rows: int, features: int, device: str) -> Config:
    return Config.model_validate({
        "name": "scaling", "seed": 0, "output_dir": str(folder),
        "data": {"source": "synthetic", "n_samples": rows, "n_features": features,
                 "n_informative": max(2, features * 3 // 8), "minority_fraction": 0.05},
        "split": {"val": 0.2, "test": 0.01},
        "model": {"kind": "mlp", "hidden": [128, 128], "dropout": 0.1},
        "train": {"epochs": 8, "batch_size": 256, "patience": 100, "min_epochs": 8,
                  "device": device},
        "baseline": {"repeats": 1, "balanced": False, "linear": False},
        "search": {"gamma": [0.5, 1.0, 1.5, 2.0], "alpha": [0.25]},
        "refine": {"n_trials": trials - 5, "gamma_window": 5.0, "alpha_window": 1.0},
    })  # fmt: skip


def measure(size: dict[str, int], device: str, profile: bool) -> dict[str, Any]:
    """Run one size in this process; its figures, peak memory included."""
    with tempfile.TemporaryDirectory() as folder:
        experiment = config(Path(folder), **size, device=device)
        profiler = cProfile.Profile() if profile else None
        start = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        run_workflow(experiment, ["baseline", "search", "refine"])
        if profiler is not None:
            profiler.disable()
        wall = time.perf_counter() - start
        frame = trials_frame(experiment)
    done = frame[frame["state"] == "COMPLETE"]
    # Reused points and warm-start copies carry their twin's duration: count each training once.
    trained = done[done["reused_from"].isna() & done["warm_start_from"].isna()]
    training = float(trained["duration_s"].sum())
    row = {
        **size,
        "wall_s": wall,
        "per_trial_s": wall / len(done),
        "training_share": training / wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
    }
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(12)
        row["profile"] = text.getvalue()
    return row


def measure_apart(size: dict[str, int], args: argparse.Namespace) -> dict[str, Any]:
    """Measure one size in a fresh process, so that its peak memory is its own."""
    command = [sys.executable, __file__, "--one", json.dumps(size), "--device", args.device,
               "--threads", str(args.threads), *(["--profile"] if args.profile else [])]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"scaling: {size} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the two smaller sizes only")
    parser.add_argument("--only", nargs="+", choices=list(SERIES), default=list(SERIES))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--profile", action="store_true", help="the top functions by own time")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a size as JSON: the child process
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(json.loads(args.one), args.device, args.profile)))
        return
    print(f"torch {torch.__version__}, {args.threads} threads, {args.device}, "
          f"CPU {torch.backends.cpu.get_cpu_capability()}")  # fmt: skip
    rows = []
    for dimension in args.only:
        values = SERIES[dimension]
        reference = None
        for value in values[:2] if args.quick else values:
            row = measure_apart({**BASE, dimension: value}, args)
            reference = reference or row
            row["ratio"] = row["wall_s"] / reference["wall_s"]
            row["dimension"] = dimension
            rows.append(row)
            cuda = f", GPU peak {row['peak_cuda_mb']:.0f} MiB" if row["peak_cuda_mb"] else ""
            print(f"{dimension:>8} = {value:>8}: {row['wall_s']:7.1f} s  "
                  f"({row['per_trial_s']:.2f} s a trial, x{row['ratio']:.1f} of the first), "
                  f"{100 * row['training_share']:.0f} % in training, "
                  f"peak RSS {row['peak_rss_mb']:.0f} MiB{cuda}", flush=True)  # fmt: skip
            if args.profile:
                print(row["profile"])
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
