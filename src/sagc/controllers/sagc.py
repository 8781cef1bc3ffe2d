"""`sagc`: Straggler-Aware Group Control (design section 4; arXiv 2606.02218).

Choosing G at each optimizer step is an online constrained problem: maximise the benefit of
large groups while the long-run rate of straggler events stays under a budget delta. We solve it
with Neely's drift-plus-penalty ("Stochastic Network Optimization", 2010):

    Q_{t+1} = max(Q_t + s_t - delta, 0)            virtual queue of budget overdraft
    G_t     = argmax_{G in A}  V * U_t(G) - Q_t * p_t(G)

s_t is the observed event of step t, p_t(G) the risk model's predicted P(event | G)
(`sagc.risk`), U_t(G) the normalised benefit. While the queue is empty SAGC
picks the most useful G; every event pushes the queue up until riskier sizes lose. Because Q
reacts to *observed* events, the budget holds even where the risk model is off: the time-
average event rate exceeds delta by at most Q_T / T, and Q_T stays O(V).

Defaults, and why (measured in docs/benchmarks.md; design section 8):
- objective "goodput": U_t(G) is benefit per *predicted second*, U(G) / T_t(G), with T_t
  learned online. Benefit alone sits at G_max even when a smaller G makes more per second.
- utility "signal": informative groups weighted by 1 - 1/G (`sagc.utility`).
- the "tail" straggler rule (`sagc.rules`): an event is a step that spent more than half its
  decode iterations on its last 10% of completions, i.e. waste, scale-free under drift.
- delta "auto": the budget is the lowest predicted event rate among the sizes within
  `auto_slowdown` (5%) of the best predicted goodput, and SAGC never leaves those sizes. So
  it cuts straggler risk where that is nearly free and never pays real throughput for it. A
  number for delta is the paper's hard budget: drift-plus-penalty over every allowed G.
- no collapse: when no allowed G is predicted to meet a numeric delta, SAGC does not pin G to
  the least risky size (the plain rule's queue would grow without bound and do that); it takes
  the best-goodput G, charges the queue only for what that G was predicted to exceed
  (delta_t = max(delta, p_t(G_t))), flags `Decision.infeasible` and warns once.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from sagc.controllers import _checks as S
from sagc.controllers.base import Controller, Decision, check_range, nearest, prompts_for, rng_from_state
from sagc.controllers.measured import keep_per_size, measured_goodput, realised_signal
from sagc.controllers.prompts import PromptTable
from sagc.controllers.sagc_per_prompt import PerPromptMixin
from sagc.risk import RiskModel, summarize_step
from sagc.rules import StragglerSettings, median
from sagc.stats import StepStats
from sagc.utility import check_utility, fit_beta, normalise, pass_rate_summary, utility

OBJECTIVES = ("utility", "goodput")
STARTS = ("middle", "largest")
GOODPUT_FROM = ("model", "measured")
MEASURED_MIN_STEPS = 4  # goodput_from="measured": steps at a size before its measured signal/s is used
TIME_FIT_STEPS = 4  # timed steps before the step-time model predicts (its fit has 4 terms)
# timed steps at one size before the time probe: the probe's step is then the fit's 4th, so the
# 5th decision already uses a fit that has seen two sizes (on a slow CPU a budget holds few steps)
PROBE_AFTER = TIME_FIT_STEPS - 1


class InfeasibleBudgetWarning(UserWarning):
    """Every allowed group size is predicted to straggle more often than the budget delta."""


@dataclass(frozen=True)
class SAGCSettings:
    """Settings of the SAGC controller. Every knob is here; nothing is hidden."""

    delta: float | str = "auto"  # budget: long-run fraction of steps with an event, or "auto"
    V: float = 10.0  # penalty weight: large V stays near the most useful G, corrects more slowly
    utility: str | Callable[[int, int], float] = "signal"  # or "informative", "completions", "log", ...
    objective: str = "goodput"  # "goodput": benefit per predicted second; "utility": the paper's
    auto_slowdown: float = 0.05  # delta="auto": sizes within this share of the best goodput
    time_probe: bool = True  # goodput: one step at a neighbouring G when the window saw one size only
    goodput_from: str = "model"  # goodput: "model" (step-time fit) or "measured" (signal/s measured per G)
    window: int = 64  # steps the risk / pass-rate / step-time models learn from
    hold: int = 0  # minimum steps between two changes of G
    max_change_factor: float | None = None  # e.g. 2.0: G moves at most x2 or /2 per change
    initial_group_size: int | None = None  # the "current" G before any step: ties and max_change_factor start from it
    start: str = "middle"  # goodput: no G above the middle of allowed before the step-time model predicts
    success_threshold: float = 0.5  # reward > this counts as a pass (informative utility)
    straggler: StragglerSettings = field(default_factory=StragglerSettings)
    warm_queue: float = 0.5  # add this share of the risk model's multiplier to Q (0: plain rule)
    mc_samples: int = 2000  # Monte Carlo groups per G, used only for the 'group' rule
    infeasible_patience: int = 10  # consecutive infeasible decisions before InfeasibleBudgetWarning
    seed: int = 0
    # per-prompt group sizes (issue 22; docs/per_prompt.md). Off by default: see HELP.
    per_prompt: bool = False
    prompt_capacity: int = 2**20  # per-prompt table slots: memory capacity x 25 bytes (26 MB)
    prompt_decay: float = 0.5  # weight of a prompt's old pass counts at each new visit
    skip_below: float = 1.0  # skip a seen prompt whose predicted P(mixed rewards at G) is below this share of a new prompt's
    explore: float = 0.1  # ... except with this probability (pass rates move as the model learns)

    HELP: ClassVar[dict[str, str]] = {
        "delta": "straggler budget, the long-run share of event steps; 'auto': the lowest predicted rate "
                 "among sizes within auto_slowdown of the best goodput (never pays real throughput for it; "
                 "a fixed 0.1-0.3 was infeasible on real length traces and pinned G at 2)",
        "V": "weight of the benefit against the queue (explicit delta): larger stays near the best G, "
             "corrects overshoot more slowly",
        "utility": "benefit of a step: 'signal' = informative groups x (1 - 1/G); its per-second choice "
                   "is G=4 or G=8 on the built-in task, which learn there like static G=4, 8 and 16 and better "
                   "than G=2 (5 seeds, docs/benchmarks.md); 'informative' overrated G=2",
        "objective": "'goodput': benefit per predicted second (the default: without time SAGC sat at "
                     "G_max where a smaller G made more per second); 'utility': the paper's rule",
        "auto_slowdown": "delta='auto': the share of predicted goodput SAGC may give up to cut straggler risk",
        "time_probe": "goodput objective: when every step in the window ran at one size, take one step at the "
                      "neighbouring G, so the step-time model can tell how time scales with G (without it, a run "
                      "that starts at G_max credits the per-step intercept with most of the time, and sat at G=16 "
                      "on the built-in task where G=8 was twice as fast to the target)",
        "goodput_from": "goodput objective: 'model' (benefit model / step-time fit) or 'measured' (benefit per second "
                        "measured at each size over its own last `window` steps, the model scaled to it for sizes "
                        "not run); the simulator and the trainer use 'measured' under a tail-control rollout policy, "
                        "where a step ends at the B-th complete group and the step-time fit mis-ranks G",
        "window": "steps the risk, pass-rate and step-time models learn from",
        "hold": "minimum steps between two changes of G",
        "max_change_factor": "G moves at most this factor per change (e.g. 2.0)",
        "initial_group_size": "the current G before any step was seen: ties go to it and max_change_factor limits "
                              "the first move from it; with the defaults (no max_change_factor) the first step is "
                              "the rule's best G (None: no current G)",
        "start": "goodput objective: the largest G of the first steps, before the step-time model has the "
                 f"{TIME_FIT_STEPS} timed steps it needs to predict: 'middle' (the default: the allowed G nearest "
                 "the geometric middle of the smallest and largest, e.g. 8 of 2-32, 4 of 2-16) or 'largest' (no cap; "
                 "the plain utility then takes G_max). Why: until step times are known, a step at G_max may cost "
                 "G_max / G_min times a small one (on a CPU, TRL's step time grew about in proportion to G: 3 steps "
                 "at G=16 took 17 s of a 46 s, 30-step run); the middle is never more than sqrt(G_max / G_min) from "
                 "the cheapest or the largest, and the step-time model then decides. Tail-control policies default to "
                 "'largest' (sagc.controllers.TAIL_DEFAULTS: measured goodput learns sizes from G_max down)",
        "success_threshold": "reward above this counts as a pass (informative groups)",
        "straggler": "what counts as a straggler event; default 'tail': more than half of a step's decode "
                     "iterations after 90% of its completions finished (waste, scale-free under drift)",
        "warm_queue": "share of the predicted problem's multiplier added to the queue (explicit delta; 0: plain rule)",
        "mc_samples": "Monte Carlo groups per G for the 'group' rule",
        "infeasible_patience": "infeasible decisions in a row before InfeasibleBudgetWarning",
        "seed": "seed of the controller's Monte Carlo draws (same seed, same decisions)",
        "per_prompt": "choose G per prompt from each prompt's pass-rate posterior and length history when "
                      "prompts recur (decide(..., prompt_ids=...)): skip prompts predicted all-equal, size the rest "
                      "by a knapsack under the step G's token budget; prompts never seen get the step's G. Off by "
                      "default: where prompts do not recur it is plain SAGC, and it changes which prompts are "
                      "trained on (docs/per_prompt.md)",
        "prompt_capacity": "slots of the per-prompt table (direct-mapped on prompt id; 25 bytes each)",
        "prompt_decay": "weight of a prompt's old pass counts at each visit (pass rates move as the model learns)",
        "skip_below": "per_prompt: skip a seen prompt whose predicted chance of mixed rewards at G is below this "
                      "share of a new prompt's (from the population law): a skipped prompt is replaced by the next "
                      "one offered, so only prompts worse than a new one are skipped",
        "explore": "per_prompt: chance to keep a prompt predicted all-equal (its pass rate may have moved)",
    }

    def __post_init__(self) -> None:
        # Types (number, integer, ...) are checked from the annotations before this runs
        # (sagc.controllers._checks.typed_settings); here: values and the one string delta takes.
        if isinstance(self.delta, str):
            if self.delta != "auto":
                raise ValueError(f"delta must be a number in (0, 1) or 'auto', got {self.delta!r}")
        else:
            check_range("delta", self.delta, 0.0, 1.0, lo_open=True, hi_open=True)
        check_range("V", self.V, 0.0, math.inf, lo_open=True, hi_open=True)
        check_utility(self.utility)
        check_range("auto_slowdown", self.auto_slowdown, 0.0, 1.0, hi_open=True)
        check_range("warm_queue", self.warm_queue, 0.0, 1.0)
        if self.start not in STARTS:
            raise ValueError(f"start must be one of {list(STARTS)}, got {self.start!r}")
        if self.goodput_from not in GOODPUT_FROM:
            raise ValueError(f"goodput_from must be one of {list(GOODPUT_FROM)}, got {self.goodput_from!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {list(OBJECTIVES)}, got {self.objective!r}")
        if self.window < 1:
            raise ValueError(f"window must be an integer >= 1, got {self.window!r}")
        if self.hold < 0:
            raise ValueError(f"hold must be an integer >= 0, got {self.hold!r}")
        if self.max_change_factor is not None:
            check_range("max_change_factor", self.max_change_factor, 1.0, math.inf, lo_open=True)
        if self.initial_group_size is not None and self.initial_group_size < 1:
            raise ValueError(f"initial_group_size must be an integer >= 1, got {self.initial_group_size!r}")
        if self.infeasible_patience < 1:
            raise ValueError(f"infeasible_patience must be an integer >= 1, got {self.infeasible_patience!r}")
        if self.mc_samples < 100:
            raise ValueError(f"mc_samples must be an integer >= 100, got {self.mc_samples!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not isinstance(self.straggler, StragglerSettings):
            raise ValueError("straggler must be a StragglerSettings (or a mapping via sagc.make)")
        if self.prompt_capacity < 1:
            raise ValueError(f"prompt_capacity must be an integer >= 1, got {self.prompt_capacity!r}")
        check_range("prompt_decay", self.prompt_decay, 0.0, 1.0)
        check_range("skip_below", self.skip_below, 0.0, 2.0)
        check_range("explore", self.explore, 0.0, 1.0)


class SAGCController(PerPromptMixin, Controller):
    name = "sagc"
    Settings = SAGCSettings

    def _init_state(self) -> dict[str, Any]:
        return {
            "summaries": [],  # risk-model step summaries (sagc.risk.summarize_step), window-long
            "pass": [],  # pass-rate sums per step (sagc.utility.pass_rate_summary)
            "timing": [],  # [max_len, tokens, step_s, completions] per step, for the goodput objective
            "last_change": -(10**9),  # step index of the last change of G
            "infeasible_run": 0,  # consecutive decisions with every allowed G over the budget
            "budget": None,  # delta_t of the last decision: the queue's charge at the next update
            "rng": np.random.PCG64(self.settings.seed).state,
        }

    # load_state_dict's validator of each key above (sagc.controllers._checks): a new key needs a line
    state_schema = {
        "summaries": S.list_of(S.like(lambda: [summarize_step(s) for s in S.sample_steps()],
                                      same_length=(("res", "w"), ("loo", "wloo")))),
        "pass": S.list_of(S.like(lambda: [pass_rate_summary(s, 0.5) for s in S.sample_steps()])),
        # [max_len, tokens, step_s, completions]; 3 entries in states saved before completions were kept
        "timing": S.list_of(S.list_of(S.number(lo=0.0), length=(3, 4))),
        "last_change": S.integer(),
        "infeasible_run": S.integer(lo=0),
        "budget": S.optional(S.number(lo=0.0, hi=1.0)),  # delta_t charged at the next update
        "rng": S.pcg64_state,
    }

    # ---- learning ------------------------------------------------------------------------------
    def _learn(self, stats: StepStats, event: bool) -> None:
        st, w = self._state, self.settings.window
        st["summaries"] = (st["summaries"] + [summarize_step(stats)])[-w:]
        st["pass"] = (st["pass"] + [pass_rate_summary(stats, self.settings.success_threshold)])[-w:]
        secs = stats.step_s if math.isfinite(stats.step_s) else stats.rollout_s
        if math.isfinite(secs):
            row = [float(stats.length.max()), float(stats.length.sum()), secs, float(stats.n)]
            st["timing"] = (st["timing"] + [row])[-w:]
            if self.settings.goodput_from == "measured":
                measured = [float(stats.group_size), realised_signal(stats, self.settings.utility), float(secs)]
                self._measured = keep_per_size(self.measured + [measured], w)
        self._model = self._build_model()  # fit now, so decide() stays cheap ...
        self._risk_cache = {}
        if getattr(self, "_last_query", None) is not None:  # ... and predict for the usual query
            self.predict_risk(*self._last_query)
            self._predicted_value(*self._last_query)  # and utility / step time (fit, E[longest]: memos)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        table = None
        history: list[list[float]] = []
        if (isinstance(state, Mapping) and isinstance(state.get("state"), Mapping)
                and state.get("controller") == self.name and set(state) == {"controller", "state"}):
            inner = dict(state["state"])
            has = "prompts" in inner
            if self.settings.per_prompt and not has:
                raise ValueError("SAGCController.load_state_dict: state key 'prompts' is missing "
                                 "(per_prompt=True keeps a per-prompt table)")
            if has and not self.settings.per_prompt:
                raise ValueError("SAGCController.load_state_dict: state key 'prompts' is not a key of this state "
                                 "(it was saved with per_prompt=True)")
            if has:
                table = PromptTable(self.settings.prompt_capacity, self.settings.prompt_decay)
                try:
                    table.load_state_dict(inner.pop("prompts"))
                except ValueError as exc:
                    raise ValueError(f"SAGCController.load_state_dict: {exc}") from None
            measured = self.settings.goodput_from == "measured"
            if measured != ("measured" in inner):
                raise ValueError("SAGCController.load_state_dict: state key 'measured' is "
                                 + ("missing (goodput_from='measured' keeps the measured signal per second)" if measured
                                    else "not a key of this state (it was saved with goodput_from='measured')"))
            if measured:
                rows = inner.pop("measured")
                try:
                    S.list_of(S.list_of(S.number(lo=0.0), length=(3, 3)))(rows, "measured")
                except ValueError as exc:
                    raise ValueError(f"SAGCController.load_state_dict: {exc}") from None
                history = [[float(x) for x in r] for r in rows]
            state = {**state, "state": inner}
        super().load_state_dict(state)
        if table is not None:
            self._table = table
        if self.settings.goodput_from == "measured":
            self._measured = history
        self._model = None
        self._risk_cache = {}

    def state_dict(self) -> dict:
        out = super().state_dict()
        if self.settings.per_prompt:
            out["state"]["prompts"] = self.prompt_table.state_dict()
        if self.settings.goodput_from == "measured":
            out["state"]["measured"] = [list(r) for r in self.measured]
        return out

    @property
    def measured(self) -> list[list[float]]:
        """goodput_from="measured": [G, signal, seconds] of each size's last `window` steps (G the size
        decided; sagc.controllers.measured.keep_per_size)."""
        if getattr(self, "_measured", None) is None:
            self._measured = []
        return self._measured

    def _fit_beta(self) -> tuple[float, float]:
        """fit_beta of the pass-rate window, kept while the window is the same list object (every
        update and load_state_dict puts a new list in the state; none changes one in place)."""
        window = self._state["pass"]
        memo = getattr(self, "_beta_memo", None)
        if memo is None or memo[0] is not window:
            memo = self._beta_memo = (window, fit_beta(window))
        return memo[1]

    def _step_budget(self) -> float | None:
        budget = self._state.get("budget")
        if budget is not None:
            return float(budget)
        return float(self.settings.delta) if not isinstance(self.settings.delta, str) else None

    def _build_model(self) -> RiskModel:
        return RiskModel(self._state["summaries"], mu_window=self.settings.straggler.window)

    @property
    def risk_model(self) -> RiskModel:
        """The risk model fitted to the current window (derived from state, cached)."""
        if getattr(self, "_model", None) is None:
            self._model = self._build_model()
        return self._model

    # ---- deciding ------------------------------------------------------------------------------
    def _choose(self, allowed: tuple[int, ...], prompts: int | Mapping[int, int] | None) -> Decision:
        s, st = self.settings, self._state
        default_b = st["last_b"] or 1
        bs = [prompts_for(prompts, g, default_b) for g in allowed]
        if any(b < 1 for b in bs):
            raise ValueError(f"prompts must be >= 1 for every allowed group size, got {prompts!r}")
        risk = self.predict_risk(allowed, bs)  # (k,) p_t(G)
        u = self._predicted_value(allowed, bs)  # (k,) utility, per predicted second for goodput
        if s.objective == "goodput" and s.goodput_from == "measured":
            u = self._measured_goodput(allowed, u)
        u = normalise(u)  # (k,) best = 1
        ready = self.risk_model.ready
        auto = isinstance(s.delta, str)
        # Sizes SAGC may take: with delta="auto" only those within auto_slowdown of the best goodput
        cand = u >= 1.0 - s.auto_slowdown - 1e-12 if auto else np.ones(len(allowed), dtype=bool)
        budget = float(np.min(risk[cand])) if auto else float(s.delta)
        infeasible = bool(ready and not auto and float(np.min(risk)) > budget)
        lam = 0.0  # warm start of the queue (numeric, feasible delta only)
        if auto:  # the least risky of the near-best sizes (ties: the better goodput)
            score = np.where(cand, -risk + 1e-6 * u, -np.inf)
            step_budget = None
        elif infeasible:  # no collapse: best goodput, queue charged only for what it can't meet
            score = u.copy()
            step_budget = None
        else:
            lam = s.warm_queue * _multiplier(s.V * u, risk, budget) if st["step"] > 0 else 0.0
            score = s.V * u - (st["queue"] + lam) * risk  # drift-plus-penalty
            step_budget = budget
        if s.objective == "goodput" and s.start == "middle" and st["step"] < TIME_FIT_STEPS:
            # the start: no G above the middle until the step-time model can price the sizes
            # (a cap, so a risk-driven smaller G stands); the time probe below still runs
            mid = middle_size(allowed)
            score = np.where(np.asarray(allowed) > mid, -np.inf, score)
            if not np.isfinite(score).any():  # delta="auto": every near-best size is above the middle
                score[allowed.index(mid)] = 0.0
        choice = self._stable_choice(allowed, score)
        # probe only where SAGC would keep its size: a change of G identifies the model anyway
        probe = bool(s.objective == "goodput" and s.time_probe and ready and choice == st["current"]
                     and st["step"] - st["last_change"] >= s.hold and self._time_unidentified())
        if probe:  # the neighbour below (above, at the smallest size) within max_change_factor
            i = allowed.index(choice)
            near = [j for j in (i - 1, i + 1) if 0 <= j < len(allowed)]
            if s.max_change_factor is not None:
                near = [j for j in near if choice / s.max_change_factor <= allowed[j] <= choice * s.max_change_factor]
            probe = bool(near)
            if probe:
                choice = allowed[near[0]]
                st["last_change"] = st["step"]
        k = allowed.index(choice)
        if infeasible:
            step_budget = max(budget, float(risk[k]))
        st["budget"] = step_budget if ready else None
        # The flag is per decision; the warning waits for `infeasible_patience` in a row, so an
        # early, noisy risk estimate does not raise a false alarm.
        st["infeasible_run"] = st.get("infeasible_run", 0) + 1 if infeasible else 0
        if st["infeasible_run"] >= s.infeasible_patience and not getattr(self, "_warned_infeasible", False):
            self._warned_infeasible = True
            low = int(np.argmin(risk))
            warnings.warn(
                f"sagc: the straggler budget delta={s.delta:g} looks infeasible: even G={allowed[low]} has "
                f"predicted P(event)={float(risk[low]):.2f}. Rather than shrink G for a budget no size "
                f"can meet, SAGC takes the best-goodput G on such steps (now G={choice}) and charges its "
                "queue only for the excess it can't avoid; every such step is flagged "
                "(Decision.infeasible). Raise delta, use delta='auto', allow smaller G, or cut the "
                "straggler source (e.g. a lower length cap).",
                InfeasibleBudgetWarning, stacklevel=3)
        queue = float(st["queue"]) + lam
        return Decision(group_size=int(choice), queue=queue,
                        risk={g: float(p) for g, p in zip(allowed, risk)},
                        utility={g: float(x) for g, x in zip(allowed, u)}, infeasible=infeasible,
                        budget=budget if ready else None, probe=probe)

    def _predicted_value(self, allowed: tuple[int, ...], bs: list[int]) -> np.ndarray:
        """utility(G) (divided by the predicted step time T_t(G) under objective="goodput"), kept
        while its inputs are the same objects (the pass-rate window, the step-time fit, the risk
        model): every update makes new ones, and warms this for the last query, so a decide in a
        steady loop only reads it. (k,)"""
        s = self.settings
        key = (tuple(allowed), tuple(bs))
        deps = (self._state["pass"], self._time_fit() if s.objective == "goodput" else None, self.risk_model)
        memo = getattr(self, "_value_memo", None)
        if (memo is None or memo[1] != key or any(x is not y for x, y in zip(memo[0], deps))
                or callable(s.utility)):  # a user's function is asked every time, as it always was
            u = utility(s.utility, allowed, bs, self._fit_beta())
            if s.objective == "goodput":
                u = u / self._predict_step_time(allowed, bs)
            memo = self._value_memo = (deps, key, u)
        return memo[2].copy()

    def _measured_goodput(self, allowed: tuple[int, ...], predicted: np.ndarray) -> np.ndarray:
        """goodput_from="measured" (sagc.controllers.measured.measured_goodput)."""
        return measured_goodput(self.measured, allowed, predicted, MEASURED_MIN_STEPS)

    def _time_unidentified(self) -> bool:
        """True when the window's steps all ran at one size (completions per step within 25%).

        With one size, total and padded tokens move only with the lengths, so the step-time fit
        confounds the intercept with the per-token costs and the predicted time of other sizes
        is a guess. Measured on the built-in CPU task: after
        26 steps at G=16 it predicted G=2 1.7x faster than G=16; the recorded static runs were
        6.0x faster (docs/benchmarks.md). One step at a neighbouring size identifies it."""
        st = self._state
        n = [x["n"] for x in st["summaries"][-self.settings.window:]]
        return len(st["timing"]) >= PROBE_AFTER and len(n) >= PROBE_AFTER and max(n) < 1.25 * min(n)

    def _stable_choice(self, allowed: tuple[int, ...], score: np.ndarray) -> int:
        """argmax of score under the stability settings (hold, max_change_factor; ties: current G)."""
        s, st = self.settings, self._state
        current = st["current"]
        if current is None and s.initial_group_size is not None:
            current = nearest(allowed, s.initial_group_size)
        if current is None and st["step"] == 0:
            return allowed[int(_argmax_tie(score, allowed, None))]
        current = nearest(allowed, current if current is not None else allowed[-1])
        ok = np.ones(len(allowed), dtype=bool)
        if s.max_change_factor is not None:  # limit the jump per change
            ok = np.array([current / s.max_change_factor <= g <= current * s.max_change_factor for g in allowed])
        ok[allowed.index(current)] = True
        if st["step"] - st["last_change"] < s.hold:  # hold: keep G a minimum number of steps
            ok[:] = False
            ok[allowed.index(current)] = True
        masked = np.where(ok, score, -np.inf)
        if not np.isfinite(masked).any():  # every permitted size is outside the candidates
            masked = np.where(ok, 0.0, -np.inf)
        choice = allowed[int(_argmax_tie(masked, allowed, current))]
        if choice != current:
            st["last_change"] = st["step"]
        return choice

    def predict_risk(self, allowed: tuple[int, ...] | list[int], prompts: list[int]) -> np.ndarray:
        """Predicted P(straggler event at the next step | G) for each G. (k,)

        Cached per (allowed, prompts) until the next update; `update` refits and predicts for
        the last query (risk and step time), so `decide` in a steady loop only reads the cache."""
        self._last_query = key = (tuple(int(g) for g in allowed), tuple(int(b) for b in prompts))
        return _cached(self.__dict__.setdefault("_risk_cache", {}), key, self._predict_risk)

    def _predict_risk(self, allowed: tuple[int, ...], prompts: tuple[int, ...]) -> np.ndarray:
        st = self._state
        model = self.risk_model
        names = self.rule.names
        if not model.ready:  # nothing seen yet: no basis to predict
            return np.zeros(len(allowed))
        no_event = np.ones(len(allowed))
        if "tail" in names:  # Monte Carlo on fixed draws seeded by `seed`: reproducible
            tail = self.settings.straggler
            no_event *= 1.0 - model.tail_event_prob(allowed, prompts, tail.tail_quantile, tail.tail_share,
                                                    self.settings.seed)
        threshold = self.rule.threshold(st["rule"])
        # 'time' is predicted as 'reference': rollout time is dominated by the longest decode
        per_completion = tuple(dict.fromkeys("reference" if n == "time" else n for n in names
                                             if n in ("reference", "truncation", "time")))
        if per_completion and threshold is not None:
            no_event *= 1.0 - model.event_prob(threshold, allowed, prompts, per_completion)
        if "group" in names:
            no_event *= 1.0 - self._group_rule_risk(model, allowed, prompts)
        return np.clip(1.0 - no_event, 0.0, 1.0)

    def _group_rule_risk(self, model: RiskModel, allowed, prompts) -> np.ndarray:
        """P(some group's max/median > kappa) by Monte Carlo from the residual law (a cancels)."""
        rng = rng_from_state(self._state["rng"])
        log_kappa = math.log(self.settings.straggler.kappa)
        out = []
        for g, b in zip(allowed, prompts):
            e = model.res.sample(rng, (self.settings.mc_samples, g))  # (mc, G) log residuals
            q = np.mean(e.max(axis=1) - np.median(e, axis=1) > log_kappa)
            out.append(1.0 - (1.0 - q) ** b)
        self._state["rng"] = rng.bit_generator.state
        return np.asarray(out)

    def _time_fit(self) -> tuple[np.ndarray, bool, np.ndarray, float, float] | None:
        """_predict_step_time's fit: (coef, padded, rows, ref, mean length); None before it has data."""
        st = self._state
        ref = self.rule.reference_length(st["rule"])
        if len(st["timing"]) < TIME_FIT_STEPS or not self.risk_model.ready or ref is None:
            return None
        memo = getattr(self, "_fit_memo", None)  # fitted in update; every update makes new lists
        if memo is not None and memo[0] is st["timing"] and memo[1] is st["summaries"] and memo[2] == ref:
            return memo[3]
        padded = all(len(r) == 4 for r in st["timing"])  # states saved by older versions: 3 entries
        rows = np.asarray([r if padded else r[:3] for r in st["timing"]], dtype=np.float64)
        x = np.column_stack([np.ones(rows.shape[0]), rows[:, 0], rows[:, 1]]
                            + ([rows[:, 0] * rows[:, 3]] if padded else []))  # (steps, 3 or 4)
        ridge = 1e-6 * np.eye(x.shape[1]) * np.maximum(np.diag(x.T @ x), 1.0)
        coef = np.linalg.solve(x.T @ x + ridge, x.T @ rows[:, 2])
        summ = st["summaries"][-self.settings.straggler.window:]
        mean_len = sum(x["tokens"] for x in summ) / max(sum(x["n"] for x in summ), 1)  # tokens
        self._fit_memo = (st["timing"], st["summaries"], ref, (coef, padded, rows, ref, mean_len))
        return self._fit_memo[3]

    def _expected_max(self, allowed, prompts, ref: float) -> np.ndarray:
        """risk_model.expected_max, kept for one model object and query (update computes it for the
        last query, so the next decide and its per-prompt cost only read it)."""
        key = (tuple(int(g) for g in allowed), tuple(int(b) for b in prompts), ref)
        memo = getattr(self, "_em_memo", None)
        if memo is None or memo[0] is not self.risk_model or memo[1] != key:
            memo = self._em_memo = (self.risk_model, key, self.risk_model.expected_max(allowed, prompts, ref))
        return memo[2].copy()

    def _predict_step_time(self, allowed, prompts) -> np.ndarray:
        """T_t(G): least squares of step seconds on [1, longest, total tokens, longest x completions].

        longest: decode iterations of a synchronous rollout; total tokens: continuous batching's
        work and the update's; longest x completions: padded tokens, the work of a static batch
        (`generate` runs every row to the longest; TRL pads completions to the longest for the
        loss). The regression weighs them by evidence, so one form serves both engines."""
        fit = self._time_fit()
        if fit is None:
            return np.ones(len(allowed))  # not enough data: plain utility
        coef, padded, rows, ref, mean_len = fit
        exp_max = self._expected_max(allowed, prompts, ref)  # (k,) tokens
        n = np.asarray(prompts, dtype=np.float64) * np.asarray(allowed)  # (k,) completions
        t = coef[0] + coef[1] * exp_max + coef[2] * n * mean_len
        if padded:
            t = t + coef[3] * exp_max * n
        floor = 0.05 * median(rows[:, 2].tolist())
        return np.maximum(t, max(floor, 1e-9))


def middle_size(allowed: tuple[int, ...]) -> int:
    """The allowed G nearest the geometric middle of the smallest and largest (ties: the smaller)."""
    mid = 0.5 * (math.log(allowed[0]) + math.log(allowed[-1]))
    return min(allowed, key=lambda g: (round(abs(math.log(g) - mid), 9), g))


def _cached(cache: dict, key: tuple, fn) -> np.ndarray:
    if key not in cache:
        cache[key] = fn(*key)
    return cache[key].copy()


def _multiplier(value: np.ndarray, risk: np.ndarray, delta: float) -> float:
    """Smallest lambda >= 0 whose choice argmax(value - lambda * risk) has predicted risk <= delta.

    The Lagrange multiplier of the *predicted* problem. Starting the queue near it lets SAGC sit
    at the right trade-off from the first steps, instead of paying the overshoot needed to fill
    an empty queue up to it: the budget excess is bounded by Q_T / T, so a smaller observed
    queue means a tighter budget at finite T. The observed queue still corrects model errors.
    """
    if risk[int(np.argmax(value))] <= delta or np.min(risk) > delta:
        return 0.0 if risk[int(np.argmax(value))] <= delta else _multiplier(value, risk, float(np.min(risk)))
    lo, hi = 0.0, 1.0
    while risk[int(np.argmax(value - hi * risk))] > delta:
        hi *= 2.0
        if hi > 1e9:
            return hi
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if risk[int(np.argmax(value - mid * risk))] > delta:
            lo = mid
        else:
            hi = mid
    return hi


def _argmax_tie(score: np.ndarray, allowed: tuple[int, ...], current: int | None) -> int:
    """Index of the best score; ties (within 1e-9) go to the current G, else the smaller G."""
    best = float(np.max(score))
    ties = [i for i, v in enumerate(score) if v >= best - 1e-9]
    if current is not None and allowed.index(current) in ties:
        return allowed.index(current)
    return ties[0]
