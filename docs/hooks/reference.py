"""MkDocs hook: the reference pages, generated at build time from the code, so they cannot drift.

* ``reference/experiment-file.md``: every key of the pydantic schema (``gammatune.config``), its
  type, default and description. A key without a description fails the build.
* ``reference/cli.md``: every command and option of the Typer app (``gammatune.cli``).
* ``reference/exit-codes.md``: the ``GammatuneError`` subclasses of ``gammatune.errors``.
* ``reference/csv-columns.md``: the columns of ``trials.csv`` as ``gammatune.report`` writes
  them; a column without a description here, or a description of a column the code no longer
  writes, fails the build.

``tests/test_docs.py`` imports this file and checks the pages against the schema and a real CSV.
"""

from __future__ import annotations

import enum
import inspect
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[2]
# Document this checkout's gammatune, also where another one is installed: MkDocs restores
# sys.path after loading a hook, so the package is imported now (its submodules then follow
# its __path__).
sys.path.insert(0, str(ROOT))
import gammatune  # noqa: E402

sys.path.remove(str(ROOT))
if Path(gammatune.__file__).resolve().parent != ROOT / "gammatune":
    raise ImportError(f"the docs of {ROOT} would describe {gammatune.__file__}")

PAGES = {
    "reference/experiment-file.md": "experiment_file_page",
    "reference/cli.md": "cli_page",
    "reference/exit-codes.md": "exit_codes_page",
    "reference/csv-columns.md": "csv_columns_page",
}


class ReferenceError(Exception):
    """The code and the reference disagree (a key or column without a description)."""


# --- the experiment file ---------------------------------------------------------------------


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The config models an annotation holds (a model, a union of them, Annotated, list)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _type_name(annotation: Any) -> str:
    """A short, readable type: ``int``, ``list[float]``, ``"auto" | "fp32"``, ``path``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(f'"{a}"' if isinstance(a, str) else str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(dict.fromkeys(_type_name(a) for a in args))
    if origin in (list, tuple):
        inner = ", ".join(dict.fromkeys(_type_name(a) for a in args if a is not Ellipsis))
        return f"list[{inner}]"
    if origin is dict:
        return f"mapping {_type_name(args[0])} → {_type_name(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " | ".join(str(m.value) for m in annotation)
    return getattr(annotation, "__name__", str(annotation))


def _bounds(field: Any) -> str:
    """The field's bounds, e.g. ``> 0``, ``≥ 0, < 1``; a list's items' as ``items ≤ 20``."""
    marks = _marks(field.metadata, is_text=field.annotation is str)
    for arg in [field.annotation, *typing.get_args(field.annotation)]:  # also inside "| None"
        if typing.get_origin(arg) is not list:
            continue
        item = typing.get_args(arg)[0]
        if typing.get_origin(item) is typing.Annotated:
            found = _marks(list(item.__metadata__), is_text=False)
            marks += [f"items {', '.join(found)}"] if found else []
    return ", ".join(marks)


def _marks(metadata: list[Any], *, is_text: bool) -> list[str]:
    marks: list[str] = []
    for meta in metadata:
        for inner in getattr(meta, "metadata", None) or [meta]:  # a FieldInfo inside Annotated
            for attr, sign in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
                value = getattr(inner, attr, None)
                if value is not None:
                    marks.append(
                        f"{sign} {value:g}" if isinstance(value, float) else f"{sign} {value}"
                    )
            if getattr(inner, "min_length", None):
                marks.append("not empty" if is_text else f"at least {inner.min_length} item(s)")
            if getattr(inner, "pattern", None):
                marks.append(f"matches `{inner.pattern}`")
    if "> 0" in marks and "≥ 0" in marks:
        marks.remove("≥ 0")
    return list(dict.fromkeys(marks))


def _default(field: Any) -> str:
    if field.is_required():
        return "**required**"
    value = field.default
    if value is PydanticUndefined and field.default_factory is not None:
        value = field.default_factory()
    if isinstance(value, BaseModel):
        return "(section)"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path):
        return f"`{value.as_posix()}`"
    if isinstance(value, enum.Enum):
        value = value.value
    return f"`{value!r}`".replace("'", '"') if isinstance(value, str) else f"`{value}`"


def _cell(text: str) -> str:
    """One table cell: one line, pipes escaped, ``<name>`` shown as text outside code spans."""
    parts = " ".join(text.split()).replace("\\|", "|").split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts).replace("|", "\\|")


def config_rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) for every leaf key of ``model``, sections unfolded; a
    key that two models of a union share (a schedule's ``kind``) is one row.

    Raises:
        ReferenceError: A key has no description.
    """
    merged: dict[str, tuple[str, str, str, str]] = {}
    for key, kind, default, text in _config_rows(model, prefix):
        if key in merged:
            _, kind0, default0, text0 = merged[key]
            kind, text = f"{kind0} \\| {kind}", f"{text0} {text}"
        merged[key] = (key, kind, default, text)
    return list(merged.values())


def _config_rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) for every leaf key of ``model``, sections unfolded.

    Raises:
        ReferenceError: A key has no description.
    """
    rows = []
    for name, field in model.model_fields.items():
        key = prefix + name
        if field.annotation is type(None):  # a shared key a source does not take
            continue
        nested = _models(field.annotation)
        if nested and name != "data":
            items = "[]" if typing.get_origin(field.annotation) is list else ""
            for sub in nested:
                rows += _config_rows(sub, f"{key}{items}.")
            continue
        if name == "data":
            rows.append(
                (
                    key,
                    "mapping",
                    "**required**",
                    "The data source: one of the sources below, chosen by `data.source`.",
                )
            )
            continue
        if not field.description:
            raise ReferenceError(
                f"{model.__name__}.{name} ({key}) has no description in the schema"
            )
        kind = _type_name(field.annotation)
        bounds = _bounds(field)
        rows.append(
            (key, kind + (f" ({bounds})" if bounds else ""), _default(field), field.description)
        )
    return rows


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        first, *rest = row
        lines.append("| " + " | ".join([f"`{first}`", *(_cell(c) for c in rest)]) + " |")
    return "\n".join(lines)


def experiment_file_page() -> str:
    from gammatune.config import Config
    from gammatune.config._sources import DataConfig

    parts = [
        "# Experiment file reference",
        "",
        "Generated from the pydantic schema (`gammatune/config/`) when the site is built. Unknown "
        "keys are errors, relative paths are relative to the experiment file, and "
        "`gammatune check --config X.yaml` prints a file with every default filled in. Keys are "
        "written with dots here; in the file they are nested mappings (`train: {lr: 0.003}`).",
        "",
        "## Top level and sections",
        "",
        _table(config_rows(Config), ("key", "type", "default", "description")),
        "",
        "## Data sources",
        "",
        "`data.source` chooses one of these; each takes only its own keys.",
    ]
    for source in _models(DataConfig):
        tag = typing.get_args(source.model_fields["source"].annotation)
        doc = inspect.cleandoc(source.__doc__ or "")
        parts += ["", f"### `source: {' | '.join(tag)}`", "", doc, ""]
        fields = {n: f for n, f in source.model_fields.items() if n != "source"}
        rows: list[tuple[str, str, str, str]] = []
        for name, field in fields.items():
            if field.annotation is type(None):
                continue
            if not field.description:
                raise ReferenceError(f"{source.__name__}.{name} has no description in the schema")
            bounds = _bounds(field)
            rows.append(
                (
                    f"data.{name}",
                    _type_name(field.annotation) + (f" ({bounds})" if bounds else ""),
                    _default(field),
                    field.description,
                )
            )
        parts.append(_table(rows, ("key", "type", "default", "description")))
    return "\n".join(parts) + "\n"


# --- the command line ------------------------------------------------------------------------


def _option_rows(command: Any) -> list[tuple[str, str, str, str]]:
    rows = []
    for param in command.params:
        if param.param_type_name != "option" or param.hidden:
            continue
        names = ", ".join(param.opts + param.secondary_opts)
        if param.is_flag or param.count:
            kind = "flag" if param.is_flag else "count"
        else:
            kind = _type_name(param.type_descriptor.annotation).replace("PosixPath", "path")
            if param.min is not None:
                kind += f" (≥ {param.min})"
        if param.required:
            default = "**required**"
        elif param.is_flag and not param.default or param.default is None:
            default = "–"
        else:
            default = f"`{param.default}`"
        rows.append((names, kind, default, param.help or ""))
    return rows


def cli_page() -> str:
    import typer.main

    from gammatune.cli import app

    group: Any = typer.main.get_command(app)  # typer's own (vendored) click Group
    parts = [
        "# Command-line reference",
        "",
        "Generated from the Typer app (`gammatune/cli.py`) when the site is built. Global options "
        "go before the command (`gammatune -v run --config X.yaml`). Every command prints "
        "tables to stdout and progress and notes to stderr; a mistake is one line on stderr and "
        "a non-zero exit (see [exit codes](exit-codes.md)).",
        "",
        "```text",
        "gammatune [GLOBAL OPTIONS] COMMAND [OPTIONS]",
        "```",
        "",
        inspect.cleandoc(group.help or ""),
        "",
        "## Global options",
        "",
        _table(_option_rows(group), ("option", "type", "default", "meaning")),
    ]
    for name, command in group.commands.items():
        if command.hidden:
            continue
        ctx = command.context_class(command, info_name=name)
        usage = " ".join(command.collect_usage_pieces(ctx))
        parts += [
            "",
            f"## `gammatune {name}`",
            "",
            inspect.cleandoc(command.help or ""),
            "",
            "```text",
            f"gammatune {name} {usage}",
            "```",
            "",
            _table(_option_rows(command), ("option", "type", "default", "meaning")),
        ]
    return "\n".join(parts) + "\n"


# --- exit codes ------------------------------------------------------------------------------


def exit_codes_page() -> str:
    from gammatune import errors

    classes = [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.GammatuneError)
    ]
    rows = [("0", "success", "")]
    for cls in sorted(classes, key=lambda c: c.exit_code):
        doc = inspect.cleandoc(cls.__doc__ or "")
        if not doc:
            raise ReferenceError(f"errors.{cls.__name__} has no docstring")
        rows.append((str(cls.exit_code), doc.splitlines()[0], f"`{cls.__name__}`"))
    rows.append(
        (
            "130",
            "Interrupted (Ctrl-C or SIGTERM): the trials in flight are marked "
            "failed; run the same command again to resume.",
            "",
        )
    )
    return "\n".join(
        [
            "# Exit codes",
            "",
            "Generated from `gammatune/errors.py` when the site is built. Every mistake a user "
            "can cause is one line on stderr, "
            "`gammatune: error: <field or file>: <what> (got <value>)`, and one of these exit "
            "codes; `--traceback` (before the command) shows the traceback instead, for a bug "
            "report.",
            "",
            _table(rows, ("code", "meaning", "exception")),
            "",
        ]
    )


# --- trials.csv ------------------------------------------------------------------------------

_SPLIT_DOC = {
    "threshold": "the decision threshold used for the thresholded figures (`threshold`, or the "
    "validation's F1-best one with `threshold: tuned`)",
    "precision": "precision at the threshold (binary: the positive class; multiclass: macro)",
    "recall": "recall at the threshold",
    "f1": "F1 at the threshold (binary: the positive class; multiclass: macro)",
    "f1_macro": "macro F1 over the classes",
    "pr_auc": "area under the precision-recall curve (average precision)",
    "roc_auc": "area under the ROC curve",
    "ece": "expected calibration error over 15 bins",
    "brier": "Brier score",
    "f1_at_0_5": "F1 at threshold 0.5",
    "best_threshold": "the F1-best threshold chosen on validation (test: the validation's)",
    "f1_at_best_threshold": "F1 at that threshold",
    "f1_ci_low": "lower end of a 95 % stratified bootstrap interval of F1",
    "f1_ci_high": "upper end of that interval",
    "tn": "binary: true negatives at the threshold",
    "fp": "binary: false positives",
    "fn": "binary: false negatives",
    "tp": "binary: true positives",
    "precision_per_class": "per-class precision, a JSON list in class order",
    "recall_per_class": "per-class recall, a JSON list",
    "f1_per_class": "per-class F1, a JSON list",
    "confusion": "the confusion matrix, a JSON list of rows (true class) of counts",
    "dice": "segmentation: Dice per image, averaged per class over the images whose mask holds "
    "it, then over the foreground classes",
    "dice_micro": "segmentation: Dice of the counts pooled over images, mean over foreground "
    "classes",
    "iou": "segmentation: IoU as `dice` averages it",
    "iou_micro": "segmentation: IoU of the pooled counts",
    "dice_per_class": "segmentation: per-image mean Dice per class, background first (JSON)",
    "dice_micro_per_class": "segmentation: pooled Dice per class (JSON)",
    "iou_per_class": "segmentation: per-image mean IoU per class (JSON)",
    "images_per_class": "segmentation: images whose mask holds each class (JSON)",
    "ap": "detection: COCO AP@[.5:.95] (pycocotools)",
    "ap50": "detection: COCO AP at IoU 0.5",
    "ap75": "detection: COCO AP at IoU 0.75",
    "ar": "detection: COCO AR@100",
    "ap_per_class": "detection: AP@[.5:.95] per class (JSON)",
    "positives": "segmentation and detection: images holding a foreground pixel or an object",
    "true_positive": "segmentation: foreground pixels found; detection: boxes matched at IoU "
    "0.5 scoring at least the threshold",
    "predicted_positive": "segmentation: foreground pixels predicted; detection: boxes scoring "
    "at least the threshold",
}

_COLUMN_DOC = {
    "stage": "`baseline`, `search`, `refine` or `confirm`",
    "number": "the trial's number in its stage's Optuna study",
    "state": "Optuna's state: `COMPLETE`, `FAIL`, `PRUNED`, `RUNNING`, ...",
    "gamma": "focal loss's gamma (0: cross-entropy)",
    "alpha": "the minority class's weight; empty: off",
    "lr": "the learning rate, where `search.lr` makes it a dimension",
    "gamma_rare": "the rare classes' gamma, where `search.gamma_rare` is set",
    "schedule": "the adaptive-gamma schedule (`flsd53`, `confidence`), where set",
    "k": "a confidence schedule's k",
    "weights": "a per-class weight scheme (`inverse`, `effective`), where set",
    "beta": "the `effective` scheme's beta",
    "repeat": "the seed repeat: the trial trains with seed `seed + repeat`",
    "fold": "confirm's re-split of train+val (0: the configured split)",
    "model": "`configured` (the experiment's network) or `logistic` / `logistic_balanced` "
    "(scikit-learn yardsticks of the baseline)",
    "seed": "the training seed",
    "objective": "the validation objective (the value Optuna maximizes)",
    "test_objective": "the same metric on the test split (to read only)",
    "task": "what the trial scored: `classification`, `segmentation` (pixel counts) or "
    "`detection` (boxes)",
    "dice": "a Dice term's weight in the loss (segmentation), where `search.dice` is set",
    "curve_flags": "`overconfident` (validation loss up 20 % above its minimum by the kept "
    "epoch while ranking still improved: calibration, not a fault) and/or `unstable`; empty if "
    "neither",
    "undertrained": "true when the trial ran to `train.epochs` with its best epoch among the "
    "last max(2, ceil(epochs / 10)): it was still improving (raise `train.epochs`)",
    "repeat_difference": "with `confirm.check_determinism`: the largest validation-score "
    "difference between two trainings of this trial's setting and seed",
    "delta_vs_ce": "`objective` minus plain cross-entropy's (the mean over the baseline repeats)",
    "delta_vs_balanced_ce": "`objective` minus cross-entropy's at the same alpha",
    "test_delta_vs_ce": "the same on the test split (to read only; nothing decides on test)",
    "test_delta_vs_balanced_ce": "the same on the test split, against the same-alpha CE",
    "epochs_run": "epochs trained",
    "best_epoch": "the kept (restored) epoch",
    "stop_reason": "why training stopped (early stopping, the epoch budget, pruning, a failure)",
    "duration_s": "training time in seconds",
    "device": "where it trained (`cpu`, `cuda:0`, ...)",
    "fail_reason": "a failed trial's reason (non-finite loss, CUDA out of memory, interrupted)",
    "warm_start_from": "refine's copies of search trials: the search trial's number",
    "reused_from": "a result reused from an identical earlier trial: its stage and number",
    "scores_file": "the per-sample scores (`runs/<name>/scores/<study>-<number>.npz`)",
    "feasible": "false when the trial misses `constraints`",
    "verdict": "the study's verdict, on every row: `focal`, `class-weight`, `focal-with-weight`, "
    "`cross-entropy` or `not-measurable`",
    "recommended": "true on the recommended setting's confirm trials",
}


def csv_columns() -> list[str]:
    """The columns of ``trials.csv`` in the order ``gammatune report`` writes them."""
    from gammatune.report import _table as table

    per_split = [f"{split}_{name}" for split in ("val", "test") for name in table._TASK_FIELDS]
    per_split += [f"{split}_{name}" for split in ("val", "test") for name in table._SPLIT_FIELDS]
    per_class = [f"{split}_{name}" for split in ("val", "test") for name in table._PER_CLASS]
    return [*table._LEADING, *per_split, *per_class, *table._TRAILING, "verdict", "recommended"]


def _column_doc(column: str) -> str:
    if column in _COLUMN_DOC:
        return _COLUMN_DOC[column]
    split, _, name = column.partition("_")
    if split in ("val", "test") and name in _SPLIT_DOC:
        return f"{'validation' if split == 'val' else 'test'}: {_SPLIT_DOC[name]}"
    raise ReferenceError(f"trials.csv column {column!r} has no description in docs/hooks")


def csv_columns_page() -> str:
    columns = csv_columns()
    described = set(_COLUMN_DOC) | {f"{s}_{n}" for s in ("val", "test") for n in _SPLIT_DOC}
    stale = described - set(columns)
    if stale:
        raise ReferenceError(
            f"docs/hooks describes columns the CSV no longer has: {sorted(stale)}"
        )
    rows = [(c, _column_doc(c)) for c in columns]
    return "\n".join(
        [
            "# `trials.csv` columns",
            "",
            "`gammatune report` (and `run`) writes one row per trial of every stage to "
            "`runs/<name>/trials.csv` (or `--out`), read from the study storage alone. Generated "
            "from `gammatune/report/_table.py` when the site is built; `tests/test_docs.py` "
            "checks it against a CSV a real run writes. Extra dimensions (`lr` ... `beta`) are "
            "empty where the search does not use them; the `tn`/`fp`/`fn`/`tp` columns are "
            "binary only. The Dice, IoU and AP columns (and `positives`, `true_positive`, "
            "`predicted_positive`) are written only for a trainer that returns pixel counts or "
            "boxes; a classification CSV has none of them.",
            "",
            _table(rows, ("column", "meaning")),
            "",
        ]
    )


# --- the MkDocs hook -------------------------------------------------------------------------


def render(page: str) -> str:
    """The Markdown of one generated page (a key of ``PAGES``)."""
    return globals()[PAGES[page]]()


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for page in PAGES:
        files.append(File.generated(config, page, content=render(page)))
    return files
