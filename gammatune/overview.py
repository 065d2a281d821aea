"""What ``gammatune check`` says about the data: classes and counts per split, the columns used,
excluded and encoded, the batch size and optimizer steps, and warnings; nothing is written."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import yaml

from gammatune.columns import CategoricalStep, NumericStep
from gammatune.config import Config, dump_without_secrets
from gammatune.data import Splits, load_data
from gammatune.features import Preprocessing, TextVocabulary
from gammatune.image_masks import describe_masks

MIN_STEPS = 300  # fewer optimizer steps in a trial's epochs: a network may not learn at all
MIN_MINORITY = 20  # fewer samples of the rarest class: confirm can hardly measure a difference


@dataclass(frozen=True, slots=True)
class DataOverview:
    """The experiment and its loaded data, as ``check`` prints them.

    ``resolved`` is the experiment as YAML, every default filled in and a storage password
    hidden; ``lines`` are facts about the data; ``warnings`` what may go wrong.
    """

    resolved: str
    lines: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def text(self) -> str:
        """The experiment, then the facts as YAML comments: the whole stays valid YAML."""
        return self.resolved + "\n" + "\n".join(f"# {line}" for line in self.lines)


def describe_data(config: Config, splits: Splits | None = None) -> DataOverview:
    """Load the experiment's data (or take ``splits``) and describe it in plain lines.

    Raises:
        DataError: The data cannot be loaded (the message names the field and the value).
    """
    splits = splits or load_data(config)
    counts = splits.class_counts()
    if splits.units is not None and splits.units.image_shape is not None:
        lines, warnings = _segmentation_lines(splits), []
    else:
        lines = [*_class_lines(splits, counts), *_column_lines(splits)]
        warnings = [*_class_warnings(config, splits, counts)]
    if config.trainer is None:  # a user's trainer chooses its own batches
        steps, batch_line = _steps(config, len(splits.y_train))
        lines.append(batch_line)
        auto = config.train.batch_size == "auto"
        if steps < MIN_STEPS:
            warnings.append(
                f"each trial gets {steps} optimizer steps at most (train.epochs "
                f"{config.train.epochs}, train.batch_size {config.train.batch_size}): a network "
                f"may not learn in under {MIN_STEPS}; "
                + ("raise train.epochs." if auto else "use batch_size auto, or more epochs.")
            )
    dumped = dump_without_secrets(config)  # never a password on the screen
    resolved = yaml.safe_dump(dumped, sort_keys=False)
    return DataOverview(resolved, tuple(lines), tuple(warnings))


def _segmentation_lines(splits: Splits) -> list[str]:
    """A segmentation set: pixel shares and images per class, and the split's strata."""
    units = splits.units
    assert units is not None and units.image_shape is not None
    names = units.classes or splits.class_names
    counts = units.table[[f"pixels_{name}" for name in names]].to_numpy()
    lines = describe_masks(counts, names, units.image_shape)
    parts = {"train": units.train_ids, "val": units.val_ids, "test": units.test_ids}
    lines.append(
        "images per split, by stratum (the rarest class an image holds; none: no foreground):"
    )
    for stratum, name in enumerate(splits.class_names):
        row = ", ".join(
            f"{k} {int((units.labels[ids] == stratum).sum())}" for k, ids in parts.items()
        )
        lines.append(f"  {name}: {row}")
    if units.groups is not None:
        lines.append(f"groups: {len(set(units.groups.tolist()))}, each in one split")
    return lines


def _class_lines(splits: Splits, counts: dict[str, list[int]]) -> list[str]:
    names = [str(n) for n in splits.class_names]
    totals = [sum(split[c] for split in counts.values()) for c in range(len(names))]
    width = max(len("class"), *(len(n) for n in names))
    lines = [f"{'class':<{width}}  {'total':>6}  {'train':>6}  {'val':>6}  {'test':>6}  share"]
    for c, name in enumerate(names):
        row = "  ".join(f"{counts[split][c]:>6}" for split in ("train", "val", "test"))
        lines.append(f"{name:<{width}}  {totals[c]:>6}  {row}  {totals[c] / sum(totals):6.1%}")
    sizes = "/".join(str(sum(counts[split])) for split in ("train", "val", "test"))
    lines.append(
        f"rows: {sum(totals)} (train/val/test {sizes}); imbalance "
        f"{splits.imbalance_ratio():.1f}:1 (majority / minority)"
    )
    return lines


def _column_lines(splits: Splits) -> list[str]:
    preprocessing = splits.preprocessing
    if preprocessing is None:  # pragma: no cover - load_data always sets it
        return []
    lines = [
        f"features: {splits.n_features} model inputs from {len(preprocessing.inputs)} columns"
    ]
    for step in preprocessing.steps:
        match step:
            case NumericStep() if step.columns:
                lines.append(f"  numeric ({len(step.columns)}): {_few(step.columns)}")
                missing = _missing_counts(splits, preprocessing, step)
                if missing:
                    shown = ", ".join(f"{c} ({n})" for c, n in missing.items())
                    lines.append(
                        f"  missing values filled with the training median, plus a 0/1 "
                        f"'missing' input: {shown}"
                    )
            case CategoricalStep():
                lines.append(
                    f"  categorical: {step.column}: {len(step.categories)} values "
                    f"({_few(step.categories, most=5)}) + other"
                )
            case TextVocabulary():
                lines.append(f"  text: {step.column}: TF-IDF of {len(step.terms)} terms")
    if preprocessing.id is not None:
        lines.append(f"  id: {preprocessing.id} (not an input; written beside each score)")
    if preprocessing.ignored:
        lines.append(f"  excluded: {_few(preprocessing.ignored)}")
    return lines


def _missing_counts(
    splits: Splits, preprocessing: Preprocessing, step: NumericStep
) -> dict[str, int]:
    """Rows with a missing value per flagged column, all splits, read from its indicator."""
    names = preprocessing.features
    found = {}
    for column in step.flagged:
        index = names.index(f"{column}=missing")
        raw = np.concatenate(
            [x[:, index].numpy() for x in (splits.x_train, splits.x_val, splits.x_test)]
        )
        found[column] = int(
            (raw * preprocessing.std[index] + preprocessing.mean[index] > 0.5).sum()
        )
    return found


def _steps(config: Config, n_train: int) -> tuple[int, str]:
    train = config.train
    rows = train.batch_rows(n_train)
    per_epoch = -(-n_train // rows)
    how = "auto: training rows / 16, in [32, 512]" if train.batch_size == "auto" else "set"
    return per_epoch * train.epochs, (
        f"batch size: {rows} ({how}); {per_epoch} optimizer steps an epoch, at most "
        f"{per_epoch * train.epochs} in {train.epochs} epochs"
    )


def _class_warnings(config: Config, splits: Splits, counts: dict[str, list[int]]) -> list[str]:
    names = [str(n) for n in splits.class_names]
    totals = [sum(split[c] for split in counts.values()) for c in range(len(names))]
    rarest = int(np.argmin(totals))
    needed, val = config.confirm.min_positives, counts["val"][rarest]
    if totals[rarest] >= MIN_MINORITY and val >= needed:
        return []
    return [
        f"class {names[rarest]!r} has {totals[rarest]} samples ({val} in validation; confirm "
        f"needs {needed}): the verdict will likely be not-measurable."
    ]


def _few(names: tuple[str, ...], most: int = 8) -> str:
    rest = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + rest
