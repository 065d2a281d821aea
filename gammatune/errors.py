"""The errors a user can cause, each with the exit code the CLI returns for it; and hiding a
password in what an error (or anything else) shows. A leaf: imports nothing of gammatune."""

from __future__ import annotations

import re


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
    """The study storage or a Ray cluster cannot be reached, or a stage is run out of order."""

    exit_code = 4


def redact(url: str) -> str:
    """Hide a password in a storage URL: ``user:pw@`` (the password may hold a raw ``@``) and
    a ``password=`` query parameter.

    Example:
        >>> redact("postgresql://me:p@ss@db/x?sslmode=require&password=pw")
        'postgresql://me:***@db/x?sslmode=require&password=***'
    """
    scheme, sep, rest = url.partition("://")
    base, query_sep, query = rest.partition("?")
    userinfo, at, host = base.rpartition("@")
    if at and ":" in userinfo:
        base = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = re.sub(r"(?i)(^|&)(password|passwd|pwd)=[^&]*", r"\1\2=***", query)
    return f"{scheme}{sep}{base}{query_sep}{query}"


def secret_of(url: str) -> str | None:
    """The password in ``url`` as written, or None."""
    _, _, rest = url.partition("://")
    base, _, query = rest.partition("?")
    userinfo, at, _ = base.rpartition("@")
    if at and ":" in userinfo:
        return userinfo.split(":", 1)[1] or None
    found = re.search(r"(?i)(?:^|&)(?:password|passwd|pwd)=([^&]*)", query)
    return found.group(1) or None if found else None


class Pruned(Exception):  # noqa: N818 - the name users catch: ``except gammatune.Pruned``
    """Raised by ``spec.report(step, value)`` when the pruner stops the trial: let it propagate
    (or catch it, clean up, and raise it again); gammatune records the trial as pruned."""
