"""The progress bar of a training run, for the demo and `sagc train`: one compact line,

    sagc ━━━━━━━━━━━━━━━━ 0:00:14 step 12  G=4  reward 0.31  informative 5/8  stragglers 17%  1.2 s/step  left 1:48

instead of TRL's raw metric dicts (those still go to `report_to` and the session log). The bar
runs over the time budget where there is one, else over max_steps; `SessionCallback` calls it
after every optimizer step.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column

from sagc.demo.session import SessionLog, finite_mean


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def progress_line(log: SessionLog, clock: float, step: int, budget_s: float | None = None,
                  max_steps: int | None = None, held_out: bool = False, min_steps: int = 0) -> str:
    """step, G, reward, informative groups (of the step's groups), straggler rate so far, seconds
    per step (the last step's), time left (budget, else max_steps at the mean step time; past the
    budget, the steps still owed to min_steps), and the last held-out accuracy where `held_out`."""
    h = log.history[-1] if log.history else {}
    parts = [f"step {step}", f"G={h.get('group_size', '-')}"]
    reward = h.get("reward")
    parts.append(f"reward {reward:.2f}" if isinstance(reward, (int, float)) else "reward -")
    groups = h["rows"] // h["group_size"] if h.get("rows") and h.get("group_size") else None
    informative = h.get("informative_groups")
    parts.append(f"informative {'-' if informative is None else int(informative)}" + (f"/{groups}" if groups else ""))
    events = [bool(x["event"]) for x in log.history if x.get("event") is not None]
    parts.append(f"stragglers {sum(events) / len(events):.0%}" if events else "stragglers -")
    step_s = h.get("step_s")
    ok = isinstance(step_s, (int, float)) and math.isfinite(step_s)
    parts.append(f"{step_s:.{2 if step_s < 1 else 1}f} s/step" if ok else "- s/step")
    left = None
    if budget_s is not None and math.isfinite(budget_s):
        left = budget_s - clock
    elif max_steps is not None and log.history:
        left = (max_steps - step) * finite_mean([x.get("step_s") for x in log.history])
    owed = min_steps - len(log.history)
    if left is not None and left <= 0 and owed > 0:
        parts.append(f"left {owed} steps (min {min_steps})")
    else:
        parts.append(f"left {_clock(left)}" if left is not None and math.isfinite(left) else "left -")
    if held_out:
        acc = log.evals[-1]["accuracy"] if log.evals else None
        parts.append(f"held-out {acc:.0%}" if isinstance(acc, (int, float)) else "held-out -")
    return "  ".join(parts)


class RunProgress:
    """A rich progress bar with `progress_line` beside it; use as a context manager and pass the
    instance as SessionCallback's `progress`."""

    def __init__(self, console: Console, log: SessionLog, budget_s: float | None = None,
                 max_steps: int | None = None, held_out: bool = False, start_clock: float = 0.0,
                 min_steps: int = 0) -> None:
        self.log, self.held_out, self.min_steps = log, held_out, min_steps
        self.budget_s = budget_s if budget_s is not None and math.isfinite(budget_s) else None
        self.max_steps = max_steps
        # the line folds on a narrow terminal rather than losing its last fields
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=16), TimeElapsedColumn(),
                            TextColumn("{task.fields[info]}", table_column=Column(overflow="fold")),
                            console=console, transient=False)
        total = self.budget_s if self.budget_s is not None else max_steps
        done = start_clock if self.budget_s is not None else len(log.history)
        self.task = self.bar.add_task(log.label, total=total, completed=done, info="")

    def __enter__(self) -> "RunProgress":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, clock: float, step: int) -> None:
        info = progress_line(self.log, clock, step, self.budget_s, self.max_steps, self.held_out, self.min_steps)
        done = min(clock, self.budget_s) if self.budget_s is not None else step
        self.bar.update(self.task, completed=done, info=info)
