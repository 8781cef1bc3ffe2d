"""Frozen-dataclass settings from plain mappings (YAML/JSON), shared by sagc.optim and sagc.losses.

Pure python (no torch): `sagc train` validates a config's `optimizer:` and `loss:` sections with
these before it loads any model.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, TypeVar

from sagc._io import check_keys

T = TypeVar("T")


def settings_from(cls: type[T], value: Any, where: str) -> T:
    """`cls` from an instance, a mapping (unknown keys are errors listing the valid ones) or None."""
    if isinstance(value, cls):
        return value
    if value is None:
        return cls()
    check_keys(cls, value, where)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def as_dict(settings: Any) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}


def check_float(owner: str, name: str, value: Any, low: float, high: float = math.inf, *,
                open_low: bool = False, open_high: bool = False) -> float:
    """`value` as a float in the interval, else a ValueError naming `owner.name` and the interval."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    if ok:
        ok = (value > low if open_low else value >= low) and (value < high if open_high else value <= high)
    if not ok:
        span = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise ValueError(f"{owner}.{name} must be a number in {span}, got {value!r}")
    return float(value)


def check_int(owner: str, name: str, value: Any, low: int, high: int | None = None) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    if not ok:
        span = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{owner}.{name} must be an integer {span}, got {value!r}")
    return value


def check_choice(owner: str, name: str, value: Any, choices: tuple) -> Any:
    if value not in choices:
        raise ValueError(f"{owner}.{name} must be one of {list(choices)}, got {value!r}")
    return value


def split_kind(spec: Any, where: str, default: str | None = None) -> tuple[str, dict[str, Any]]:
    """A {kind: NAME, settings...} mapping (or a bare NAME) as (NAME, settings)."""
    if isinstance(spec, str):
        return spec, {}
    if spec is None and default is not None:
        return default, {}
    if not isinstance(spec, Mapping) or "kind" not in spec:
        raise ValueError(f"{where} must be a mapping with a 'kind' key, e.g. {{kind: {default or 'NAME'}}}, "
                         f"got {spec!r}")
    rest = {k: v for k, v in spec.items() if k != "kind"}
    return str(spec["kind"]), rest
