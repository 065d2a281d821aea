"""Many worker processes on one study: trials per second and failures, per storage.

Run: python bench/workers.py [--trials 160] [--workers 1,4,16,32] [--repeats 3] [--json]

gammatune's own path, with a stand-in objective (``--trial-ms`` of sleep, no training): the
storage as gammatune opens it (SQLite in WAL mode with its 60 s lock timeout, a JournalStorage
file, PostgreSQL), a search grid of ``--trials`` points enqueued as the ``--workers``
coordinator enqueues them (``enqueue_trial`` of each planned point), then N forked processes
that each run ``run_stages(..., role="worker")``: they claim enqueued points under ``claim_lock``, tag them (host, pid,
heartbeat), store a record and tell Optuna, as ``gammatune worker`` does. PostgreSQL is
measured when ``GAMMATUNE_TEST_POSTGRES`` holds a URL (``eval "$(bash .ci/run postgres)"``).

Printed per storage and N: the median over ``--repeats`` of trials per second (points /
wall time from the moment all workers are ready), and the failures summed over the repeats:
FAIL trials, points completed twice, points left unfinished, and workers that raised.
Never asserts.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from gammatune.config import Config, load_config
from gammatune.record import Setting, TrialRecord
from gammatune.storage import open_storage
from gammatune.tuning import plan_stage, run_stages

GAMMAS = [round(0.1 * i, 1) for i in range(1, 101)]
ALPHAS = [0.25, 0.5, 0.75, 0.9]


def experiment(folder: Path, storage: str | None, n_trials: int) -> Config:
    """A tiny experiment whose search grid has ``n_trials`` points (the data is never read)."""
    points = [(g, a) for g in GAMMAS for a in ALPHAS][:n_trials]
    raw = {
        "name": f"bench-{uuid.uuid4().hex[:8]}",
        "data": {"source": "synthetic", "n_samples": 200},
        "search": {"gamma": sorted({g for g, _ in points}), "alpha": ALPHAS},
        "storage": storage,
        "output_dir": str(folder / "runs"),
    }
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return load_config(path)


def stand_in(trial_ms: float) -> Any:
    def objective(settings: list[Setting], _reporters: Any) -> list[tuple[TrialRecord, None]]:
        time.sleep(trial_ms / 1000 * len(settings))
        return [(TrialRecord(s, seed=0, value=s.gamma), None) for s in settings]

    return objective


def worker(config: Config, index: int, trial_ms: float, ready: Any, results: Any) -> None:
    try:
        storage = open_storage(config)
        ready.wait()
        run_stages(config, ["search"], stand_in(trial_ms), storage=storage, role="worker",
                   worker=index)  # fmt: skip
        results.put(None)
    except BaseException as exc:  # counted, not raised: a benchmark never stops on one
        results.put(f"{type(exc).__name__}: {exc}"[:200])


def measure(config: Config, n_workers: int, trial_ms: float) -> tuple[float, dict[str, int]]:
    storage = open_storage(config)
    study = optuna.create_study(study_name=f"{config.name}.search", storage=storage)
    points = plan_stage(config, "search", storage).points
    for point in points:  # as the coordinator enqueues them (its _enqueue_missing)
        study.enqueue_trial(point.params())
    n_points = len(points)
    del storage, study
    gc.collect()  # close this process's connections before forking (finalizers dispose them)
    context = mp.get_context("fork")
    ready, results = context.Barrier(n_workers + 1), context.Queue()
    processes = [
        context.Process(target=worker, args=(config, i + 1, trial_ms, ready, results))
        for i in range(n_workers)
    ]
    for process in processes:
        process.start()
    ready.wait()
    started = time.perf_counter()
    errors = [results.get() for _ in processes]
    wall = time.perf_counter() - started
    for process in processes:
        process.join()
    storage = open_storage(config)
    study = optuna.load_study(study_name=f"{config.name}.search", storage=storage)
    trials = study.get_trials(deepcopy=False)
    done = Counter(
        tuple(sorted(t.params.items())) for t in trials if t.state == TrialState.COMPLETE
    )
    optuna.delete_study(study_name=study.study_name, storage=storage)  # a server's too
    return n_points / wall, {
        "fail": sum(t.state == TrialState.FAIL for t in trials),
        "twice": sum(n - 1 for n in done.values()),
        "unfinished": n_points - len(done),
        "raised": sum(e is not None for e in errors),
    }


def storages() -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = [
        ("sqlite (WAL)", None),
        ("journal", "journal://study.log"),
    ]
    url = os.environ.get("GAMMATUNE_TEST_POSTGRES")
    if url:
        found.append(("postgresql", url))
    else:
        print("postgresql: skipped: GAMMATUNE_TEST_POSTGRES is not set "
              '(eval "$(bash .ci/run postgres)" starts a server)')  # fmt: skip
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=160)
    parser.add_argument("--workers", default="1,4,16,32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trial-ms", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, optuna "
          f"{optuna.__version__}; {args.trials} points, {args.trial_ms:g} ms each, medians of "
          f"{args.repeats}")  # fmt: skip
    measured = storages()
    print("| storage | workers | trials/s | FAIL | twice | unfinished | workers raised |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for name, url in measured:
        for n_workers in (int(n) for n in args.workers.split(",")):
            rates, failures = [], Counter[str]()
            for _ in range(args.repeats):
                with tempfile.TemporaryDirectory() as folder:
                    config = experiment(Path(folder), url, args.trials)
                    rate, failed = measure(config, n_workers, args.trial_ms)
                rates.append(rate)
                failures.update(failed)
            rows.append({"storage": name, "workers": n_workers,
                         "trials_per_s": statistics.median(rates), **dict(failures)})  # fmt: skip
            row = rows[-1]
            print(f"| {name} | {n_workers} | {row['trials_per_s']:.1f} | {row.get('fail', 0)} "
                  f"| {row.get('twice', 0)} | {row.get('unfinished', 0)} | "
                  f"{row.get('raised', 0)} |", flush=True)  # fmt: skip
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
