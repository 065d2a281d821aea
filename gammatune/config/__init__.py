"""The experiment file: a pydantic schema, and ``load_config()``, the only way in from YAML."""

from __future__ import annotations

from gammatune.config._experiment import Config, dump_without_secrets, load_config
from gammatune.config._sections import (
    BaselineConfig,
    ConfidenceSchedule,
    ConfirmConfig,
    ModelConfig,
    RefineConfig,
    SearchConfig,
    SplitConfig,
    TrainConfig,
)
from gammatune.config._sources import (
    BUILTIN_MODELS,
    DataConfig,
    NpzData,
    Objective,
    Precision,
    PythonData,
    SklearnData,
    SyntheticData,
    TableData,
    Task,
)
from gammatune.config._trainer import UNET_TRAINER, TrainerConfig

__all__ = [
    "BUILTIN_MODELS",
    "BaselineConfig",
    "ConfidenceSchedule",
    "Config",
    "ConfirmConfig",
    "DataConfig",
    "ModelConfig",
    "NpzData",
    "Objective",
    "Precision",
    "PythonData",
    "RefineConfig",
    "SearchConfig",
    "SklearnData",
    "SplitConfig",
    "SyntheticData",
    "TableData",
    "Task",
    "TrainConfig",
    "TrainerConfig",
    "UNET_TRAINER",
    "dump_without_secrets",
    "load_config",
]
