"""The one way planner reads a YAML file a user wrote: safely, strictly, and with an answer for every input.

PyYAML's safe loader builds only plain data (no Python objects), but it silently keeps the last of two
equal keys, recurses without bound on deep nesting, and lets a file that is not UTF-8 surface as a
decoding traceback. This loader refuses each of those with an InputError naming the file (and the line).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from planner.errors import InputError

# A scenario is a few kilobytes; the largest catalog under 100 kB. Far beyond any honest input.
MAX_BYTES = 16 * 2**20
# Scenarios nest four or five levels (jobs[].layout.tp); 64 leaves room and keeps recursion shallow.
MAX_DEPTH = 64


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and nesting deeper than MAX_DEPTH."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"nested deeper than {MAX_DEPTH} levels (line {mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue  # the base class reports an unhashable key
                if key in seen:
                    raise yaml.YAMLError(
                        f"duplicate key {key!r} at line {key_node.start_mark.line + 1} "
                        f"(first at line {seen[key] + 1})"
                    )
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def loads(text: str, where: str) -> Any:
    """Parse YAML text; `where` names its origin in every error."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark else where
        raise InputError(f"{at}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    except RecursionError:
        raise InputError(f"{where}: nested too deeply to be a planner file") from None


def read_text(path: Path) -> str:
    """A user's file as text: missing, unreadable, oversized or non-UTF-8 files are InputErrors."""
    try:
        if path.is_dir():
            raise InputError(f"{path}: is a directory, not a file")
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    if len(raw) > MAX_BYTES:
        raise InputError(f"{path}: larger than {MAX_BYTES // 2**20} MiB; not a planner file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}: {raw[e.start:e.start + 1]!r})") from None


def read_yaml(path: Path) -> Any:
    """Read and parse a YAML file with every refusal above."""
    return loads(read_text(path), str(path))
