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
    from gammatune.outputs import whole_folder
    from gammatune.storage import load_record, load_study, open_storage

    number = int(trials.sort_values(["fold", "repeat"])["number"].iloc[0])  # the first trial
    study = load_study(config, "confirm", open_storage(config))
    trial = None if study is None else study.get_trials(deepcopy=False)[number]
    record = None if trial is None else load_record(trial)
    if record is None:
        raise StudyError(f"export: confirm trial {number} of {config.name!r} has no record.")
    folder = config.run_dir / "model"
    source = Path(record.weights_file) if record.weights_file else None
    kept = source if source is not None and source.is_file() else None
    card = {
        "setting": record.setting.params(), "verdict": verdict, "seed": record.seed,
        "fold": record.setting.fold, "repeat": record.setting.repeat, "confirm_trial": number,
        "trainer": config.trainer and config.trainer.model_dump(mode="json"),
        "weights": kept and kept.name,
        "weights_sha256": kept and _sha256(kept),
    }  # fmt: skip
    # The whole old folder or the whole new one; an earlier card's weights file may go with it.
    holds = {"card.json", *([kept.name] if kept else []), *_earlier_weights(folder)}
    with whole_folder(folder, holds=frozenset(holds)) as fresh:
        if kept is not None:
            shutil.copyfile(kept, fresh / kept.name)
        (fresh / "card.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
    return folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _earlier_weights(folder: Path) -> list[str]:
    """The weights file an earlier user-model card in ``folder`` names (replaced with it)."""
    import json

    try:
        named = json.loads((folder / "card.json").read_text(encoding="utf-8")).get("weights")
    except (OSError, ValueError, AttributeError):
        return []
    return [named] if isinstance(named, str) and "/" not in named else []
