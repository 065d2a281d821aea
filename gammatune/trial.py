"""One trial: (gamma, alpha, seed) -> model, loss, training, evaluation -> value and attributes."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from gammatune.config import Config, ModelConfig
from gammatune.data import Splits
from gammatune.device import device_name, seed_everything
from gammatune.metrics import best_f1_threshold, evaluate, objective_value
from gammatune.models import build_model, init_output_bias
from gammatune.study import TrialFailed
from gammatune.train import EpochEvent, fit, make_loss, predict_logits, scores_from_logits


def make_objective(
    config: Config,
    splits: Splits,
    *,
    device: torch.device,
    autocast: torch.dtype | None,
    on_epoch: Callable[[EpochEvent], None] | None = None,
) -> Callable[[dict[str, Any]], tuple[float, dict[str, Any]]]:
    """Return ``params -> (validation objective, JSON-safe user attributes)``.

    ``params`` holds ``gamma``, ``alpha`` (None for off), ``repeat`` (the seed is
    ``config.seed + repeat``, so trials of different gamma share initial weights and batch
    order) and ``model`` (``configured`` or ``linear``).

    The objective raises :class:`TrialFailed` for a non-finite training loss or a CUDA
    out-of-memory error, so that the study goes on.
    """
    counts = torch.bincount(splits.y_train, minlength=splits.n_classes)
    prior = counts.double() / counts.sum()
    minority = int(torch.argmin(counts))
    data = (splits.x_train, splits.y_train, splits.x_val, splits.y_val)
    n_outputs = 1 if splits.n_classes == 2 else splits.n_classes

    def objective(params: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        seed = config.seed + int(params["repeat"])
        seed_everything(seed)
        model_config = (
            config.model if params["model"] == "configured" else ModelConfig(kind="linear")
        )
        model = build_model(
            model_config,
            n_features=splits.n_features,
            n_outputs=n_outputs,
            image_shape=splits.image_shape,
        )
        init_output_bias(model, prior)
        loss_fn = make_loss(
            gamma=params["gamma"],
            alpha=params["alpha"],
            n_classes=splits.n_classes,
            minority=minority,
        )
        attrs: dict[str, Any] = {
            "gamma": params["gamma"],
            "alpha": params["alpha"],
            "repeat": params["repeat"],
            "model": model_config.kind,
            "seed": seed,
            "device": device_name(device),
        }
        try:
            result = fit(
                model,
                data,
                loss_fn=loss_fn,
                config=config.train,
                device=device,
                autocast=autocast,
                seed=seed,
                on_epoch=on_epoch,
            )
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise TrialFailed("CUDA out of memory", attrs) from None
        attrs.update(
            duration_s=round(result.duration_s, 3),
            epochs_run=result.epochs_run,
            best_epoch=result.best_epoch,
            stop_reason=result.stop_reason,
            curve_train_loss=_rounded(result.train_loss),
            curve_val_loss=_rounded(result.val_loss),
            curve_val_monitor=_rounded(result.val_monitor),
        )
        if result.failure is not None:
            raise TrialFailed(result.failure, attrs)
        val_scores, test_scores = (
            scores_from_logits(predict_logits(model, x.to(device), autocast=autocast))
            for x in (splits.x_val, splits.x_test)
        )
        threshold = 0.5
        if config.threshold == "tuned" and val_scores.ndim == 1:
            threshold = best_f1_threshold(splits.y_val.numpy(), val_scores)[0]
        elif isinstance(config.threshold, float):
            threshold = config.threshold
        val = evaluate(splits.y_val.numpy(), val_scores, threshold=threshold, seed=seed)
        test = evaluate(splits.y_test.numpy(), test_scores, threshold=threshold, seed=seed)
        attrs.update(val.to_attrs("val"))
        attrs.update(test.to_attrs("test"))
        value = objective_value(val, config.objective)
        if not math.isfinite(value):
            raise TrialFailed(f"the objective {config.objective} is {value}", attrs)
        return value, attrs

    return objective


def _rounded(values: list[float]) -> list[float]:
    return [round(v, 6) if math.isfinite(v) else None for v in values]  # type: ignore[misc]
