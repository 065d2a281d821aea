"""The experiment file: a pydantic schema, and ``load_config()``, the only way in from YAML."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gammatune.errors import ConfigError

Objective = Literal["f1", "recall", "precision", "pr_auc", "roc_auc", "f1_macro"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
BUILTIN_MODELS = ("linear", "mlp", "cnn")
_PLUGIN_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_boolean_numbers(cls, data: Any) -> Any:
        """YAML reads yes/no/on/off as booleans, which pydantic would take as 1 and 0."""
        if not isinstance(data, dict):
            return data
        for name, value in data.items():
            field = cls.model_fields.get(name)
            items = value if isinstance(value, (list, tuple)) else [value]
            if field is None or "bool" in str(field.annotation):
                continue
            if any(isinstance(item, bool) for item in items):
                raise ValueError(
                    f"{name} must not be a boolean; got {value!r} (YAML reads yes/no/on/off/"
                    "true/false as booleans; write null for off)"
                )
        return data


class _Source(_Strict):
    """Options every data source shares."""

    positive_label: str | int | None = Field(
        None, description="Make the task one-vs-rest binary: this label is the positive class."
    )
    minority_fraction: float | None = Field(
        None, gt=0, lt=0.5, description="Subsample the minority class to this share of the data."
    )
    image_shape: tuple[int, int, int] | None = Field(
        None, description="Reshape flat features to (channels, height, width) for the cnn model."
    )


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Relative paths in a config file are relative to that file's folder."""
    base = (info.context or {}).get("base_dir")
    return value if value.is_absolute() or base is None else Path(base) / value


class SyntheticData(_Strict):
    """scikit-learn's ``make_classification``: a generated imbalanced table."""

    source: Literal["synthetic"]
    n_samples: int = Field(20000, ge=100)
    n_features: int = Field(20, ge=2)
    n_informative: int | None = Field(None, ge=1)
    n_classes: int = Field(2, ge=2)
    minority_fraction: float = Field(0.03, gt=0, lt=0.5)
    flip_y: float = Field(0.01, ge=0, lt=0.5)
    positive_label: None = None
    image_shape: None = None

    @model_validator(mode="after")
    def _informative_fits(self) -> SyntheticData:
        if self.n_informative is not None and self.n_informative > self.n_features:
            raise ValueError(
                f"n_informative ({self.n_informative}) must be <= n_features ({self.n_features})"
            )
        return self


class TableData(_Source):
    """A CSV or Parquet file: a label column and feature columns."""

    source: Literal["csv", "parquet"]
    path: Path
    target: str = Field(min_length=1)
    features: list[str] | None = None
    text: str | None = Field(
        None, min_length=1, description="A text column, turned into TF-IDF features."
    )
    text_max_features: int = Field(
        2000, gt=0, description="Vocabulary size of the text column's TF-IDF (fitted on train)."
    )

    _resolve = field_validator("path")(_resolve_path)

    @model_validator(mode="after")
    def _text_is_not_a_feature(self) -> TableData:
        if self.text is not None and self.text == self.target:
            raise ValueError(f"text ({self.text!r}) must not be the target column")
        if self.text is not None and self.text in (self.features or []):
            raise ValueError(f"text ({self.text!r}) must not also be listed in features")
        return self


class NpzData(_Source):
    """A NumPy ``.npz`` with features ``(N, F)`` or images ``(N, C, H, W)`` and labels."""

    source: Literal["npz"]
    path: Path
    x_key: str = "X"
    y_key: str = "y"

    _resolve = field_validator("path")(_resolve_path)


class SklearnData(_Source):
    """A dataset bundled with scikit-learn (no download)."""

    source: Literal["sklearn"]
    name: Literal["breast_cancer", "digits", "wine", "iris"]


class PythonData(_Source):
    """Your own loader: ``'package.module:function'`` returning ``(features, labels)``."""

    source: Literal["python"]
    ref: str = Field(pattern=_PLUGIN_REF.pattern, description="'package.module:function'")


DataConfig = Annotated[
    SyntheticData | TableData | NpzData | SklearnData | PythonData, Field(discriminator="source")
]


class SplitConfig(_Strict):
    """How the data is split into train, validation and test."""

    val: float = Field(0.2, gt=0, lt=1, description="Share of the data for validation.")
    test: float = Field(0.2, gt=0, lt=1, description="Share of the data for the test split.")
    stratify: bool = Field(True, description="Keep each class's share in every split.")
    seed: int | None = Field(
        None, ge=0, lt=2**32, description="Seed of the split and subsampling; default `seed`."
    )

    @model_validator(mode="after")
    def _leaves_training_data(self) -> SplitConfig:
        if self.val + self.test >= 0.9:
            raise ValueError(f"val + test must be < 0.9; got {self.val + self.test:g}")
        return self


class ModelConfig(_Strict):
    """The network every trial trains."""

    kind: str = Field("mlp", description="linear | mlp | cnn | 'package.module:function'")
    hidden: list[Annotated[int, Field(gt=0)]] = [128, 128]
    dropout: float = Field(0.1, ge=0, lt=1)
    channels: list[Annotated[int, Field(gt=0)]] = [16, 32]

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in BUILTIN_MODELS and not _PLUGIN_REF.match(kind):
            raise ValueError(f"must be one of {', '.join(BUILTIN_MODELS)} or 'module:function'")
        return kind


class TrainConfig(_Strict):
    """How each trial trains: AdamW, early stopping on a smooth signal, device, precision."""

    epochs: int = Field(30, gt=0)
    batch_size: int = Field(512, gt=0)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(5, gt=0, description="Epochs without improvement before stopping.")
    min_epochs: int = Field(5, ge=0, description="Epochs always trained before stopping.")
    monitor: Literal["pr_auc", "val_loss"] = Field(
        "pr_auc", description="Smooth, threshold-free signal for early stopping."
    )
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    precision: Precision = "auto"
    tensorboard: bool = Field(False, description="Write curves to runs/<name>/tensorboard.")
    parallel: Annotated[int, Field(gt=0)] | Literal["auto"] = Field(
        "auto", description="Trials trained at once as one stacked model (linear, mlp)."
    )


class BaselineConfig(_Strict):
    """The references: cross-entropy, alpha-weighted cross-entropy, logistic regression."""

    repeats: int = Field(1, gt=0, description="Seeds of plain cross-entropy, to show noise.")
    balanced: bool = Field(True, description="Also train CE at each alpha of the search grid.")
    linear: bool = Field(
        True, description="Also fit scikit-learn's logistic regression, plain and balanced."
    )


class SearchConfig(_Strict):
    """The coarse grid: every gamma with every alpha."""

    gamma: list[Annotated[float, Field(ge=0, le=20)]] = Field([0.5, 1.0, 1.5, 2.0], min_length=1)
    alpha: list[Annotated[float, Field(ge=0, le=1)] | None] = Field(
        [0.25, 0.5, 0.75], min_length=1
    )


class RefineConfig(_Strict):
    """TPE in a stepped window around the best grid point."""

    n_trials: int = Field(30, gt=0)
    gamma_window: float = Field(0.5, gt=0)
    gamma_step: float = Field(0.1, gt=0)
    alpha_window: float = Field(0.2, gt=0)
    alpha_step: float = Field(0.05, gt=0)
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


class Config(_Strict):
    """One experiment: data, model, training, the stages, and where the study lives."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    seed: int = Field(0, ge=0, lt=2**32, description="Seed of training (and of the split).")
    data: DataConfig
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    objective: Objective = "f1"
    threshold: float | Literal["tuned"] = Field(
        0.5, description="Decision threshold for binary metrics, or 'tuned' on validation."
    )
    baseline: BaselineConfig = BaselineConfig()
    search: SearchConfig = SearchConfig()
    refine: RefineConfig = RefineConfig()
    confirm: ConfirmConfig = ConfirmConfig()
    storage: str | None = Field(None, description="Optuna storage URL; default SQLite in runs/.")
    output_dir: Path = Field(
        Path("runs"), description="Where run folders go; relative to the experiment file."
    )

    _resolve = field_validator("output_dir")(_resolve_path)

    @field_validator("threshold")
    @classmethod
    def _threshold_in_unit_interval(cls, value: float | str) -> float | str:
        if isinstance(value, float) and not 0 < value < 1:
            raise ValueError("must be in (0, 1) or 'tuned'")
        return value

    @property
    def run_dir(self) -> Path:
        """The folder of this experiment's files: ``output_dir/name``."""
        return self.output_dir / self.name

    @property
    def split_seed(self) -> int:
        """The seed of the split (and of subsampling): ``split.seed``, else ``seed``."""
        return self.seed if self.split.seed is None else self.split.seed

    @property
    def storage_url(self) -> str:
        """The Optuna storage: the configured URL, else SQLite in the run folder."""
        return self.storage or f"sqlite:///{(self.run_dir / 'study.db').as_posix()}"


def load_config(path: str | Path, **overrides: Any) -> Config:
    """Read and validate an experiment file.

    Args:
        path: The YAML file.
        **overrides: Top-level keys to replace (e.g. ``storage`` from the command line);
            validated like the file's own.

    Returns:
        The validated, frozen ``Config``.

    Raises:
        ConfigError: The file is missing, not YAML, not a mapping, or invalid; the message has
            one line per problem, naming the field and the value received.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".rstrip(".") + ".") from None
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else f"a {type(raw).__name__}, not a mapping of keys"
        raise ConfigError(f"{path}: the experiment file is {kind}; see configs/demo.yaml.")
    raw.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return Config.model_validate(raw, context={"base_dir": path.parent})
    except ValidationError as exc:
        raise ConfigError(_describe(path, exc)) from None


def _describe(path: Path, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        # Drop the discriminator's tag ('data.synthetic.n_samples' -> 'data.n_samples').
        where = ""
        for index, part in enumerate(error["loc"]):
            if isinstance(part, int):
                where += f"[{part}]"
            elif not (index == 1 and error["loc"][0] == "data"):  # the union's tag
                where += f".{part}" if where else str(part)
        where = where or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and level)"
        whole = error["type"] == "missing" or isinstance(error["input"], dict)  # a section's rule
        got = "" if whole else f" (got {error['input']!r})"
        lines.append(f"{path}: {where}: {message}{got}")
    return "\n".join(lines)
