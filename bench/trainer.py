"""The trainer contract's cost: overhead per trial, and N workers against one, on a CPU.

Run: python bench/trainer.py [--trials 24] [--work-ms 500] [--workers 2] [--repeats 3] [--json]

1. Overhead: a user function that returns at once (random scores for the split's ids). The
   reference calls it in this process, once per trial, with a TrialSpec built by gammatune (the
   function's own cost); gammatune runs ``search`` over ``--trials`` grid points (SQLite storage,
   a process per trial, payload checks, metrics, records, scores files). Printed: ms per trial
   of each and their difference, the contract's overhead per trial. A warm-up run first starts
   the server that forks the trials' processes (it imports torch, pandas and scikit-learn's
   metrics once per Python process); its seconds are printed apart (``server_start_s``).
2. Workers: a user function that burns ``--work-ms`` of CPU (NumPy matmuls) per trial;
   ``gammatune search`` as a command with ``--workers 1`` and with ``--workers N``. Printed:
   wall time of each and the speed-up (ideal: N where the machine has N idle cores).

Medians over ``--repeats``. Prints the CPU count and the load average before each part: the
figures mean little on a busy machine. Never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from gammatune.config import load_config
from gammatune.data import load_data
from gammatune.record import Setting
from gammatune.spec import load_function
from gammatune.tuning import run_workflow, trial_spec

TRAINER = """
import os, time
import numpy as np

def run_trial(spec):
    work_s = float(os.environ.get("WORK_MS", "0")) / 1000
    end, a = time.process_time() + work_s, np.ones((96, 96))
    while time.process_time() < end:
        a = (a @ a) / 96.0
    rng = np.random.default_rng(spec.seed)
    return {part: {"ids": ids, "scores": rng.random(len(ids))}
            for part, ids in (("val", spec.val_ids), ("test", spec.test_ids))}
"""


def _experiment(folder: Path, n_trials: int, work_ms: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    labels = np.where(rng.random(2000) < 0.1, "pos", "neg")
    pd.DataFrame({"label": labels, "path": [f"{i}.png" for i in range(2000)]}).to_csv(
        folder / "units.csv", index=False
    )
    (folder / "bench_trainer.py").write_text(TRAINER, encoding="utf-8")
    config = {
        "name": "bench",
        "data": {"source": "csv", "path": "units.csv", "target": "label"},
        "trainer": {"function": "bench_trainer:run_trial", "env": {"WORK_MS": str(work_ms)}},
        "train": {"device": "cpu"},
        "search": {"gamma": [round(0.1 * i, 1) for i in range(n_trials)], "alpha": [0.75]},
        "output_dir": str(folder / "runs"),
    }
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def overhead(n_trials: int, repeats: int) -> dict[str, float]:
    """ms per trial: the function called here (reference) and through gammatune's search."""
    ours, reference = [], []
    with tempfile.TemporaryDirectory() as tmp:  # the fork server starts once per process
        started = time.perf_counter()
        run_workflow(load_config(_experiment(Path(tmp), 1, 0)), ["search"])
        server_start_s = time.perf_counter() - started
    for repeat in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            path = _experiment(Path(tmp), n_trials, 0)
            config = load_config(path)
            splits = load_data(config)
            assert config.trainer is not None and config.trainer.function is not None
            function = load_function(config.trainer.function, config.trainer.base_dir)
            cpu = torch.device("cpu")
            specs = [
                trial_spec(config, splits, Setting(0.1 * i, 0.75), trial=("search", i), device=cpu)
                for i in range(n_trials)
            ]
            started = time.perf_counter()
            for spec in specs:
                function(spec)
            reference.append((time.perf_counter() - started) / n_trials * 1000)
            started = time.perf_counter()
            run_workflow(config, ["search"])
            ours.append((time.perf_counter() - started) / n_trials * 1000)
            print(f"  overhead repeat {repeat + 1}: {ours[-1]:.1f} ms/trial", file=sys.stderr)
    mine, theirs = statistics.median(ours), statistics.median(reference)
    return {"gammatune_ms": mine, "reference_ms": theirs, "overhead_ms": mine - theirs,
            "server_start_s": server_start_s}  # fmt: skip


def workers(n_trials: int, work_ms: int, n_workers: int, repeats: int) -> dict[str, float]:
    """Wall seconds of ``gammatune search`` with 1 worker and with ``n_workers``."""
    times: dict[int, list[float]] = {1: [], n_workers: []}
    for _ in range(repeats):
        for n in times:
            with tempfile.TemporaryDirectory() as tmp:
                path = _experiment(Path(tmp), n_trials, work_ms)
                command = [sys.executable, "-m", "gammatune", "search", "-c", str(path),
                           "--workers", str(n)]  # fmt: skip
                started = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True)
                times[n].append(time.perf_counter() - started)
    one, many = statistics.median(times[1]), statistics.median(times[n_workers])
    return {"one_worker_s": one, f"{n_workers}_workers_s": many, "speedup": one / many}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--work-ms", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    facts: dict[str, Any] = {"cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}
    facts["overhead"] = overhead(args.trials, args.repeats)
    facts["load_before_workers"] = os.getloadavg()[0]
    facts["workers"] = workers(args.trials, args.work_ms, args.workers, args.repeats)
    if args.json:
        print(json.dumps(facts, indent=2))
        return
    o, w = facts["overhead"], facts["workers"]
    print(f"CPUs: {facts['cpus']}, load average before: {facts['load_before']:.1f}")
    print(f"per trial: gammatune {o['gammatune_ms']:.1f} ms, the function alone "
          f"{o['reference_ms']:.1f} ms: overhead {o['overhead_ms']:.1f} ms/trial "
          f"(and {o['server_start_s']:.1f} s once per run, a 1-trial warm-up)")  # fmt: skip
    print(f"{args.trials} trials of {args.work_ms} ms CPU: 1 worker {w['one_worker_s']:.1f} s, "
          f"{args.workers} workers {w[f'{args.workers}_workers_s']:.1f} s: "
          f"{w['speedup']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
