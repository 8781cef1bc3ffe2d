"""Reading a user's YAML config: duplicate keys refused, every key's line known.

`load_yaml(path, what) -> (data, {"a.b": line})` and `InputError` come from `sagc._io` (issue 10,
the scenario side) when that version is installed; the fallback below has the same contract so
the config loaders work either way. Once both halves are merged the fallback can go.
"""

from __future__ import annotations

import os
from typing import Any

try:  # pragma: no cover - which branch runs depends on the merge state
    from sagc._io import InputError, load_yaml  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    class InputError(ValueError):  # type: ignore[no-redef]
        """A bad input the user can fix; the message names the key, file and line."""

    def load_yaml(path: str | os.PathLike, what: str = "") -> tuple[Any, dict[str, int]]:  # type: ignore[misc]
        import yaml

        where = f"{what} {path}" if what else str(path)
        try:
            raw = open(path, "rb").read()
        except FileNotFoundError:
            raise FileNotFoundError(f"{where}: no such file") from None
        except IsADirectoryError:
            raise InputError(f"{where} is a folder, not a file") from None
        except OSError as exc:
            raise InputError(f"{where} cannot be read: {exc.strerror or exc}") from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise InputError(f"{where}, line {line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x})") from None
        loader = yaml.SafeLoader(text)
        lines: dict[str, int] = {}
        try:
            node = loader.get_single_node()
            if node is not None:
                _walk(node, "", lines, where)
            data = loader.construct_document(node) if node is not None else None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f", line {mark.line + 1}" if mark is not None else ""
            raise InputError(f"{where}{at}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
        finally:
            loader.dispose()
        return data, lines

    def _walk(node: Any, path: str, lines: dict[str, int], where: str) -> None:
        import yaml

        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for k, v in node.value:
                key = str(k.value)
                p = f"{path}.{key}" if path else key
                if key in seen:  # PyYAML would silently keep the last one
                    raise InputError(f"{p} is given twice (in {where}, line {k.start_mark.line + 1})")
                seen.add(key)
                lines[p] = k.start_mark.line + 1
                _walk(v, p, lines, where)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                lines[f"{path}[{i}]"] = v.start_mark.line + 1
                _walk(v, f"{path}[{i}]", lines, where)


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
    return f"{path}{f', line {line}' if line else ''}: {exc}"
