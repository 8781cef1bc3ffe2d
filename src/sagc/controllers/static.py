"""`static`: a fixed group size, the baseline every GRPO/DAPO recipe uses today."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from sagc.controllers.base import Controller, Decision, nearest
from sagc.rules import StragglerSettings


@dataclass(frozen=True)
class StaticSettings:
    group_size: int = 8  # = G in GRPO, held for the whole run
    straggler: StragglerSettings = field(default_factory=StragglerSettings)  # only for reporting events

    def __post_init__(self) -> None:
        if int(self.group_size) != self.group_size or self.group_size < 1:
            raise ValueError(f"group_size must be an integer >= 1, got {self.group_size!r}")


class StaticController(Controller):
    """Always the same G. If G is not allowed, the allowed size nearest to it (log scale)."""

    name = "static"
    Settings = StaticSettings

    def _choose(self, allowed: tuple[int, ...], prompts: int | Mapping[int, int] | None) -> Decision:
        return Decision(group_size=nearest(allowed, self.settings.group_size))
