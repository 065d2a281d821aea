"""The ``trainer:`` section: the user's own training code, a Python function or a command."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, PrivateAttr, ValidationInfo, model_validator

from gammatune.config._sources import _PLUGIN_REF, _Strict

# model.kind: unet trains through the trainer contract: gammatune's own trial function.
UNET_TRAINER = "gammatune.segment:run_trial"


class TrainerConfig(_Strict):
    """Who trains each trial when it is not gammatune's own engine: exactly one of
    ``function`` (``'module:function'``, a file in the experiment's folder or an installed
    module) and ``command`` (an argument list with placeholders such as ``{gamma}``)."""

    function: str | None = Field(
        None, pattern=_PLUGIN_REF.pattern, description="'module:function' called once a trial."
    )
    command: list[str] | None = Field(
        None, min_length=1, description="A command run once a trial; placeholders in braces."
    )
    version: str | None = Field(
        None, description="Your code's version, folded into the study fingerprint."
    )
    timeout_s: float | None = Field(
        None, gt=0, description="Seconds a trial may run before it is stopped and failed."
    )
    resources: dict[str, float] = Field(
        {}, description="What one trial needs from Ray, e.g. {gpus: 1, cpus: 4}."
    )
    env: dict[str, str] = Field({}, description="Environment variables set for each trial.")

    _base_dir: Path = PrivateAttr(default=Path("."))

    @model_validator(mode="after")
    def _exactly_one(self, info: ValidationInfo) -> TrainerConfig:
        if (self.function is None) == (self.command is None):
            raise ValueError("give exactly one of function and command")
        unknown = sorted(set(self.resources) - {"gpus", "cpus", "memory"})
        if unknown:
            raise ValueError(f"resources: {unknown[0]!r} is not one of gpus, cpus, memory")
        self._base_dir = Path((info.context or {}).get("base_dir", ".")).resolve()
        return self

    @property
    def base_dir(self) -> Path:
        """The experiment file's folder: where ``function``'s module and ``command`` run."""
        return self._base_dir

    @property
    def is_builtin(self) -> bool:
        """Whether this is gammatune's own U-Net trial (``model.kind: unet``), not the user's."""
        return self.function == UNET_TRAINER

    @property
    def kind(self) -> str:
        """``function`` or ``command``."""
        return "function" if self.function is not None else "command"
