"""Group-size controllers and their registry (`sagc.make("sagc", delta=0.1)`)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from sagc.controllers.aimd import AIMDController, AIMDSettings
from sagc.controllers.base import Controller, Decision, Observation
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


__all__ = [
    "Controller", "Decision", "Observation", "REGISTRY", "register", "make", "from_config",
    "StaticController", "StaticSettings", "SAGCController", "SAGCSettings", "AIMDController",
    "AIMDSettings", "InversePassRateController", "InversePassRateSettings", "StragglerSettings",
    "DAPOController", "DAPOSettings", "GRESOController", "GRESOSettings", "KnapsackController", "KnapsackSettings",
]
