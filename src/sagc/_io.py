"""Small file helpers shared by every layer: atomic writes, canonical JSON, and reading users'
files (JSONL, YAML with key lines) with `InputError`s that name the file, the line and the key."""

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


@contextlib.contextmanager
def atomic_outputs(*paths: str | os.PathLike | None, suffix: str = ".tmp") -> Iterator[list[str | None]]:
    """Temp paths for several output files, all or nothing (None entries stay None).

    On success every temp file replaces its target; on an error none does, the temp files
    are removed, and so are the folders this created for them (if still empty). So a failure
    while producing the last output leaves nothing of the first ones behind.
    """
    created: list[Path] = []
    for p in paths:
        if p is None:
            continue
        missing = [d for d in [Path(p).absolute().parent, *Path(p).absolute().parent.parents] if not d.exists()]
        for d in reversed(missing):  # outermost first
            d.mkdir()
            created.append(d)
    stack = contextlib.ExitStack()
    try:
        with stack:
            tmps = [None if p is None else stack.enter_context(atomic_path(p, suffix)) for p in paths]
            yield tmps
    except BaseException:
        for d in reversed(created):  # innermost first
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


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


class InputError(ValueError):
    """A bad input the user can fix (a file, a config value, an output path).

    The message names the field or key, and the file and line where there is one. The CLI
    prints it and exits with code 2 wherever it surfaces, even deep inside a run; any other
    exception is a bug and keeps its traceback.
    """


def _decode_line(raw: bytes, path: Any, lineno: int, what: str) -> str:
    prefix = f"{what} " if what else ""
    if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raise InputError(f"{prefix}{path}, line 1: starts with a UTF-8 byte-order mark (BOM); "
                         "save the file as UTF-8 without BOM")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{prefix}{path}, line {lineno}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} "
                         f"at column {exc.start + 1})") from None


def open_input(path: str | os.PathLike, what: str = "", mode: str = "rb") -> Any:
    """open() for reading a user's file; a missing, unreadable or folder path is an InputError."""
    prefix = f"{what} " if what else ""
    try:
        return open(path, mode)
    except FileNotFoundError:
        raise InputError(f"{prefix}{path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"{prefix}{path} is a folder, not a file") from None
    except OSError as exc:
        raise InputError(f"{prefix}{path} cannot be read: {exc.strerror or exc}") from None


def read_text_input(path: str | os.PathLike, what: str = "") -> str:
    """A user's UTF-8 text file (a BOM is dropped); bad bytes are an InputError naming file and line."""
    with open_input(path, what) as fh:
        raw = fh.read()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        prefix = f"{what} " if what else ""
        raise InputError(f"{prefix}{path}, line {line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x})") from None


def iter_jsonl(path: str | os.PathLike, what: str = "") -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for each non-blank line, read once, streaming.

    A line that is not JSON (or not UTF-8, or a first line with a BOM) raises InputError
    naming the file and the line; so does a file that cannot be opened.
    """
    prefix = f"{what} " if what else ""
    with open_input(path, what) as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = _decode_line(raw, path, lineno, what)
            if not line.strip():
                continue
            try:
                # parse_constant: NaN / Infinity are not JSON; Python's json would accept them
                yield lineno, json.loads(line, parse_constant=_no_constant)
            except json.JSONDecodeError as exc:
                raise InputError(f"{prefix}{path}, line {lineno}: not valid JSON ({exc.msg} at column {exc.colno})") \
                    from None
            except _NotJSON as exc:
                raise InputError(f"{prefix}{path}, line {lineno}: not valid JSON ({exc.args[0]} is not a JSON "
                                 "value; write null for a missing number)") from None
            except RecursionError:
                raise InputError(f"{prefix}{path}, line {lineno}: JSON nested too deeply") from None


class _NotJSON(Exception):
    pass


def _no_constant(name: str) -> Any:
    raise _NotJSON(name)


def load_yaml(path: str | os.PathLike, what: str = "") -> tuple[Any, dict[str, int]]:
    """Read a user's YAML file: (data, {key path: 1-based line}).

    Key paths are written "a.b[2].c". A key given twice in one mapping is an error naming the
    key and its line (PyYAML would silently keep the last one), and so are bad YAML, bad
    UTF-8 and unreadable files; every error is an InputError that names the file.
    Shared by the scenario loader and the config loaders.
    """
    return parse_yaml(read_text_input(path, what), f"{what} {path}" if what else str(path))


def parse_yaml(text: str, file: str) -> tuple[Any, dict[str, int]]:
    """`load_yaml` on text already read (`file` names it in messages)."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[str, int] = {}
        if node is not None:
            _walk_yaml(node, "", lines, file)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f", line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{file}{at}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    except RecursionError:
        raise InputError(f"{file}: YAML nested too deeply") from None
    finally:
        loader.dispose()
    return data, lines


def _walk_yaml(n: Any, path: str, lines: dict[str, int], file: str) -> None:
    import yaml

    if isinstance(n, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in n.value:
            key = str(k.value)
            p = f"{path}.{key}" if path else key
            if key in seen:  # PyYAML silently keeps the last one; a typo'd file deserves an error
                raise InputError(f"{p} is given twice (in {file}, line {k.start_mark.line + 1})")
            seen.add(key)
            lines[p] = k.start_mark.line + 1
            _walk_yaml(v, p, lines, file)
    elif isinstance(n, yaml.SequenceNode):
        for i, v in enumerate(n.value):
            p = f"{path}[{i}]"
            lines[p] = v.start_mark.line + 1
            _walk_yaml(v, p, lines, file)


def check_output_path(path: str | os.PathLike, what: str, suffixes: tuple[str, ...] = ()) -> Path:
    """Refuse, before any work, an output file that could not be written (InputError).

    The path must not be a folder, its suffix must be one of `suffixes` (if given), and its
    nearest existing ancestor must be a writable folder (missing folders are created later
    by the atomic writers). Nothing is created here.
    """
    p = Path(path)
    if suffixes and p.suffix.lower() not in suffixes:
        raise InputError(f"{what} {p}: the file name must end in {' or '.join(suffixes)}")
    if p.is_dir():
        raise InputError(f"{what} {p} is a folder; give a file name")
    parent = p.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{what} {p}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{what} {p}: cannot write in {parent} (permission denied)")
    return p


def check_keys(cls: type, data: Any, where: str) -> None:
    """A mapping for dataclass `cls`: unknown keys are errors that list the valid ones."""
    import dataclasses

    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(names)}")


def is_real(x: Any) -> bool:
    """A real number that fits a float (not a bool, not a string, not a 400-digit integer)."""
    if not isinstance(x, (int, float, np.integer, np.floating)) or isinstance(x, (bool, np.bool_)):
        return False
    try:
        float(x)
    except OverflowError:
        return False
    return True
