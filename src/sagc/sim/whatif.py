"""What would SAGC save on my rollouts? Replay recorded runs on an engine model (`sagc whatif`).

    result = run_whatif(["run/sagc_trace.jsonl"], engine="llama-8b-h100-vllm")
    print(whatif_markdown(result))

Step-aligned replay: simulated step t replays recorded step t (cycling when --steps is larger).
Prompt i of the step replays the step's recorded group i (B = the usual number of groups per
recorded step), and a controller that picks G gets that group's first G recorded completions
(lengths, rewards, truncation) in their recorded order. So every controller sees the same
recorded lengths, and replaying a static run at its own G reproduces the recorded submission,
completion for completion. Where G exceeds what a group recorded, the extra completions are
drawn with replacement from the group (common random numbers keyed by (seed, step), so they do
not depend on G or on the controller); the result reports that resampled share. Resampling
cannot invent a longer completion than the group had, so G above the recorded size is
optimistic about stragglers: by default the allowed sizes stop at the largest recorded group.

The engine is a preset (sagc.sim.engines) or `calibrate` (sagc.sim.calibrate: fitted to the
trace's own rollout_s / step_s). Controllers: static at every allowed G, and SAGC with
`sagc.make("sagc")` defaults (plus an optional delta). Straggler events are scored with SAGC's
own rule for every run, so the rates compare.

Traces recorded under a tail-control policy: a step's sample is its trained rows at their natural
lengths (a resumed completion at its full length); cancelled completions are never replayed. The
ones resumed later are already there as trained rows; the dropped or deferred ones never finished
(censored), so they are counted and reported (`recorded.tail`), not invented: see docs/whatif.md
for the bias this leaves.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sagc.controllers import StaticController, make
from sagc.rollout import policy_defaults
from sagc.sim.calibrate import calibrate
from sagc.sim.engines import get_engine
from sagc.sim.lengths import Batch, LengthModel
from sagc.sim.runner import SCORE, run_scenario
from sagc.sim.pool import finished_groups, tail_summary
from sagc.sim.scenario import EngineSettings, Scenario, parse_scenario
from sagc.trace import read_trace
from sagc._io import clean_json

FORMAT = "sagc.whatif/1"
SIMULATED_LABEL = "simulated"  # every table and section says the numbers are simulated


def load_records(paths: Sequence[str | os.PathLike]) -> tuple[list[dict], list[str]]:
    """All records of the traces, in file order, and the file each came from."""
    if not paths:
        raise ValueError("whatif needs at least one trace file")
    records: list[dict] = []
    sources: list[str] = []
    for p in paths:
        if not Path(p).is_file():
            raise ValueError(f"trace file {p} does not exist")
        n = 0
        for rec in read_trace(p):
            records.append(rec)
            sources.append(str(p))
            n += 1
        if n == 0:
            raise ValueError(f"{p}: the trace holds no steps to replay")
    return records, sources


class ReplayModel(LengthModel):
    """Step-aligned replay of recorded steps (see the module docstring)."""

    def __init__(self, scenario: Scenario, records: Sequence[dict]) -> None:
        super().__init__(scenario)
        self.records = list(records)
        # per record: list of (lengths, rewards, truncated) arrays per group, in recorded order
        self._groups = []
        for rec in self.records:
            groups = []
            for g in finished_groups(rec):  # a cut completion's length is not a length
                n = len(g["lengths"])
                groups.append((np.asarray(g["lengths"], dtype=np.int64),
                               np.asarray(g.get("rewards", [float("nan")] * n), dtype=np.float64),
                               np.asarray(g.get("truncated", [False] * n), dtype=bool)))
            self._groups.append(groups)

    def sample_step(self, step: int, group_size: int, prompts: int | None = None, stream: int = 0) -> Batch:
        """Stream 0 replays recorded step `step`; an over-sampling policy's extra prompts (stream
        s > 0) replay the groups of recorded step `step + s`, so they are real recorded groups too."""
        b = self.scenario.prompts_per_step if prompts is None else int(prompts)
        g = int(group_size)
        rec = (int(step) + int(stream)) % len(self._groups)
        groups = self._groups[rec]
        cap = max(max(self.scenario.group_sizes), g)
        u = self._rng(step, stream).random((cap, b))[:g]  # (G, B): only completions beyond the recorded ones use it
        length = np.empty((b, g), dtype=np.int64)
        reward = np.empty((b, g), dtype=np.float64)
        trunc = np.empty((b, g), dtype=bool)
        for i in range(b):
            lens, rews, trs = groups[i % len(groups)]
            n = lens.shape[0]
            idx = np.arange(g)
            extra = idx >= n
            idx[extra] = np.floor(u[extra, i] * n).astype(np.int64)
            length[i], reward[i], trunc[i] = lens[idx], rews[idx], trs[idx]
        prompt = {"rec": np.full(b, rec, dtype=np.int64), "grp": np.arange(b, dtype=np.int64) % len(groups)}
        return Batch(length=length, reward=reward, truncated=trunc, prompt=prompt)

    def regenerate(self, step: int, prompt: dict, group_size: int, stream: int) -> Batch:
        """A deferred prompt re-run: G completions drawn with replacement from its recorded group."""
        g = int(group_size)
        b = prompt["rec"].shape[0]
        u = self._rng(step, stream).random((b, g))
        out = [np.empty((b, g), dtype=t) for t in (np.int64, np.float64, bool)]
        for i in range(b):
            arrays = self._groups[int(prompt["rec"][i])][int(prompt["grp"][i])]
            idx = np.floor(u[i] * arrays[0].shape[0]).astype(np.int64)
            for k in range(3):
                out[k][i] = arrays[k][idx]
        return Batch(length=out[0], reward=out[1], truncated=out[2], prompt=prompt)


def _default_sizes(records: Sequence[dict]) -> tuple[int, ...]:
    biggest = max(len(g["lengths"]) for r in records for g in r["groups"])
    sizes = {int(r["group_size"]) for r in records if int(r["group_size"]) <= biggest}
    g = 2
    while g <= biggest:
        sizes.add(g)
        g *= 2
    sizes.add(biggest)
    return tuple(sorted(s for s in sizes if s >= 2)) or (biggest,)


def recorded_prompt_tokens(records: Sequence[dict]) -> int:
    """The median prompt length the records state (`prompt_tokens`, written by SAGCGRPOTrainer),
    or 0 when any record lacks it. Calibration needs it to price a prefill per token: without it
    the fitted prefill is per sequence, and a resumed completion, which prefills its prompt and
    its earlier tokens again, would be charged per sequence for every one of those tokens."""
    values = [r.get("prompt_tokens") for r in records]
    if not values or any(not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0 for v in values):
        return 0
    return max(int(round(float(np.median(values)))), 1)


def resolve_engine(engine: str | EngineSettings, records: Sequence[dict], sources: Sequence[str],
                   prompt_tokens: int | None = None, slots: int | None = None,
                   replicas: int | None = None) -> tuple[EngineSettings, int, dict]:
    """(engine settings, prompt tokens, a JSON description incl. the calibration if any)."""
    if isinstance(engine, EngineSettings):
        return engine, int(prompt_tokens or 0), {"name": "custom", "settings": dataclasses.asdict(engine)}
    if engine == "calibrate":
        if not prompt_tokens:  # the trainer records its mean prompt length per step (SAGCGRPOTrainer)
            prompt_tokens = recorded_prompt_tokens(records)
        cal = calibrate(records, sources, slots=slots, replicas=replicas or 1, prompt_tokens=prompt_tokens or 0)
        return cal.engine, cal.prompt_tokens, {"name": "calibrate", "settings": dataclasses.asdict(cal.engine),
                                               "calibration": cal.summary(), "describe": cal.describe()}
    preset = get_engine(engine)
    settings = preset.settings
    changes = {k: int(v) for k, v in (("slots", slots), ("replicas", replicas)) if v is not None}
    if any(v < 1 for v in changes.values()):
        raise ValueError(f"slots and replicas must be >= 1, got {changes}")
    if changes:
        settings = dataclasses.replace(settings, **changes)
    return settings, int(prompt_tokens if prompt_tokens is not None else preset.prompt_tokens), {
        "name": preset.name, "description": preset.description, "settings": dataclasses.asdict(settings),
        "sources": list(preset.sources), "derivation": preset.derivation}


def run_whatif(paths: Sequence[str | os.PathLike], engine: str | EngineSettings = "calibrate",
               group_sizes: Sequence[int] | None = None, delta: float | None = None, steps: int | None = None,
               seed: int = 0, prompt_tokens: int | None = None, slots: int | None = None,
               replicas: int | None = None, rollout: Sequence[str] | None = None) -> dict:
    """Replay the traces on the engine for static G at every allowed size and SAGC; plain-JSON result.

    Keys: format, traces, recorded {steps, group_sizes, mean_step_s, ...}, engine {name,
    settings, calibration?}, group_sizes, resampled_share {label: share of completions drawn
    beyond a group's recorded ones}, replay_check (static runs only: the replay at the recorded
    G against the recorded step_s), sim (the run_scenario result, scenario and per-step series
    included), label ("simulated").

    rollout: tail-control policies to add (sagc.rollout), each run with SAGC's defaults choosing
    G: `auto` with its defaults, and `drop`, `resume`, `defer` with their anchors' published
    knobs (sagc.rollout.ANCHOR_DEFAULTS); labelled sagc+<policy>.
    """
    records, sources = load_records(paths)
    settings, p_tokens, engine_info = resolve_engine(engine, records, sources, prompt_tokens, slots, replicas)
    sizes = tuple(sorted({int(g) for g in group_sizes})) if group_sizes else _default_sizes(records)
    if any(g < 1 for g in sizes):
        raise ValueError(f"group sizes must be >= 1, got {list(sizes)}")
    counts = Counter(len(r["groups"]) for r in records)
    b = max(counts, key=lambda k: (counts[k], k))  # the usual number of groups per step
    ctrl = make("sagc", **({"delta": float(delta)} if delta is not None else {}))
    straggler = ctrl.settings.straggler
    n_steps = int(steps) if steps is not None else len(records)
    data = {"name": "whatif", "steps": n_steps, "seed": int(seed), "prompts_per_step": b, "group_sizes": list(sizes),
            "lengths": {"model": "trace", "path": str(Path(paths[0]).resolve()), "prompt_tokens": p_tokens},
            "engine": dataclasses.asdict(settings)}
    scenario = dataclasses.replace(parse_scenario(data), straggler=straggler)
    model = ReplayModel(scenario, records)
    controllers: list[Any] = [StaticController(group_size=g, straggler=straggler) for g in sizes] + [ctrl]
    for name in rollout or ():
        knobs = policy_defaults(name)
        controllers.append({"kind": "sagc", "label": f"sagc+{name}", "rollout": knobs,
                            **({"delta": float(delta)} if delta is not None else {})})
    sim = run_scenario(scenario, controllers=controllers, model=model, hindsight=True)
    recorded_g = sorted({int(r["group_size"]) for r in records})
    group_n = [[len(g["lengths"]) for g in r["groups"]] for r in records]
    resampled = {}
    for run in sim["controllers"]:
        drawn = total = 0
        for t, g in enumerate(run["series"]["group_size"]):
            ns = group_n[t % len(records)]
            per = [ns[i % len(ns)] for i in range(b)]
            drawn += sum(max(0, g - n) for n in per)
            total += g * b
        resampled[run["label"]] = drawn / total if total else 0.0
    rec_step = np.array([r.get("step_s", float("nan")) for r in records], dtype=np.float64)
    rec_roll = np.array([r.get("rollout_s", float("nan")) for r in records], dtype=np.float64)
    tail = tail_summary(records)
    # a run recorded under a policy that cut its steps is not what a `full` replay at its G
    # submits, so its recorded step times are no check of the replay
    plain = tail is None or (tail["aborted"] == 0 and set(tail["policies"]) <= {"full"})
    result = {
        "format": FORMAT, "label": SIMULATED_LABEL, "traces": [str(p) for p in paths],
        "recorded": {"steps": len(records), "group_sizes": recorded_g, "prompts_per_step": b,
                     "completions": int(sum(sum(n) for n in group_n)),
                     "mean_step_s": _nanmean(rec_step), "mean_rollout_s": _nanmean(rec_roll), "tail": tail},
        "engine": engine_info, "prompt_tokens": p_tokens, "group_sizes": list(sizes), "resampled_share": resampled,
        "replay_check": _replay_check(records, sim, rec_step, n_steps) if plain else None, "sim": sim,
    }
    return clean_json(result)


def _nanmean(x: np.ndarray) -> float | None:
    return float(np.nanmean(x)) if np.any(np.isfinite(x)) else None


def _replay_check(records: Sequence[dict], sim: dict, rec_step: np.ndarray, n_steps: int) -> dict | None:
    """For a static recorded run (one G, full groups): the replay at that G vs the recorded step_s."""
    sizes = {int(r["group_size"]) for r in records}
    if len(sizes) != 1 or n_steps < len(records):
        return None
    g = sizes.pop()
    if any(len(grp["lengths"]) != g for r in records for grp in r["groups"]):
        return None
    run = next((r for r in sim["controllers"] if r["label"] == f"static-G{g}"), None)
    ok = np.isfinite(rec_step) & (rec_step > 0)
    if run is None or not ok.any():
        return None
    pred = np.asarray(run["series"]["step_s"][:len(records)], dtype=np.float64)
    rel = (pred[ok] - rec_step[ok]) / rec_step[ok]
    return {"group_size": g, "steps": int(ok.sum()), "step_rel_rmse": float(np.sqrt(np.mean(rel ** 2))),
            "step_max_rel_err": float(np.max(np.abs(rel)))}


# ---- presentation -------------------------------------------------------------------------
COLUMNS = (("straggler_rate", "stragglers", "{:.2f}"), ("mean_group_size", "mean G", "{:.1f}"),
            ("signal_per_s", "signal/s", "{:.3f}"), ("informative_groups_per_s", "inform. groups/s", "{:.3f}"),
            ("tokens_per_s", "tokens/s", "{:,.0f}"),
            ("bubble_fraction", "bubble", "{:.2f}"), ("p50_step_s", "p50 step s", "{:.1f}"),
            ("sim_seconds", "sim s", "{:,.0f}"))


def whatif_rows(result: dict) -> list[dict]:
    """One row per run: label, the summary columns, goodput relative to the best static G.

    Goodput is what the default utility counts per second (`signal_per_s`: informative groups
    weighted by 1 - 1/G), as in `sagc simulate`'s hindsight."""
    runs = result["sim"]["controllers"]
    statics = [r for r in runs if r["label"].startswith("static-G")]
    best = max((r["summary"][SCORE] for r in statics), default=0.0)
    rows = []
    for run in runs:
        s = run["summary"]
        rows.append({"label": run["label"], **{k: s[k] for k, _, _ in COLUMNS},
                     "vs_best_static": s[SCORE] / best if best > 0 else None,
                     "resampled_share": result["resampled_share"].get(run["label"], 0.0)})
    return rows


# what a rollout policy costs (sagc.sim.runner.tail_measures and batch_measures), shown beside what it gains
ROLLOUT_COLUMNS = (("on_policy_share", "on-policy tokens", "{:.0%}"), ("resumed_share", "resumed tokens", "{:.0%}"),
                   ("max_token_age", "oldest token (versions)", "{:d}"),
                   ("batch_growth", "groups per step / B", "{:.2f}x"),
                   ("wasted_share", "generated tokens thrown away", "{:.0%}"),
                   ("length_bias", "trained length bias", "{:+.1%}"),
                   ("never_trained_share", "prompts dropped", "{:.1%}"), ("deferred_prompts", "deferrals", "{:,}"),
                   ("deferred_wait_mean", "mean deferral wait (steps)", "{:.1f}"),
                   ("pending_prompts", "prompts pending at end", "{:,}"))


def rollout_rows(result: dict) -> list[dict]:
    """SAGC alone and under each tail-control policy (`sagc+<policy>`): the gain (goodput vs the
    best static G and vs SAGC without tail control) beside the costs (ROLLOUT_COLUMNS). Empty when
    the what-if ran no policy."""
    rows = {r["label"]: r for r in whatif_rows(result)}
    runs = [r for r in result["sim"]["controllers"] if r["label"] == "sagc" or r["label"].startswith("sagc+")]
    if not any(r["label"].startswith("sagc+") for r in runs):
        return []
    base = next((r["summary"][SCORE] for r in runs if r["label"] == "sagc"), 0.0)
    return [{"label": r["label"], "vs_best_static": rows[r["label"]]["vs_best_static"],
             "vs_sagc": r["summary"][SCORE] / base if base > 0 else None,
             **{k: r["summary"][k] for k, _, _ in ROLLOUT_COLUMNS}} for r in runs]


def rollout_cells(row: dict) -> list[str]:
    rel = ["-" if row[k] is None else f"{row[k]:.2f}x" for k in ("vs_best_static", "vs_sagc")]
    return [row["label"]] + rel + [fmt.format(row[k]) for k, _, fmt in ROLLOUT_COLUMNS]


def tail_note(result: dict) -> str | None:
    """One paragraph on what a tail-control policy did in the recorded run (None for a plain run)."""
    t = result["recorded"].get("tail")
    if not t:
        return None
    fate = t["aborted_by_fate"]
    text = (f"Recorded under tail control ({', '.join(t['policies']) or 'simulator flags'}, {t['records']} steps): "
            f"{t['trained']:,} trained completions, {t['resumed']:,} of them resumed from an earlier step, "
            f"{t['deferred_reruns']:,} re-runs of deferred prompts; {t['aborted']:,} completions cancelled at a "
            f"step's end: {fate['resume']:,} resumed later (replayed once, as the trained row each became), "
            f"{fate['drop']:,} dropped, {fate['defer']:,} deferred (their tokens discarded).")
    if t["censored"]:
        text += (f" The {t['censored']:,} dropped or deferred never finished: their lengths are unknown (at least "
                 f"{t['censored_mean_tokens']:.0f} tokens on average when cut, against a trained mean of "
                 f"{t['trained_mean_length']:.0f}) and are not replayed.")
        # a deferred prompt comes back as a re-run (a natural draw, replayed); a dropped one never does
        text += (f" The groups of the {fate['drop']:,} dropped completions are missing altogether, so the replay "
                 "is biased short." if fate["drop"] else " Deferred prompts are replayed from their re-runs; only those "
                 "still queued at the end are missing.")
    if t.get("pending_groups_at_end") or t.get("queued_prompts_at_end"):
        text += (f" At the end {t['pending_groups_at_end']} groups were carried and {t['queued_prompts_at_end']} "
                 "prompts queued: never trained, so not replayed.")
    return text


def ceiling_line(result: dict) -> str | None:
    """The headroom any tail control has on these lengths: the static G whose run would be fastest
    with every rollout keeping all slots busy (runner.full_engine_measures), over the best static
    G as it ran. None without a hindsight sweep."""
    by_g = (result["sim"].get("hindsight") or {}).get("by_g") or {}
    if not by_g:
        return None
    best = max(s[SCORE] for s in by_g.values())
    if best <= 0:
        return None
    g, top = max(by_g.items(), key=lambda kv: kv[1]["signal_per_s_full_engine"])
    return (f"Full-engine ceiling: with every rollout keeping all slots busy, static G = {g} would make "
            f"{top['signal_per_s_full_engine']:.3f} signal/s, {top['signal_per_s_full_engine'] / best:.2f}x the best "
            "static G as it ran. Tail control that trains what a static G trains, B groups a step, can fill idle "
            "slots but not pass it, up to sampling noise "
            "(skipping prompts, dropping the long completions or training more than B groups a step can).")


def whatif_markdown(result: dict, title: str | None = None) -> str:
    """A markdown section: the engine, the side-by-side table, caveats. Labelled as simulated."""
    eng = result["engine"]
    rec = result["recorded"]
    title = title or "What-if: these rollouts on a GPU engine (simulated)"
    names = ", ".join(Path(t).name for t in result["traces"])
    lines = [f"## {title}", "",
             f"**Simulated, not measured.** The {rec['steps']} recorded steps of {names} "
             f"(recorded G {rec['group_sizes']}, {rec['prompts_per_step']} prompts per step) replayed through the "
             f"simulator's continuous-batching engine model `{eng['name']}`"
             + (f" ({eng['description']})" if eng.get("description") else "") + ". Every run sees the same recorded "
             "completions: a run at G takes each group's first G recorded completions.", ""]
    header = ["run"] + [t for _, t, _ in COLUMNS] + ["goodput vs best static", "resampled"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for row in whatif_rows(result):
        cells = [row["label"]] + [fmt.format(row[k]) for k, _, fmt in COLUMNS]
        cells.append("-" if row["vs_best_static"] is None else f"{row['vs_best_static']:.2f}x")
        cells.append(f"{row['resampled_share']:.0%}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    costs = rollout_rows(result)
    if costs:
        head = ["run", "goodput vs best static", "vs sagc"] + [t for _, t, _ in ROLLOUT_COLUMNS]
        lines += ["Tail control inside the step (SAGC choosing G; drop, resume, defer at their anchors' published "
                  "knobs, auto with its defaults): what each gains, beside what it costs.", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(rollout_cells(row)) + " |" for row in costs] + [""]
    note = tail_note(result)
    if note:
        lines += [note, ""]
    hs = result["sim"].get("hindsight") or {}
    if hs:
        budget = hs.get("best_g_within_budget")
        lines.append("Best static G in hindsight (goodput = learning signal, informative groups x (1 - 1/G), per "
                     f"simulated second): {hs.get('best_g')}"
                     + (f"; within SAGC's budget: {budget}." if hs.get("budget") is not None else "."))
    ceiling = ceiling_line(result)
    if ceiling:
        lines.append(ceiling)
    if "calibration" in eng:
        cal = eng["calibration"]
        lines.append(f"Engine fitted to the trace's own timings: rollout_s relative RMSE {cal['rollout_rel_rmse']:.1%}"
                     + (f", step_s {cal['step_rel_rmse']:.1%}" if cal.get("step_rel_rmse") is not None else "") + ".")
    elif eng.get("sources"):
        lines.append("Engine constants from: " + "; ".join(eng["sources"]) + ". " + eng.get("derivation", ""))
    chk = result.get("replay_check")
    if chk and "calibration" in eng:  # on a preset, recorded (e.g. CPU) times are not the engine's to match
        lines.append(f"Replay check: the recorded run replayed at its own G={chk['group_size']} gives step times "
                     f"within {chk['step_rel_rmse']:.1%} (relative RMSE) of the recorded ones on this engine.")
    lines.append("'resampled' is the share of completions drawn with replacement because G exceeded what a group "
                 "recorded (those cannot be longer than the group's recorded ones, so they understate stragglers).")
    return "\n".join(lines) + "\n"


DEMO_ROLLOUT = ("drop", "resume", "defer", "auto")  # every tail-control policy (full is the plain sagc run)


def demo_whatif_section(report_dir: str | os.PathLike, engine: str = "llama-8b-h100-vllm",
                        steps: int | None = None, rollout: Sequence[str] = DEMO_ROLLOUT) -> str | None:
    """The demo report's section "these rollouts on a GPU engine (simulated)".

    Replays the static run with the largest G among <report_dir>/traces/*.jsonl (its groups
    hold the most recorded completions, so smaller G and SAGC need no resampling), with SAGC also
    under each tail-control policy in `rollout` (their gain beside their costs). None when the
    folder has no usable trace."""
    folder = Path(report_dir) / "traces"
    best: tuple[int, Path] | None = None
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        try:
            sizes = {int(r["group_size"]) for r in read_trace(path)}
        except (ValueError, OSError):
            continue
        if len(sizes) == 1 and (best is None or next(iter(sizes)) > best[0]):
            best = (next(iter(sizes)), path)
    if best is None:
        return None
    result = run_whatif([best[1]], engine=engine, steps=steps, rollout=list(rollout))
    return whatif_markdown(result, title="These rollouts on a GPU engine (simulated)")


__all__ = ["COLUMNS", "ROLLOUT_COLUMNS", "rollout_rows", "rollout_cells", "tail_note", "FORMAT", "ReplayModel", "run_whatif", "resolve_engine", "load_records", "whatif_rows",
           "whatif_markdown", "demo_whatif_section"]
