"""Resolve a user's ``'package.module:function'`` reference (data loaders, model builders)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from gammatune.errors import ConfigError


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
        ConfigError: The module cannot be imported or has no such callable; the message names
            ``field`` and ``ref``.
    """
    module_name, _, attribute = ref.partition(":")
    try:
        module = _local_module(module_name) or importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{field}: cannot import module {module_name!r} ({exc}).") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ConfigError(f"{field}: module {module_name!r} has no function {attribute!r}.")
    return function
