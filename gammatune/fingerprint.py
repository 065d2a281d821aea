"""What a study knows it is: the fingerprint of everything that changes a trial's result,
stored on each study, so that a rerun on an edited experiment is refused (or, asked, the old
studies are set aside), never silently mixed in."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import optuna

from gammatune.config import Config
from gammatune.errors import StudyError, redact
from gammatune.storage import FINGERPRINT, RESULT, STAGES, Stage, load_study, study_name

if TYPE_CHECKING:
    from gammatune.data import Splits

IfChanged = Literal["refuse", "replace"]  # a stored study run on a different experiment
CONTENT = "data.content"  # the fact that needs the data loaded

# What a trial's result does not depend on: where the study lives, how much of it to run, how
# it is grouped or watched. Everything else of the experiment is in its fingerprint.
_NOT_RESULTS: dict[str, Any] = {
    "name": True,
    "storage": True,
    "output_dir": True,
    # The file's content is hashed instead: it may move, or sit elsewhere; so is the text
    # encoder's (a folder may move, `minilm` is wherever its package is installed).
    "data": {"path", "text_encoder"},
    "train": {"device", "threads", "parallel", "tensorboard", "mlflow", "wandb", "report_epochs"},
    "baseline": True,
    "search": True,
    "refine": True,
    "confirm": {"top_k", "repeats", "min_positives", "check_determinism"},
    "trainer": {"timeout_s", "resources"},
}
TRAINER_SOURCE = "trainer.source"  # a hash of the user's training code


def config_facts(config: Config) -> dict[str, Any]:
    """The experiment file's part of the :func:`fingerprint` (all of it but ``CONTENT``)."""
    return _flatten(config.model_dump(mode="json", exclude=_NOT_RESULTS))


def fingerprint(config: Config, splits: Splits) -> dict[str, Any]:
    """Everything that changes a trial's result, flat (``{"train.lr": 0.001, ...}``): stored
    on each study, so that a rerun on an edited experiment is refused, not mixed in.

    The loaded data is in it as ``data.content``: a hash of the labels of each split, the
    feature shapes, for a file source the file's bytes, and for a text encoder the hash of its
    model files (with the texts, the key of the cached embeddings). The standardized features are
    not hashed bit for bit: CPUs sharing a study may round them differently in the last bit.
    """
    facts = config_facts(config)
    digest = hashlib.sha256()
    for labels in (splits.y_train, splits.y_val, splits.y_test):
        digest.update(np.ascontiguousarray(labels.cpu().numpy().astype(np.int64)).tobytes())
    shapes = [list(x.shape) for x in (splits.x_train, splits.x_val, splits.x_test)]
    digest.update(json.dumps([shapes, list(splits.class_names)]).encode())
    path = getattr(config.data, "path", None)
    if isinstance(path, Path) and path.is_file():
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    encoder = splits.preprocessing.encoder if splits.preprocessing else None
    if encoder is not None:  # the embeddings' cache key: the model files' hash (with the file's)
        digest.update(encoder.key.encode())
    facts[CONTENT] = f"sha256:{digest.hexdigest()[:16]}"
    if config.trainer is not None:
        facts[TRAINER_SOURCE] = trainer_source(config)
    return facts


def trainer_source(config: Config) -> str | None:
    """A hash of the user's training code: ``trainer.function``'s module file, or the files
    that ``trainer.command``'s arguments name in the experiment's folder; None if none found.
    (``trainer.version`` covers what the hash cannot see: other modules, installed code.)"""
    from gammatune.spec import module_file

    trainer = config.trainer
    assert trainer is not None
    if trainer.function is not None:
        found = module_file(trainer.function, trainer.base_dir)
        files = [] if found is None else [found]
    else:
        named = (trainer.base_dir / a for a in trainer.command or [] if "{" not in a)
        files = [p for p in named if p.suffix and p.is_file()]
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    return f"sha256:{digest.hexdigest()[:16]}"


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_fingerprint(
    study: optuna.Study, fingerprint: dict[str, Any], *, ignore: frozenset[str] = frozenset()
) -> None:
    """Refuse to continue a study whose trials were trained on a different experiment (the
    facts named in ``ignore`` left out on both sides).

    Raises:
        StudyError: Naming the first differences (field, stored value, new value).
    """
    stored = study.user_attrs.get(FINGERPRINT)
    if stored is None:
        return  # a new study, or one from before fingerprints: it takes this one
    stored = {k: v for k, v in stored.items() if k not in ignore}
    if stored == fingerprint:
        return
    # The data's hash last: it follows from the others (n_samples, the file, ...).
    keys = sorted(set(stored) | set(fingerprint), key=lambda key: (key == CONTENT, key))
    changed = [
        f"{key} was {stored.get(key)!r}, now {fingerprint.get(key)!r}"
        for key in keys
        if stored.get(key) != fingerprint.get(key)
    ]
    more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
    raise StudyError(
        f"study {study.study_name!r} was run on a different experiment: "
        f"{'; '.join(changed[:3])}{more}; set a new `name` to start a new study, "
        "undo the change to continue this one, or pass --force-new to set it aside and start "
        "afresh."
    )


def check_studies(
    config: Config,
    storage: optuna.storages.BaseStorage,
    facts: dict[str, Any],
    *,
    if_changed: IfChanged = "refuse",
    ignore: frozenset[str] = frozenset(),
) -> str | None:
    """Check every stored stage of the experiment against its :func:`fingerprint` before
    anything is added to one; ``replace`` sets those that differ aside (see
    :func:`set_aside`) and returns one line saying what was kept where. ``ignore``: facts
    left out (``{CONTENT}`` with :func:`config_facts`, for readers that do not load the data).

    Raises:
        StudyError: A study was run on a different experiment (``refuse``).
    """
    changed: list[Stage] = []
    for stage in STAGES:  # also those run before: refine builds on search's trials
        if (study := load_study(config, stage, storage)) is None:
            continue
        try:
            check_fingerprint(study, facts, ignore=ignore)
        except StudyError:
            if if_changed == "refuse":
                raise
            changed.append(stage)
    if not changed:
        return None
    kept = set_aside(config, storage, changed)
    return f"--force-new: kept {kept} in {redact(config.storage_url)}; starting afresh."


def set_aside(config: Config, storage: optuna.storages.BaseStorage, stages: list[Stage]) -> str:
    """Keep the studies of ``stages`` under new names, ``<study>.replaced-<UTC time>``, and
    delete them, so that the stages start afresh; return the new names.

    Each copy (trials, their records and attributes) is complete before its original is
    deleted, and the trials' per-sample score files move with their records
    (``scores/<new name>-<number>.npz``), so that the new study's trials cannot overwrite
    them.

    Raises:
        StudyError: A copy came out incomplete; the original is kept.
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    taken = set(optuna.get_all_study_names(storage))

    def free(name: str) -> str:  # set aside twice within a second: -2, -3, ...
        kept = f"{name}.replaced-{stamp}"
        return next(k for k in (kept, *(f"{kept}-{n}" for n in range(2, 99))) if k not in taken)

    names = {study_name(config, s): free(study_name(config, s)) for s in stages}
    moves: dict[str, str] = {}  # score files, old -> new, relative to the run folder

    def moved(trial: optuna.trial.FrozenTrial) -> optuna.trial.FrozenTrial:
        record = trial.user_attrs.get(RESULT)
        file = record.get("scores_file") if isinstance(record, dict) else None
        for name, kept in names.items():  # a refine warm-start copy names search's file
            if isinstance(record, dict) and file and file.startswith(f"scores/{name}-"):
                moves[file] = file.replace(f"scores/{name}-", f"scores/{kept}-", 1)
                trial.user_attrs = {
                    **trial.user_attrs,
                    RESULT: {**record, "scores_file": moves[file]},
                }
        return trial

    for name, kept in names.items():
        study = optuna.load_study(study_name=name, storage=storage)
        copy = optuna.create_study(study_name=kept, storage=storage, directions=study.directions)
        for key, value in study.user_attrs.items():
            copy.set_user_attr(key, value)
        copy.add_trials([moved(t) for t in study.get_trials(deepcopy=True)])
        if len(copy.get_trials(deepcopy=False)) != len(study.get_trials(deepcopy=False)):
            raise StudyError(f"study {name!r}: its copy {kept!r} is incomplete; nothing deleted.")
    for file, new in moves.items():
        if (config.run_dir / file).is_file():
            os.replace(config.run_dir / file, config.run_dir / new)
    for name in names:
        optuna.delete_study(study_name=name, storage=storage)
    return ", ".join(f"{name!r} as {kept!r}" for name, kept in names.items())
