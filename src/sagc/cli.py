"""`sagc` command line: a thin layer over the same config dataclasses the library uses."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sagc._io import InputError, atomic_outputs, check_output_path, to_json

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Straggler-Aware Group Control for synchronous GRPO/DAPO.")
console = Console()
if not console.is_terminal:  # piped / CI logs: do not squeeze the tables into 80 columns
    console = Console(width=150)


def _fail(message: str) -> None:
    # escape: a message may hold [brackets] (pip extras, list reprs) that rich would eat as markup;
    # soft_wrap: a long path stays on one line, so it can be copied
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code=2)


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """A command decorator: an InputError raised anywhere inside (even deep in a run) is the
    user's to fix, so it prints as one clear message and exit code 2. Other exceptions are
    bugs and keep their traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except InputError as exc:
            _fail(str(exc))

    return wrapper


@app.command()
@user_errors
def simulate(
    scenario: str = typer.Argument(..., help="Scenario YAML path, or a shipped name (see `sagc scenarios`)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results JSON here."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG figure here."),
    steps: Optional[int] = typer.Option(None, help="Override the scenario's number of steps."),
    seed: Optional[int] = typer.Option(None, help="Override the scenario's seed."),
    hindsight: bool = typer.Option(True, help="Also run every static G (best static G in hindsight)."),
    trace_dir: Optional[Path] = typer.Option(None, "--trace-dir",
                                             help="Also write each controller's rollout trace here (<label>.jsonl)."),
) -> None:
    """Run a scenario for every controller in it and print a side-by-side table."""
    from sagc.sim import load_scenario, run_scenario

    _check_outputs(json_out, plot)  # outputs first: a path that cannot be written must not cost a simulation
    try:
        sc = load_scenario(scenario)
        overrides = {k: v for k, v in (("steps", steps), ("seed", seed)) if v is not None}
        if overrides:
            sc = sc.replace(**overrides)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(name: str, step: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=step)

        result = run_scenario(sc, progress=progress, hindsight=hindsight, trace_dir=trace_dir)
    console.print(results_table(result))
    if trace_dir is not None:
        console.print(f"wrote rollout traces to {trace_dir}/")
    _write_outputs(result, json_out, plot, lambda png: _plot_run(result, png))  # all or nothing


def results_table(result: dict) -> Table:
    """Side-by-side summary of a `run_scenario` result."""
    runs = result["controllers"]
    table = Table(title=f"scenario {result['scenario']['name']}  ({result['scenario']['steps']} steps, "
                        f"seed {result['scenario']['seed']})")
    table.add_column("controller")
    cols = [("straggler_rate", "stragglers", "{:.3f}"), ("mean_group_size", "mean G", "{:.1f}"),
            ("informative_groups_per_s", "inform. groups/s", "{:.3f}"), ("tokens_per_s", "tokens/s", "{:,.0f}"),
            ("bubble_fraction", "bubble", "{:.2f}"), ("p50_step_s", "p50 step s", "{:.1f}"),
            ("p95_step_s", "p95 step s", "{:.1f}"), ("sim_seconds", "sim s", "{:,.0f}")]
    for _, title, _ in cols:
        table.add_column(title, justify="right")
    for run in runs:
        s = run["summary"]
        table.add_row(run["label"], *[fmt.format(s[key]) for key, _, fmt in cols])
    hs = result.get("hindsight")
    if hs:
        table.caption = (f"best static G in hindsight: {hs['best_g']} (goodput); "
                         f"within budget: {hs.get('best_g_within_budget')}")
    return table


@app.command()
@user_errors
def whatif(
    traces: list[Path] = typer.Argument(..., help="Rollout trace JSONL file(s) of your run(s)."),
    engine: str = typer.Option("calibrate", help="An engine preset (see `sagc engines`) or 'calibrate': "
                                                 "fit the engine to the traces' own rollout_s / step_s."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results JSON here."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG figure here."),
    group_sizes: Optional[str] = typer.Option(None, help="Allowed G, comma-separated (default: powers of 2 "
                                                         "up to the largest recorded group, and the recorded G)."),
    delta: Optional[float] = typer.Option(None, help="SAGC's straggler budget (default: sagc's own default)."),
    steps: Optional[int] = typer.Option(None, help="Simulated steps (default: the recorded steps; more cycle)."),
    seed: int = typer.Option(0, help="Seed of the completions drawn beyond a group's recorded ones."),
    prompt_tokens: Optional[int] = typer.Option(
        None, help="Prompt length for the prefill cost (default: the preset's; with calibrate, prefill is fitted "
                   "per sequence)."),
    slots: Optional[int] = typer.Option(None, help="Concurrent sequences per replica (default: the preset's; "
                                                   "with calibrate, the most completions of any recorded step)."),
    replicas: Optional[int] = typer.Option(None, help="Engine replicas (default: the preset's; with calibrate, "
                                                      "how many served the recorded run, default 1)."),
    rollout: Optional[str] = typer.Option(
        None, help="Tail-control policies to add, comma-separated (full, drop, resume, defer, auto; see "
                   "`sagc controllers`): each runs with SAGC choosing G, drop/resume/defer at their anchors' "
                   "published knobs, auto with its defaults."),
) -> None:
    """Replay recorded runs on an engine model: static G sizes and SAGC side by side (simulated)."""
    from sagc.sim.whatif import (COLUMNS, ROLLOUT_COLUMNS, ceiling_line, rollout_cells, rollout_rows, run_whatif, tail_note,
                                 whatif_rows)

    _check_outputs(json_out, plot)  # before the work, as for simulate
    try:
        sizes = [int(x) for x in group_sizes.split(",") if x.strip()] if group_sizes else None
    except ValueError:
        _fail(f"--group-sizes must be integers separated by commas, got {group_sizes!r}")
    from sagc.rollout import POLICIES

    policies = [x.strip() for x in rollout.split(",") if x.strip()] if rollout else []
    for name in policies:
        if name not in POLICIES:
            _fail(f"--rollout: unknown policy {name!r}; valid policies are {list(POLICIES)}")
    try:
        result = run_whatif(traces, engine=engine, group_sizes=sizes, delta=delta, steps=steps, seed=seed,
                            prompt_tokens=prompt_tokens, slots=slots, replicas=replicas,
                            rollout=[p for p in policies if p != "full"])
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    eng, rec = result["engine"], result["recorded"]
    if "describe" in eng:
        console.print(eng["describe"])
    table = Table(title=f"what-if (SIMULATED): {rec['steps']} recorded steps, recorded G {rec['group_sizes']}, "
                        f"on engine {eng['name']}")
    table.add_column("run")
    cols = COLUMNS
    for _, title, _ in cols:
        table.add_column(title, justify="right")
    table.add_column("vs best static", justify="right")
    table.add_column("resampled", justify="right")
    for row in whatif_rows(result):
        rel = "-" if row["vs_best_static"] is None else f"{row['vs_best_static']:.2f}x"
        table.add_row(row["label"], *[fmt.format(row[k]) for k, _, fmt in cols], rel, f"{row['resampled_share']:.0%}")
    chk = result.get("replay_check")
    if chk and eng["name"] == "calibrate":
        table.caption = (f"replaying the run at its own G={chk['group_size']} reproduces its step times within "
                         f"{chk['step_rel_rmse']:.1%} (relative RMSE)")
    console.print(table)
    costs = rollout_rows(result)
    if costs:  # what each tail-control policy gains, beside what it costs
        tail = Table(title="tail control (SIMULATED): gain and cost per policy")
        for title in ["run", "vs best static", "vs sagc"] + [t for _, t, _ in ROLLOUT_COLUMNS]:
            tail.add_column(title, justify="left" if title == "run" else "right")
        for row in costs:
            tail.add_row(*rollout_cells(row))
        console.print(tail)
    for note in (tail_note(result), ceiling_line(result)):
        if note:
            console.print(note)
    _write_outputs(result, json_out, plot, lambda png: _plot_run(result["sim"], png))


def _plot_run(result: dict, png: Any) -> None:
    from sagc.sim.plot import plot_run

    plot_run(result, png)


def _check_outputs(json_out: Optional[Path], plot: Optional[Path]) -> None:
    """Refuse output paths that cannot be written before any work is done."""
    if json_out is not None:
        check_output_path(json_out, "--json")
    if plot is not None:
        check_output_path(plot, "--plot", suffixes=(".png",))
    if json_out is not None and plot is not None and json_out.absolute() == plot.absolute():
        _fail(f"--json and --plot name the same file {json_out}")


def _write_outputs(result: dict, json_out: Optional[Path], plot: Optional[Path], draw: Callable[[Any], None]) -> None:
    """Write the JSON and the figure all or nothing (temp files, then rename)."""
    if json_out is None and plot is None:
        return
    with atomic_outputs(json_out, plot) as (tmp_json, tmp_png):
        if tmp_json is not None:
            Path(tmp_json).write_text(to_json(result), encoding="utf-8")
        if tmp_png is not None:
            draw(tmp_png)
    for path in (json_out, plot):
        if path is not None:
            console.print(f"wrote {path}")


@app.command()
def engines() -> None:
    """List the engine presets of `sagc whatif` and where their numbers come from."""
    from sagc.sim.engines import REGISTRY

    for name, preset in sorted(REGISTRY.items()):
        console.print(f"[bold]{name}[/]: {preset.description}")
        console.print(f"  {preset.settings}")
        console.print(f"  {preset.derivation}")


@app.command()
def scenarios() -> None:
    """List the shipped scenarios."""
    from sagc.sim import list_scenarios

    for name in list_scenarios():
        console.print(name)


@app.command()
def controllers() -> None:
    """List the registered controllers and their settings (with defaults)."""
    from sagc import REGISTRY

    for name, cls in sorted(REGISTRY.items()):
        table = Table(title=f"{name}  ({cls.__name__})", title_justify="left")
        table.add_column("setting")
        table.add_column("default")
        table.add_column("what it is, and why this default")
        help_text = getattr(cls.Settings, "HELP", {})
        for f in dataclasses.fields(cls.Settings):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            table.add_row(f.name, escape(repr(default)), escape(help_text.get(f.name, "")))
        console.print(table)
    _rollout_table()


def _rollout_table() -> None:
    """The rollout policies (a controller entry's `rollout:`) and their knobs."""
    from sagc.rollout import ANCHOR_DEFAULTS, KNOBS, POLICIES, RolloutSettings

    table = Table(title="rollout policies  (a controller entry's rollout: {policy: ..., knob: ...})",
                  title_justify="left")
    table.add_column("policy")
    table.add_column("what it does")
    table.add_column("knobs of a bare name (its anchor's published defaults)")
    for name, what in POLICIES.items():
        table.add_row(name, escape(what), escape(str(ANCHOR_DEFAULTS[name])))
    console.print(table)
    knobs = Table(title="rollout knobs", title_justify="left")
    knobs.add_column("knob")
    knobs.add_column("default")
    knobs.add_column("what it is")
    for f in dataclasses.fields(RolloutSettings):
        knobs.add_row(f.name, escape(repr(f.default)), escape(KNOBS[f.name]))
    console.print(knobs)


@app.command()
def demo(
    out: Path = typer.Option(Path("sagc-report"), help="Report folder (metrics.json, summary.png, traces/)."),
    config: Optional[Path] = typer.Option(None, help="YAML with DemoConfig keys (defaults otherwise)."),
    time_budget_s: Optional[float] = typer.Option(None, help="Training seconds per run."),
    seed: Optional[int] = typer.Option(None, help="Seed (task sample, warm-start, GRPO)."),
) -> None:
    """GRPO on the built-in task, static G vs SAGC, on this CPU; writes a report folder."""
    from sagc.demo.config import load_demo_config

    try:
        cfg = load_demo_config(config, time_budget_s=time_budget_s, seed=seed)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    if out.exists() and not out.is_dir():
        _fail(f"--out {out} is a file; give a folder for the report")
    from sagc.demo.run import run_demo

    try:
        run_demo(cfg, out, console)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted:[/] the partial report is in {out}/ (README.md, metrics.json); "
                      f"run `sagc demo` again to redo it")
        raise typer.Exit(code=130)


@app.command()
@user_errors
def report(folder: Path = typer.Argument(..., help="A report folder written by `sagc demo`.")) -> None:
    """Re-render a demo report (table, README.md, summary.png) from its metrics.json."""
    from sagc.demo.report import demo_table, load_metrics, machine_line_of, render

    try:
        rows = render(folder)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    metrics = load_metrics(folder)
    console.print(demo_table(rows, metrics.get("target_accuracy")))
    console.print(escape(machine_line_of(metrics, rows)))
    console.print(f"wrote {folder}/README.md and {folder}/summary.png")


@app.command()
def train(
    config: Path = typer.Option(..., "--config", help="Training YAML (see examples/)."),
    resume: Optional[str] = typer.Option(
        None, "--resume", help="Continue a stopped run: 'auto' (newest complete checkpoint in output_dir) or a "
                               "checkpoint folder. Checkpoints need trl: {save_strategy: steps, save_steps: N}."),
) -> None:
    """GRPO with a group controller on your own model / dataset / reward (TRL underneath)."""
    from sagc.demo.train import load_train_config, run_train

    cfg = None
    try:
        cfg = load_train_config(config)
        run_train(cfg, console, resume=resume)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        if cfg is not None and (Path(cfg.output_dir) / "sagc_session.json").exists():
            console.print(f"[yellow]interrupted:[/] every finished step is in {cfg.output_dir}/sagc_session.json and "
                          f"sagc_trace.jsonl; continue with `sagc train --config {config} --resume auto` (from the "
                          "newest complete checkpoint)")
        else:
            console.print("[yellow]interrupted[/] before training started")
        raise typer.Exit(code=130)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
