"""The one way planner reads a YAML file a user wrote: safely, strictly, and with an answer for every input.

PyYAML's safe loader builds only plain data (no Python objects), but it silently keeps the last of two
equal keys, recurses without bound on deep nesting, and lets a file that is not UTF-8 surface as a
decoding traceback. This loader refuses each of those with an InputError naming the file (and the line).
It also reads booleans as YAML 1.2 does: only true and false (any case as the core schema spells them);
PyYAML follows YAML 1.1, where `name: off` or a country code `NO` silently becomes a boolean.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from planner.errors import InputError
from planner.limits import MAX_FILE_BYTES

MAX_BYTES = MAX_FILE_BYTES
# Scenarios nest four or five levels (jobs[].layout.tp); 64 leaves room and keeps recursion shallow.
MAX_DEPTH = 64
# The catalogs hold about 2,000 YAML nodes and a scenario about a hundred; past 20,000 (10,000 unknown keys, say)
# the file is refused before the rest is parsed, which keeps the pure-Python parser to about a second.
MAX_NODES = 20_000


class _Refused(yaml.YAMLError):
    """Well-formed YAML that planner refuses to read: too deep, too large, a key given twice."""


# YAML 1.2 core schema booleans (yaml.org/spec/1.2.2 §10.3.2); YAML 1.1's yes/no/on/off stay strings.
_BOOL_1_2 = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


def _yaml_1_2_booleans(loader: type) -> None:
    """Give `loader` its own resolver table in which only the YAML 1.2 spellings resolve to booleans."""
    table = {first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
             for first, resolvers in loader.yaml_implicit_resolvers.items()}  # type: ignore[attr-defined]
    loader.yaml_implicit_resolvers = table  # type: ignore[attr-defined]
    loader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL_1_2, list("tTfF"))  # type: ignore[attr-defined]


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and nesting deeper than MAX_DEPTH."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth = getattr(self, "_depth", 0) + 1
        self._nodes = getattr(self, "_nodes", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels (line {mark.line + 1})")
            if self._nodes > MAX_NODES:
                mark = self.peek_event().start_mark
                raise _Refused(f"more than {MAX_NODES:,} keys and values (line {mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        _refuse_duplicate_keys(self, node)
        return super().construct_mapping(node, deep=deep)


def _refuse_duplicate_keys(loader: Any, node: Any) -> None:
    """A mapping that gives one key twice is refused (PyYAML keeps the last silently)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # the base class reports an unhashable key
            if key in seen:
                raise _Refused(
                    f"duplicate key {key!r} at line {key_node.start_mark.line + 1} "
                    f"(first at line {seen[key] + 1})"
                )
            seen[key] = key_node.start_mark.line


class _StrictCLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's parser with the duplicate-key check: for the files planner ships, whose size and depth are
    known (libyaml composes in C, so MAX_DEPTH and MAX_NODES are not checked there)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        _refuse_duplicate_keys(self, node)
        return super().construct_mapping(node, deep=deep)


_yaml_1_2_booleans(_StrictLoader)
_yaml_1_2_booleans(_StrictCLoader)


def loads(text: str, where: str, *, trusted: bool = False) -> Any:
    """Parse YAML text; `where` names its origin in every error. `trusted`: a file planner ships (its own
    catalogs), parsed by libyaml where PyYAML has it: ten times faster, the same data."""
    try:
        return yaml.load(text, Loader=_StrictCLoader if trusted else _StrictLoader)
    except _Refused as e:
        raise InputError(f"{where}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark else where
        raise InputError(f"{at}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    except RecursionError:
        raise InputError(f"{where}: nested too deeply to be a planner file") from None
    except ValueError as e:  # an integer past Python's 4,300-digit conversion limit
        raise InputError(f"{where}: not a planner file ({e})") from None


def read_text(path: Path) -> str:
    """A user's file as text: missing, unreadable, oversized or non-UTF-8 files are InputErrors, and so is a
    path the system refuses (a name too long, a NUL byte in it)."""
    try:
        if path.is_dir():
            raise InputError(f"{path}: is a directory, not a file")
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise InputError(f"{shown_path(path)}: cannot read ({e.strerror or e})") from None
    except ValueError as e:
        raise InputError(f"{shown_path(path)}: cannot read ({e})") from None
    if len(raw) > MAX_BYTES:
        raise InputError(f"{path}: larger than {MAX_BYTES // 2**10:,} KiB; not a planner file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}: {raw[e.start:e.start + 1]!r})") from None


def shown_path(path: Path) -> str:
    """A path for a one-line message: control characters escaped, a very long one cut to its first 200 characters."""
    text = repr(str(path))[1:-1]
    return text if len(text) <= 200 else text[:200] + "…"


def read_yaml(path: Path, *, trusted: bool = False) -> Any:
    """Read and parse a YAML file with every refusal above (`trusted`: see `loads`)."""
    return loads(read_text(path), str(path), trusted=trusted)
