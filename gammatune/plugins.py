"""Resolve a user's ``'package.module:function'`` reference (data loaders, model builders)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from gammatune.errors import ConfigError


def import_ref(ref: str, *, field: str) -> Callable[..., Any]:
    """Import the function that ``ref`` names; the current folder is searched too.

    Raises:
        ConfigError: The module cannot be imported or has no such callable; the message names
            ``field`` and ``ref``.
    """
    module_name, _, attribute = ref.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would, so a local module is found
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{field}: cannot import module {module_name!r} ({exc}).") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ConfigError(f"{field}: module {module_name!r} has no function {attribute!r}.")
    return function
