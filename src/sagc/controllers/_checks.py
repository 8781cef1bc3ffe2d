"""Validation shared by every controller: setting types, and the schema of `state_dict()`.

Settings. A controller's `Settings` dataclass gets its fields' types checked against their
annotations before its own `__post_init__` runs (`typed_settings`, applied by
`Controller.__init_subclass__`), so `make("sagc", delta="0.1")` fails with "delta must be a
number, got '0.1'" rather than a TypeError from a comparison. Only plain annotations are
checked (float, int, str, bool, Callable, tuple, a settings dataclass, X | None); anything
else is left to the class.

State. `load_state_dict` refuses a state that the controller could not have written, before
it can fail later with a raw KeyError. Each controller declares one validator per state key
in a class dict `state_schema` (subclasses add their own keys; `Controller.full_state_schema()`
merges them along the MRO):

    state_schema = {"clean": S.integer(lo=0), "pending": S.one_of(None, "down", "up")}

A validator is `check(value, path)`; it raises ValueError naming the key path. A key in the
state without a validator is refused too, so a new state key cannot go unvalidated.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import math
import types
import typing
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from sagc._io import is_real

Check = Callable[[Any, str], None]  # (value, key path) -> None, or ValueError naming the path


# ---- settings -----------------------------------------------------------------------------


_KINDS: dict[Any, tuple[str, Callable[[Any], bool]]] = {
    float: ("a number", lambda v: is_real(v) and not math.isnan(v)),
    int: ("an integer", lambda v: is_real(v) and math.isfinite(v) and float(v).is_integer()),
    str: ("a string", lambda v: isinstance(v, str)),
    bool: ("true or false", lambda v: isinstance(v, (bool, np.bool_))),
    type(None): ("None", lambda v: v is None),
    collections.abc.Callable: ("a function", callable),
    tuple: ("a list", lambda v: isinstance(v, (tuple, list))),  # items are left to the class
}


def _kind(tp: Any) -> tuple[str, Callable[[Any], bool]] | None:
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):  # nested settings, e.g. StragglerSettings
        return f"a {tp.__name__}", lambda v: isinstance(v, tp)
    return _KINDS.get(typing.get_origin(tp) or tp)


def _hints(cls: type) -> dict[str, Any]:
    """Resolved field annotations; one that cannot be resolved (a TYPE_CHECKING-only name) is
    left unchecked rather than breaking every construction."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - fall back field by field
        out = {}
        for klass in reversed(cls.__mro__):
            namespace = vars(__import__(klass.__module__, fromlist=["_"])) if klass.__module__ else {}
            for name, ann in getattr(klass, "__annotations__", {}).items():
                try:
                    out[name] = eval(ann, namespace) if isinstance(ann, str) else ann  # noqa: S307
                except Exception:  # noqa: BLE001
                    out.pop(name, None)
        return out


def check_setting_types(settings: Any, prefix: str = "") -> None:
    """ValueError naming the first field whose value does not match its plain annotation."""
    cls = type(settings)
    hints = cls.__dict__.get("_sagc_hints")
    if hints is None:
        hints = _hints(cls)
        setattr(cls, "_sagc_hints", hints)
    for f in dataclasses.fields(settings):
        tp = hints.get(f.name)
        union = typing.get_origin(tp) in (typing.Union, types.UnionType)
        kinds = [_kind(a) for a in (typing.get_args(tp) if union else (tp,))]
        if not kinds or any(k is None for k in kinds):
            continue  # an annotation we do not check (a class, a tuple): the class checks it
        value = getattr(settings, f.name)
        if not any(ok(value) for _, ok in kinds):
            want = " or ".join(name for name, _ in kinds)
            raise ValueError(f"{prefix}{f.name} must be {want}, got {_show(value)}")


def typed_settings(cls: type, prefix: str = "") -> type:
    """Run `check_setting_types` before `cls.__post_init__` (once per class; returns cls)."""
    if "_sagc_typed" in cls.__dict__ or not dataclasses.is_dataclass(cls):
        return cls
    own = cls.__dict__.get("__post_init__")

    def __post_init__(self: Any) -> None:
        check_setting_types(self, prefix)
        inherited = getattr(super(cls, self), "__post_init__", None)
        if own is not None:
            own(self)
        elif inherited is not None:
            inherited()

    cls.__post_init__ = __post_init__  # type: ignore[attr-defined]
    cls._sagc_typed = True  # type: ignore[attr-defined]
    return cls


# ---- state validators ---------------------------------------------------------------------
def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _bad(path: str, why: str, value: Any) -> ValueError:
    return ValueError(f"state key {path!r} {why}, got {_show(value)}")


def integer(lo: int | None = None) -> Check:
    def check(value: Any, path: str) -> None:
        if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
            raise _bad(path, "must be an integer", value)
        if lo is not None and value < lo:
            raise _bad(path, f"must be >= {lo}", value)
    return check


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Check:
    def check(value: Any, path: str) -> None:
        if not is_real(value) or not math.isfinite(value):
            raise _bad(path, "must be a finite number", value)
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise _bad(path, f"must be {'>' if lo_open else '>='} {lo:g}", value)
        if hi is not None and value > hi:
            raise _bad(path, f"must be <= {hi:g}", value)
    return check


def optional(inner: Check) -> Check:
    def check(value: Any, path: str) -> None:
        if value is not None:
            inner(value, path)
    return check


def one_of(*allowed: Any) -> Check:
    def check(value: Any, path: str) -> None:
        if not any(value is a or (isinstance(value, str) and value == a) for a in allowed):
            raise _bad(path, f"must be one of {list(allowed)}", value)
    return check


def list_of(item: Check, length: int | tuple[int, ...] | None = None) -> Check:
    lengths = (length,) if isinstance(length, int) else length

    def check(value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise _bad(path, "must be a list", value)
        if lengths is not None and len(value) not in lengths:
            raise _bad(path, f"must have {' or '.join(map(str, lengths))} entries", value)
        for i, v in enumerate(value):
            item(v, f"{path}[{i}]")
    return check


def check_mapping(schema: Mapping[str, Check], value: Any, path: str) -> None:
    """Exactly the schema's keys, each valid (key paths 'path.key')."""
    if not isinstance(value, Mapping):
        raise _bad(path or "state", "must be a mapping", value)
    at = f"{path}." if path else ""
    missing = [k for k in schema if k not in value]
    if missing:
        raise ValueError(f"state key {at + missing[0]!r} is missing (keys expected: {list(schema)})")
    unknown = [k for k in value if k not in schema]
    if unknown:
        raise ValueError(f"state key {at + str(unknown[0])!r} is not a key of this state "
                         f"(keys expected: {list(schema)})")
    for key, check in schema.items():
        check(value[key], at + key)


def mapping(schema: Mapping[str, Check]) -> Check:
    return lambda value, path: check_mapping(schema, value, path)


def like(samples: Callable[[], Sequence[Mapping[str, Any]]],
         same_length: Sequence[tuple[str, str]] = ()) -> Check:
    """A record shaped like `samples()` (computed once): same keys; a key that holds a list
    there holds a list of finite numbers; any other a finite number, or null where some
    sample has null. `same_length` pairs keys whose lists must be equally long."""
    cache: list[Check] = []

    def build() -> Check:
        recs = list(samples())
        keys = list(recs[0])
        schema: dict[str, Check] = {}
        for k in keys:
            vals = [r[k] for r in recs]
            if any(isinstance(v, list) for v in vals):
                schema[k] = list_of(number())
            else:
                schema[k] = optional(number()) if any(v is None for v in vals) else number()
        return mapping(schema)

    def check(value: Any, path: str) -> None:
        if not cache:
            cache.append(build())
        cache[0](value, path)
        for a, b in same_length:
            if a in value and b in value and len(value[a]) != len(value[b]):
                raise _bad(f"{path}.{b}", f"must have as many entries as {path}.{a} ({len(value[a])})", value[b])
    return check


def sample_steps() -> list[Any]:
    """Two small steps (untruncated; all truncated) whose summaries show every key's kind."""
    from sagc.stats import StepStats

    gid, length = [0, 0, 0, 1, 1, 1], [10, 12, 30, 8, 9, 11]
    return [StepStats(group_id=gid, length=length, reward=[1, 0, 1, 0, 0, 1], truncated=[False] * 6, group_size=3),
            StepStats(group_id=gid, length=length, reward=[1, 0, 1, 0, 0, 1], truncated=[True] * 6, group_size=3)]


def pcg64_state(value: Any, path: str) -> None:
    """A numpy PCG64 bit-generator state (as `np.random.PCG64().state`)."""
    ok = (isinstance(value, Mapping) and value.get("bit_generator") == "PCG64"
          and set(value) == {"bit_generator", "state", "has_uint32", "uinteger"}
          and isinstance(value["state"], Mapping) and set(value["state"]) == {"state", "inc"}
          and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**128
                  for v in value["state"].values())
          and value["has_uint32"] in (0, 1) and not isinstance(value["has_uint32"], bool)
          and isinstance(value["uinteger"], int) and not isinstance(value["uinteger"], bool)
          and 0 <= value["uinteger"] < 2**32)
    if ok:
        try:
            np.random.PCG64().state = dict(value)
        except (TypeError, ValueError, OverflowError):
            ok = False
    if not ok:
        raise _bad(path, "must be a numpy PCG64 state ({'bit_generator': 'PCG64', 'state': {'state', 'inc'}, "
                         "'has_uint32', 'uinteger'})", value)


__all__ = ["Check", "check_setting_types", "typed_settings", "is_real", "integer", "number", "optional",
           "one_of", "list_of", "mapping", "check_mapping", "like", "sample_steps", "pcg64_state"]
