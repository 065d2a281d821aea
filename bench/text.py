"""Text features: TF-IDF against a pretrained sentence encoder (MiniLM), on two imbalanced sets.

Run: python bench/text.py [--rows 3000] [--json]     (needs pip install 'gammatune[text]')

For the tickets example (binary, 5 % urgent) and the reviews example (4 classes, 5 % hazard),
each with the text column as TF-IDF and as MiniLM embeddings: a whole `gammatune run` (all
stages and export, in a subprocess, with an empty embeddings cache) and what it found: the
verdict, the recommended setting, the best validation objective, and the test objective of the
recommendation and of plain cross-entropy (means over confirm's repeats), and the logistic
yardstick's. Then the cache: loading the encoder experiment's
data with the cache emptied (the encoding pass) against loading it again (a cache hit), each
in a fresh process, as a stage, a worker or a rerun does. Prints wall times and ratios; never
asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SETS = {"tickets": "make_tickets_csv.py", "reviews": "make_reviews_csv.py"}
CONFIGS = {"tickets": "tickets.yaml", "reviews": "reviews.yaml"}
LOAD = (
    "import time; from gammatune import load_config, load_data; t = time.perf_counter(); "
    "load_data(load_config({path!r})); print(time.perf_counter() - t)"
)


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _experiment(folder: Path, data_set: str, features: str, rows: int) -> Path:
    csv = folder / f"{data_set}.csv"
    if not csv.is_file():
        script = EXAMPLES / SETS[data_set]
        subprocess.run([sys.executable, str(script), str(csv)], check=True, capture_output=True)
        import pandas as pd

        pd.read_csv(csv).head(rows).to_csv(csv, index=False)
    config = yaml.safe_load((EXAMPLES / CONFIGS[data_set]).read_text(encoding="utf-8"))
    config["name"] = f"{data_set}_{features}"
    config["output_dir"] = str(folder / "runs")
    config["data"]["path"] = str(csv)
    if features == "minilm":
        config["data"]["text_encoder"] = "minilm"
    path = folder / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _run(path: Path) -> dict[str, Any]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "gammatune", "run", "-c", str(path)],
        env=_environment(), capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1], "run_s": seconds}
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    summary = json.loads(
        (Path(config["output_dir"]) / config["name"] / "summary.json").read_text()
    )
    verdict, rows = summary["verdict"], summary["rows"]
    rec = verdict["recommended"] or {"gamma": 0.0}
    confirm = {(r["gamma"], r["alpha"]): r for r in rows if r["stage"] == "confirm"}
    chosen = confirm.get((rec["gamma"], rec.get("alpha")), {})
    plain = confirm.get((0.0, None), {})
    logistic = next((r for r in rows if r["label"] == "logistic"), {})
    objective = summary["objective"]
    return {
        "verdict": verdict["kind"],
        "recommended": verdict["recommended"],
        # the confirm repeats' means: validation (re-split folds) and the test split
        "val": chosen.get("val_objective"),
        "test": chosen.get(f"test_{objective}"),
        "test_pr_auc": chosen.get("test_pr_auc"),
        "test_plain_ce": plain.get(f"test_{objective}"),
        "test_logistic": logistic.get(f"test_{objective}"),
        "run_s": seconds,
    }


def _load_s(path: Path) -> float:
    done = subprocess.run(
        [sys.executable, "-c", LOAD.format(path=str(path))],
        env=_environment(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(done.stdout.strip().splitlines()[-1])


def _cache(path: Path) -> dict[str, float]:
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    cache = Path(config["output_dir"]) / config["name"] / "embeddings"
    shutil.rmtree(cache, ignore_errors=True)
    encode = _load_s(path)
    hit = _load_s(path)
    return {"encode_s": encode, "hit_s": hit, "ratio": encode / hit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000, help="rows of each set (default 3000)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    caches: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for data_set in SETS:
            for features in ("tfidf", "minilm"):
                path = _experiment(folder, data_set, features, args.rows)
                rows.append({"set": data_set, "features": features, **_run(path)})
            caches[data_set] = _cache(_experiment(folder, data_set, "minilm", args.rows))
    if args.json:
        print(json.dumps({"rows": rows, "cache": caches, "cpu": platform.processor()}, indent=2))
        return
    keys = ("val", "test", "test_pr_auc", "test_plain_ce", "test_logistic")
    print(f"{'set':8} {'features':8} {'verdict':14} {'recommended':22} {'val':>6} {'test':>6} "
          f"{'PR-AUC':>6} {'CE':>6} {'logit':>6} {'run s':>6}")  # fmt: skip
    for row in rows:
        if "error" in row:
            print(f"{row['set']:8} {row['features']:8} error: {row['error']}")
            continue
        setting = ", ".join(f"{k} {v}" for k, v in (row["recommended"] or {}).items())
        values = " ".join(f"{row[k]:6.3f}" if row[k] is not None else f"{'-':>6}" for k in keys)
        print(f"{row['set']:8} {row['features']:8} {row['verdict']:14} {setting:22} {values} "
              f"{row['run_s']:6.1f}")  # fmt: skip
    print()
    for data_set, cache in caches.items():
        print(f"{data_set}: load_data with encoding {cache['encode_s']:.1f} s, from the cache "
              f"{cache['hit_s']:.1f} s: {cache['ratio']:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
