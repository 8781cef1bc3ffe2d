"""`aimd`: a reactive baseline in the spirit of TCP congestion control (Jacobson, 1988).

After a straggler event G shrinks multiplicatively (to the largest allowed size <= G * beta);
after `increase_after` consecutive clean steps it grows to the next allowed size. It needs no
model, but it only reacts to events that already happened and cannot hold a budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from sagc.controllers import _checks as S
from sagc.controllers.base import Controller, Decision, check_range, nearest
from sagc.rules import StragglerSettings
from sagc.stats import StepStats


@dataclass(frozen=True)
class AIMDSettings:
    decrease_factor: float = 0.5  # beta: G -> G * beta after an event
    increase_after: int = 10  # K: clean steps before moving up one allowed size
    initial_group_size: int | None = None  # None: the largest allowed size
    straggler: StragglerSettings = field(default_factory=StragglerSettings)

    def __post_init__(self) -> None:
        check_range("decrease_factor", self.decrease_factor, 0.0, 1.0, lo_open=True, hi_open=True)
        if int(self.increase_after) != self.increase_after or self.increase_after < 1:
            raise ValueError(f"increase_after must be an integer >= 1, got {self.increase_after!r}")
        if self.initial_group_size is not None and self.initial_group_size < 1:
            raise ValueError(f"initial_group_size must be >= 1, got {self.initial_group_size!r}")


class AIMDController(Controller):
    name = "aimd"
    Settings = AIMDSettings
    state_schema = {"clean": S.integer(lo=0), "pending": S.one_of(None, "down", "up")}

    def _init_state(self) -> dict[str, Any]:
        return {"clean": 0, "pending": None}  # pending: "down" / "up" / None, applied at decide

    def _learn(self, stats: StepStats, event: bool) -> None:
        st = self._state
        if event:
            st["clean"], st["pending"] = 0, "down"
        else:
            st["clean"] += 1
            if st["clean"] >= self.settings.increase_after:
                st["clean"], st["pending"] = 0, "up"

    def _choose(self, allowed: tuple[int, ...], prompts: int | Mapping[int, int] | None) -> Decision:
        st = self._state
        start = self.settings.initial_group_size or allowed[-1]
        g = nearest(allowed, st["current"] if st["current"] is not None else start)
        if st["pending"] == "down":
            target = g * self.settings.decrease_factor
            g = max([a for a in allowed if a <= target], default=allowed[0])
        elif st["pending"] == "up":
            g = min([a for a in allowed if a > g], default=allowed[-1])
        st["pending"] = None
        return Decision(group_size=int(g))
