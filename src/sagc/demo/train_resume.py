"""`sagc train --resume`: pick the checkpoint, check it fits the config, carry the session log over.

    sagc train --config run.yaml --resume auto              # newest *complete* checkpoint in output_dir
    sagc train --config run.yaml --resume runs/x/checkpoint-40
    trl: {resume_from_checkpoint: true}                      # the same as --resume auto (or a path)

Nothing is lost or repeated: the trainer restores the controller and cuts the rollout trace back
to its size at the checkpoint (sagc.integrations.trl.checkpoint), and the session log keeps the
steps up to the checkpoint and appends the resumed ones. A checkpoint folder that a kill left
half-written is skipped by `auto` (with a note) and refused by name, with the one to use instead.
Everything here runs before the model is loaded; nothing is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from sagc.demo._yaml import FieldError, InputError
from sagc.integrations.trl import checkpoint as ckpt

SESSION_FILE = "sagc_session.json"


def resume_request(flag: str | None, trl: Mapping[str, Any]) -> str | None:
    """'auto', a checkpoint folder, or None (a fresh run), from --resume and trl.resume_from_checkpoint."""
    rfc = trl.get("resume_from_checkpoint")
    from_trl = "auto" if rfc is True else (rfc if isinstance(rfc, str) and rfc else None)
    if flag is not None and not flag.strip():
        raise InputError("--resume needs 'auto' or a checkpoint folder")
    if flag and from_trl and Path(flag) != Path(from_trl):
        raise InputError(f"--resume {flag} and trl.resume_from_checkpoint: {rfc!r} disagree; give one of them")
    return flag or from_trl


def _incomplete(folder: Path, problems: list[str]) -> str:
    return f"{folder.name} is incomplete ({'; '.join(problems)})"


def find_checkpoint(output_dir: str, request: str) -> tuple[Path, list[str]]:
    """(the checkpoint to resume from, notes for the user) or an InputError saying what to do."""
    out = Path(output_dir)
    newest, skipped = ckpt.latest_complete_checkpoint(out) if out.is_dir() else (None, [])
    if request != "auto":
        folder = Path(request)
        if not folder.is_dir():
            raise InputError(f"--resume {request}: no such checkpoint folder")
        if folder.resolve().parent != out.resolve():
            raise InputError(f"--resume {request} is not in output_dir {output_dir}: the resumed run continues that "
                             "folder's trace and session log, so set output_dir to the folder that holds the "
                             "checkpoint")
        problems = ckpt.checkpoint_problems(folder)
        if problems:
            hint = (f"resume from {newest}, the newest complete checkpoint (--resume auto picks it)" if newest
                    else "no complete checkpoint is left; start afresh in another output_dir")
            raise InputError(f"--resume {request}: {_incomplete(folder, problems)}, probably because the run stopped "
                             f"while saving it; {hint}")
        return folder, []
    if not out.is_dir():
        raise FieldError("output_dir", f"--resume auto: output_dir {output_dir} does not exist, so there is nothing "
                                       "to resume; run without --resume to start")
    if newest is None:
        why = "; ".join(_incomplete(f, p) for f, p in skipped) if skipped else "it holds no checkpoint-N folder"
        raise InputError(f"--resume auto: no complete checkpoint in {output_dir} ({why}). Checkpoints are written "
                         "with trl: {save_strategy: steps, save_steps: N}")
    notes = [f"{_incomplete(f, p)}, probably because the run stopped while saving it; skipping it"
             for f, p in skipped]
    return newest, notes


def check_fits(folder: Path, config: Any, allowed: tuple[int, ...], group_mode: str, trace_path: Path) -> int:
    """The checkpoint was written by a run with these settings; returns its global step."""
    import sagc

    state = ckpt.read_state(folder)
    step = int(json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))["global_step"])
    if state.get("allowed") != list(allowed) or state.get("group_mode") != group_mode:
        raise InputError(f"{folder} was written with group_mode {state.get('group_mode')}, allowed G "
                         f"{state.get('allowed')}; this config has {group_mode}, {list(allowed)}. Resume with the "
                         "same group_mode and group_sizes")
    from sagc.controllers import tail_defaults

    rollout = getattr(config, "rollout", None)
    policy = rollout.policy if rollout is not None else "full"
    controller = sagc.from_config(tail_defaults(config.controller, policy))  # as the trainer builds it
    name = str(getattr(controller, "name", type(controller).__name__))
    if state.get("controller_name") != name:
        raise InputError(f"{folder} was written by the {state.get('controller_name')} controller; this config's "
                         f"controller is {name}. Resume with the same controller kind")
    if state.get("controller") is not None:
        try:
            controller.load_state_dict(state["controller"])
        except (TypeError, ValueError, KeyError) as exc:
            raise InputError(f"{folder}/{ckpt.STATE_FILE}: the controller state does not fit this config's "
                             f"controller ({type(exc).__name__}: {exc})") from None
    if rollout is not None and rollout.aborts and not state.get("tail"):  # the trainer would refuse it mid-load
        raise FieldError("rollout", f"{folder} was written by a run without tail control (rollout: full); this "
                                    f"config's rollout policy is {rollout.policy!r}. Resume with the rollout the run "
                                    "was saved with")
    if step >= config.max_steps:
        raise FieldError("max_steps", f"{folder.name} is at step {step} and max_steps is {config.max_steps}: nothing "
                                      "left to train; raise max_steps to continue")
    trace = state.get("trace") or {}
    have = trace_path.stat().st_size if trace_path.exists() else 0
    if trace.get("bytes", 0) > have:
        raise InputError(f"the rollout trace {trace_path} has {have} bytes, fewer than the {trace['bytes']} it had "
                         f"at {folder.name}: it was replaced or truncated since; restore it or start afresh")
    return step


def restore_session(output_dir: str, step: int, label: str, controller: Mapping[str, Any]) -> tuple[Any, str | None]:
    """The session log up to `step` (rows the stopped run wrote after it are dropped: they are run
    again), and a note if it could not be carried over."""
    from sagc.demo.session import SessionLog

    path = Path(output_dir) / SESSION_FILE
    log = SessionLog(label=label, controller=dict(controller))
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        history = [h for h in old["history"] if h["step"] <= step]
        evals = [e for e in old.get("evals", []) if e["step"] <= step]
        trl_logs = [m for m in old.get("trl_logs", []) if m["step"] <= step]
        lengths = list(old.get("lengths", []))
    except FileNotFoundError:
        return log, f"{path} is missing: the session log will hold the resumed steps only"
    except (ValueError, KeyError, TypeError) as exc:
        return log, f"{path} is unreadable ({exc}): the session log will hold the resumed steps only"
    rows = [h.get("rows") for h in history]
    if all(isinstance(r, int) for r in rows):  # the completion lengths of the kept steps only
        lengths = lengths[:sum(rows)]
    log.history, log.evals, log.lengths, log.trl_logs = history, evals, lengths, trl_logs
    return log, None
