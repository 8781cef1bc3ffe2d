"""`sagc demo`: GRPO on the built-in task with static G sizes, then with SAGC, side by side.

    warm-start (cached) -> held-out accuracy before -> static G=16 -> static G=4 -> SAGC
    -> table + report folder (metrics.json, summary.png, traces/, README.md, GPU what-if)

Every run starts from the same warm-start checkpoint, sees the same prompts in the same order and
gets the same training wall-clock budget; the table compares what each did with it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from sagc.demo.config import DemoConfig
from sagc.demo.notes import budget_notes
from sagc.demo.progress import RunProgress
from sagc.demo.report import demo_table, machine_line_of, render, run_notes, save_metrics, write_readme
from sagc.demo.session import SessionCallback, SessionLog

for _k, _v in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"),
               ("TOKENIZERS_PARALLELISM", "false"), ("TRL_EXPERIMENTAL_SILENCE", "1")):
    os.environ.setdefault(_k, _v)


def default_runs(config: DemoConfig) -> list[tuple[str, dict]]:
    """The demo's runs: static at each of `static_group_sizes`, then the configured controller."""
    return [(f"static-G{g}", {"kind": "static", "group_size": g}) for g in config.static_group_sizes] + \
        [(str(config.controller.get("label", config.controller["kind"])),
          {k: v for k, v in config.controller.items() if k != "label"})]


def run_demo(config: DemoConfig, out_dir: Path, console: Console | None = None,
             runs: list[tuple[str, dict]] | None = None) -> list[dict]:
    """Run the sessions one after the other (default: `default_runs`), writing the report as it
    goes; returns the table rows."""
    import warnings

    import transformers

    from sagc.tasks import arith, warmstart
    from sagc.tasks.machine import choose, load_average, machine_info

    # A demo's terminal is for its own progress bars: no library progress bars or deprecations.
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="trl")
    console = console or Console()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # `phase` says where an interrupted demo stopped; every phase leaves a readable report
    metrics: dict[str, Any] = {"status": "running", "phase": "warm-start", "config": config.as_dict(), "runs": {}}
    runs = runs if runs is not None else default_runs(config)
    try:
        with console.status("choosing precision and threads for this CPU (measured once, then cached)..."):
            compute = choose(bf16=config.bf16, threads=config.num_threads, cuda=False)  # the demo trains on the CPU
        compute.apply()
        metrics["machine"] = machine_info(compute)
        save_metrics(out_dir, _snapshot(metrics))
        console.print(escape(machine_line_of(metrics)))
        console.rule("[bold]1. warm-start: tiny model, supervised on scratchpad solutions")
        with console.status("loading or training the warm-start checkpoint (cached after the first run)..."):
            _, tokenizer, ckpt = warmstart.load_or_train(warmstart.resolved(config.warmstart, compute.threads))
        console.print(f"checkpoint: {ckpt}")
        cap = config.warmstart.max_completion_tokens
        task = config.warmstart.task

        def evaluate(model: Any) -> dict:
            res = warmstart.evaluate(model, tokenizer, "heldout", n=config.eval_size, max_new_tokens=cap,
                                     sample=config.eval_sampled, temperature=config.temperature,
                                     seed=config.seed, task=task)
            return {k: res[k] for k in ("accuracy", "mean_length", "truncated_rate")}

        metrics["phase"] = "the held-out evaluation before RL"
        save_metrics(out_dir, _snapshot(metrics))
        with console.status("held-out accuracy of the warm-start policy..."):
            model, _ = warmstart.load_checkpoint(ckpt)
            before = evaluate(model)
        target = config.target_accuracy if config.target_accuracy is not None else \
            min(1.0, round(before["accuracy"] + config.target_gain, 4))
        metrics.update(before=before, target_accuracy=target, checkpoint=str(ckpt))
        console.print(f"held-out accuracy before RL: {before['accuracy']:.1%} (target {target:.1%})")

        prompts = arith.to_records(arith.sample_problems(task, "train", config.max_steps * config.prompts_per_step,
                                                         seed=config.seed))
        metrics["order"] = [label for label, *_ in runs]
        for i, (label, controller, *extra) in enumerate(runs, start=2):
            console.rule(f"[bold]{i}. GRPO with {label}: {config.time_budget_s:.0f} s of training")
            metrics["phase"] = f"the GRPO run {label} (its training or its held-out evaluations)"
            log = SessionLog(label=label, controller=controller)
            metrics["runs"][label] = log
            _train_one(config, ckpt, prompts, controller, log, evaluate, out_dir, console,
                       on_update=lambda: save_metrics(out_dir, _snapshot(metrics)), before=before,
                       training=extra[0] if extra else None, compute=compute)
            if i == 2:  # the first run's step rate: is the budget long enough on this machine?
                for note in budget_notes(_snapshot(metrics)):
                    console.print(f"[yellow]{escape(note)}[/]")
        metrics["machine"]["load_avg"] = load_average()
        metrics["status"], metrics["phase"] = "finished", "the plots"
        return _finish(out_dir, metrics, console)
    except BaseException as exc:  # Ctrl-C, or a crash: the report says so, then the error goes on
        if metrics["status"] not in ("interrupted", "failed"):  # _finish marks a Ctrl-C while plotting
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            _mark(metrics, status)
            console.print(f"[yellow]{status} during {metrics['phase']}: writing a partial report[/]")
            _finish(out_dir, metrics, console)
        raise


def _mark(metrics: dict, status: str = "interrupted") -> None:
    metrics["status"] = status
    for log in metrics["runs"].values():
        if log.status == "running":
            log.status = status


def _finish(out_dir: Path, metrics: dict, console: Console) -> list[dict]:
    """metrics.json, README.md (fast, always), then the plots; a Ctrl-C during the plots still
    leaves a README that says the report is interrupted."""
    save_metrics(out_dir, _snapshot(metrics))
    rows = write_readme(out_dir, _snapshot(metrics))
    try:
        render(out_dir)
    except KeyboardInterrupt:
        if metrics["status"] not in ("interrupted", "failed"):
            _mark(metrics)
            console.print(f"[yellow]interrupted during {metrics['phase']}: writing a partial report[/]")
        save_metrics(out_dir, _snapshot(metrics))
        write_readme(out_dir, _snapshot(metrics))
        raise
    console.print(demo_table(rows, metrics.get("target_accuracy")))
    console.print(escape(machine_line_of(_snapshot(metrics), rows)))
    for note in run_notes(rows, _snapshot(metrics)):
        console.print(f"[yellow]{escape(note)}[/]")
    console.print(f"report: {out_dir}/ (summary.png, metrics.json, README.md, traces/); "
                  f"re-render with `sagc report {out_dir}`")
    return rows


def _snapshot(metrics: dict) -> dict:
    snap = {**metrics, "runs": {k: v.as_dict() for k, v in metrics["runs"].items()}}
    if "machine" in snap:
        snap["machine_line"] = machine_line_of(snap)
    return snap


def _train_one(config: DemoConfig, ckpt: Path, prompts: list, controller: dict, log: SessionLog,
               evaluate: Any, out_dir: Path, console: Console, on_update: Any, before: dict | None = None,
               training: dict | None = None, compute: Any = None) -> None:
    """One run. `training` (optional, a run's third element): {optimizer: spec, loss: spec,
    trl: {GRPOConfig overrides}} (sagc.demo.training), e.g. for bench/bench_optim.py. `compute`:
    sagc.tasks.machine.Compute (precision and threads; its use_cpu and bf16 go to GRPOConfig)."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig

    from sagc.integrations.trl import SAGCGRPOTrainer
    from sagc.tasks import arith, warmstart

    from sagc.demo.training import TrainingChoice

    choice = TrainingChoice.from_spec(training or {}, "run")
    model, tokenizer = warmstart.load_checkpoint(ckpt)
    g_ref = config.group_sizes[len(config.group_sizes) // 2]  # TRL's num_generations (reference G)
    work = Path(tempfile.mkdtemp(prefix="sagc-demo-"))
    try:
        args = GRPOConfig(**choice.grpo_overrides(
            output_dir=str(work), per_device_train_batch_size=config.prompts_per_step * g_ref,
            num_generations=g_ref, max_completion_length=config.warmstart.max_completion_tokens,
            max_steps=config.max_steps, learning_rate=config.learning_rate, temperature=config.temperature,
            loss_type=config.loss_type, beta=0.0, logging_steps=1, report_to=[], save_strategy="no",
            seed=config.seed, dataloader_num_workers=0, disable_tqdm=True, shuffle_dataset=False,
            **(compute.grpo_args() if compute is not None else {"use_cpu": True})))
        trainer = SAGCGRPOTrainer(
            model=model, processing_class=tokenizer, reward_funcs=[arith.reward_fn], args=args,
            train_dataset=Dataset.from_list(prompts), group_controller=controller,
            group_sizes=list(config.group_sizes), trace_path=str(out_dir / "traces" / f"{log.label}.jsonl"),
            **choice.trainer_kwargs(model, args.learning_rate))
        min_steps = min(config.min_steps, config.max_steps)
        with RunProgress(console, log, budget_s=config.time_budget_s, held_out=True, min_steps=min_steps) as bar:
            # every run starts from the checkpoint `before` was measured on: no need to redo it
            SessionCallback(log, evaluate, config.time_budget_s, config.eval_every_s, on_update, bar,
                            initial_eval=before, min_steps=min_steps, max_time_s=config.time_limit_s).attach(trainer)
            trainer.remove_callback(PrinterCallback)  # the progress bar says it; no raw log dicts
            trainer.train()
    finally:
        shutil.rmtree(work, ignore_errors=True)
