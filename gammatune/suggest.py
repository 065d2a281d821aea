"""Starting grids for gamma and alpha from the data's imbalance and a domain hint: starting
points for the search, written back as an experiment file; the verdict (confirm) decides."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gammatune.config import Config, TableData, Task, load_config
from gammatune.data import Splits, load_data
from gammatune.encoders import INSTALL
from gammatune.errors import ConfigError
from gammatune.outputs import refuse_inputs, write_whole

MILD_RATIO, STRONG_RATIO = 3.0, 10.0  # 1:3 or milder; 1:10 or stronger
TASK_RANGES: dict[Task, tuple[float, float]] = {
    "detection": (1.5, 3.0), "medical": (0.5, 2.0), "text": (0.5, 1.5),
}  # fmt: skip
GAMMA_STEP = 0.5
# Gammas added whatever the range: detectors often do as well or better at gamma 0 or below 1
# (Ultralytics dropped fl_gamma for lack of gain, #2276; yolov5 #3179: mAP at 2 below 0); a
# U-Net on four vessel sets did best at gamma 0-1 and focal loss never beat cross-entropy on
# best Dice (mmsegmentation #1024).
TASK_EXTRA: dict[Task, tuple[float, ...]] = {"detection": (0.0, 0.5), "medical": (0.0, 0.25)}
_WHO: dict[Task, str] = {"detection": "detectors", "medical": "segmenters", "text": "models"}
# Dice weights crossed with the grid (search.dice) where the model segments: 0 (focal alone),
# 1 (MONAI's DiceFocalLoss default) and 4 (focal + Dice at 1:4: mmsegmentation #1024's "clear and
# consistent improvement" on four vessel sets).
TASK_DICE: dict[Task, tuple[float, ...]] = {"medical": (0.0, 1.0, 4.0)}
ALPHAS, STRONG_ALPHA = (0.25, 0.5, 0.75), 0.9  # alpha weights the minority; 0.9 for >= 1:10
MIN_MINORITY = 20  # fewer: too few validation positives for confirm to measure a difference


@dataclass(frozen=True, slots=True)
class Suggestion:
    """What ``suggest()`` found and chose.

    ``counts`` are over the whole data set (all three splits, after any ``minority_fraction``
    subsampling), in the order of ``class_names``; ``ratio`` is majority over minority count.
    A segmentation set counts pixels. ``dice`` is ``search.dice`` where the task is medical and
    the model segments (``model.kind: unet`` or a trainer), else empty.
    ``experiment`` is the file's own keys with ``search.gamma``/``alpha`` (and ``task``) set.
    ``text_path`` says how a text column becomes features (None: no text column, no text task).
    """

    config_path: Path
    class_names: tuple[str, ...]
    counts: tuple[int, ...]
    ratio: float
    gamma_range: tuple[float, float]
    gamma: tuple[float, ...]
    alpha: tuple[float, ...]
    reason: str
    warnings: tuple[str, ...]
    experiment: dict[str, Any]
    text_path: str | None = None
    dice: tuple[float, ...] = ()


def choose_range(ratio: float, task: Task | None = None) -> tuple[tuple[float, float], str]:
    """Choose the gamma range for an imbalance ratio, narrowed by a domain hint.

    The ratio picks a band: <= 3 (1:3 or milder) 0.5-1.5, >= 10 (1:10 or stronger) 2.0-3.0,
    in between 1.0-2.0. A task's range (detection 1.5-3.0, medical 1.0-2.0, text 0.5-1.5)
    then intersects the band where the two share at least one grid step (0.5); otherwise the
    task's range is taken, as the domain's experience outweighs a generic rule.

    Args:
        ratio: Majority count over minority count, >= 1.
        task: The domain hint, or None (default) for the ratio's band alone.

    Returns:
        ``((low, high), reason)``: the inclusive range and one sentence naming the rule.
    """
    if ratio <= MILD_RATIO:
        (low, high), rule = (0.5, 1.5), "<= 1:3"
    elif ratio >= STRONG_RATIO:
        (low, high), rule = (2.0, 3.0), ">= 1:10"
    else:
        (low, high), rule = (1.0, 2.0), "between 1:3 and 1:10"
    reason = f"imbalance 1:{ratio:.1f} ({rule}) suggests gamma {low:.1f}-{high:.1f}"
    if task is None:
        return (low, high), f"{reason}; no task hint."
    task_low, task_high = TASK_RANGES[task]
    hint = f"the {task} hint ({task_low:.1f}-{task_high:.1f})"
    both = max(low, task_low), min(high, task_high)
    if both[1] - both[0] >= GAMMA_STEP:
        return both, f"{reason}; intersected with {hint}: {both[0]:.1f}-{both[1]:.1f}."
    return (task_low, task_high), f"{reason}; {hint} shares under a step with it, so it is taken."


def suggest(config_path: str | Path, *, task: Task | None = None) -> Suggestion:
    """Load an experiment's data, count its classes, and choose a coarse gamma x alpha grid.

    Only ``name`` and ``data`` need be in the file; ``split``, ``seed`` and ``task`` are used
    when present (``split`` and ``seed`` change only what subsampling or a synthetic set draws).

    Args:
        config_path: The experiment file (YAML).
        task: The domain hint; None (default) uses the file's ``task``, if any.

    Returns:
        The ``Suggestion``: counts, ratio, grid, the rule's sentence and any warnings.

    Raises:
        ConfigError: The file is missing or invalid.
        DataError: The data cannot be loaded, has one class only, or a class too small to split.
    """
    config_path = Path(config_path)
    config = load_config(config_path, task=task)
    splits = load_data(config)
    per_split = _pixel_counts(splits) or splits.class_counts()
    counts = tuple(sum(column) for column in zip(*per_split.values(), strict=True))
    ratio = max(counts) / min(counts)
    gamma_range, reason = choose_range(ratio, config.task)
    extra = TASK_EXTRA.get(config.task, ()) if config.task is not None else ()
    gamma = tuple(sorted({*extra, *_steps(*gamma_range)}))
    if extra:
        shown = ", ".join(f"{g:g}" for g in extra)
        who = _WHO[config.task] if config.task is not None else "models"
        reason += (
            f" Gamma {shown} added: {who} often do no worse at gamma 0 or below 1, and the "
            "verdict needs them to say so."
        )
    alpha = ALPHAS + ((STRONG_ALPHA,) if ratio >= STRONG_RATIO else ())
    dice = TASK_DICE.get(config.task, ()) if config.task and config.trainer else ()
    if dice:
        reason += (
            f" Dice weights {', '.join(f'{d:g}' for d in dice)}: focal + Dice at 1:4 improved "
            "a U-Net on four vessel sets where focal loss alone did not (mmsegmentation #1024)."
        )
    experiment = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    experiment["search"] = {**experiment.get("search", {}), "gamma": [*gamma], "alpha": [*alpha]}
    if dice:
        experiment["search"]["dice"] = [*dice]
    if config.task is not None:
        experiment["task"] = config.task
    return Suggestion(
        config_path=config_path,
        class_names=_scored_names(splits),
        counts=counts,
        ratio=ratio,
        gamma_range=gamma_range,
        gamma=gamma,
        alpha=alpha,
        reason=reason,
        warnings=_warnings(config, _scored_names(splits), counts, per_split["val"]),
        experiment=experiment,
        text_path=_text_path(config, splits),
        dice=dice,
    )


def _scored_names(splits: Splits) -> tuple[str, ...]:
    """The class names counted: a segmentation set's pixel classes, else the labels'."""
    units = splits.units
    return splits.class_names if units is None or units.classes is None else units.classes


def _pixel_counts(splits: Splits) -> dict[str, list[int]] | None:
    """A segmentation set's pixels of each class per split (None for other data)."""
    units = splits.units
    if units is None or units.image_shape is None:
        return None
    columns = [f"pixels_{name}" for name in units.classes or splits.class_names]
    pixels = units.table[columns].to_numpy()
    parts = {"train": units.train_ids, "val": units.val_ids, "test": units.test_ids}
    return {name: pixels[ids].sum(axis=0).tolist() for name, ids in parts.items()}


def _text_path(config: Config, splits: Splits) -> str | None:
    """One sentence: which text path the experiment uses, and the other one."""
    source, pre = config.data, splits.preprocessing
    column = source.text if isinstance(source, TableData) else None
    if column is None and config.task == "text":
        return "no text column (data.text): the model reads the numeric columns only."
    if column is None:
        return None
    if pre is not None and pre.encoder is not None:
        return (
            f"column {column!r} as {pre.encoder.name} sentence embeddings ({pre.encoder.dim} "
            f"per row, cached in {config.run_dir / 'embeddings'}); TF-IDF instead: remove "
            "data.text_encoder."
        )
    terms = len(pre.text.terms) if pre is not None and pre.text is not None else 0
    return (
        f"column {column!r} as TF-IDF ({terms} terms fitted on the training split); sentence "
        f"embeddings instead: data.text_encoder: minilm ({INSTALL})."
    )


def write_suggestion(
    suggestion: Suggestion, out: str | Path | None = None, *, force: bool = False
) -> Path:
    """Write the suggestion as an experiment file that ``load_config`` accepts.

    A relative ``data.path`` or ``output_dir`` is made absolute if the file changes folder.

    Args:
        suggestion: What ``suggest()`` returned.
        out: The file to write; default ``<stem>.suggested.yaml`` next to the experiment file.
        force: Overwrite an existing ``out``. Default False.

    Returns:
        The path written.

    Raises:
        ConfigError: ``out`` exists and ``force`` is False; or it is the experiment file, its
            data, its study storage or a file of its run folder (see :mod:`gammatune.outputs`).
    """
    source = suggestion.config_path
    path = Path(out) if out is not None else source.with_name(f"{source.stem}.suggested.yaml")
    refuse_inputs({"--out": path}, load_config(source), source)  # even with --force
    if path.exists() and not force:
        raise ConfigError(f"{path}: already exists; choose another --out, or --force to replace.")
    experiment = _rebased(suggestion.experiment, source.parent, path.parent)
    Config.model_validate(experiment, context={"base_dir": path.parent})  # a failure is a bug
    header = (
        f"# Suggested by `gammatune suggest` from {source.name}: starting points, not answers.\n"
        f"# Why: {suggestion.reason}\n"
        + (f"# Text: {suggestion.text_path}\n" if suggestion.text_path else "")
        + "# Run the stages; the verdict (`gammatune confirm`) decides whether focal loss helps.\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(experiment, sort_keys=False, allow_unicode=True)
    write_whole(path, header + body)
    return path


def format_suggestion(suggestion: Suggestion) -> list[str]:
    """Return the class counts table, the ratio and the chosen grid as plain text lines."""
    total = sum(suggestion.counts)
    width = max(len("class"), *(len(name) for name in suggestion.class_names))
    digits = max(len("count"), len(str(max(suggestion.counts))))
    lines = [f"{'class':<{width}}  {'count':>{digits}}  share"]
    for name, count in zip(suggestion.class_names, suggestion.counts, strict=True):
        lines.append(f"{name:<{width}}  {count:>{digits}}  {count / total:6.1%}")
    return [
        *lines,
        f"imbalance 1:{suggestion.ratio:.1f} (minority : majority, whole data set)",
        f"why: {suggestion.reason}",
        f"search.gamma: {list(suggestion.gamma)}",
        f"search.alpha: {list(suggestion.alpha)}",
        *([f"search.dice: {list(suggestion.dice)}"] if suggestion.dice else []),
        *([f"text: {suggestion.text_path}"] if suggestion.text_path else []),
    ]


def _steps(low: float, high: float) -> tuple[float, ...]:
    """Grid points from ``low`` to ``high`` inclusive, ``GAMMA_STEP`` apart."""
    n = int(round((high - low) / GAMMA_STEP))
    return tuple(round(low + i * GAMMA_STEP, 6) for i in range(n + 1))


def _warnings(
    config: Config, names: tuple[str, ...], counts: tuple[int, ...], val: list[int]
) -> tuple[str, ...]:
    needed, rarest = config.confirm.min_positives, counts.index(min(counts))
    if counts[rarest] >= MIN_MINORITY and val[rarest] >= needed:
        return ()
    return (
        f"class {names[rarest]!r} has {counts[rarest]} samples ({val[rarest]} in validation; "
        f"confirm needs {needed}): the verdict will likely be not-measurable.",
    )


def _rebased(experiment: dict[str, Any], old: Path, new: Path) -> dict[str, Any]:
    """The experiment with relative paths made absolute, when the file moves folders."""
    rebased = {**experiment, "data": {**experiment["data"]}}
    for where, key in ((rebased["data"], "path"), (rebased, "output_dir")):
        value = where.get(key)
        if value and old.resolve() != new.resolve() and not Path(value).is_absolute():
            where[key] = str((old / value).resolve())
    return rebased
