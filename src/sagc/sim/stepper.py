"""One simulated optimizer step under a rollout policy: draws, engine, stop, accounting.

Every simulated run goes through here (`policy: full` is the plain synchronous step), so the
simulator has one engine path. Per step:

1. the controller picks G; the rollout policy (sagc.rollout, the same object the TRL trainer
   drives) plans the step: resumed rows first, then a long round's or fresh prompts' rows;
2. the simulator knows what every row would produce unaborted: fresh prompts are drawn from
   the length model (stream 0 is the plain step's draw, so the first B prompts are the same
   whatever the policy; over-sampled prompts come from stream 1), a deferred prompt is re-drawn
   with its own difficulty (stream 2);
3. the engine (sagc.sim.engine) schedules the submitted rows (a resumed row prefills its prompt
   and its earlier tokens); the plan's stop rule gives the step's end; rows still running are
   cut there, with the tokens they had generated;
4. the policy closes the step: complete groups are trained, the rest carried, dropped or
   deferred; the controller sees the trained groups (complete, as its models assume).

Accounting (design section 9, point 3) is exact: per trained token, the policy version that
sampled it; per prompt, its would-be completions from its first draw (the bias reference).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sagc.controllers import Controller, Decision, Observation
from sagc.rollout import RolloutPolicy, StepOutcome, StepPlan
from sagc.rules import StragglerRule
from sagc.sim.engine import EngineResult, simulate_rollout
from sagc.sim.lengths import Batch, LengthModel
from sagc.sim.scenario import Scenario
from sagc.stats import StepStats
from sagc.utility import realised

_EXTRA_STREAM, _LONG_STREAM = 1, 2


@dataclass(frozen=True)
class StepResult:
    step: int
    decision: Decision
    plan: StepPlan
    outcome: StepOutcome
    engine: EngineResult
    stats: StepStats  # what the controller saw: the groups trained this step
    observation: Observation  # the controller's own view of the step
    event: bool  # straggler event by the scenario's rule (what the run is scored on)
    figure: float  # the scenario rule's figure
    informative: int  # trained groups whose rewards are not all equal
    signal: float  # trained groups' signal: informative x (1 - 1/G_i)
    rollout_s: float  # until the stop
    busy_slot_s: float  # slot-seconds held until the stop
    bubble: float  # idle slot-time share of the rollout
    trained: dict  # rows trained: length, reward, truncated, group (position), resumed (bool)
    ran: dict  # rows that ran: row index, length so far, reward, truncated, aborted, resumed
    ref_tokens: int  # would-be tokens of this step's fresh prompts (bias reference)
    ref_reward: float  # ... and their would-be reward sum
    ref_rows: int  # ... and completion count
    fresh_prompts: int
    policy_name: str  # the rollout policy's name

    @property
    def batch(self) -> Batch:
        """The trained completions as a (groups, G) Batch; refused when the trained groups have
        different sizes (a group carried from a step with another G): use `trained` then."""
        tr = self.trained
        sizes = np.unique(np.bincount(tr["group"])[np.unique(tr["group"])]) if tr["group"].size else np.zeros(0)
        if sizes.size > 1:
            raise ValueError(f"step {self.step} trained groups of sizes {sizes.tolist()}; a Batch needs one "
                             "size, read StepResult.trained instead")
        g = int(sizes[0]) if sizes.size else self.plan.group_size
        return Batch(length=tr["length"].reshape(-1, g), reward=tr["reward"].reshape(-1, g),
                     truncated=tr["truncated"].reshape(-1, g))

    @property
    def trained_tokens(self) -> int:
        return int(self.trained["length"].sum())


class Stepper:
    """Drives one controller and one rollout policy through a scenario's steps."""

    def __init__(self, scenario: Scenario, controller: Controller, policy: RolloutPolicy | None = None,
                 model: LengthModel | None = None) -> None:
        self.scenario = scenario
        self.controller = controller
        self.policy = policy if policy is not None else RolloutPolicy()
        self.model = model if model is not None else LengthModel(scenario)
        self.rule = StragglerRule(scenario.straggler)
        self.rule_state = self.rule.init_state()
        self.store: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # group key -> would-be rows
        self.prompt_draws: dict[int, dict] = {}  # prompt id -> its prompt-level draws (defer only)
        self.next_prompt = 0

    def _take(self, n: int) -> np.ndarray:
        ids = np.arange(self.next_prompt, self.next_prompt + n, dtype=np.int64)
        self.next_prompt += n
        return ids

    def _draw(self, t: int, plan: StepPlan) -> tuple[int, float, int]:
        """Would-be completions of the plan's new groups (and a long round's re-runs) into the store;
        returns the bias reference of the fresh prompts: (tokens, reward sum, rows)."""
        g = plan.group_size
        keys, prompts = plan.groups["key"], plan.groups["prompt"]
        if plan.kind == "long":
            draws = {k: np.array([self.prompt_draws[int(p)][k] for p in prompts]) for k in
                     self.prompt_draws[int(prompts[0])]}
            batch = self.model.regenerate(t, draws, g, stream=_LONG_STREAM)
            self._keep(keys, batch, prompts, remember=False)
            return 0, 0.0, 0
        new = np.flatnonzero(plan.new)
        if new.size == 0:
            return 0, 0.0, 0
        b = self.scenario.prompts_per_step
        parts = [self.model.sample_step(t, g, min(new.size, b))]
        if new.size > b:
            parts.append(self.model.sample_step(t, g, new.size - b, stream=_EXTRA_STREAM))
        for i, batch in enumerate(parts):
            pos = new[i * b: i * b + batch.prompts]
            self._keep(keys[pos], batch, prompts[pos], remember=self.policy.settings.policy == "defer")
        ref = [(int(p.length.sum()), float(np.nansum(p.reward)), int(p.length.size)) for p in parts]
        return sum(r[0] for r in ref), sum(r[1] for r in ref), sum(r[2] for r in ref)

    def _keep(self, keys: np.ndarray, batch: Batch, prompts: np.ndarray, remember: bool) -> None:
        for i, k in enumerate(keys.tolist()):
            self.store[k] = (batch.length[i], batch.reward[i], batch.truncated[i])
            if remember:
                self.prompt_draws[int(prompts[i])] = {n: v[i] for n, v in batch.prompt.items()}

    def step(self, t: int) -> StepResult:
        sc = self.scenario
        eng = sc.engine
        decision = self.controller.decide(allowed=sc.group_sizes, prompts=sc.prompts_per_step)
        plan = self.policy.plan(t, decision.group_size, sc.prompts_per_step, self._take)
        ref = self._draw(t, plan)
        rows = plan.rows
        keys = plan.groups["key"].tolist()
        true = [self.store[k] for k in keys]
        offset = np.concatenate([[0], np.cumsum([len(x[0]) for x in true])[:-1]]).astype(np.int64)
        at = offset[rows["group"]] + rows["index"]  # (n,) row -> position in the concatenated draws
        length = np.concatenate([x[0] for x in true])[at]  # (n,) would-be tokens
        reward = np.concatenate([x[1] for x in true])[at]
        trunc = np.concatenate([x[2] for x in true])[at]
        sub = plan.submit
        before = rows["tokens"][sub]  # (s,) tokens generated in earlier steps
        remaining = length[sub] - before
        res = simulate_rollout(remaining, eng, sc.lengths.prompt_tokens + before)
        stop = plan.stop_time(res.finish_s)
        finished = res.finish_s <= stop
        generated = res.tokens_by(remaining, stop)
        busy = res.busy_by(stop)
        out = self.policy.close(plan, finished, generated)

        # what is trained: complete groups (signal counted here, ragged sizes allowed)
        tr = out.trained_rows
        tr_group = rows["group"][tr]
        trained = {"length": out.length[tr], "reward": reward[tr], "truncated": trunc[tr], "group": tr_group,
                   "resumed": (out.seg[tr] > 0).sum(axis=1) > 1}
        informative, signal = _signal(tr_group, reward[tr])
        # what ran this step (the trace records it: cut rows with the tokens they had)
        tokens_now = out.length[sub]
        started = tokens_now > 0
        ran_rows = sub[started]
        ran = {"row": ran_rows, "length": tokens_now[started], "reward": np.where(finished, reward[sub], np.nan)[started],
               "truncated": np.where(finished, trunc[sub], True)[started], "aborted": ~finished[started],
               "resumed": before[started] > 0, "finish_s": np.minimum(res.finish_s, stop)[started]}
        step_s = stop + eng.train_s_per_token * float(trained["length"].sum()) + eng.overhead_s
        # The controller (and the scenario's straggler rule) see the trained groups, complete as
        # its models assume. Fed the cut rows as censored completions instead, SAGC read every
        # over-sampled step as a G-sized straggler and sat at G 16 where G 4 was best (heavy-tail-
        # filled: mean G 15.4 against 5.0; resume 1.5x gave 1.39x more signal/s with these stats).
        # Under `full` the trained rows are every row, so nothing changes for plain runs.
        stats = StepStats(group_id=tr_group, length=trained["length"], reward=trained["reward"],
                          truncated=trained["truncated"], group_size=plan.group_size, rollout_s=stop, step_s=step_s,
                          duration_s=res.finish_s if np.array_equal(sub, tr) else None)
        observation = self.controller.update(stats)
        event, figure, _ = self.rule.observe(stats, self.rule_state)
        share = out.on_policy_tokens / max(out.on_policy_tokens + out.stale_tokens, 1)
        self.policy.feedback(signal, step_s, share)
        live = set(self.policy.carried["key"].tolist())  # resumed next step: keep their would-be rows
        for k in keys:
            if k not in live:
                self.store.pop(k, None)  # trained, dropped, or deferred (a re-run draws anew)
        capacity = eng.slots * eng.replicas * stop
        return StepResult(step=t, decision=decision, plan=plan, outcome=out, engine=res, stats=stats,
                          observation=observation, event=bool(event), figure=float(figure),
                          informative=informative, signal=signal, rollout_s=float(stop), busy_slot_s=busy,
                          bubble=1.0 - busy / capacity if capacity > 0 else 0.0, trained=trained, ran=ran,
                          ref_tokens=ref[0], ref_reward=ref[1], ref_rows=ref[2],
                          fresh_prompts=int(plan.new.sum()), policy_name=self.policy.settings.policy)


def _signal(group: np.ndarray, reward: np.ndarray) -> tuple[int, float]:
    """(informative groups, signal) of ragged trained groups: groups with >= 2 scored rewards
    that differ, weighted by 1 - 1/(scored) (the default utility's realised count)."""
    if group.size == 0:
        return 0, 0.0
    _, gi = np.unique(group, return_inverse=True)
    m = int(gi.max()) + 1
    fin = np.isfinite(reward)
    hi = np.full(m, -np.inf)
    lo = np.full(m, np.inf)
    np.maximum.at(hi, gi[fin], reward[fin])
    np.minimum.at(lo, gi[fin], reward[fin])
    scored = np.bincount(gi[fin], minlength=m)
    mixed = (scored >= 2) & (hi > lo)
    return int(np.count_nonzero(mixed)), realised("signal", scored[mixed])


__all__ = ["Stepper", "StepResult"]
