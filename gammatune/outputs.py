"""Where gammatune's outputs go: written whole or not at all, and never over an input.

A file is written into a temporary file beside it and renamed into place (``os.replace``), so
that a kill -9, Ctrl-C or a full disk leaves the earlier file as it was, never a truncated one
that looks complete. A folder (an exported model) is built beside its place and swapped in with
one rename. An output path that is one of the experiment's inputs (the experiment file, the
study storage, the data, an exported model) is refused before anything is written.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from gammatune.config import Config, NpzData, TableData
from gammatune.errors import ConfigError

_SQLITE_HEADER = b"SQLite format 3\x00"
_JOURNAL = "journal://"


@contextmanager
def whole_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; rename it to ``path`` when the block
    ends without an exception, else remove it.

    Raises:
        OSError: With ``filename`` set to ``path``.
    """
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield partial
        with open(partial, "rb+") as handle:  # on disk before the rename makes it visible
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    except BaseException:  # Ctrl-C, an error while writing: no partial file left behind
        partial.unlink(missing_ok=True)
        raise


def write_whole(path: Path, content: str | bytes) -> None:
    """Write ``path`` whole or not at all (see :func:`whole_file`).

    Raises:
        OSError: With ``filename`` set to ``path``.
    """
    with whole_file(path) as partial:
        if isinstance(content, bytes):
            partial.write_bytes(content)
        else:
            partial.write_text(content, encoding="utf-8")


@contextmanager
def whole_folder(path: Path, *, holds: frozenset[str]) -> Iterator[Path]:
    """Yield a new folder beside ``path`` to fill; swap it in for ``path`` when the block ends
    without an exception, else remove it. An existing ``path`` may hold only the files named
    in ``holds`` (it is replaced whole: nothing else in it may be lost).

    The swap is one ``renameat2(RENAME_EXCHANGE)`` on Linux: a reader sees the whole old
    folder or the whole new one. Elsewhere (or on a file system without it) the old folder is
    renamed aside first, and a kill -9 between the two renames leaves no folder at ``path``
    but ``.<name>.old-<pid>`` beside it, whole.
    """
    if path.exists() and (not path.is_dir() or {p.name for p in path.iterdir()} - holds):
        raise ConfigError(
            f"{path}: is not a folder of its own ({', '.join(sorted(holds))}), and replacing it "
            "would lose what else it holds; give a new or empty folder."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    fresh = path.with_name(f".{path.name}.new-{os.getpid()}")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir()
    try:
        yield fresh
        for file in fresh.iterdir():
            with open(file, "rb+") as handle:
                os.fsync(handle.fileno())
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    if not path.exists():
        os.rename(fresh, path)
        return
    if _exchange(fresh, path):
        shutil.rmtree(fresh, ignore_errors=True)  # it holds the old folder now
        return
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    os.rename(path, old)
    os.rename(fresh, path)
    shutil.rmtree(old, ignore_errors=True)


def _remove_stale(path: Path) -> None:
    """Remove what an export killed earlier left beside ``path`` (its process is gone)."""
    for kind in ("new", "old"):
        for left in path.parent.glob(f".{path.name}.{kind}-*"):
            pid = left.name.rpartition("-")[2]
            if pid.isdigit() and not _alive(int(pid)):
                if kind == "old" and not path.exists():
                    os.rename(left, path)  # killed between the two renames: put it back
                else:
                    shutil.rmtree(left, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


_RENAME_EXCHANGE, _AT_FDCWD = 2, -100


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); False where it is not available."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    done = renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def experiment_inputs(config: Config, config_path: str | Path | None = None) -> dict[Path, str]:
    """What an output must never replace: the experiment file, the study storage (SQLite or
    journal file and the files beside it), the data file, and the run folder's own records
    (the exported model, the kept weights, the score files, ``config.resolved.yaml``). Maps
    each path to what it is, for the message."""
    inputs: dict[Path, str] = {}
    if config_path is not None:
        inputs[Path(config_path)] = "the experiment file"
    store = _storage_file(config)
    if store is not None:
        for suffix in ("", "-wal", "-shm", "-journal", ".lock", ".write.lock", ".claim.lock"):
            inputs[store.with_name(store.name + suffix)] = "the study storage"
    if isinstance(config.data, TableData | NpzData):
        inputs[config.data.path] = "the data file (data.path)"
    run = config.run_dir
    inputs[run / "model"] = "the exported model"
    inputs[run / "weights"] = "the kept confirm weights"
    inputs[run / "scores"] = "the trials' score files"
    inputs[run / "config.resolved.yaml"] = "the experiment as run"
    inputs[run / "summary.json"] = "the summary every report writes"
    return inputs


def _storage_file(config: Config) -> Path | None:
    url = config.storage_url
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    if url.startswith(_JOURNAL):
        path = Path(url.removeprefix(_JOURNAL))
        return path if path.is_absolute() else config.run_dir / path
    return None


def refuse_inputs(
    outputs: Mapping[str, Path | None],
    inputs: Config | Mapping[Path, str],
    experiment_file: str | Path | None = None,
) -> None:
    """Refuse an output path that is an input, inside an input folder, another output, or an
    existing SQLite database, before anything is written.

    Args:
        outputs: Option name (``--out``) -> the path given (None: not written, not checked).
        inputs: Path -> what it is; or an experiment, whose :func:`experiment_inputs` (with
            ``experiment_file``) they are.
        experiment_file: The experiment's YAML file, with ``inputs`` a ``Config``.

    Raises:
        ConfigError: One line naming the option, the path and what it would replace.
    """
    if isinstance(inputs, Config):
        inputs = experiment_inputs(inputs, experiment_file)
    given = {option: Path(p) for option, p in outputs.items() if p is not None}
    for option, path in given.items():
        for source, what in inputs.items():
            where = "is" if _same(path, source) else "is inside" if _within(path, source) else ""
            if where:
                raise ConfigError(
                    f"{option} {path}: {where} {what} ({source}); writing there would replace "
                    "it: choose another path."
                )
        for other, other_path in given.items():
            if other != option and _same(path, other_path):
                raise ConfigError(f"{option} {path}: is also {other}; give each its own path.")
        if path.is_file() and _is_sqlite(path):
            raise ConfigError(
                f"{option} {path}: is a SQLite database (a study?); writing there would replace "
                "it: choose another path."
            )


def _same(first: Path, second: Path) -> bool:
    if first.resolve() == second.resolve():
        return True
    try:
        return first.exists() and second.exists() and os.path.samefile(first, second)
    except OSError:
        return False


def _within(path: Path, folder: Path) -> bool:
    return folder.resolve() in path.resolve().parents


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER
    except OSError:
        return False
