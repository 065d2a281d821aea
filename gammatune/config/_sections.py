"""The sections of the experiment file: split, model, training and the stages."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PlainValidator,
    field_validator,
    model_validator,
)

from gammatune.config._sources import _PLUGIN_REF, BUILTIN_MODELS, Precision, _Strict


class SplitConfig(_Strict):
    """How the data is split into train, validation and test."""

    val: float = Field(0.2, gt=0, lt=1, description="Share of the data for validation.")
    test: float = Field(0.2, gt=0, lt=1, description="Share of the data for the test split.")
    stratify: bool = Field(True, description="Keep each class's share in every split.")
    seed: int | None = Field(
        None,
        ge=0,
        lt=2**32,
        description="Seed of the split, the subsampling and synthetic data; default `seed`.",
    )

    @model_validator(mode="after")
    def _leaves_training_data(self) -> SplitConfig:
        if self.val + self.test >= 0.9:
            raise ValueError(f"val + test must be < 0.9; got {self.val + self.test:g}")
        return self


class ModelConfig(_Strict):
    """The network every trial trains."""

    kind: str = Field(
        "mlp",
        description="linear | mlp | cnn | unet (segmentation: images with masks) | "
        "'package.module:function', called as function(n_features=, n_outputs=) and returning "
        "a torch module.",
    )
    hidden: list[Annotated[int, Field(gt=0)]] = Field(
        [128, 128], description="Widths of the MLP's hidden layers."
    )
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout after each hidden layer.")
    channels: list[Annotated[int, Field(gt=0)]] = Field(
        [16, 32],
        description="Channels of the CNN's convolution blocks; of the U-Net's levels (each "
        "level halves the image).",
    )

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in BUILTIN_MODELS and not _PLUGIN_REF.match(kind):
            raise ValueError(f"must be one of {', '.join(BUILTIN_MODELS)} or 'module:function'")
        return kind


AUTO_STEPS_PER_EPOCH, MIN_AUTO_BATCH, MAX_AUTO_BATCH = 16, 32, 512


class TrainConfig(_Strict):
    """How each trial trains: AdamW, early stopping on a smooth signal, device, precision."""

    epochs: int = Field(30, gt=0, description="Most epochs a trial trains.")
    batch_size: Annotated[int, Field(gt=0)] | Literal["auto"] = Field(
        "auto",
        description="Rows per optimizer step. auto: the training rows / 16, between 32 and 512 "
        "(at least 16 steps an epoch on a small table; 512 from 8,192 training rows).",
    )
    lr: float = Field(1e-3, gt=0, description="AdamW's learning rate.")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW's weight decay.")
    patience: int = Field(5, gt=0, description="Epochs without improvement before stopping.")
    min_epochs: int = Field(5, ge=0, description="Epochs always trained before stopping.")
    monitor: Literal["pr_auc", "val_loss"] = Field(
        "pr_auc", description="Smooth, threshold-free signal for early stopping."
    )
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$",
        description="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps.",
    )
    threads: Annotated[int, Field(gt=0)] | Literal["auto"] = Field(
        "auto",
        description="CPU threads of a training process; auto: the CPUs the machine's load "
        "leaves idle (1 on a busy machine), at most torch's default.",
    )
    precision: Precision = Field(
        "auto",
        description="auto: bf16 autocast on CUDA and on CPUs with native bf16, else fp32; "
        "fp16: CUDA, one model at a time.",
    )
    tensorboard: bool = Field(False, description="Write curves to runs/<name>/tensorboard.")
    report_epochs: Literal["refine", "all"] = Field(
        "refine", description="Stages whose epochs go to Optuna (the dashboard's curves)."
    )
    mlflow: bool | str = Field(
        False, description="Log trials to MLflow: true (runs/<name>/mlruns) or a tracking URI."
    )
    wandb: bool | str = Field(
        False, description="Log trials to Weights & Biases: true (project <name>) or a project."
    )
    parallel: Annotated[int, Field(gt=0)] | Literal["auto"] = Field(
        "auto",
        description="Trials trained at once as one stacked model: auto (16 on a CPU, sized to "
        "free memory on CUDA) or a number.",
    )

    def batch_rows(self, n_train: int) -> int:
        """Rows per optimizer step for ``n_train`` training rows: ``batch_size``, or for
        ``auto`` ``ceil(n_train / 16)`` clamped to [32, 512]."""
        if self.batch_size != "auto":
            return self.batch_size
        return min(MAX_AUTO_BATCH, max(MIN_AUTO_BATCH, -(-n_train // AUTO_STEPS_PER_EPOCH)))

    @field_validator("mlflow", "wandb", mode="before")
    @classmethod
    def _switch_or_name(cls, value: object) -> object:
        if not isinstance(value, bool | str) or value == "":
            raise ValueError("must be true, false, or a name (mlflow: a tracking URI)")
        return value


class BaselineConfig(_Strict):
    """The references: cross-entropy, alpha-weighted cross-entropy, logistic regression."""

    repeats: int = Field(1, gt=0, description="Seeds of plain cross-entropy, to show noise.")
    balanced: bool = Field(True, description="Also train CE at each alpha of the search grid.")
    linear: bool = Field(
        True, description="Also fit scikit-learn's logistic regression, plain and balanced."
    )


WeightScheme = Literal["inverse", "effective"]
_Gamma = Annotated[float, Field(ge=0, le=20)]


def _alpha_item(value: Any) -> float | str | None:
    """An alpha of the grid: a number in [0, 1], null (off), or a per-class scheme."""
    if value is None or value in ("inverse", "effective"):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    raise ValueError("must be a number in [0, 1], null (off), 'inverse' or 'effective'")


class ConfidenceSchedule(_Strict):
    """Adaptive gamma ``k * logit(p_t)``, clamped to [0, max_gamma]: one candidate per ``k``."""

    kind: Literal["confidence"] = Field(description="confidence: gamma = k * logit(p_t).")
    k: list[Annotated[float, Field(gt=0, le=100)]] = Field(
        [0.5, 1.0, 2.0], min_length=1, description="The k of each candidate."
    )
    max_gamma: _Gamma = Field(5.0, gt=0, description="The schedule's upper clamp.")


class Flsd53Schedule(_Strict):
    """FLSD-53 (Mukhoti et al. 2020): gamma 5 where p_t < 0.2, else 3."""

    kind: Literal["flsd53"] = Field(description="flsd53: gamma 5 where p_t < 0.2, else 3.")


Schedule = Annotated[Flsd53Schedule | ConfidenceSchedule, Field(discriminator="kind")]
SCHEDULE_KINDS = ("flsd53", "confidence")  # the tags, dropped from error locations


class SearchConfig(_Strict):
    """The coarse grid: every gamma with every alpha (and every declared extra dimension)."""

    gamma: list[_Gamma] = Field(
        [0.5, 1.0, 1.5, 2.0], min_length=1, description="The grid's gammas (0: cross-entropy)."
    )
    alpha: list[Annotated[float | WeightScheme | None, PlainValidator(_alpha_item)]] = Field(
        [0.25, 0.5, 0.75],
        min_length=1,
        description="Minority-class weights, null (off), or per-class schemes: inverse "
        "(frequency), effective (number of samples, with beta).",
    )
    beta: float = Field(0.999, ge=0, lt=1, description="The effective-number scheme's beta.")
    lr: list[Annotated[float, Field(gt=0, le=10)]] | None = Field(
        None, min_length=1, description="Learning rates to cross with the grid; default train.lr."
    )
    dice: list[Annotated[float, Field(ge=0, le=100)]] | None = Field(
        None,
        min_length=1,
        description="Segmentation: weights of a Dice term added to the focal loss, crossed with "
        "the grid (0: focal alone), e.g. [0, 0.5, 1]; with model.kind unet or your trainer "
        "(spec.params['dice']).",
    )
    gamma_rare: list[_Gamma] | None = Field(
        None,
        min_length=1,
        description="Gamma of the rare classes (binary: the positive one); gamma for the rest.",
    )
    rare_classes: list[str | int] | None = Field(
        None, min_length=1, description="Multiclass: the rare classes; default the rarest one."
    )
    gamma_schedule: list[Schedule] = Field(
        [], description="Adaptive-gamma candidates, each with every alpha and lr."
    )

    @field_validator("gamma_schedule", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        """One candidate or a list; ``flsd53`` is short for ``{kind: flsd53}``."""
        items = value if isinstance(value, list) else [value]
        return [{"kind": item} if isinstance(item, str) else item for item in items]


class RefineConfig(_Strict):
    """TPE in a stepped window around the best grid point."""

    n_trials: int = Field(
        30, gt=0, description="The stage's TPE trials, in total over all processes."
    )
    alpha: Literal["tune", "fixed"] = Field(
        "tune", description="fixed: keep the best grid point's alpha, tune gamma alone."
    )
    gamma_window: float = Field(
        0.5, gt=0, description="Half-width of the gamma window around the best grid point."
    )
    gamma_step: float = Field(0.1, gt=0, description="Step of gamma within the window.")
    alpha_window: float = Field(
        0.2, gt=0, description="Half-width of the alpha window around the best grid point."
    )
    alpha_step: float = Field(0.05, gt=0, description="Step of alpha within the window.")
    lr_factor: float = Field(
        3.0, gt=1, description="With search.lr: refine lr within best / f .. best * f (log)."
    )
    pruner: Literal["none", "median", "wilcoxon"] = Field(
        "none", description="Stop hopeless refine trials early, each member of a stack alone."
    )
    batch: int | None = Field(
        None, gt=0, description="Trials asked of TPE per round; default train.parallel."
    )


class ConfirmConfig(_Strict):
    """The decision: finalists and cross-entropy references retrained over fresh seeds."""

    top_k: int = Field(3, gt=0, description="Distinct focal settings retrained as finalists.")
    repeats: int = Field(5, ge=2, description="Fresh training seeds per setting (paired).")
    folds: int = Field(
        1, gt=0, description="Stratified re-splits of train+val, each a fresh validation set."
    )
    min_positives: int = Field(
        5, gt=0, description="Fewer validation positives than this: not measurable."
    )
    check_determinism: bool = Field(
        False,
        description="With a trainer: train one confirm trial twice, report the largest "
        "score difference (summary.json determinism_max_difference).",
    )
