"""Group-size controllers and their registry (`sagc.make("sagc", delta=0.1)`)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from sagc.controllers.aimd import AIMDController, AIMDSettings
from sagc.controllers.base import Controller, Decision, GroupSizes, Observation
from sagc.controllers.inverse_pass_rate import InversePassRateController, InversePassRateSettings
from sagc.controllers.per_prompt import (DAPOController, DAPOSettings, GRESOController, GRESOSettings,
                                         KnapsackController, KnapsackSettings)
from sagc.controllers.sagc import SAGCController, SAGCSettings
from sagc.controllers.static import StaticController, StaticSettings
from sagc.rules import StragglerSettings

REGISTRY: dict[str, type[Controller]] = {
    c.name: c for c in (StaticController, SAGCController, AIMDController, InversePassRateController,
                        DAPOController, GRESOController, KnapsackController)
}


def register(cls: type[Controller]) -> type[Controller]:
    """Add a controller class to the registry (usable as a decorator)."""
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"a controller named {cls.name!r} is already registered")
    REGISTRY[cls.name] = cls
    return cls


def make(kind: str, **settings: Any) -> Controller:
    """Build a registered controller by name; settings go to its frozen Settings dataclass.

    A nested `straggler` mapping becomes `StragglerSettings`. Unknown names and unknown
    settings are errors that list what is valid.
    """
    if kind not in REGISTRY:
        raise ValueError(f"unknown controller {kind!r}; valid controllers are {sorted(REGISTRY)}")
    cls = REGISTRY[kind]
    fields = {f.name for f in dataclasses.fields(cls.Settings)}
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise ValueError(f"controller {kind!r}: unknown setting(s) {unknown}; valid settings are {sorted(fields)}")
    if isinstance(settings.get("straggler"), Mapping):
        from sagc.rules import make_rule

        settings["straggler"] = make_rule(settings["straggler"]).settings
    return cls(**settings)


def from_config(config: Mapping[str, Any]) -> Controller:
    """Build from a mapping with a `kind` key, as in scenario files: {kind: sagc, delta: 0.1}."""
    if "kind" not in config:
        raise ValueError(f"controller config needs a 'kind' key (one of {sorted(REGISTRY)})")
    rest = {k: v for k, v in config.items() if k != "kind"}
    return make(str(config["kind"]), **rest)


# Under a tail-control rollout policy (any but `full`) a step ends at the B-th complete group and
# trains carried groups: SAGC's step-time fit and per-step benefit model, built for a step that
# waits for its longest completion, mis-rank G there (code-heavy-tail-filled: G=16 predicted within
# 3% of G=8, measured 0.76x). So SAGC chooses G by the signal per second measured at each size, and
# delta="auto" takes the best of it: the measured seconds already price the stalls, and the risk
# model predicts events of a full step that the policy cuts (docs/benchmarks.md, issue 18).
# start="largest": measured goodput knows only the sizes it has run, and it learns them from G_max
# down. Started at the middle of allowed (the default of a `full` run), `auto` stayed at G = 8 on
# the real traces where G = 16 was worth more: 2,000 steps, 3 seeds, auto over the best static G,
# HumanEval 2.71x [1.88, 2.79] and Game of 24 1.61x [1.21, 1.79], against 2.79x [2.78, 2.79] and
# 1.77x [1.76, 1.77] with start="largest" (docs/benchmarks.md, 2026-12-02).
TAIL_DEFAULTS: dict[str, Any] = {"goodput_from": "measured", "auto_slowdown": 0.0, "start": "largest"}


def tail_defaults(config: Mapping[str, Any], policy: str) -> dict[str, Any]:
    """A controller config ({kind: ..., ...}) with the defaults of a run under rollout policy
    `policy`: for SAGC under a tail-control policy, TAIL_DEFAULTS for every key the config does
    not set; otherwise the config unchanged (a copy)."""
    out = dict(config)
    cls = REGISTRY.get(str(out.get("kind")))
    if policy == "full" or cls is None or not any(f.name == "goodput_from" for f in dataclasses.fields(cls.Settings)):
        return out
    for key, value in TAIL_DEFAULTS.items():
        out.setdefault(key, value)
    return out


__all__ = [
    "TAIL_DEFAULTS", "tail_defaults",
    "Controller", "Decision", "GroupSizes", "Observation", "REGISTRY", "register", "make", "from_config",
    "StaticController", "StaticSettings", "SAGCController", "SAGCSettings", "AIMDController",
    "AIMDSettings", "InversePassRateController", "InversePassRateSettings", "StragglerSettings",
    "DAPOController", "DAPOSettings", "GRESOController", "GRESOSettings", "KnapsackController", "KnapsackSettings",
]
