"""Reading a user's YAML config: duplicate keys refused, every key's line known.

`load_yaml(path, what) -> (data, {"a.b": line})` and `InputError` come from `sagc._io`, the one
loader that scenario files use too; this module adds what the config files need on top.
"""

from __future__ import annotations

import os
import re
from typing import Any

from sagc._io import InputError, load_yaml


class FieldError(InputError):
    """A bad value of one config key; the loader adds the file and the key's line."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def load_config_mapping(path: str | os.PathLike, example: str) -> tuple[dict, dict[str, int]]:
    """A config file's top-level mapping and key lines; an empty file or a non-mapping is an error."""
    data, lines = load_yaml(path)
    if data is None:
        raise InputError(f"{path}: the config file is empty (no keys); an empty file is refused rather than "
                         f"run with every default. Start from {example}")
    if not isinstance(data, dict):
        raise InputError(f"{path}, line 1: a config must be a mapping of keys (key: value), got a "
                         f"{type(data).__name__}")
    return data, lines


def located(exc: BaseException, path: str | os.PathLike, lines: dict[str, int]) -> str:
    """`exc`'s message prefixed with the file, and the line of the key it names (FieldError)."""
    key = getattr(exc, "key", None)
    line = lines.get(key) if key else None
    while key and line is None and re.search(r"[.\[]", key):  # a.b[2] -> a.b -> a: the nearest key given
        key = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", key)
        line = lines.get(key)
    return f"{path}{f', line {line}' if line else ''}: {exc}"
