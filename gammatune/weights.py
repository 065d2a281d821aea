"""The trained weights of each confirm setting's first repeat, kept in the run folder, so that
``export`` saves the very model the study scored instead of training it again.

Only those trials are kept (one per setting and fold: ``export`` uses a setting's first confirm
trial). ``export`` checks a kept model against its trial's stored validation scores before it
uses it, and trains the setting again where they differ or the file is not here (a trial that ran
on another machine, a study replaced with ``--force-new``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import torch

from gammatune.config import Config
from gammatune.record import Setting

logger = logging.getLogger(__name__)


def keeps(config: Config, setting: Setting) -> bool:
    """Whether a trial of ``setting`` keeps its weights: confirm's first trial of a setting,
    on the first re-split (fold 1), of its first repeat."""
    return setting.fold == 1 and setting.repeat == config.confirm_repeats[0]


def weights_path(config: Config, setting: Setting) -> Path:
    """``runs/<name>/weights/<digest of the setting>.pt``."""
    digest = hashlib.sha1(repr(setting.key()).encode()).hexdigest()[:16]
    return config.run_dir / "weights" / f"{digest}.pt"


def keep_weights(config: Config, setting: Setting, model: torch.nn.Module) -> None:
    """Save ``model``'s state dict (``torch.save``, tensors only), written whole or not at all.
    A failed write is a warning: ``export`` then trains the setting again."""
    path = weights_path(config, setting)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    partial = path.with_suffix(f".{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, partial)
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        logger.warning("cannot keep the weights of %s in %s: %s", setting.name, path, exc)


def kept_weights(config: Config, setting: Setting) -> dict[str, torch.Tensor] | None:
    """The state dict a trial of ``setting`` kept, or None where there is none (or it cannot
    be read)."""
    path = weights_path(config, setting)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file: train again
        logger.warning("cannot read the kept weights %s: %s", path, exc)
        return None
    return state if isinstance(state, dict) else None


def export_user_model(config: Config, setting: Setting, trials: Any, *, verdict: str) -> Path:
    """A user trainer's recommended model: ``runs/<name>/model/card.json`` (the setting, the
    seed, the fold, the classes, the confirm trial) and a copy of the weights file that trial
    returned as ``"weights"``, if it did. gammatune cannot rebuild a user's model: the card says
    how to train it again. ``trials``: the setting's confirm trials (a report frame).

    Raises:
        StudyError: The confirm trial is not in the storage.
    """
    import json
    import shutil

    from gammatune.errors import StudyError
    from gammatune.storage import load_record, load_study, open_storage

    number = int(trials.sort_values(["fold", "repeat"])["number"].iloc[0])  # the first trial
    study = load_study(config, "confirm", open_storage(config))
    trial = None if study is None else study.get_trials(deepcopy=False)[number]
    record = None if trial is None else load_record(trial)
    if record is None:
        raise StudyError(f"export: confirm trial {number} of {config.name!r} has no record.")
    folder = config.run_dir / "model"
    folder.mkdir(parents=True, exist_ok=True)
    copied = None
    if record.weights_file and Path(record.weights_file).is_file():
        source = Path(record.weights_file)
        copied = folder / source.name
        shutil.copyfile(source, copied)
    card = {
        "setting": setting.params(), "verdict": verdict, "seed": record.seed,
        "fold": setting.fold, "confirm_trial": number, "trainer": config.trainer and
        config.trainer.model_dump(mode="json"), "weights": copied and copied.name,
    }  # fmt: skip
    (folder / "card.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
    return folder
