"""Rows of a table -> the numbers a model reads: the fitted preprocessing, kept as plain data.

``data`` fits it on the training split; ``export`` saves it as JSON beside a model's weights;
``predict`` applies it to new rows. Nothing here is a pickle: a text column's vocabulary and
inverse document frequencies are lists, and the transform is written out, so training and
scoring run the same code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gammatune.encoders import TextEncoder, embed_texts
from gammatune.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

# scikit-learn's default tokens: words of 2+ letters or digits, lower-cased; unigrams and bigrams.
_NGRAMS = (1, 2)


@dataclass(frozen=True, slots=True)
class TextVocabulary:
    """A text column's TF-IDF: ``terms[i]`` is feature ``i``, weighted by ``idf[i]``."""

    column: str
    terms: tuple[str, ...]
    idf: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Preprocessing:
    """What turns a table's rows into standardized model inputs ``(N, F)``, fitted on train.

    ``columns`` are the numeric input columns, in order; a ``text`` column's TF-IDF features
    follow them, or its ``encoder``'s embeddings. ``mean`` and ``std`` (``F`` each)
    standardize all of them. ``target``, the label column, may be present in rows to score,
    and is then ignored.
    """

    columns: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    text: TextVocabulary | None = None
    target: str | None = None
    encoder: TextEncoder | None = None

    @property
    def inputs(self) -> tuple[str, ...]:
        """The columns a row must have: the numeric ones, then the text column."""
        text = self.text or self.encoder
        return self.columns + ((text.column,) if text else ())

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict; :meth:`from_json` reads it back."""
        text = self.text
        return {
            "columns": list(self.columns),
            "mean": list(self.mean),
            "std": list(self.std),
            "target": self.target,
            "text": None
            if text is None
            else {"column": text.column, "terms": list(text.terms), "idf": list(text.idf)},
            "encoder": None if self.encoder is None else self.encoder.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Preprocessing:
        text, encoder = data.get("text"), data.get("encoder")
        return cls(
            columns=tuple(data["columns"]),
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            target=data.get("target"),
            text=None
            if text is None
            else TextVocabulary(text["column"], tuple(text["terms"]), tuple(text["idf"])),
            encoder=None if encoder is None else TextEncoder.from_json(encoder),
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

    Args:
        frame: The rows, with exactly the columns ``preprocessing.inputs`` (any order), and
            perhaps the target column.
        preprocessing: As fitted on the training split.
        where: The file's name, for error messages.

    Raises:
        DataError: A column is missing or extra, not numeric, or has missing values.
    """
    expected = list(preprocessing.inputs)
    missing = [c for c in expected if c not in frame.columns]
    extra = [str(c) for c in frame.columns if c not in expected and c != preprocessing.target]
    if missing or extra:
        parts = [f"missing {_few(missing, quote=True)}" if missing else ""]
        parts.append(f"extra {_few(extra, quote=True)}" if extra else "")
        raise DataError(
            f"{where}: the columns must be the model's {len(expected)} inputs "
            f"({_few(expected)}); {'; '.join(p for p in parts if p)}."
        )
    numeric = frame[list(preprocessing.columns)]
    for column in numeric.columns:
        values = numeric[column]
        if values.dtype.kind not in "biuf":
            raise DataError(f"{where}: column {column!r} must be numeric; got {values.dtype}.")
        if not np.isfinite(values.to_numpy(dtype=np.float64)).all():
            raise DataError(f"{where}: column {column!r} has missing or infinite values.")
    features = numeric.to_numpy(dtype=np.float64)
    if preprocessing.text is not None:
        texts = frame[preprocessing.text.column].fillna("").astype(str).tolist()
        features = np.hstack([features, text_features(preprocessing.text, texts)])
    if preprocessing.encoder is not None:
        texts = frame[preprocessing.encoder.column].astype(object).fillna("").astype(str).tolist()
        features = np.hstack([features, embed_texts(preprocessing.encoder, texts, where=where)])
    return features


def _few(names: list[str], *, quote: bool = False, most: int = 8) -> str:
    """``'a', 'b', ... and 53 more``: a list short enough for one line."""
    shown = [repr(n) if quote else str(n) for n in names[:most]]
    rest = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(shown) + rest
