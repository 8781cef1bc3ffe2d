"""Tail control inside the step (issue 18): SAGC `auto` against every static G and each anchor.

Per stream and seed, on the same steps (common random numbers):
  - plain static G at every allowed size (policy `full`): the best in hindsight is the reference;
  - `{kind: sagc, rollout: {policy: auto}}` (defaults, nothing tuned), and plain default SAGC;
  - each anchor's mechanism at the best plain static G, with its published default knobs and
    over a small grid (the best knobs in hindsight; its rates are every rate auto may choose,
    RATES below: {1.25, 1.5, 2, 3, 4}):
      drop   (verl over_sample_rate, PR 2929; default 0.1 in verl's examples: over_sample 1/0.9)
             grid over_sample {1.11} + RATES
      resume (APRIL / slime partial rollouts: over-sampling batch 2x the rollout batch in the
             APRIL scripts, no staleness limit in slime, here max_staleness 64)
             grid over_sample RATES x max_staleness {1, 2, 64}
      defer  (RollPacker tail batching, arXiv 2509.21009: prompts over-provisioned 1.25x, a long
             round once B prompts wait; its 1.25x response over-provisioning inside a group is
             not modelled: keeping a group's first finishers biases it short)
             grid over_sample RATES x long_round {B, 2B}
Streams: the engine-filling variants (long-cot-filled, code-heavy-tail-filled,
heavy-tail-filled), both real traces in ../shared/traces at B = 32 (HumanEval/CodeGen,
Game of 24/GPT-4; read in place, skipped when the folder is absent), and with --shipped every
shipped scenario at its own B and at B = 64 (auto and plain SAGC against the static G only).
Targets: auto >= 1.4x the best static G on the filled streams and traces; the best on-policy
variant >= 1.2x; auto >= 0.98x everywhere; auto >= 1.1x each anchor's defaults and >= 0.97x
its best knobs; auto's length and reward bias within +-5%.

    python bench/bench_tail.py [--streams long-cot-filled trace:codet-humaneval-codegen16b]
                               [--shipped] [--seeds 0 1 2] [--steps 300] [--jobs 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_simulate import TRACES, trace_scenario  # noqa: E402  (one definition of the trace streams)

from sagc._io import write_json_atomic  # noqa: E402
from sagc.rollout import ANCHOR_DEFAULTS, RolloutSettings  # noqa: E402
from sagc.tasks.machine import cpu_info, machine_line  # noqa: E402
from sagc.sim import list_scenarios, load_scenario, parse_scenario, run_scenario  # noqa: E402

FILLED = ["long-cot-filled", "code-heavy-tail-filled", "heavy-tail-filled"]
TRACE_B = 32  # B x G >= 256 slots at the traces' best static G (8 on HumanEval)
MEASURES = ("signal_per_s", "bubble_fraction", "on_policy_share", "resumed_share", "length_bias", "reward_bias",
            "wasted_share", "deferred_wait_mean", "deferred_wait_max", "never_trained_share", "mean_group_size",
            "max_token_age", "batch_growth", "signal_per_s_at_b")
AUTO = {"kind": "sagc", "rollout": {"policy": "auto"}, "label": "sagc+auto"}
# auto under the anchors' staleness budgets (a user setting, not the default): APRIL's slime has no
# limit (64 here); 2 is the budget of the design's second prototype column
AUTO_BUDGETS = {s: {"kind": "sagc", "rollout": {"policy": "auto", "max_staleness": s}, "label": f"sagc+auto-s{s}"}
                for s in (2, 64)}


# The anchors' rates in hindsight: every rate auto may choose (its default grid, above 1), so no
# anchor is held to a smaller range than auto's, plus the anchor's own default.
RATES = tuple(r for r in RolloutSettings().over_sample_grid if r > 1.0)


def anchors(b: int) -> dict[str, tuple[dict, list[dict]]]:
    """Per anchor: (its published default knobs, sagc.rollout.ANCHOR_DEFAULTS; the grid of knobs
    tried in hindsight, which includes them)."""
    return {
        "drop": (ANCHOR_DEFAULTS["drop"],
                 [{"policy": "drop", "over_sample": r} for r in (ANCHOR_DEFAULTS["drop"]["over_sample"], *RATES)]),
        "resume": (ANCHOR_DEFAULTS["resume"],
                   [{"policy": "resume", "over_sample": r, "max_staleness": s} for r in RATES for s in (1, 2, 64)]),
        "defer": (ANCHOR_DEFAULTS["defer"],
                  [{"policy": "defer", "over_sample": r, **({"long_round": lr} if lr else {})}
                   for r in RATES for lr in (None, 2 * b)]),
    }


def load(stream: str, seed: int, steps: int, b: int | None):
    if stream.startswith("trace:"):
        data = trace_scenario(stream[len("trace:"):])
        data["prompts_per_step"] = b or TRACE_B
        sc = parse_scenario(data)
    else:
        sc = load_scenario(stream)
        if b:
            sc = sc.replace(prompts_per_step=b)
    return sc.replace(seed=seed, steps=steps, controllers=[])


def pick(summary: dict) -> dict:
    return {k: summary[k] for k in MEASURES}


def one(stream: str, seed: int, steps: int, b: int | None, with_anchors: bool) -> dict:
    t0 = time.perf_counter()
    sc = load(stream, seed, steps, b)
    statics = [{"kind": "static", "group_size": g} for g in sc.group_sizes]
    first = run_scenario(sc, statics + [AUTO, {"kind": "sagc"}], hindsight=False, include_series=False)
    runs = {r["label"]: r["summary"] for r in first["controllers"]}
    by_g = {g: runs[f"static-G{g}"] for g in sc.group_sizes}
    best_g = max(by_g, key=lambda g: (by_g[g]["signal_per_s"], -g))
    best = by_g[best_g]["signal_per_s"]
    row = {"stream": stream, "seed": seed, "steps": steps, "prompts": sc.prompts_per_step,
           "slots": sc.engine.slots * sc.engine.replicas, "best_g": best_g,
           "fills": sc.prompts_per_step * best_g >= sc.engine.slots * sc.engine.replicas,
           "best_static": pick(by_g[best_g]), "auto": pick(runs["sagc+auto"]), "sagc": pick(runs["sagc"]),
           "auto_vs_best": runs["sagc+auto"]["signal_per_s"] / best,
           "sagc_vs_best": runs["sagc"]["signal_per_s"] / best}
    if with_anchors:
        at_best = {"kind": "static", "group_size": best_g, "rollout": {"policy": "auto"}, "label": "auto@best-G"}
        more = run_scenario(sc, list(AUTO_BUDGETS.values()) + [at_best], hindsight=False,
                            include_series=False)["controllers"]
        row["auto_budgets"] = {str(s): {**pick(r["summary"]), "vs_best_static": r["summary"]["signal_per_s"] / best}
                               for s, r in zip(AUTO_BUDGETS, more)}
        # diagnostic: auto's rate choice alone, at the best static G (what SAGC's choice of G costs)
        row["auto_at_best_g"] = {**pick(more[-1]["summary"]), "vs_best_static": more[-1]["summary"]["signal_per_s"] / best}
        row["anchors"] = {}
        for name, (default, grid) in anchors(sc.prompts_per_step).items():
            entries = [{"kind": "static", "group_size": best_g, "rollout": knobs, "label": f"{name}-{k}"}
                       for k, knobs in enumerate(grid)]
            res = run_scenario(sc, entries, hindsight=False, include_series=False)["controllers"]
            tried = [{"knobs": e["rollout"], **pick(r["summary"])} for e, r in zip(entries, res)]
            dflt = next(x for x in tried if x["knobs"] == default)
            top = max(tried, key=lambda x: x["signal_per_s"])
            row["anchors"][name] = {"default": dflt, "best": top, "grid": tried,
                                    "default_vs_best_static": dflt["signal_per_s"] / best,
                                    "best_vs_best_static": top["signal_per_s"] / best}
        on_policy = [x for a in ("drop", "defer") for x in row["anchors"][a]["grid"]]
        top = max(on_policy, key=lambda x: x["signal_per_s"])
        unbiased = [x for x in on_policy if abs(x["length_bias"]) <= 0.05 and abs(x["reward_bias"]) <= 0.05]
        row["best_on_policy"] = {**top, "vs_best_static": top["signal_per_s"] / best}
        if unbiased:
            u = max(unbiased, key=lambda x: x["signal_per_s"])
            row["best_on_policy_unbiased"] = {**u, "vs_best_static": u["signal_per_s"] / best}
    row["wall_s"] = time.perf_counter() - t0
    return row


def spread(values: list[float]) -> list[float]:
    return [float(min(values)), float(np.median(values)), float(max(values))]


def verdict(rows: list[dict]) -> dict:
    out = {}
    for key in dict.fromkeys((r["stream"], r["prompts"]) for r in rows):
        sub = [r for r in rows if (r["stream"], r["prompts"]) == key]
        v: dict = {"stream": key[0], "prompts": key[1], "seeds": len(sub), "best_g": sorted({r["best_g"] for r in sub}),
                   "fills": all(r["fills"] for r in sub),
                   "auto_vs_best": spread([r["auto_vs_best"] for r in sub]),
                   "sagc_vs_best": spread([r["sagc_vs_best"] for r in sub]),
                   "bubble_best_static": spread([r["best_static"]["bubble_fraction"] for r in sub])}
        for m in MEASURES:
            v[f"auto_{m}"] = spread([r["auto"][m] for r in sub])
        v["target_never_below"] = all(r["auto_vs_best"] >= 0.98 for r in sub)
        v["target_bias"] = all(abs(r["auto"]["length_bias"]) <= 0.05 and abs(r["auto"]["reward_bias"]) <= 0.05
                               for r in sub)
        if "anchors" in sub[0]:
            v["target_1_4"] = all(r["auto_vs_best"] >= 1.4 for r in sub)
            v["best_on_policy_vs_best"] = spread([r["best_on_policy"]["vs_best_static"] for r in sub])
            v["best_on_policy_knobs"] = [r["best_on_policy"]["knobs"] for r in sub]
            v["target_on_policy_1_2"] = all(r["best_on_policy"]["vs_best_static"] >= 1.2 for r in sub)
            v["auto_budgets"] = {s: {m: spread([r["auto_budgets"][s][m] for r in sub])
                                     for m in ("vs_best_static", "on_policy_share", "max_token_age", "length_bias")}
                                 for s in sub[0]["auto_budgets"]}
            v["auto_at_best_g"] = spread([r["auto_at_best_g"]["vs_best_static"] for r in sub])
            v["resume_s1_best"] = spread([max(x["signal_per_s"] for x in r["anchors"]["resume"]["grid"]
                                              if x["knobs"]["max_staleness"] == 1) / r["best_static"]["signal_per_s"]
                                          for r in sub])
            v["auto_s64_vs_resume_default"] = spread([r["auto_budgets"]["64"]["signal_per_s"]
                                                      / r["anchors"]["resume"]["default"]["signal_per_s"] for r in sub])
            v["at_b"] = at_b_verdict(sub)
            for a in ("drop", "resume", "defer"):
                d = [r["auto"]["signal_per_s"] / r["anchors"][a]["default"]["signal_per_s"] for r in sub]
                bst = [r["auto"]["signal_per_s"] / r["anchors"][a]["best"]["signal_per_s"] for r in sub]
                v[a] = {"default_vs_best_static": spread([r["anchors"][a]["default_vs_best_static"] for r in sub]),
                        "best_vs_best_static": spread([r["anchors"][a]["best_vs_best_static"] for r in sub]),
                        "best_knobs": [r["anchors"][a]["best"]["knobs"] for r in sub],
                        "auto_vs_default": spread(d), "auto_vs_best_knobs": spread(bst),
                        "target_default": all(x >= 1.1 for x in d), "target_best": all(x >= 0.97 for x in bst),
                        "default": {m: spread([r["anchors"][a]["default"][m] for r in sub]) for m in MEASURES},
                        "best": {m: spread([r["anchors"][a]["best"][m] for r in sub]) for m in MEASURES}}
        out[f"{key[0]}@B{key[1]}"] = v
    return out


def at_b_verdict(sub: list[dict]) -> dict:
    """The same comparisons with one step's overhead charged per B trained groups
    (`signal_per_s_at_b`, sagc.sim.runner.batch_measures): what is left of each gain once a step
    that trains more than B groups no longer spreads one step's overhead over them. Each anchor's
    best knobs are chosen again in hindsight by this measure."""
    key = "signal_per_s_at_b"
    best = [r["best_static"][key] for r in sub]
    v = {"auto_batch_growth": spread([r["auto"]["batch_growth"] for r in sub]),
         "auto_vs_best": spread([r["auto"][key] / b for r, b in zip(sub, best)])}
    v["target_1_4"] = all(x >= 1.4 for x in (r["auto"][key] / b for r, b in zip(sub, best)))
    on_policy = [max(x[key] for a in ("drop", "defer") for x in r["anchors"][a]["grid"]) / b for r, b in zip(sub, best)]
    v["best_on_policy_vs_best"] = spread(on_policy)
    v["target_on_policy_1_2"] = all(x >= 1.2 for x in on_policy)
    for a in ("drop", "resume", "defer"):
        tops = [max(r["anchors"][a]["grid"], key=lambda x: x[key]) for r in sub]
        d = [r["auto"][key] / r["anchors"][a]["default"][key] for r in sub]
        bst = [r["auto"][key] / t[key] for r, t in zip(sub, tops)]
        v[a] = {"auto_vs_default": spread(d), "auto_vs_best_knobs": spread(bst),
                "default_batch_growth": spread([r["anchors"][a]["default"]["batch_growth"] for r in sub]),
                "best_batch_growth": spread([t["batch_growth"] for t in tops]),
                "best_knobs": [t["knobs"] for t in tops],
                "target_default": all(x >= 1.1 for x in d), "target_best": all(x >= 0.97 for x in bst)}
    return v


def _cell(s: list[float], unit: str = "") -> str:
    """A spread [min, median, max] as "median [min, max]" ("1.81x [1.80, 1.82]" with unit "x")."""
    return f"{s[1]:.2f}{unit} [{s[0]:.2f}, {s[2]:.2f}]"


def _m(x) -> str:
    return "n/a" if x is None else ("met" if x else "**missed**")


def _knobs(anchor: str, chosen: list[dict]) -> str:
    """The best knobs per seed, each distinct setting once ("8.0, staleness 1 / 6.0, staleness 2")."""
    out: list[str] = []
    for k in chosen:
        text = {"drop": f"{k['over_sample']}",
                "resume": f"{k['over_sample']}, staleness {k.get('max_staleness', 1)}",
                "defer": f"{k['over_sample']}, long round {k.get('long_round', 'B')}"}[anchor]
        if text not in out:
            out.append(text)
    return " / ".join(out)


def markdown(summary: dict) -> str:
    full = {k: v for k, v in summary.items() if "drop" in v}
    lines = ["Tail control on engine-filling streams (median over seeds [min, max]; x = signal/s over the best "
             "plain static G):", "",
             "| stream | B, best G | bubble at best G | auto | auto on-policy share | auto length / reward bias "
             "| resume default / best | drop default / best (length bias) | defer default / best (wait mean) "
             "| best on-policy | auto >= 1.4x | on-policy >= 1.2x | auto >= 1.1x defaults | auto >= 0.97x best knobs "
             "| auto, staleness 2 / 64 (on-policy) | auto-64 / APRIL default | auto at the best static G "
             "| best resume at staleness 1 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, v in full.items():
        a = v["auto_vs_best"]
        lines.append(
            f"| {v['stream']} | {v['prompts']}, {'/'.join(map(str, v['best_g']))} | {v['bubble_best_static'][1]:.2f} "
            f"| {_cell(a, 'x')} | {v['auto_on_policy_share'][1]:.2f} | {v['auto_length_bias'][1]:+.3f} / "
            f"{v['auto_reward_bias'][1]:+.3f} "
            f"| {v['resume']['default_vs_best_static'][1]:.2f}x / {v['resume']['best_vs_best_static'][1]:.2f}x "
            f"| {v['drop']['default_vs_best_static'][1]:.2f}x / {v['drop']['best_vs_best_static'][1]:.2f}x "
            f"({v['drop']['best']['length_bias'][1]:+.2f}) "
            f"| {v['defer']['default_vs_best_static'][1]:.2f}x / {v['defer']['best_vs_best_static'][1]:.2f}x "
            f"({v['defer']['best']['deferred_wait_mean'][1]:.1f} steps) "
            f"| {v['best_on_policy_vs_best'][1]:.2f}x | {_m(v['target_1_4'])} | {_m(v['target_on_policy_1_2'])} "
            f"| {_m(all(v[k]['target_default'] for k in ('drop', 'resume', 'defer')))} "
            f"| {_m(all(v[k]['target_best'] for k in ('drop', 'resume', 'defer')))} "
            f"| {v['auto_budgets']['2']['vs_best_static'][1]:.2f}x / {v['auto_budgets']['64']['vs_best_static'][1]:.2f}x "
            f"({v['auto_budgets']['2']['on_policy_share'][1]:.2f} / {v['auto_budgets']['64']['on_policy_share'][1]:.2f}) "
            f"| {v['auto_s64_vs_resume_default'][1]:.2f} | {v['auto_at_best_g'][1]:.2f}x | {v['resume_s1_best'][1]:.2f}x |")
    lines += ["", "Each anchor against auto, median [min, max] over seeds (auto's signal/s over the anchor's):", "",
              "| stream | auto / drop default | auto / drop best | auto / resume (APRIL) default | auto / resume best "
              "| auto / defer default | auto / defer best | best drop knobs | best resume knobs | best defer knobs |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for v in full.values():
        cells = [_cell(v[a][k]) for a in ("drop", "resume", "defer") for k in ("auto_vs_default", "auto_vs_best_knobs")]
        lines.append(f"| {v['stream']} | " + " | ".join(cells + [_knobs(a, v[a]["best_knobs"])
                                                                for a in ("drop", "resume", "defer")]) + " |")
    lines += ["", "The same with one step's overhead charged per B trained groups (`signal_per_s_at_b`): a step "
              "that trains more than B groups (pinned by the staleness budget) no longer spreads one step's "
              "overhead over them; each anchor's best knobs chosen again by this measure. Median [min, max] over "
              "seeds:", "",
              "| stream | auto groups per step / B | auto x best static | auto / APRIL default | auto / resume best "
              "| auto / drop default / best | auto / defer default / best | best on-policy x | best resume knobs "
              "(groups per step / B) | auto >= 1.4x | on-policy >= 1.2x | auto >= 1.1x defaults "
              "| auto >= 0.97x best knobs |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for v in full.values():
        n = v["at_b"]
        lines.append(
            f"| {v['stream']} | {_cell(n['auto_batch_growth'])} | {_cell(n['auto_vs_best'])} "
            f"| {_cell(n['resume']['auto_vs_default'])} | {_cell(n['resume']['auto_vs_best_knobs'])} "
            f"| {n['drop']['auto_vs_default'][1]:.2f} / {n['drop']['auto_vs_best_knobs'][1]:.2f} "
            f"| {n['defer']['auto_vs_default'][1]:.2f} / {n['defer']['auto_vs_best_knobs'][1]:.2f} "
            f"| {n['best_on_policy_vs_best'][1]:.2f} | {_knobs('resume', n['resume']['best_knobs'])} "
            f"({n['resume']['best_batch_growth'][1]:.2f}) | {_m(n['target_1_4'])} | {_m(n['target_on_policy_1_2'])} "
            f"| {_m(all(n[k]['target_default'] for k in ('drop', 'resume', 'defer')))} "
            f"| {_m(all(n[k]['target_best'] for k in ('drop', 'resume', 'defer')))} |")
    lines += ["", "Every stream (auto and plain SAGC vs the best plain static G):", "",
              "| stream | B | best G | auto | plain SAGC | auto on-policy | auto length / reward bias | auto mean G "
              "| auto >= 0.98x | bias within 5% |", "|---|---|---|---|---|---|---|---|---|---|"]
    for v in summary.values():
        a, s = v["auto_vs_best"], v["sagc_vs_best"]
        lines.append(f"| {v['stream']} | {v['prompts']} | {'/'.join(map(str, v['best_g']))} "
                     f"| {a[1]:.3f} [{a[0]:.3f}, {a[2]:.3f}] | {s[1]:.3f} | {v['auto_on_policy_share'][1]:.2f} "
                     f"| {v['auto_length_bias'][1]:+.3f} / {v['auto_reward_bias'][1]:+.3f} "
                     f"| {v['auto_mean_group_size'][1]:.1f} | {_m(v['target_never_below'])} | {_m(v['target_bias'])} |")
    return "\n".join(lines)


def run_tasks(fn, tasks: list[tuple], jobs: int) -> list:
    """fn(*task) for every task, in order; on `jobs` processes when jobs > 1."""
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            return list(pool.map(fn, *zip(*tasks)))
    return [fn(*t) for t in tasks]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", nargs="+", default=None, help="filled scenarios / trace:<name> (default: all)")
    ap.add_argument("--shipped", action="store_true", help="also every shipped scenario at its B and at B = 64")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench/results/tail.json"))
    args = ap.parse_args()
    names = args.streams or FILLED + ([f"trace:{p.stem}" for p in sorted(TRACES.glob("*.jsonl"))]
                                      if TRACES.is_dir() else [])
    tasks = [(s, seed, args.steps, None, True) for s in names for seed in args.seeds]
    if args.shipped:
        shipped = [n for n in list_scenarios() if not n.endswith("-filled")]
        tasks += [(s, seed, args.steps, b, False) for s in shipped for b in (None, 64) for seed in args.seeds]
    t0 = time.perf_counter()
    info = cpu_info()  # load average at the start
    rows = run_tasks(one, tasks, args.jobs)
    steps_per_s = {"simulated steps": len(rows) * args.steps / (time.perf_counter() - t0)}
    machine = machine_line(info, steps_per_s) + f"; numpy float64 simulator, {args.jobs} worker(s)"
    print(machine)
    print(f"{'stream':<34}{'B':>4}{'seed':>5}{'best G':>7}{'auto':>7}{'sagc':>7}{'on-pol':>7}{'len bias':>9}")
    for r in rows:
        print(f"{r['stream']:<34}{r['prompts']:>4}{r['seed']:>5}{r['best_g']:>7}{r['auto_vs_best']:>7.3f}"
              f"{r['sagc_vs_best']:>7.3f}{r['auto']['on_policy_share']:>7.2f}{r['auto']['length_bias']:>+9.3f}")
    summary = verdict(rows)
    print()
    print(markdown(summary))
    cmd = (f"python bench/bench_tail.py --seeds {' '.join(map(str, args.seeds))} --steps {args.steps}"
           + (" --shipped" if args.shipped else "") + (f" --streams {' '.join(args.streams)}" if args.streams else ""))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, {"machine": machine, "command": cmd, "wall_s": time.perf_counter() - t0,
                                 "rows": rows, "summary": summary})
    print(f"wrote {args.out} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
