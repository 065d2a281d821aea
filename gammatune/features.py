"""Rows of a table -> the numbers a model reads: the fitted preprocessing, kept as plain data.

``data`` fits it on the training split; ``export`` saves it as JSON beside a model's weights;
``predict`` applies it to new rows. Nothing here is a pickle: each column kind's step (see
:mod:`gammatune.columns`; a text column's vocabulary and inverse document frequencies here)
is lists, and the transform is written out, so training and scoring run the same code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from gammatune.columns import STEP_KINDS, NumericStep, Step
from gammatune.encoders import TextEncoder
from gammatune.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

# scikit-learn's default tokens: words of 2+ letters or digits, lower-cased; unigrams and bigrams.
_NGRAMS = (1, 2)


@dataclass(frozen=True, slots=True)
class TextVocabulary:
    """A text column's TF-IDF: ``terms[i]`` is feature ``i``, weighted by ``idf[i]``."""

    kind: ClassVar[str] = "text"
    column: str
    terms: tuple[str, ...]
    idf: tuple[float, ...]

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.column,)

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(f"{self.column}:{term}" for term in self.terms)

    def transform(self, frame: pd.DataFrame, *, where: str) -> np.ndarray:
        """Return the TF-IDF features ``(N, len(terms))``; a missing text is empty."""
        return text_features(self, frame[self.column].fillna("").astype(str).tolist())

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "column": self.column,
            "terms": list(self.terms),
            "idf": list(self.idf),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TextVocabulary:
        return cls(data["column"], tuple(data["terms"]), tuple(float(v) for v in data["idf"]))


_KINDS: dict[str, Any] = {
    **STEP_KINDS,
    TextVocabulary.kind: TextVocabulary,
    TextEncoder.kind: TextEncoder,
}


@dataclass(frozen=True, slots=True)
class Preprocessing:
    """What turns a table's rows into standardized model inputs ``(N, F)``, fitted on train.

    ``steps`` encode the input columns, one kind each (see :mod:`gammatune.columns`): numeric
    columns first, then categorical ones, then a text column (TF-IDF, or a pretrained
    ``encoder``'s embeddings); their outputs, in order, are the ``F`` features, and ``mean``
    and ``std`` (``F`` each) standardize them. ``target`` (the label column), ``id`` and the
    ``ignored`` (excluded) columns may be present in rows to
    score: they are not inputs.
    """

    steps: tuple[Step, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    target: str | None = None
    id: str | None = None
    ignored: tuple[str, ...] = ()

    @classmethod
    def numeric(
        cls, columns: Iterable[str], mean: Iterable[float], std: Iterable[float]
    ) -> Preprocessing:
        """Numeric columns without missing values (one is an error when scoring),
        standardized by ``mean`` and ``std``."""
        columns = tuple(columns)
        return cls((NumericStep(columns, None),), tuple(mean), tuple(std))

    @property
    def inputs(self) -> tuple[str, ...]:
        """The columns a row must have, in the steps' order."""
        return tuple(column for step in self.steps for column in step.inputs)

    @property
    def columns(self) -> tuple[str, ...]:
        """The input columns other than a text column."""
        return tuple(c for step in self.steps if step.kind != "text" for c in step.inputs)

    @property
    def features(self) -> tuple[str, ...]:
        """The ``F`` model inputs' names: ``amount``, ``amount=missing``, ``city=Paris``, ..."""
        return tuple(name for step in self.steps for name in step.outputs)

    @property
    def text(self) -> TextVocabulary | None:
        """The text column's vocabulary, if any."""
        found = [step for step in self.steps if isinstance(step, TextVocabulary)]
        return found[0] if found else None

    @property
    def encoder(self) -> TextEncoder | None:
        """The text column's pretrained encoder, if any (``data.text_encoder``)."""
        found = [step for step in self.steps if isinstance(step, TextEncoder)]
        return found[0] if found else None

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict; :meth:`from_json` reads it back."""
        return {
            "columns": list(self.inputs),
            "steps": [step.to_json() for step in self.steps],
            "mean": list(self.mean),
            "std": list(self.std),
            "target": self.target,
            "id": self.id,
            "ignored": list(self.ignored),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Preprocessing:
        """Read :meth:`to_json`'s dict, or the first format's (numeric columns, a text)."""
        if "steps" in data:
            steps = tuple(_KINDS[step["kind"]].from_json(step) for step in data["steps"])
        else:
            columns = tuple(data["columns"])
            text = data.get("text")
            steps = (NumericStep(columns, None),) + (
                () if text is None else (TextVocabulary.from_json(text),)
            )
        return cls(
            steps=steps,
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            target=data.get("target"),
            id=data.get("id"),
            ignored=tuple(data.get("ignored", ())),
        )


def fit_text(column: str, texts: Iterable[str], *, max_features: int) -> TextVocabulary:
    """Fit a TF-IDF vocabulary of at most ``max_features`` terms (the most frequent) on texts.

    Unigrams and bigrams of scikit-learn's default tokens, lower-cased; smooth idf.

    Raises:
        DataError: The texts hold no word at all.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=_NGRAMS, max_features=max_features)
    try:
        vectorizer.fit(list(texts))
    except ValueError:  # "empty vocabulary"
        raise DataError(
            f"data.text: column {column!r} holds no words in the training split."
        ) from None
    terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
    return TextVocabulary(column, tuple(terms), tuple(float(v) for v in vectorizer.idf_))


def text_features(vocabulary: TextVocabulary, texts: Iterable[str]) -> np.ndarray:
    """Return the TF-IDF features ``(N, len(terms))`` float64, each row of unit length (or 0)."""
    from sklearn.feature_extraction.text import CountVectorizer

    index = {term: i for i, term in enumerate(vocabulary.terms)}
    counts = CountVectorizer(ngram_range=_NGRAMS, vocabulary=index).transform(list(texts))
    weighted = counts.toarray().astype(np.float64) * np.asarray(vocabulary.idf)
    norms = np.linalg.norm(weighted, axis=1, keepdims=True)
    return weighted / np.where(norms > 0, norms, 1.0)


def frame_features(frame: pd.DataFrame, preprocessing: Preprocessing, *, where: str) -> np.ndarray:
    """Return the raw (not yet standardized) features ``(N, F)`` float64 of a table's rows.

    Columns are taken by name, in any order; missing values are filled as in training, and a
    categorical value never seen in training goes to its column's ``other`` feature.

    Args:
        frame: The rows, with the columns ``preprocessing.inputs`` and perhaps the target, id
            and excluded columns.
        preprocessing: As fitted on the training split.
        where: The file's name, for error messages.

    Raises:
        DataError: A column is missing or extra, not numeric where it must be, or infinite.
    """
    expected = list(preprocessing.inputs)
    known = {*expected, preprocessing.target, preprocessing.id, *preprocessing.ignored}
    missing = [c for c in expected if c not in frame.columns]
    extra = [str(c) for c in frame.columns if c not in known]
    if missing or extra:
        parts = [f"missing {_few(missing, quote=True)}" if missing else ""]
        parts.append(f"extra {_few(extra, quote=True)}" if extra else "")
        raise DataError(
            f"{where}: the columns must be the model's {len(expected)} inputs "
            f"({_few(expected)}); {'; '.join(p for p in parts if p)}."
        )
    encoded = [step.transform(frame, where=where) for step in preprocessing.steps]
    return np.hstack(encoded) if encoded else np.empty((len(frame), 0))


def _few(names: list[str], *, quote: bool = False, most: int = 8) -> str:
    """``'a', 'b', ... and 53 more``: a list short enough for one line."""
    shown = [repr(n) if quote else str(n) for n in names[:most]]
    rest = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(shown) + rest
