"""The key tables (README, docs/) are checked against the schema, so they cannot drift apart."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from gammatune.config import Config

README = Path(__file__).resolve().parents[1] / "README.md"


def _models(annotation: object) -> list[type[BaseModel]]:
    """The config models an annotation holds (a model, a union of them, Annotated[...])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _schema_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        if name == "source" and prefix == "data.":
            keys.add("data.source")
            continue
        nested = _models(field.annotation)
        if nested:
            for sub in nested:
                keys |= _schema_keys(sub, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def _documented_keys() -> set[str]:
    """Keys in the first cell of the key tables (the README's, and any under docs/ with the same
    header): `a.b`, then bare `c` continue the prefix a."""
    header = "| key | meaning (default) |"
    pages = [README, *sorted((README.parent / "docs").rglob("*.md"))]
    texts = [page.read_text(encoding="utf-8") for page in pages]
    tables = [part.split("\n\n", 1)[0] for text in texts for part in text.split(header)[1:]]
    keys = set()
    for line in (line for table in tables for line in table.splitlines()[2:]):
        prefix = ""
        for name in re.findall(r"`([^`]+)`", line.split("|")[1]):
            if "." in name:
                prefix = name.rsplit(".", 1)[0] + "."
                keys.add(name)
            else:
                keys.add(prefix + name)
    return keys


def test_every_key_of_the_schema_is_in_the_readme_and_no_other() -> None:
    schema, documented = _schema_keys(Config), _documented_keys()
    assert schema - documented == set(), "keys missing from the README's table"
    assert documented - schema == set(), "keys in the README that the schema does not have"
