"""Tracking services behind extras: MLflow (``gammatune[mlflow]``) and Weights & Biases
(``gammatune[wandb]``), a run per trial; see :mod:`gammatune.tuning._monitor`."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gammatune.errors import ConfigError, StudyError, redact, secret_of
from gammatune.training import EpochEvent
from gammatune.tuning._monitor import CURVES, run_name, run_params, stored_epochs
from gammatune.tuning._runner import TrialEvent

_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}  # else FAILED


def _missing(key: str, package: str, extra: str) -> ConfigError:
    return ConfigError(
        f"train.{key}: needs the {package} package; pip install 'gammatune[{extra}]'."
    )


def _probe(uri: str) -> None:
    """Fail in seconds, with one line, where no tracking server listens."""
    parts = urlsplit(uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "localhost", port), timeout=5).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise StudyError(
            f"train.mlflow: no tracking server answers at {redact(uri)} ({reason.lower()})."
        ) from None


class MlflowTracker:
    """One MLflow run per trial, ``<stage>-<number>``, in the experiment named like the study:
    its curves per epoch, its params, its key figures and ``objective``, and a status
    (FINISHED, KILLED when pruned, FAILED).

    Raises:
        ConfigError: mlflow is not installed.
        StudyError: The tracking URI cannot be used (unreachable server, bad path).
    """

    name = "train.mlflow"

    def __init__(self, uri: str, experiment: str) -> None:
        if uri.startswith("file:") or "://" not in uri:
            # MLflow 3 refuses its file store unless told; a local mlruns folder is what the
            # README promises (a database or a server needs nothing).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        if uri.startswith(("http://", "https://")):
            _probe(uri)  # MLflow's own retries take minutes to give up on a dead server
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        try:
            from mlflow.entities import Metric, Param
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise _missing("mlflow", "mlflow", "mlflow") from None
        self._metric, self._param = Metric, Param
        try:
            self.client = MlflowClient(tracking_uri=uri)
            self.experiment_id = self._experiment(experiment)
        except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds; one line for all
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            if secret := secret_of(uri):
                reason = reason.replace(secret, "***")
            raise StudyError(f"train.mlflow: cannot use {redact(uri)}: {reason}") from None
        self._runs: dict[tuple[str, int], str] = {}

    def _experiment(self, name: str) -> str:
        if (found := self.client.get_experiment_by_name(name)) is not None:
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(name))
        except Exception:  # noqa: BLE001 - another worker created it first
            if (found := self.client.get_experiment_by_name(name)) is None:
                raise
            return str(found.experiment_id)

    def _run(self, stage: str, number: int) -> str:
        if (stage, number) not in self._runs:
            run = self.client.create_run(
                self.experiment_id,
                run_name=run_name(stage, number),
                tags={"gammatune.stage": stage, "gammatune.trial": str(number)},
            )
            self._runs[stage, number] = run.info.run_id
        return self._runs[stage, number]

    def _log(self, run_id: str, step: int, figures: dict[str, float]) -> None:
        stamp = int(time.time() * 1000)
        metrics = [self._metric(k, v, stamp, step) for k, v in figures.items()]
        self.client.log_batch(run_id, metrics=metrics)

    def epoch(self, stage: str, number: int, event: EpochEvent) -> None:
        figures = {key: float(getattr(event, key)) for key in CURVES}
        self._log(self._run(stage, number), event.epoch, figures)

    def end(self, event: TrialEvent) -> None:
        live = (event.stage, event.number) in self._runs
        run_id = self._run(event.stage, event.number)
        if not live:
            for epoch, figures in stored_epochs(event):
                self._log(run_id, epoch, figures)
        final = {k: float(v) for k, v in event.figures.items() if isinstance(v, int | float)}
        if event.value is not None:
            final["objective"] = float(event.value)
        params = [self._param(k, str(v)) for k, v in run_params(event).items()]
        stamp = int(time.time() * 1000)
        metrics = [self._metric(k, v, stamp, 0) for k, v in final.items()]
        self.client.log_batch(run_id, metrics=metrics, params=params)
        self.client.set_terminated(run_id, _STATUS.get(event.state, "FAILED"))
        del self._runs[event.stage, event.number]

    def close(self) -> None:  # trials still open were interrupted
        for run_id in self._runs.values():
            self.client.set_terminated(run_id, "KILLED")
        self._runs.clear()


class WandbTracker:
    """One W&B run per trial, ``<group>/<stage>-<number>`` in ``project`` (job type: the
    stage): curves per epoch, the setting as its config, the key figures and ``objective`` in
    its summary. W&B's own settings apply (``WANDB_MODE=offline`` writes under the run folder
    for ``wandb sync`` later).

    Raises:
        ConfigError: wandb is not installed.
    """

    name = "train.wandb"

    def __init__(self, project: str, *, group: str, folder: Path) -> None:
        try:
            import wandb
        except ImportError:
            raise _missing("wandb", "wandb", "wandb") from None
        self._wandb, self.project, self.group = wandb, project, group
        self.folder = folder
        self._runs: dict[tuple[str, int], Any] = {}

    def _run(self, stage: str, number: int) -> Any:
        if (stage, number) not in self._runs:
            self.folder.mkdir(parents=True, exist_ok=True)
            try:
                self._runs[stage, number] = self._wandb.init(
                    project=self.project,
                    group=self.group,
                    job_type=stage,
                    name=f"{self.group}/{run_name(stage, number)}",
                    dir=str(self.folder),
                    reinit="create_new",  # a stack trains several trials at once
                    settings=self._wandb.Settings(silent=True, console="off"),
                )
            except Exception as exc:  # noqa: BLE001 - no login, no network, ...
                # Heard at a trial's first epoch: Tracking drops this tracker with one
                # warning, "train.wandb: stopped logging: ...".
                raise RuntimeError(
                    f"cannot start a run: {str(exc).splitlines()[0]} (run `wandb login`, or "
                    "set WANDB_MODE=offline)"
                ) from None
        return self._runs[stage, number]

    def epoch(self, stage: str, number: int, event: EpochEvent) -> None:
        figures = {key: float(getattr(event, key)) for key in CURVES}
        self._run(stage, number).log(figures, step=event.epoch)

    def end(self, event: TrialEvent) -> None:
        live = (event.stage, event.number) in self._runs
        run = self._run(event.stage, event.number)
        if not live:
            for epoch, figures in stored_epochs(event):
                run.log(figures, step=epoch)
        run.config.update(run_params(event))
        run.summary.update({**event.figures, "objective": event.value, "state": event.state})
        run.finish(exit_code=0 if event.state == "COMPLETE" else 1)
        del self._runs[event.stage, event.number]

    def close(self) -> None:
        for run in self._runs.values():
            run.finish(exit_code=1)
        self._runs.clear()
