"""The experiment: the whole file's schema, and ``load_config()``, the only way in from YAML."""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)

from gammatune.config._sections import (
    SCHEDULE_KINDS,
    BaselineConfig,
    ConfirmConfig,
    ModelConfig,
    RefineConfig,
    SearchConfig,
    SplitConfig,
    TrainConfig,
)
from gammatune.config._sources import (
    DataConfig,
    Objective,
    Task,
    _objectives,
    _resolve_path,
    _Strict,
)
from gammatune.config._trainer import UNET_TRAINER, TrainerConfig
from gammatune.config._yaml import read_yaml
from gammatune.errors import ConfigError, redact
from gammatune.metrics import TASK_OBJECTIVES


class Config(_Strict):
    """One experiment: data, model, training, the stages, and where the study lives."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=100,
        description="Names the studies (<name>.baseline, ...) and the run folder "
        "<output_dir>/<name>.",
    )
    seed: int = Field(0, ge=0, lt=2**32, description="Seed of training (and of the split).")
    data: DataConfig
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    trainer: TrainerConfig | None = Field(
        None, description="Your own training code (a function or a command) instead of `model`."
    )
    task: Task | None = Field(
        None, description="The domain, a hint for `gammatune suggest`'s starting ranges."
    )
    objective: Annotated[Objective | list[Objective], PlainValidator(_objectives)] = Field(
        "f1",
        description="Validation metric to maximize (f1: the minority class's F1 for binary, "
        "macro F1 for multiclass); a list, e.g. [precision, recall]: a multi-objective study.",
    )
    constraints: dict[Objective, Annotated[float, Field(ge=0, le=1)]] = Field(
        {}, description="Validation minimums, e.g. {recall: 0.8}: the verdict's operating point."
    )
    threshold: float | Literal["tuned"] = Field(
        0.5,
        description="Decision threshold for binary metrics, or 'tuned': the F1-best threshold "
        "on validation, also applied to test.",
    )
    baseline: BaselineConfig = BaselineConfig()
    search: SearchConfig = SearchConfig()
    refine: RefineConfig = RefineConfig()
    confirm: ConfirmConfig = ConfirmConfig()
    storage: str | None = Field(
        None,
        description="Optuna storage URL (sqlite:///..., postgresql://...) or a journal file "
        "(journal://study.log); default SQLite <output_dir>/<name>/study.db.",
    )
    output_dir: Path = Field(
        Path("runs"),
        description="Where run folders go: runs in the current folder by default; a relative "
        "path written in the file is relative to the experiment file.",
    )

    _resolve = field_validator("output_dir")(_resolve_path)

    @field_validator("threshold")
    @classmethod
    def _threshold_in_unit_interval(cls, value: float | str) -> float | str:
        if isinstance(value, float) and not 0 < value < 1:
            raise ValueError("must be in (0, 1) or 'tuned'")
        return value

    @model_validator(mode="before")
    @classmethod
    def _unet_trains_as_a_trainer(cls, data: Any) -> Any:
        """``model.kind: unet`` is gammatune's own trial function behind the trainer contract
        (one path for seeds, splits, twins, workers and pruning): its ``trainer`` is set here."""
        if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
            return data
        if data["model"].get("kind") != "unet":
            return data
        trainer = data.get("trainer")
        if trainer is None:
            return {**data, "trainer": {"function": UNET_TRAINER}}
        if not (isinstance(trainer, dict) and trainer.get("function") == UNET_TRAINER):
            raise ValueError(
                "model.kind: unet is gammatune's own trainer; with your trainer, remove the "
                "model section (your code builds the model)"
            )
        return data

    @model_validator(mode="after")
    def _trainer_fits(self) -> Config:
        if self.search.dice is not None and self.trainer is None:
            raise ValueError(
                "search.dice: a Dice term is for segmentation: model.kind: unet, or your "
                "trainer (which reads spec.params['dice'])"
            )
        if self.trainer is None:
            for key in ("groups", "classes", "annotations"):
                if getattr(self.data, key, None) is not None:
                    raise ValueError(
                        f"data.{key} needs a trainer or model.kind: unet (see "
                        "docs/tutorials/own-trainer.md)"
                    )
            return self
        if self.trainer.is_builtin:
            if self.model.kind != "unet":
                raise ValueError(
                    f"trainer.function: {UNET_TRAINER} is model.kind: unet's trial; write "
                    "model: {kind: unet} instead"
                )
            if self.data.source not in ("npz", "csv", "parquet"):
                raise ValueError(
                    "model.kind: unet needs images with masks: data.source npz (X, y masks) or "
                    f"a csv/parquet table of image and mask files; got {self.data.source!r}"
                )
            pixels = TASK_OBJECTIVES["segmentation"]
            if unknown := [m for m in (*self.objectives, *self.constraints) if m not in pixels]:
                raise ValueError(
                    f"objective {unknown[0]!r}: a U-Net is judged on pixel counts; use one of "
                    f"{', '.join(pixels)}"
                )
            return self
        if self.data.source not in ("csv", "parquet"):
            raise ValueError(
                f"data.source must be csv or parquet with a trainer (its rows are the units); "
                f"got {self.data.source!r}"
            )
        if unused := sorted(self.model.model_fields_set):
            names = ", ".join(f"model.{name}" for name in unused)
            raise ValueError(
                f"{names}: no effect with a trainer (your {self.trainer.kind} builds the model); "
                "remove the model section"
            )
        return self

    @property
    def objectives(self) -> list[str]:
        """The metrics the studies maximize: Optuna's values, one per objective."""
        return list(self.objective) if isinstance(self.objective, list) else [self.objective]

    @property
    def metric(self) -> str:
        """The one metric that ranks trials and that the verdict decides on: the objective; of
        a list, the first where ``constraints`` set the operating point, else ``f1`` (the
        balance of precision and recall)."""
        if isinstance(self.objective, str):
            return self.objective
        return self.objective[0] if self.constraints else "f1"

    @property
    def run_dir(self) -> Path:
        """The folder of this experiment's files: ``output_dir/name``."""
        return self.output_dir / self.name

    @property
    def confirm_repeats(self) -> range:
        """The repeat numbers of confirm's trials: fresh seeds, after the baseline's."""
        first = self.baseline.repeats
        return range(first, first + self.confirm.repeats)

    @property
    def split_seed(self) -> int:
        """The seed of the split (and of subsampling): ``split.seed``, else ``seed``."""
        return self.seed if self.split.seed is None else self.split.seed

    @property
    def storage_url(self) -> str:
        """The Optuna storage: the configured URL, else SQLite in the run folder."""
        return self.storage or f"sqlite:///{(self.run_dir / 'study.db').as_posix()}"


def dump_without_secrets(config: Config) -> dict[str, Any]:
    """The experiment as plain (JSON-ready) data, every default filled in, with the passwords
    in its URLs hidden (``storage``, and ``train.mlflow`` as a tracking URI): what ``check``
    prints and ``config.resolved.yaml`` keeps.

    Example:
        ``storage: postgresql://me:***@db/x``, ``train.mlflow: https://me:***@mlflow.example``
    """
    dumped = config.model_dump(mode="json")
    if dumped.get("storage"):
        dumped["storage"] = redact(dumped["storage"])
    if isinstance(dumped["train"].get("mlflow"), str):
        dumped["train"]["mlflow"] = redact(dumped["train"]["mlflow"])
    return dumped


def load_config(path: str | Path, **overrides: Any) -> Config:
    """Read and validate an experiment file.

    Args:
        path: The YAML file.
        **overrides: Keys to replace (e.g. ``storage`` from the command line; a dotted
            ``"train.threads"`` replaces one field of a section); validated like the file's own.

    Returns:
        The validated, frozen ``Config``.

    Raises:
        ConfigError: The file is missing, not YAML (aliases expanding past a bound, a key
            given twice: see :func:`read_yaml`), not a mapping, or invalid; the message has
            one line per problem, naming the field and the value received (shortened).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}.") from None
    raw = read_yaml(path, text)
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else f"a {type(raw).__name__}, not a mapping of keys"
        raise ConfigError(f"{path}: the experiment file is {kind}; see configs/demo.yaml.")
    for key, value in overrides.items():
        if value is None:
            continue
        section, _, field = key.partition(".")
        if field and isinstance(raw.get(section, {}), dict):
            raw[section] = {**raw.get(section, {}), field: value}
        else:
            raw[key] = value
    try:
        return Config.model_validate(raw, context={"base_dir": path.parent})
    except ValidationError as exc:
        raise ConfigError(_describe(path, exc)) from None


# A value in an error, shortened: a list of a million items is not a message; nor are a
# million errors (a list of wrong items) a screenful.
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxstring, _SHORT.maxother = 2, 4, 60, 60
_MAX_CHARS, _MAX_LINES = 100, 20


def _shown(value: Any) -> str:
    text = _SHORT.repr(value)
    return text if len(text) <= _MAX_CHARS else f"{text[: _MAX_CHARS - 3]}..."


def _describe(path: Path, exc: ValidationError) -> str:
    lines = []
    errors = exc.errors()
    for error in errors[:_MAX_LINES]:
        # Drop the discriminator's tag ('data.synthetic.n_samples' -> 'data.n_samples').
        where = ""
        for index, part in enumerate(error["loc"]):
            if isinstance(part, int):
                where += f"[{part}]"
            elif (index == 1 and error["loc"][0] == "data") or part == "[key]":  # tags
                continue
            elif not (isinstance(error["loc"][index - 1], int) and part in SCHEDULE_KINDS):
                where += f".{part}" if where else str(part)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and level)"
        whole = error["type"] == "missing" or isinstance(error["input"], dict)  # a section's rule
        got = "" if whole else f" (got {_shown(error['input'])})"
        lines.append(f"{path}: {where}: {message}{got}" if where else f"{path}: {message}{got}")
    if len(errors) > _MAX_LINES:
        lines.append(f"{path}: and {len(errors) - _MAX_LINES} more problems like these.")
    return "\n".join(lines)
