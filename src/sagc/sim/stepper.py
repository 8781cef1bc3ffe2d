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
from sagc.sim.prompts import PromptPool
from sagc.sim.scenario import Scenario
from sagc.stats import StepStats
from sagc.utility import mixed_groups, realised

_EXTRA_STREAM, _LONG_STREAM, _ROUND_STREAM = 1, 2, 16  # dynamic sampling round r > 0: stream 16 + r
_MAX_SKIPPED_BATCHES = 100  # dynamic sampling: offered batches per step at most (then the last one runs)
LOOKAHEAD = 4  # prompt ids offered to decide(): LOOKAHEAD x B (a per-prompt controller may skip some)


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
        self.next_prompt = 0  # position in the prompt stream (with a pool: epoch after epoch)
        self.pool = PromptPool(scenario) if scenario.prompts.pool is not None else None

    def _peek(self, n: int) -> np.ndarray:
        """The ids of the next n prompts of the stream, not consumed."""
        if self.pool is not None:
            return self.pool.ids_at(self.next_prompt, n)
        return np.arange(self.next_prompt, self.next_prompt + n, dtype=np.int64)

    def _window(self, n: int) -> np.ndarray:
        """Up to n next prompt ids, cut before the first repeat (a pool's epoch boundary)."""
        ids = self._peek(n)
        if self.pool is not None and ids.size:
            _, first = np.unique(ids, return_index=True)
            dup = np.setdiff1d(np.arange(ids.size), first)
            if dup.size:
                ids = ids[:int(dup.min())]
        return ids

    def _take(self, n: int) -> np.ndarray:
        ids = self._peek(n)
        self.next_prompt += n
        return ids

    def _taker(self, decision: Decision):
        """take_prompts for the plan: with per-prompt sizes, the decision's prefix of the offered
        prompts is consumed (skipped ones included) and its kept prompts come first."""
        if decision.group_sizes is None:
            return self._take, None
        named = list(decision.group_sizes.items())
        self.next_prompt += len(named)
        kept = [p for p, g in named if g > 0]
        sizes = {p: g for p, g in named if g > 0}

        def take(n: int) -> np.ndarray:
            head = np.asarray(kept[:n], dtype=np.int64)
            return np.concatenate([head, self._take(n - head.size)]) if head.size < n else head
        return take, sizes

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
        size = plan.groups["size"][new]
        g = int(size.max())  # ragged groups: draw at the largest, keep each group's first G_i
        parts = [self._sample(t, g, prompts[new[:b]], 0)]
        if new.size > b:
            parts.append(self._sample(t, g, prompts[new[b:]], _EXTRA_STREAM))
        ref = []
        for i, batch in enumerate(parts):
            pos = new[i * b: i * b + batch.prompts]
            self._keep(keys[pos], batch, prompts[pos], remember=self.policy.settings.policy == "defer",
                       sizes=plan.groups["size"][pos])
            n = plan.groups["size"][pos]
            mask = np.arange(g)[None, :] < n[:, None]
            ref.append((int(batch.length[mask].sum()), float(np.nansum(batch.reward[mask])), int(mask.sum())))
        return sum(r[0] for r in ref), sum(r[1] for r in ref), sum(r[2] for r in ref)

    def _sample(self, t: int, g: int, prompts: np.ndarray, stream: int) -> Batch:
        """Would-be completions of fresh prompts: a pool's prompts keep their own draws."""
        if self.pool is not None:
            return self.model.sample_params(t, self.pool.params(prompts, t), g, stream=stream)
        return self.model.sample_step(t, g, prompts.size, stream=stream)

    def _keep(self, keys: np.ndarray, batch: Batch, prompts: np.ndarray, remember: bool,
              sizes: np.ndarray | None = None) -> None:
        for i, k in enumerate(keys.tolist()):
            n = batch.length.shape[1] if sizes is None else int(sizes[i])
            self.store[k] = (batch.length[i, :n], batch.reward[i, :n], batch.truncated[i, :n])
            if remember:
                self.prompt_draws[int(prompts[i])] = {n: v[i] for n, v in batch.prompt.items()}

    def step(self, t: int) -> StepResult:
        sc = self.scenario
        eng = sc.engine
        if getattr(self.controller, "sampling", None) is not None:
            return _rounds_step(self, t)
        decision = self.controller.decide(allowed=sc.group_sizes, prompts=sc.prompts_per_step,
                                          prompt_ids=self._window(LOOKAHEAD * sc.prompts_per_step))
        take, sizes = self._taker(decision)
        plan = self.policy.plan(t, decision.group_size, sc.prompts_per_step, take, sizes=sizes)
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
        # As the TRL trainer does (integrations/trl/tail.py): a short step trains exactly its
        # target B of complete groups, pinned ones first, then the first to complete; a group that
        # completed beyond B while the step waited is the tail (carried, dropped or deferred).
        order = np.argsort(np.argsort(res.finish_s, kind="stable"), kind="stable")  # (s,) finish rank
        out = self.policy.close(plan, finished, generated, cap=plan.target, finish_order=order)

        # what is trained: complete groups (signal counted here, ragged sizes allowed)
        tr = out.trained_rows
        tr_group = rows["group"][tr]
        trained = {"length": out.length[tr], "reward": reward[tr], "truncated": trunc[tr], "group": tr_group,
                   "resumed": (out.seg[tr] > 0).sum(axis=1) > 1}
        informative, signal = ragged_signal(tr_group, reward[tr])
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
        uniq, mixed, _ = mixed_groups(tr_group, reward[tr])
        trained_prompts = plan.groups["prompt"][uniq]
        observation = self.controller.update(stats, prompt_ids=trained_prompts)
        if self.pool is not None:
            self.pool.learn(trained_prompts, mixed)
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


def _rounds_step(self: "Stepper", t: int) -> StepResult:
    """One step of dynamic sampling (DAPO; GRESO's rollout): generation batches of gen_factor x B
    prompts (each consumed; a per-prompt controller may skip some, size 0) run to the end, one
    after the other, until B groups with mixed rewards are in hand or max_rounds batches ran. The
    step trains the first B of them; every other group rolled out is dropped (counted as never
    trained). The controller and the scenario's rule see every group rolled out."""
    sc, eng = self.scenario, self.scenario.engine
    if self.policy.settings.policy != "full":
        raise ValueError(f"{self.controller.name}: dynamic sampling runs with rollout policy full, "
                         f"not {self.policy.settings.policy!r}")
    b = sc.prompts_per_step
    sampling = self.controller.sampling
    n_gen = int(np.ceil(sampling.gen_factor * b))
    cols: dict[str, list] = {"prompt": [], "size": [], "length": [], "reward": [], "trunc": [], "finish": []}
    rollout_s = busy = 0.0
    engine = None
    found = 0
    decision = None
    r = tries = 0
    while r < sampling.max_rounds:  # a batch whose prompts are all skipped is not a generation batch
        cand = self._window(n_gen)
        self.next_prompt += cand.size
        decision = self.controller.decide(allowed=sc.group_sizes, prompts=b, prompt_ids=cand)
        sizes = decision.group_sizes or {}
        g_of = np.asarray([sizes.get(int(p), decision.group_size) for p in cand.tolist()], dtype=np.int64)
        run = g_of > 0
        tries += 1
        if not run.any():
            if tries < _MAX_SKIPPED_BATCHES:
                continue
            g_of[:], run[:] = decision.group_size, True  # everything skipped for too long: run this batch
        ids, gs = cand[run], g_of[run]
        gmax = int(gs.max())
        batch = self._sample(t, gmax, ids, 0 if r == 0 else _ROUND_STREAM + r)
        mask = np.arange(gmax)[None, :] < gs[:, None]  # (n, gmax) each group's first G_i
        length = batch.length[mask]
        res = simulate_rollout(length, eng, sc.lengths.prompt_tokens)
        cols["finish"].append(res.finish_s + rollout_s)
        rollout_s += res.rollout_s
        busy += res.busy_slot_s
        engine = res
        cols["prompt"].append(ids)
        cols["size"].append(gs)
        cols["length"].append(length)
        cols["reward"].append(batch.reward[mask])
        cols["trunc"].append(batch.truncated[mask])
        grp = np.repeat(np.arange(ids.size), gs)
        found += int(np.count_nonzero(mixed_groups(grp, batch.reward[mask])[1]))
        r += 1
        if found >= b:
            break
    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
    prompt, size = cat["prompt"].astype(np.int64), cat["size"].astype(np.int64)
    length, reward, trunc = cat["length"].astype(np.int64), cat["reward"], cat["trunc"].astype(bool)
    m, n = prompt.size, length.size
    group = np.repeat(np.arange(m), size)
    _, mixed, _ = mixed_groups(group, reward)
    chosen = np.flatnonzero(mixed)[:b]  # the first B informative groups
    trained_g = np.zeros(m, dtype=bool)
    trained_g[chosen] = True
    tr = np.flatnonzero(trained_g[group])
    index = np.arange(n) - np.repeat(np.cumsum(size) - size, size)
    groups = {"key": np.arange(m, dtype=np.int64), "prompt": prompt, "size": size, "drawn": np.full(m, t, np.int64),
              "attempt": np.zeros(m, np.int64), "deferred": np.full(m, -1, np.int64), "pinned": np.zeros(m, bool)}
    rows = {"group": group, "index": index, "tokens": np.zeros(n, np.int64), "done": np.zeros(n, bool),
            "first": np.full(n, -1, np.int64)}
    g0 = decision.group_size if decision is not None else sc.group_sizes[0]
    plan = StepPlan(step=t, group_size=g0, prompts=b, rate=1.0, kind="full", target=None, groups=groups, rows=rows,
                    seg=np.zeros((n, 1), np.int64), new=np.ones(m, bool))
    trained_tokens = int(length[tr].sum())
    outcome = StepOutcome(trained_rows=tr, trained_groups=chosen, length=length, seg=length[:, None].copy(),
                          first=np.full(n, t, np.int64), on_policy_tokens=trained_tokens, stale_tokens=0,
                          wasted_tokens=int(length.sum()) - trained_tokens, dropped_prompts=int(m - chosen.size),
                          deferred_prompts=0, carried_groups=0, deferred_waits=np.zeros(0, np.int64), max_staleness=0)
    trained = {"length": length[tr], "reward": reward[tr], "truncated": trunc[tr], "group": group[tr],
               "resumed": np.zeros(tr.size, bool)}
    ran = {"row": np.arange(n), "length": length, "reward": reward, "truncated": trunc, "aborted": np.zeros(n, bool),
           "resumed": np.zeros(n, bool), "finish_s": cat["finish"].astype(np.float64)}
    informative, signal = ragged_signal(group[tr], reward[tr])
    step_s = rollout_s + eng.train_s_per_token * trained_tokens + eng.overhead_s
    stats = StepStats(group_id=group, length=length, reward=reward, truncated=trunc, group_size=g0,
                      rollout_s=rollout_s, step_s=step_s)
    observation = self.controller.update(stats, prompt_ids=prompt)
    event, figure, _ = self.rule.observe(stats, self.rule_state)
    if self.pool is not None:
        self.pool.learn(prompt[chosen], np.ones(chosen.size, bool))
    capacity = eng.slots * eng.replicas * rollout_s
    return StepResult(step=t, decision=decision, plan=plan, outcome=outcome, engine=engine, stats=stats,
                      observation=observation, event=bool(event), figure=float(figure), informative=informative,
                      signal=signal, rollout_s=float(rollout_s), busy_slot_s=busy,
                      bubble=1.0 - busy / capacity if capacity > 0 else 0.0, trained=trained, ran=ran,
                      ref_tokens=int(length.sum()), ref_reward=float(np.nansum(reward)), ref_rows=n,
                      fresh_prompts=m, policy_name="full")


def ragged_signal(group: np.ndarray, reward: np.ndarray) -> tuple[int, float]:
    """(informative groups, signal) of ragged trained groups: groups with >= 2 scored rewards
    that differ, weighted by 1 - 1/(scored) (the default utility's realised count)."""
    _, mixed, scored = mixed_groups(group, reward)
    return int(np.count_nonzero(mixed)), realised("signal", scored[mixed])


__all__ = ["Stepper", "StepResult", "ragged_signal"]
