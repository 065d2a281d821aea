"""Reading an experiment file's YAML safely: aliases expanded within a bound, no key twice.

PyYAML's ``safe_load`` shares one object per anchor, so a "billion laughs" file of ten lines
(each alias list nine of the one before) loads as a few hundred objects, and then grows into
billions wherever it is walked as a tree: validation, an error's ``repr``, a dump. And a key
given twice silently keeps the second mapping. So the file is composed into PyYAML's node graph
first, checked there (aliases counted as the values they expand to; a repeated key named with
both lines), and only then constructed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gammatune.errors import ConfigError

# Values (scalars, lists, mappings) the whole file may expand to, aliases counted each time they
# are used. The largest shipped experiment has a few hundred; a grid of a thousand points fits.
MAX_VALUES = 100_000
_MERGE = "tag:yaml.org,2002:merge"

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, where built


def read_yaml(path: Path, text: str) -> Any:
    """Parse ``text`` (the contents of ``path``) as one YAML document.

    Returns:
        The document as plain Python data (None for an empty file).

    Raises:
        ConfigError: Not YAML, aliases that expand to more than ``MAX_VALUES`` values (or refer
            to themselves), or a key given twice in one mapping; one line naming the line.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _count(path, node, {}, set())
        _check_keys(path, node, set())
        return loader.construct_document(node)
    except RecursionError:
        raise ConfigError(f"{path}: values nested too deeply to read.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}.") from None
    finally:
        loader.dispose()


def _count(path: Path, node: Node, sizes: dict[int, int], open_: set[int]) -> int:
    """How many values ``node`` expands to; refused past ``MAX_VALUES``. A node met again
    (an alias) costs its whole size again but is walked once (``sizes``)."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_:
        raise ConfigError(
            f"{path}: line {node.start_mark.line + 1}: an alias refers to the value that holds "
            "it (a recursive anchor); write the value out."
        )
    size = 1
    if isinstance(node, SequenceNode | MappingNode):
        open_.add(id(node))
        children = node.value if isinstance(node, SequenceNode) else _flat(node.value)
        for child in children:
            size += _count(path, child, sizes, open_)
            if size > MAX_VALUES:
                raise ConfigError(
                    f"{path}: line {node.start_mark.line + 1}: the value that starts here "
                    f"expands, through its aliases, to more than {MAX_VALUES:,} values (a "
                    "YAML bomb?); write the values out."
                )
        open_.discard(id(node))
    sizes[id(node)] = size
    return size


def _flat(pairs: list[tuple[Node, Node]]) -> list[Node]:
    return [node for pair in pairs for node in pair]


def _check_keys(path: Path, node: Node, seen: set[int]) -> None:
    """Refuse a scalar key given twice in one mapping (YAML 1.2 forbids it; PyYAML keeps the
    last). Each node is checked once, however many aliases use it."""
    if id(node) in seen or isinstance(node, ScalarNode):
        return
    seen.add(id(node))
    if isinstance(node, MappingNode):
        first: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if not isinstance(key, ScalarNode) or key.tag == _MERGE:
                continue
            line = key.start_mark.line + 1
            if (key.tag, key.value) in first:
                raise ConfigError(
                    f"{path}: line {line}: key {key.value!r} is given twice (first at line "
                    f"{first[key.tag, key.value]}); keep one."
                )
            first[key.tag, key.value] = line
        children = _flat(node.value)
    else:
        children = node.value
    for child in children:
        _check_keys(path, child, seen)
