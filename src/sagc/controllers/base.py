"""The one small interface every group-size controller implements.

    ctrl = sagc.make("sagc", delta=0.1, V=10.0, seed=0)
    for step in range(T):
        G = ctrl.decide(allowed=[2, 4, 8, 16]).group_size   # before the rollout
        ...generate B prompts x G completions, score, update the policy...
        ctrl.update(StepStats(...))                          # at the optimizer-step boundary

Settings are a frozen dataclass (`ctrl.settings`), inspectable and hashable; everything that
changes during a run lives in `ctrl.state_dict()`, a plain JSON-serialisable dict, so a
restored controller makes exactly the decisions the original would have made.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Mapping, Sequence

import numpy as np

from sagc.controllers import _checks as S
from sagc.rules import StragglerRule, StragglerSettings, make_rule
from sagc.stats import StepStats

S.typed_settings(StragglerSettings, prefix="straggler.")  # straggler={"kappa": "4"}: a named error


class GroupSizes(Mapping):
    """Per-prompt group sizes, prompt id -> G (0 = skip), kept as two arrays in offer order.

    A read-only Mapping (what `Decision.group_sizes` promises), so callers use it as a dict; a
    caller at scale reads `ids` / `sizes` directly. At B = 512 with 2,048 prompts offered, a
    Python dict of every offered prompt was the largest single cost of `decide`
    (docs/benchmarks.md, per-prompt timing); it is built only when a key is looked up."""

    __slots__ = ("ids", "sizes", "_dict")

    def __init__(self, ids: np.ndarray, sizes: np.ndarray) -> None:
        self.ids = np.asarray(ids, dtype=np.int64).copy()  # (n,) prompt ids, in offer order
        self.sizes = np.asarray(sizes, dtype=np.int64).copy()  # (n,) G per prompt, 0 = skip
        if self.ids.shape != self.sizes.shape or self.ids.ndim != 1:
            raise ValueError(f"GroupSizes needs two equally long 1-D arrays, got {self.ids.shape} and {self.sizes.shape}")
        self.ids.flags.writeable = self.sizes.flags.writeable = False
        self._dict: dict[int, int] | None = None

    def _as_dict(self) -> dict[int, int]:
        if self._dict is None:
            self._dict = dict(zip(self.ids.tolist(), self.sizes.tolist()))
        return self._dict

    def __getitem__(self, key: int) -> int:
        return self._as_dict()[key]

    def __iter__(self) -> Iterator[int]:
        return iter(self.ids.tolist())

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __repr__(self) -> str:
        return f"GroupSizes({self._as_dict()!r})"


@dataclass(frozen=True)
class Decision:
    """The controller's choice for the next step and why (for logs and traces)."""

    group_size: int  # = G for the next step
    queue: float = 0.0  # virtual queue Q_t (SAGC); 0 for controllers without one
    risk: Mapping[int, float] = field(default_factory=dict)  # predicted P(event | G) per allowed G
    utility: Mapping[int, float] = field(default_factory=dict)  # normalised U_t(G)
    infeasible: bool = False  # SAGC: every allowed G's predicted risk exceeds the budget delta
    budget: float | None = None  # SAGC: the event budget of this step (delta, or delta="auto"'s rule)
    probe: bool = False  # SAGC: a step at a neighbouring G to identify the step-time model
    # per-prompt sizes (only when decide() was given prompt_ids and the controller allocates per
    # prompt): prompt id -> G for that prompt's group, 0 = skip the prompt. The ids named are a
    # prefix of the prompt_ids offered (in order); the rest stay for a later step. None: every
    # prompt of the step gets group_size.
    group_sizes: Mapping[int, int] | None = None

    def as_dict(self) -> dict:
        out = {
            "group_size": self.group_size,
            "queue": self.queue,
            "risk": {str(g): p for g, p in self.risk.items()},
            "utility": {str(g): u for g, u in self.utility.items()},
            "infeasible": self.infeasible,
        }
        if self.budget is not None:
            out["budget"] = self.budget
        if self.probe:
            out["probe"] = True
        if self.group_sizes is not None:
            out["group_sizes"] = {str(p): int(g) for p, g in self.group_sizes.items()}
        return out


@dataclass(frozen=True)
class Observation:
    """What `update` learned from a finished step."""

    event: bool  # straggler event by the configured rule
    figure: float  # the rule's raw figure (e.g. max length / reference length)
    queue: float  # virtual queue after the update
    group_size: int  # the G that was used
    details: Mapping[str, float] = field(default_factory=dict)  # per-rule figures

    def as_dict(self) -> dict:
        return {"event": self.event, "figure": self.figure, "queue": self.queue,
                "group_size": self.group_size, **{f"figure/{k}": v for k, v in self.details.items()}}


def check_allowed(allowed: Sequence[int]) -> tuple[int, ...]:
    """Validate and sort the allowed group sizes handed in by the caller."""
    try:
        sizes = sorted({int(g) for g in allowed})
    except (TypeError, ValueError):
        raise ValueError(f"allowed must be a sequence of integer group sizes, got {allowed!r}") from None
    if not sizes:
        raise ValueError("allowed must name at least one group size")
    if any(g != a for g, a in zip(sorted(set(allowed)), sizes)) or sizes[0] < 1:
        raise ValueError(f"allowed group sizes must be integers >= 1, got {list(allowed)!r}")
    return tuple(sizes)


def check_prompts(prompts: int | Mapping[int, int] | None, allowed: Sequence[int]) -> None:
    """B must be a whole number >= 1 (or a map with one for every allowed G)."""
    def ok(b: Any) -> bool:
        return S.is_real(b) and math.isfinite(b) and float(b).is_integer() and b >= 1

    if prompts is None:
        return
    if isinstance(prompts, Mapping):
        for g in allowed:
            if g not in prompts:
                raise ValueError(f"prompts has no entry for allowed group size {g}")
            if not ok(prompts[g]):
                raise ValueError(f"prompts[{g}] must be an integer >= 1 (prompts per step), got {prompts[g]!r}")
    elif not ok(prompts):
        raise ValueError(f"prompts must be an integer >= 1 (prompts per step) or a map G -> prompts, got {prompts!r}")


def check_prompt_ids(prompt_ids: Any) -> np.ndarray:
    """The ids of the prompts that may come next, in order: distinct integers >= 0. (n,) int64"""
    try:
        raw = np.asarray(prompt_ids)
    except (TypeError, ValueError):
        raw = np.asarray([None])
    if raw.ndim != 1 or (raw.size and raw.dtype.kind not in "iu"):
        raise ValueError(f"prompt_ids must be a 1-D sequence of integer prompt ids, got {S._show(prompt_ids)}")
    ids = raw.astype(np.int64)
    if ids.size and int(ids.min()) < 0:
        raise ValueError(f"prompt_ids must be >= 0, got {int(ids.min())}")
    if ids.size > 1 and np.any(np.diff(np.sort(ids)) == 0):
        raise ValueError("prompt_ids must not repeat an id within one decision")
    return ids


def check_group_sizes(decision: "Decision", ids: np.ndarray, allowed: Sequence[int], who: str) -> None:
    """A controller's per-prompt sizes: a prefix of the offered ids, each 0 or an allowed G."""
    sizes = decision.group_sizes
    if sizes is None:
        return
    if isinstance(sizes, GroupSizes):  # arrays at hand: check them as arrays
        named = sizes.ids
        values = np.unique(sizes.sizes).tolist()
    else:
        named = np.fromiter(sizes.keys(), dtype=np.int64, count=len(sizes))
        values = set(sizes.values())
    if named.size > ids.size or not np.array_equal(named, ids[:named.size]):
        raise RuntimeError(f"{who} sized prompts {named[:8].tolist()}..., not a prefix of the prompt_ids offered")
    bad = [g for g in values if g != 0 and g not in allowed]
    if bad:
        raise RuntimeError(f"{who} chose per-prompt G={bad[0]}, not 0 (skip) or in allowed {list(allowed)}")


def prompts_for(prompts: int | Mapping[int, int] | None, g: int, default: int) -> int:
    """B(G): prompts per step if G is chosen (fixed-prompts: an int; fixed-completions: a map)."""
    if prompts is None:
        return default
    if isinstance(prompts, Mapping):
        if g not in prompts:
            raise ValueError(f"prompts has no entry for allowed group size {g}")
        return int(prompts[g])
    return int(prompts)


class Controller:
    """Base class: subclasses set `name` and `Settings`, and implement `_choose`/`_learn`."""

    name: ClassVar[str] = "base"
    Settings: ClassVar[type] = object
    # one validator per state key (sagc.controllers._checks); subclasses add theirs in their own
    # `state_schema`, and load_state_dict refuses missing, unknown or malformed keys
    state_schema: ClassVar[dict[str, S.Check]] = {
        "step": S.integer(lo=0),
        "current": S.optional(S.integer(lo=1)),
        "queue": S.number(lo=0.0),
        "events": S.integer(lo=0),
        "last_b": S.optional(S.integer(lo=1)),
        "rule": S.mapping({"medians": S.list_of(S.number(lo=0.0, lo_open=True)),  # StragglerRule.init_state
                           "s_per_token": S.list_of(S.number(lo=0.0))}),
    }

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if isinstance(cls.__dict__.get("Settings"), type):
            S.typed_settings(cls.Settings)  # delta="0.1" -> "delta must be a number, got '0.1'"

    def __init__(self, settings: Any = None, **kwargs: Any) -> None:
        if settings is None:
            settings = self.Settings(**kwargs)  # type: ignore[call-arg]
        elif kwargs:
            settings = dataclasses.replace(settings, **kwargs)
        if not isinstance(settings, self.Settings):
            raise TypeError(f"{type(self).__name__} needs {self.Settings.__name__}, got {type(settings).__name__}")
        self.settings = settings
        self.rule: StragglerRule = make_rule(getattr(settings, "straggler", StragglerSettings()))
        self._state: dict[str, Any] = {"step": 0, "current": None, "queue": 0.0, "events": 0,
                                       "last_b": None, "rule": self.rule.init_state()}
        self._state.update(self._init_state())

    # ---- public API ----------------------------------------------------------------------
    def decide(self, allowed: Sequence[int], prompts: int | Mapping[int, int] | None = None,
               prompt_ids: Sequence[int] | np.ndarray | None = None) -> Decision:
        """Choose G for the next step from `allowed` (the trainer's compatible sizes).

        `prompts` is B, the number of prompts of the next step: an int (fixed prompts per step)
        or a map G -> B (fixed completions per step). Default: as many as in the last step.
        `prompt_ids`: the ids of the prompts that may come next, in the data loader's order
        (at least B of them; more lets a controller skip some). A controller that allocates per
        prompt (SAGC with per_prompt=True, greso, knapsack) may then set
        `Decision.group_sizes` (see there); the others ignore them.
        """
        sizes = check_allowed(allowed)
        check_prompts(prompts, sizes)
        decision = self._choose(sizes, prompts)
        if decision.group_size not in sizes:  # a bug in a controller must not reach the trainer
            raise RuntimeError(f"{self.name} chose G={decision.group_size}, not in allowed {list(sizes)}")
        if prompt_ids is not None:
            ids = check_prompt_ids(prompt_ids)
            decision = self._per_prompt(decision, sizes, prompts_for(prompts, decision.group_size,
                                                                     self._state["last_b"] or ids.size), ids)
            check_group_sizes(decision, ids, sizes, self.name)
        self._state["current"] = int(decision.group_size)
        return decision

    def update(self, stats: StepStats, prompt_ids: Sequence[int] | np.ndarray | None = None) -> Observation:
        """Learn from the finished step (call once per optimizer step, after the rollout).

        prompt_ids: the prompt id of each group in `stats`, in the order of its sorted group ids
        (np.unique(stats.group_id)); controllers that keep per-prompt state learn from them."""
        if not isinstance(stats, StepStats):
            raise TypeError(f"update expects StepStats, got {type(stats).__name__}")
        if prompt_ids is not None:
            prompt_ids = np.asarray(prompt_ids, dtype=np.int64).ravel()
            groups = np.unique(stats.group_id).size
            if prompt_ids.size != groups:
                raise ValueError(f"update: prompt_ids has {prompt_ids.size} ids for {groups} groups in stats")
        event, figure, details = self.rule.observe(stats, self._state["rule"])
        st = self._state
        budget = self._step_budget()
        if budget is not None:  # only budgeted controllers keep a virtual queue
            # Neely's virtual queue: Q_{t+1} = max(Q_t + s_t - delta_t, 0)
            st["queue"] = max(st["queue"] + float(event) - budget, 0.0)
        st["events"] += int(event)
        st["step"] += 1
        st["last_b"] = stats.num_groups
        if st["current"] is None:
            st["current"] = stats.group_size
        self._learn(stats, event)
        if prompt_ids is not None:
            self._learn_prompts(stats, prompt_ids)
        return Observation(event=bool(event), figure=float(figure), queue=float(st["queue"]),
                           group_size=stats.group_size, details=details)

    @property
    def queue(self) -> float:
        return float(self._state["queue"])

    @property
    def uses_prompt_ids(self) -> bool:
        """True when decide() may size prompts one by one (`Decision.group_sizes`) and update()
        learns per prompt: a trainer then passes prompt ids. Default: the class overrides
        `_per_prompt` or `_learn_prompts`."""
        klass = type(self)
        return klass._per_prompt is not Controller._per_prompt or klass._learn_prompts is not Controller._learn_prompts

    @property
    def steps(self) -> int:
        return int(self._state["step"])

    @property
    def event_rate(self) -> float:
        return self._state["events"] / max(self._state["step"], 1)

    def state_dict(self) -> dict:
        """Whole mutable state as plain JSON types (a deep copy)."""
        return {"controller": self.name, "state": copy.deepcopy(self._state)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `state_dict()`; a state this controller could not have written is refused with
        a ValueError naming the key (before anything changes)."""
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state, Mapping) or set(state) != {"controller", "state"}:
            raise ValueError(f"{where}: expected the mapping {{'controller': ..., 'state': ...}} from "
                             f"state_dict(), got {S._show(state)}")
        if state["controller"] != self.name:
            raise ValueError(f"{where}: state is for controller {state['controller']!r}, not {self.name!r}")
        try:
            S.check_mapping(self.full_state_schema(), state["state"], "")
            st = state["state"]
            if st["events"] > st["step"]:
                raise ValueError(f"state key 'events' must be <= step ({st['step']}), got {st['events']}")
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        self._state = copy.deepcopy(dict(state["state"]))

    @classmethod
    def full_state_schema(cls) -> dict[str, S.Check]:
        """Every state key's validator: the base class's, then each subclass's additions."""
        out: dict[str, S.Check] = {}
        for klass in reversed(cls.__mro__):
            out.update(klass.__dict__.get("state_schema", {}))
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings})"

    # ---- for subclasses ----------------------------------------------------------------------
    def _init_state(self) -> dict[str, Any]:
        return {}

    def _choose(self, allowed: tuple[int, ...], prompts: int | Mapping[int, int] | None) -> Decision:
        raise NotImplementedError

    def _learn(self, stats: StepStats, event: bool) -> None:
        pass

    def _per_prompt(self, decision: Decision, allowed: tuple[int, ...], prompts: int, ids: np.ndarray) -> Decision:
        """Per-prompt sizes for the offered prompt ids (default: none, every prompt at G)."""
        return decision

    def _learn_prompts(self, stats: StepStats, prompt_ids: np.ndarray) -> None:
        """Per-prompt learning from a finished step's groups (default: nothing kept)."""

    def _step_budget(self) -> float | None:
        """The event budget the finished step is charged against (None: no virtual queue)."""
        return None

    def _current_or(self, allowed: tuple[int, ...], fallback: int) -> int:
        """The current G if allowed, else the allowed size nearest to it in log scale."""
        cur = self._state["current"] or fallback
        return nearest(allowed, cur)


def nearest(allowed: Sequence[int], g: float) -> int:
    """Allowed size closest to g on a log scale (ties: the smaller one)."""
    g = max(float(g), 1e-9)
    return min(allowed, key=lambda a: (abs(math.log(a) - math.log(g)), a))


def check_range(name: str, value: float, lo: float, hi: float, *, lo_open: bool = False,
                hi_open: bool = False) -> None:
    """Raise 'name must be in (lo, hi], got x' style errors (optax-like)."""
    ok = S.is_real(value) and ((value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi))
    if not ok or (isinstance(value, float) and math.isnan(value)):
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise ValueError(f"{name} must be in {left}{lo:g}, {hi:g}{right}, got {value!r}")


def rng_from_state(state: dict) -> np.random.Generator:
    bg = np.random.PCG64()
    bg.state = state
    return np.random.Generator(bg)
