"""The tuned model: retrain (or take the kept model of) the verdict's setting and save it as
one model folder (see :mod:`gammatune.saved_model`, whose ``save_model``, ``load_model``,
``score_frame`` and ``predict_csv`` are re-exported here).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from gammatune.config import Config
from gammatune.data import Splits, load_data, refold
from gammatune.device import autocast_dtype, resolve_device
from gammatune.errors import ConfigError, StudyError
from gammatune.estimator import FocalClassifier, fitted_classifier
from gammatune.fingerprint import check_studies, fingerprint
from gammatune.metrics import best_f1_threshold
from gammatune.record import Setting
from gammatune.report import Summary, setting_mask, study_summary
from gammatune.saved_model import load_model, save_model
from gammatune.scores_files import load_scores_file
from gammatune.scoring import predict_csv, score_frame
from gammatune.storage import open_storage, storage_errors
from gammatune.training import FitResult, Keep, predict_logits, scores_from_logits
from gammatune.tuning import loss_terms, new_member, train_members
from gammatune.weights import export_user_model, kept_weights

if TYPE_CHECKING:
    import pandas as pd

FitOn = Literal["train", "train+val"]
__all__ = [
    "Exported", "export_model", "load_model", "predict_csv", "save_model", "score_frame",
    "train_setting",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Exported:
    """What ``export_model`` saved: the folder, the setting, and how it was trained."""

    path: Path
    setting: Setting
    verdict: str
    fit_on: FitOn
    epochs: int | None  # None: a user trainer's model (its own loop chose its epochs)
    threshold: float
    weights: bool = True  # a user trainer's model: whether its trial returned a weights file

    @property
    def text(self) -> str:
        """One line for the terminal."""
        if self.epochs is None:
            kept = (
                "its card and the weights it returned"
                if self.weights
                else ("its card; the trial returned no weights")
            )
            return (
                f"exported {self.setting.name} ({self.verdict}; your trainer's first confirm "
                f"trial: {kept}) to {self.path}"
            )
        return (
            f"exported {self.setting.name} ({self.verdict}; "
            f"{self.fit_on}, {self.epochs} epochs, threshold {self.threshold:.4g}) to {self.path}"
        )


def export_model(
    config: Config, *, fit_on: FitOn = "train", studied: tuple[pd.DataFrame, Summary] | None = None
) -> Exported:
    """Save the verdict's recommended setting, trained, to ``runs/<name>/model/``.

    Args:
        config: The experiment, whose confirm stage has run.
        fit_on: ``train``: the model of the recommended setting's first confirm trial (its
            seed and re-split of train+val, early-stopped on that fold's validation rows): the
            weights it kept (checked on its validation scores), else trained again; either way
            it scores the test split as the study stored. ``train+val``: the configured split's
            train and validation rows, that seed, for the median of the setting's confirm
            trials' kept epochs. Default "train".
        studied: The trials and summary :func:`~gammatune.report.study_summary` returned for
            this study as it is now (``gammatune run`` passes its report's: the verdict is
            decided once); None reads and decides them. Default None.

    Returns:
        Where it went, and what was trained.

    Raises:
        StudyError: No setting is recommended (confirm has not run), or its training failed.
        DataError: The data cannot be loaded.
    """
    with storage_errors(config.storage_url):  # an unreachable or damaged study: one line
        storage = open_storage(config)
        frame, summary = studied or study_summary(config, storage)[:2]
    verdict = summary.verdict
    if verdict.recommended is None:
        raise StudyError(
            f"export: the verdict ({verdict.kind}) recommends no setting: {verdict.reason}; "
            "run `gammatune confirm` first."
        )
    setting, trials = verdict.recommended, _confirm_trials(frame, verdict.recommended)
    if config.trainer is not None:  # a user's model: its card and the weights it kept
        if fit_on != "train":
            raise ConfigError(
                f"export --refit: trainer.{config.trainer.kind} trains the model, and gammatune "
                "cannot rerun your code on train+val; export without --refit."
            )
        folder = export_user_model(config, setting, trials, verdict=verdict.kind)
        card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
        return Exported(
            folder, setting, verdict.kind, "train", None, 0.5, card["weights"] is not None
        )
    epochs = int(statistics.median(trials["best_epoch"])) if fit_on == "train+val" else None
    first = trials.sort_values(["fold", "repeat"])
    seed = int(first["seed"].iloc[0]) if len(first) else config.seed
    fold = int(first["fold"].iloc[0]) if len(first) and fit_on == "train" else 0
    loaded = load_data(config)
    with storage_errors(config.storage_url):  # the data itself changed since the study ran?
        check_studies(config, storage, fingerprint(config, loaded))
    splits = refold(loaded, fold, seed=config.split_seed)
    kept = _kept_model(config, splits, setting, first) if fit_on == "train" else None
    if kept is None:
        model, result = train_setting(config, splits, setting, seed=seed, epochs=epochs)
        kept = model, result.best_epoch
    model, best_epoch = kept
    threshold = _threshold(config, model, splits, trials, fit_on)
    preprocessing = splits.preprocessing
    assert preprocessing is not None  # load_data always sets it
    classifier = fitted_classifier(
        _estimator(config, setting, splits, seed),
        model,
        classes=np.asarray(splits.class_names),
        mean=np.asarray(preprocessing.mean),
        std=np.asarray(preprocessing.std),
        threshold=threshold,
    )
    extra = {
        "experiment": config.name,
        "trained_on": fit_on,
        "epochs": best_epoch,
        "seed": seed,
        "fold": fold,  # 0: the configured split; f > 0: the confirm re-split it was trained on
        "verdict": verdict.to_json(),
        "setting": verdict.to_json()["recommended"],
    }
    path = config.run_dir / "model"
    save_model(
        classifier,
        path,
        model=config.model,
        preprocessing=preprocessing,
        image_shape=splits.image_shape,
        extra=extra,
    )
    return Exported(path, setting, verdict.kind, fit_on, best_epoch, threshold)


def _kept_model(
    config: Config, splits: Splits, setting: Setting, first: pd.DataFrame
) -> tuple[torch.nn.Module, int] | None:
    """The model the setting's first confirm trial kept (see :mod:`gammatune.weights`), with
    its kept epoch, where it scores the validation rows as the study stored (the test split
    stays out of it); else None."""
    if not len(first) or not isinstance(first["scores_file"].iloc[0], str):
        return None
    row = first.iloc[0]
    trial = dataclasses.replace(setting, repeat=int(row["repeat"]), fold=int(row["fold"]))
    state, stored = kept_weights(config, trial), load_scores_file(config, row["scores_file"])
    if state is None or stored is None:
        return None
    gamma, alpha = loss_terms(config, setting, splits)
    model = new_member(
        config.model, splits, gamma=gamma, alpha=alpha, seed=int(row["seed"]),
        labels=splits.y_train,
    ).model  # fmt: skip
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError):  # another architecture: train again
        return None
    model = model.to(resolve_device(config.train.device))
    val = scores_from_logits(predict_logits(model, splits.x_val.to(_device_of(model))))
    if val.shape != stored.val.shape or not np.allclose(val, stored.val, rtol=0, atol=1e-5):
        return None
    return model, int(row["best_epoch"])


def train_setting(
    config: Config, splits: Splits, setting: Setting, *, seed: int, epochs: int | None
) -> tuple[torch.nn.Module, FitResult]:
    """Train the configured model once, as the trial with this setting and seed trained.

    ``epochs`` None: on train, early-stopped on validation (the confirm trial's training).
    A number: on train+val for exactly that many epochs.

    Raises:
        StudyError: The training loss became NaN or infinite.
    """
    device = resolve_device(config.train.device)
    autocast = autocast_dtype(device, config.train.precision)
    x, y = splits.x_train, splits.y_train
    train = config.train
    if setting.lr is not None:
        train = train.model_copy(update={"lr": setting.lr})
    keep: Keep = "best" if epochs is None else "last"
    if epochs is not None:
        x, y = torch.cat([x, splits.x_val]), torch.cat([y, splits.y_val])
        fixed = {"epochs": epochs, "min_epochs": epochs}  # no early stop: validation is inside
        train = type(train).model_validate({**train.model_dump(), **fixed})
    n_classes = splits.n_classes
    gamma, alpha = loss_terms(config, setting, splits)
    member = new_member(config.model, splits, gamma=gamma, alpha=alpha, seed=seed, labels=y)
    minority = int(torch.argmin(torch.bincount(splits.y_train, minlength=n_classes)))
    (result,) = train_members(
        [member], (x, y, splits.x_val, splits.y_val), n_classes=n_classes, minority=minority,
        config=train, device=device, autocast=autocast, keep=keep,
    )  # fmt: skip
    model = member.model
    if result.failure is not None:
        raise StudyError(f"export: training {setting.name}: {result.failure}.")
    return model, result


def _confirm_trials(frame: pd.DataFrame, setting: Setting) -> pd.DataFrame:
    done = (frame["stage"] == "confirm") & (frame["state"] == "COMPLETE")
    return frame[done & setting_mask(frame, setting)]


def _threshold(
    config: Config, model: torch.nn.Module, splits: Splits, trials: pd.DataFrame, fit_on: FitOn
) -> float:
    """The configured threshold; ``tuned``: F1-best on validation, as the trials chose it
    (after a refit on train+val, which has seen validation: the confirm trials' median)."""
    if isinstance(config.threshold, float) or splits.n_classes != 2:
        return config.threshold if isinstance(config.threshold, float) else 0.5
    if fit_on == "train+val":
        return float(statistics.median(trials["val_best_threshold"].dropna()))
    scores = scores_from_logits(predict_logits(model, splits.x_val.to(_device_of(model))))
    return best_f1_threshold(splits.y_val.numpy(), scores)[0]


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _estimator(config: Config, setting: Setting, splits: Splits, seed: int) -> FocalClassifier:
    """The estimator's parameters that match the experiment's (for ``clone`` and refits):
    the setting's loss terms on these splits (per-class weights from their counts)."""
    train = config.train
    gamma, alpha = loss_terms(config, setting, splits)
    return FocalClassifier(
        gamma=gamma,
        alpha=alpha,
        hidden=tuple(config.model.hidden),
        dropout=config.model.dropout,
        epochs=train.epochs,
        batch_size=train.batch_rows(len(splits.x_train)),
        lr=train.lr if setting.lr is None else setting.lr,
        weight_decay=train.weight_decay,
        patience=train.patience,
        min_epochs=train.min_epochs,
        validation_fraction=config.split.val,
        random_state=seed,
        device="cpu",
        pos_label=splits.class_names[-1] if splits.n_classes == 2 else None,
    )
