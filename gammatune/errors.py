"""The errors a user can cause. Each carries the exit code the CLI returns for it."""

from __future__ import annotations


class GammatuneError(Exception):
    """A mistake the user can fix: printed as one line, never as a traceback."""

    exit_code: int = 1


class ConfigError(GammatuneError):
    """The experiment file or a command-line option is invalid."""

    exit_code = 2


class DataError(GammatuneError):
    """The data cannot be used as given (missing column, one class, NaN features, ...)."""

    exit_code = 3


class StudyError(GammatuneError):
    """The study storage cannot be reached, or a stage is run out of order."""

    exit_code = 4
