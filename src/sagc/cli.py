"""`sagc` command line: a thin layer over the same config dataclasses the library uses."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sagc._io import write_json_atomic

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


@app.command()
def simulate(
    scenario: str = typer.Argument(..., help="Scenario YAML path, or a shipped name (see `sagc scenarios`)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results JSON here."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG figure here."),
    steps: Optional[int] = typer.Option(None, help="Override the scenario's number of steps."),
    seed: Optional[int] = typer.Option(None, help="Override the scenario's seed."),
    hindsight: bool = typer.Option(True, help="Also run every static G (best static G in hindsight)."),
) -> None:
    """Run a scenario for every controller in it and print a side-by-side table."""
    from sagc.sim import load_scenario, run_scenario

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

        result = run_scenario(sc, progress=progress, hindsight=hindsight)
    console.print(results_table(result))
    if json_out is not None:
        write_json_atomic(json_out, result)
        console.print(f"wrote {json_out}")
    if plot is not None:
        from sagc.sim.plot import plot_run

        plot_run(result, plot)
        console.print(f"wrote {plot}")


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
        for f in dataclasses.fields(cls.Settings):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            table.add_row(f.name, repr(default))
        console.print(table)


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
def report(folder: Path = typer.Argument(..., help="A report folder written by `sagc demo`.")) -> None:
    """Re-render a demo report (table, README.md, summary.png) from its metrics.json."""
    from sagc.demo.report import demo_table, load_metrics, render

    try:
        rows = render(folder)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    console.print(demo_table(rows, load_metrics(folder).get("target_accuracy")))
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
