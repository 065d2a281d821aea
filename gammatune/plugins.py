"""Resolve a user's ``'package.module:function'`` reference (data loaders, model builders),
and call it: whatever the user's code raises (at import, at the call) becomes one line naming
the field, the reference and the exception, never a traceback."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from gammatune.errors import ConfigError, GammatuneError


def _local_module(name: str) -> ModuleType | None:
    """The module ``name`` as a file in the current folder (``a/b.py`` for ``a.b``), imported
    without putting the folder on ``sys.path``; None when there is no such file."""
    if name in sys.modules:
        return sys.modules[name]
    stem = Path.cwd().joinpath(*name.split("."))
    path = next((p for p in (stem.with_suffix(".py"), stem / "__init__.py") if p.is_file()), None)
    spec = None if path is None else importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import would: dataclasses and pickling look it up
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def import_ref(ref: str, *, field: str) -> Callable[..., Any]:
    """Import the function that ``ref`` names: from a file in the current folder, else from an
    installed module.

    Raises:
        ConfigError: The module cannot be imported (missing, or its code raised) or has no
            such callable; the message names ``field`` and ``ref``.
    """
    module_name, _, attribute = ref.partition(":")
    try:
        module = _local_module(module_name) or importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{field}: cannot import module {module_name!r} ({exc}).") from None
    except Exception as exc:  # noqa: BLE001 - the module's own code raised while importing
        raise ConfigError(
            f"{field}: cannot import module {module_name!r}: it raised {describe(exc)}."
        ) from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ConfigError(f"{field}: module {module_name!r} has no function {attribute!r}.")
    return function


def call_ref(ref: str, *, field: str, error: type[GammatuneError], **arguments: Any) -> Any:
    """Import ``ref`` and call it with ``arguments`` (keywords).

    Args:
        ref: ``'package.module:function'``.
        field: The config field that names it, for the message (``model.kind``).
        error: What a call that fails raises: ``ConfigError`` for a model, ``DataError`` for
            a data loader.
        **arguments: Passed by keyword.

    Returns:
        What the function returned (unchecked).

    Raises:
        ConfigError: ``ref`` cannot be imported, or its signature does not take ``arguments``.
        GammatuneError: ``error``, the function raised; gammatune's own errors pass as they
            are.
    """
    function = import_ref(ref, field=field)
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin without one: the call itself will tell
        signature = None
    if signature is not None:
        try:
            signature.bind(**arguments)
        except TypeError:
            wanted = ", ".join(f"{name}=..." for name in arguments) or "no arguments"
            raise ConfigError(
                f"{field}: {ref} must accept ({wanted}); its signature is {signature}."
            ) from None
    try:
        return function(**arguments)
    except GammatuneError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's code: one line, whatever it raised
        raise error(f"{field}: {ref} raised {describe(exc)}.") from None


def describe(exc: BaseException, *, limit: int = 200) -> str:
    """``Type: first line of the message`` (at most ``limit`` characters), for a one-line
    error about someone else's exception."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[0].rstrip('.')}" if lines else type(exc).__name__
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
