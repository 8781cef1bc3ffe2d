"""Small file helpers shared by every layer: atomic writes and canonical JSON."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temp path next to `path`; on success it replaces `path`, on error it is removed.

    Nothing half-written is ever visible under `path`. The file gets the usual permissions
    (0666 minus umask), not mkstemp's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return Path(path)


def clean_json(x: Any, digits: int | None = 9) -> Any:
    """Plain JSON types; floats rounded to `digits` significant digits (so platform noise cannot
    leak into byte-identical outputs); NaN/inf -> null; numpy scalars -> Python."""
    if isinstance(x, Mapping):
        return {str(k): clean_json(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean_json(v, digits) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        if not math.isfinite(v):
            return None
        return float(f"{v:.{digits}g}") if digits else v
    return x


def to_json(obj: Any, digits: int | None = 9) -> str:
    """Canonical JSON text: cleaned, sorted keys, indented, trailing newline."""
    return json.dumps(clean_json(obj, digits), sort_keys=True, indent=2, allow_nan=False) + "\n"


def write_json_atomic(path: str | os.PathLike, obj: Any, digits: int | None = 9) -> Path:
    return write_text_atomic(path, to_json(obj, digits))


def iter_jsonl(path: str | os.PathLike, what: str = "") -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for each non-blank line, read once, streaming.

    A line that is not JSON raises ValueError naming the file and the line.
    """
    prefix = f"{what} " if what else ""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{prefix}{path}, line {lineno}: not valid JSON ({exc.msg} at column {exc.colno})") \
                    from None


def check_keys(cls: type, data: Any, where: str) -> None:
    """A mapping for dataclass `cls`: unknown keys are errors that list the valid ones."""
    import dataclasses

    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(names)}")
