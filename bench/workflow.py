"""The tuning workflow: gammatune against the hand-written Optuna pipeline, in the same process.

Run: python bench/workflow.py [--repeats 3] [--threads 1 2] [--dropout 0.1] [--precision auto]
    [--sources npz synthetic] [--same-work] [--skip-process] [--quick] [--json]

Workload (both sides): make_classification(40000 x 32, 12 informative, 5 % positives,
flip_y 0.01, seed 0), stratified 80/20, standardized; MLP 32-128-128-1 (ReLU), AdamW lr 1e-3,
batch 256, 8 epochs, no early stopping, F1 at threshold 0.5; 1 cross-entropy baseline + grid
gamma {0.5, 1, 1.5, 2} x alpha {0.25} + 15 seeded TPE trials.

- reference: Optuna in-memory studies, DataLoader(TensorDataset, shuffle=True), the textbook
  focal formula, one trial at a time (what a competent user writes).
- gammatune: the same stages through gammatune (SQLite storage, metrics, curves and all), its
  refine window opened to cover gamma [0, 5] and alpha [0, 1].

To measure a CPU without bf16 on one that has it, restrict torch, oneDNN and MKL to AVX2 for the
whole run (the whole-process runs inherit it): ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
MKL_ENABLE_INSTRUCTIONS=AVX2 python bench/workflow.py ...; the first line then says AVX2, and
`precision: auto` trains in fp32 (oneDNN reports no native bf16), as on an AVX2-only CPU.

Prints medians over --repeats of the wall time of each, the ratio, trials per minute, the share
of the machine's measured sgemm rate, and per-trial agreement: gammatune's stacked trials
against the same trials trained alone (same seed), and against the reference on the points both
train (baseline and grid; different batch orders, so statistical agreement only). Never asserts.

Whole processes (unless --skip-process): the reference script against `gammatune run`, which
does more: its 4 stages train 1 baseline + 4 search + 15 refine + confirm's finalists and
references over 5 seeds (30 here), then write the report and export the model. Each side's
work is counted from what it did (the reference script prints its trainings; gammatune's are
read from its trials CSV: epochs run, refine's copies of the search points left out), and the
figure is issue #26's throughput, rows x epochs trained a second, both sides in one run; the
plain wall-time ratio is printed beside it. --same-work also times the reference script doing
confirm's work (its finalists, their cross-entropy twins and plain cross-entropy, 5 seeds each),
so that both sides train about as many networks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import pandas as pd
import torch
import torch.nn.functional as F
import yaml
from sklearn.datasets import make_classification
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

if TYPE_CHECKING:  # gammatune is imported where used: the reference script imports none of it
    from gammatune.config import Config

GAMMAS, ALPHA, N_TPE, EPOCHS, BATCH, SEED = [0.5, 1.0, 1.5, 2.0], 0.25, 15, 8, 256, 0
LAYERS = [(32, 128), (128, 128), (128, 1)]
OPTIONS = {"dropout": 0.0, "precision": "auto"}  # gammatune's side; set from the command line
GEN = {"n_samples": 40000, "n_features": 32, "n_informative": 12, "flip_y": 0.01}


def workload(path: Path | None = None) -> tuple[torch.Tensor, ...]:
    """The data, generated, or read from the .npz that ``write_workload`` wrote."""
    if path is None:
        x, y = make_classification(**GEN, weights=[0.95, 0.05], random_state=0)
    else:
        with np.load(path) as arrays:
            x, y = arrays["X"], arrays["y"]
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    mean, std = x_tr.mean(0), x_tr.std(0)
    to = lambda a: torch.tensor((a - mean) / std, dtype=torch.float32)  # noqa: E731
    return to(x_tr), torch.tensor(y_tr), to(x_va), torch.tensor(y_va)


# ---- the reference: a hand-written pipeline -------------------------------------------------


def textbook_focal(logits, targets, gamma, alpha):
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean()


WORK = {"trainings": 0, "epochs": 0, "row_epochs": 0}  # what this process trained


def reference_trial(data, gamma: float, alpha: float | None, seed: int) -> float:
    x_tr, y_tr, x_va, y_va = data
    WORK["trainings"] += 1
    WORK["epochs"] += EPOCHS
    WORK["row_epochs"] += EPOCHS * len(x_tr)
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 1)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x_tr, y_tr.float()), batch_size=BATCH, shuffle=True)
    for _ in range(EPOCHS):
        for xb, yb in loader:
            loss = textbook_focal(model(xb).squeeze(1), yb, gamma, alpha)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        scores = torch.sigmoid(model(x_va).squeeze(1))
    if not torch.isfinite(scores).all():
        return float("nan")
    return float(f1_score(y_va.numpy(), (scores >= 0.5).numpy()))


def reference_workflow(data) -> list[dict]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    records: list[dict] = []
    base = optuna.create_study(direction="maximize")
    base.optimize(lambda t: _record(records, data, 0.0, None), n_trials=1)
    grid = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.GridSampler({"gamma": GAMMAS, "alpha": [ALPHA]}),
    )
    grid.optimize(
        lambda t: _record(
            records, data, t.suggest_float("gamma", 0, 5), t.suggest_float("alpha", 0, 1)
        ),
        n_trials=len(GAMMAS),
    )
    tpe = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=SEED))
    tpe.optimize(
        lambda t: _record(
            records, data, t.suggest_float("gamma", 0, 5), t.suggest_float("alpha", 0.05, 0.95)
        ),
        n_trials=N_TPE,
    )
    return records


def reference_confirm(data, records: list[dict], top_k: int = 3, repeats: int = 5) -> dict:
    """What `gammatune confirm` does, by hand: the ``top_k`` best focal settings, their
    cross-entropy twins at the same alpha and plain cross-entropy, each retrained over
    ``repeats`` fresh seeds; the mean paired F1 difference of each finalist to its twin."""
    focal = sorted(
        (r for r in records if r["gamma"] > 0 and np.isfinite(r["f1"])), key=lambda r: -r["f1"]
    )
    finalists: list[tuple[float, float | None]] = []
    for r in focal:
        if (r["gamma"], r["alpha"]) not in finalists and len(finalists) < top_k:
            finalists.append((r["gamma"], r["alpha"]))
    twins = list(dict.fromkeys([(0.0, None)] + [(0.0, alpha) for _, alpha in finalists]))
    f1 = {
        setting: [
            reference_trial(data, *setting, SEED + repeat) for repeat in range(1, repeats + 1)
        ]
        for setting in finalists + twins
    }
    return {
        f"{g:g}/{a}": float(np.mean(np.subtract(f1[(g, a)], f1[(0.0, a)]))) for g, a in finalists
    }


def _record(records: list[dict], data, gamma: float, alpha: float | None) -> float:
    f1 = reference_trial(data, gamma, alpha, SEED)
    records.append({"gamma": gamma, "alpha": alpha, "f1": f1})
    return f1 if np.isfinite(f1) else 0.0


# ---- gammatune ------------------------------------------------------------------------------


def bench_config(folder: Path, **train) -> Config:
    from gammatune.config import Config

    return Config.model_validate(
        {
            "name": "bench",
            "seed": SEED,
            "data": {"source": "synthetic", **GEN, "minority_fraction": 0.05},
            "model": {"kind": "mlp", "hidden": [128, 128], "dropout": OPTIONS["dropout"]},
            "train": {"epochs": EPOCHS, "batch_size": BATCH, "lr": 1e-3, "weight_decay": 0.01,
                      "patience": 100, "min_epochs": EPOCHS, "device": "cpu",
                      "precision": OPTIONS["precision"], **train},
            "baseline": {"repeats": 1, "balanced": False, "linear": False},
            "search": {"gamma": GAMMAS, "alpha": [ALPHA]},
            "refine": {"n_trials": N_TPE, "gamma_window": 5.0, "alpha_window": 1.0},
            "output_dir": str(folder),
        }
    )  # fmt: skip


def gammatune_workflow(data, folder: Path, parallel: int | str = "auto") -> list[dict]:
    """gammatune's own path (run_workflow: storage, device, precision, stacking), on our splits."""
    from gammatune.data import Splits
    from gammatune.storage import load_record
    from gammatune.tuning import run_workflow

    config = bench_config(folder, parallel=parallel)
    x_tr, y_tr, x_va, y_va = data
    splits = Splits(x_tr, y_tr, x_va, y_va, x_va, y_va, class_names=("0", "1"))
    studies = run_workflow(config, ["baseline", "search", "refine"], splits=splits)
    records = []
    for stage, study in studies.items():
        for t in study.get_trials(deepcopy=False):
            record = load_record(t)
            if record is not None and record.warm_start_from is None:
                f1 = record.val.f1 if record.val is not None else float("nan")
                records.append({"stage": stage, "gamma": record.setting.gamma,
                                "alpha": record.setting.alpha, "f1": f1})  # fmt: skip
    return records


def alone_f1(data, folder: Path, records: list[dict]) -> list[float]:
    """Train each gammatune trial alone (parallel 1), same seed and settings."""
    from gammatune.data import Splits
    from gammatune.device import autocast_dtype
    from gammatune.record import Setting
    from gammatune.tuning import make_objective

    config = bench_config(folder, parallel=1)
    x_tr, y_tr, x_va, y_va = data
    splits = Splits(x_tr, y_tr, x_va, y_va, x_va, y_va, class_names=("0", "1"))
    device = torch.device("cpu")
    objective = make_objective(
        config, splits, device=device, autocast=autocast_dtype(device, "auto")
    )
    out = []
    for r in records:
        ((record, _),) = objective([Setting(r["gamma"], r["alpha"])])
        out.append(record.val.f1 if record.val is not None else float("nan"))
    return out


# ---- measurement ----------------------------------------------------------------------------


def sgemm_rate() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * 2048**3 / statistics.median(times)


def training_flops(n_train: int, n_trials: int) -> float:
    per_sample = 6 * sum(i * o for i, o in LAYERS)  # forward + backward
    return per_sample * n_train * EPOCHS * n_trials


def run_work(config_file: Path) -> dict[str, Any]:
    """What one `gammatune run` trained, read from its trials CSV and its study.

    A training is a trial that trained a network: not refine's copies of the search points
    (``warm_start_from``) nor a point reused from a twin (``reused_from``). Its epochs are the
    epochs it ran (early stopping, pruning and failures end some early); its rows are the
    training split's (confirm's re-splits of train+val keep validation's size, so train's).
    """
    from gammatune.config import Config

    config = Config.model_validate(yaml.safe_load(config_file.read_text(encoding="utf-8")))
    frame = pd.read_csv(config.run_dir / "trials.csv")
    trained = frame[
        frame["warm_start_from"].isna() & frame["reused_from"].isna() & (frame["epochs_run"] > 0)
    ]
    studies = optuna.get_all_study_summaries(config.storage_url, include_best_trial=False)
    (rows,) = {sum(s.user_attrs["class_counts"]["train"]) for s in studies}
    epochs = int(trained["epochs_run"].sum())
    return {
        "trainings": len(trained),
        "epochs": epochs,
        "row_epochs": epochs * rows,
        "by_stage": {
            str(k): int(v) for k, v in trained.groupby("stage", sort=False).size().items()
        },
    }


def whole_process(
    threads: int, folder: Path, repeats: int, *, same_work: bool, sources: list[str], quick: bool
) -> dict[str, dict[str, Any]]:
    """Whole processes, the reference script and `gammatune run`: for each, the median wall
    seconds, what it trained (trainings, epochs, rows x epochs) and the median throughput
    (rows x epochs trained a second, over all of its trainings).

    Both read the workload from one .npz file, as users bring their data; `gammatune run` is
    also timed on its synthetic source (make_classification inside, which imports
    scikit-learn). Each `gammatune run` starts from an empty run folder.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    data = folder / "workload.npz"
    x, y = make_classification(**GEN, weights=[0.95, 0.05], random_state=0)
    np.savez(data, X=x, y=y)
    commands = {
        "reference": [sys.executable, __file__, "--only-reference", "--threads", str(threads),
                      "--data", str(data), *(["--quick"] if quick else [])],
    }  # fmt: skip
    if same_work:
        commands["reference_confirm"] = [*commands["reference"], "--confirm"]
    configs: dict[str, Path] = {}
    for name, source in (("npz", {"source": "npz", "path": str(data)}), ("synthetic", None)):
        if name not in sources:
            continue
        config = bench_config(folder / name).model_dump(mode="json")
        config["split"] = {"val": 0.2, "test": 0.01}
        config["data"] = source or config["data"]
        path = configs[f"gammatune_{name}"] = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        commands[f"gammatune_{name}"] = [sys.executable, "-m", "gammatune", "run", "--config",
                                         str(path)]  # fmt: skip
    walls: dict[str, list[float]] = {name: [] for name in commands}
    rates: dict[str, list[float]] = {name: [] for name in commands}
    work: dict[str, dict[str, Any]] = {}
    for _ in range(repeats):
        for name, command in commands.items():
            shutil.rmtree(folder / name.removeprefix("gammatune_"), ignore_errors=True)
            start = time.perf_counter()
            done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
            walls[name].append(time.perf_counter() - start)
            if name in configs:
                work[name] = run_work(configs[name])
            else:  # the reference script prints what it trained as its last line
                work[name] = json.loads(done.stdout.strip().splitlines()[-1])
            rates[name].append(work[name]["row_epochs"] / walls[name][-1])
    return {
        name: {"wall_s": statistics.median(walls[name]), "walls_s": walls[name],
               "row_epochs_per_s": statistics.median(rates[name]), **work[name]}
        for name in commands
    }  # fmt: skip


def _ratios(
    process: dict[str, dict[str, Any]] | None, reference: str, ours: str
) -> dict[str, float] | None:
    """Throughput (the issue's figure: rows x epochs trained a second) and wall-time ratios."""
    if not process or reference not in process or ours not in process:
        return None
    ref, mine = process[reference], process[ours]
    return {"throughput": mine["row_epochs_per_s"] / ref["row_epochs_per_s"],
            "wall": ref["wall_s"] / mine["wall_s"]}  # fmt: skip


def _work(process: dict[str, Any]) -> str:
    """One whole process's line: what it trained, in how long, at what rate."""
    stages = process.get("by_stage")
    shares = f" ({', '.join(f'{n} {stage}' for stage, n in stages.items())})" if stages else ""
    rows = process["row_epochs"] / max(process["epochs"], 1)
    return (f"{process['trainings']} trainings{shares}, {process['epochs']} epochs of "
            f"{rows:,.0f} rows, in {process['wall_s']:.1f} s: "
            f"{process['row_epochs_per_s'] / 1e6:.3f} M rows x epochs a second")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--skip-process", action="store_true", help="skip the whole-process runs")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small workload (8,000 rows, 2 epochs, 3 TPE trials) to show it works; no figure",
    )
    parser.add_argument("--only-reference", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--confirm", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--same-work",
        action="store_true",
        help="also time the reference script doing confirm's work (finalists, twins, 5 seeds each)",
    )
    parser.add_argument(
        "--sources",
        nargs="+",
        default=["npz", "synthetic"],
        choices=["npz", "synthetic"],
        help="the data sources `gammatune run` is timed on",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="gammatune's model dropout (0.1 is the default model's); the reference keeps none",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="gammatune's training precision; fp32 is what a CPU without bf16 runs",
    )
    args = parser.parse_args()
    if args.quick:
        global EPOCHS, N_TPE
        EPOCHS, N_TPE = 2, 3
        GEN["n_samples"] = 8000
    OPTIONS.update(dropout=args.dropout, precision=args.precision)
    data = workload(args.data)
    if args.only_reference:  # the reference as a script of its own, for the whole-process figure
        torch.set_num_threads(args.threads[0])
        records = reference_workflow(data)
        if args.confirm:
            reference_confirm(data, records)
        print(json.dumps(WORK))  # what it trained, for the throughput figure
        return
    from gammatune.device import autocast_dtype

    n_trials = 1 + len(GAMMAS) + N_TPE
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak = sgemm_rate()
        ref_s, ours_s, ours_records, ref_records = [], [], [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            ref_records = reference_workflow(data)
            ref_s.append(time.perf_counter() - start)
            with tempfile.TemporaryDirectory() as folder:
                start = time.perf_counter()
                ours_records = gammatune_workflow(data, Path(folder))
                ours_s.append(time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as folder:
            alone = alone_f1(data, Path(folder), ours_records)
            process = (
                None
                if args.skip_process
                else whole_process(
                    threads,
                    Path(folder),
                    args.repeats,
                    same_work=args.same_work,
                    sources=args.sources,
                    quick=args.quick,
                )  # fmt: skip
            )
        stacked_gap = max(abs(a - r["f1"]) for a, r in zip(alone, ours_records, strict=True))
        common = [
            (o["f1"], r["f1"])
            for o, r in zip(ours_records[:5], ref_records[:5], strict=True)
            if np.isfinite(r["f1"])
        ]
        flops = training_flops(len(data[0]), n_trials)
        ref_med, ours_med = statistics.median(ref_s), statistics.median(ours_s)
        rows.append({
            "threads": threads, "device": "cpu", "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "gammatune_precision": str(autocast_dtype(torch.device("cpu"), args.precision) or "float32"),
            "gammatune_dropout": args.dropout,
            "reference_s": ref_med, "gammatune_s": ours_med, "ratio": ref_med / ours_med,
            "reference_runs_s": ref_s, "gammatune_runs_s": ours_s,
            "reference_trials_per_min": 60 * n_trials / ref_med,
            "gammatune_trials_per_min": 60 * n_trials / ours_med,
            "sgemm_gflops": peak / 1e9,
            "reference_peak_share": flops / ref_med / peak, "gammatune_peak_share": flops / ours_med / peak,
            "max_f1_gap_stacked_vs_alone": stacked_gap,
            "mean_f1_gap_vs_reference": float(np.mean([abs(a - b) for a, b in common])) if common else None,
            "reference_nan_trials": sum(not np.isfinite(r["f1"]) for r in ref_records),
            "process_s": process,
            "process_ratio": _ratios(process, "reference", "gammatune_npz"),
            "process_ratio_synthetic": _ratios(process, "reference", "gammatune_synthetic"),
            "process_ratio_same_work": _ratios(process, "reference_confirm", "gammatune_npz"),
        })  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        print(f"threads={r['threads']} ({r['torch']}, {r['device']} {r['cpu_capability']}; gammatune trains in {r['gammatune_precision']} with dropout {r['gammatune_dropout']:g}, "
              f"the reference in float32; '% of sgemm' is of the float32 rate), medians of {args.repeats}:")  # fmt: skip
        print(f"  reference  {r['reference_s']:7.1f} s  {r['reference_trials_per_min']:6.1f} trials/min  "
              f"{100 * r['reference_peak_share']:4.1f} % of sgemm {r['sgemm_gflops']:.0f} GFLOP/s  "
              f"({r['reference_nan_trials']} NaN trials)")  # fmt: skip
        print(f"  gammatune  {r['gammatune_s']:7.1f} s  {r['gammatune_trials_per_min']:6.1f} trials/min  "
              f"{100 * r['gammatune_peak_share']:4.1f} % of sgemm")  # fmt: skip
        print(f"  ratio (in process)   {r['ratio']:.2f}x")
        if r["process_s"]:
            p = r["process_s"]
            print(f"  whole processes, medians of {args.repeats}; throughput = rows x epochs trained a "
                  "second over all trainings (issue #26's figure), wall = the plain wall-time ratio:")  # fmt: skip
            print(f"    reference script (baseline, grid, TPE): {_work(p['reference'])}")
            for name, label, ratio in (
                ("gammatune_npz", "gammatune run, data from the same .npz", "process_ratio"),
                ("gammatune_synthetic", "gammatune run on its synthetic source", "process_ratio_synthetic"),
            ):  # fmt: skip
                if name in p:
                    print(f"    {label} (4 stages + report + export): {_work(p[name])}\n"
                          f"      against the reference script: throughput {r[ratio]['throughput']:.2f}x, "
                          f"wall {r[ratio]['wall']:.2f}x")  # fmt: skip
            if "reference_confirm" in p and r["process_ratio_same_work"]:
                ratio = r["process_ratio_same_work"]
                print(f"    the reference script doing confirm's work too (finalists, twins, 5 seeds): "
                      f"{_work(p['reference_confirm'])}\n      against gammatune run (.npz): "
                      f"throughput {ratio['throughput']:.2f}x, wall {ratio['wall']:.2f}x")  # fmt: skip
        print(f"  max |F1 stacked - alone| {r['max_f1_gap_stacked_vs_alone']:.4f}; "
              f"mean |F1 gammatune - reference| on common points {r['mean_f1_gap_vs_reference']:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
