"""Controller state in TRL checkpoints: one JSON file per checkpoint folder, written atomically.

    checkpoint-120/
        model.safetensors, optimizer.pt, rng_state.pth, trainer_state.json   (transformers)
        sagc_state.json                                                     (this module)

sagc_state.json holds the controller's state_dict, the number of finished SAGC steps, the
dynamic-sampling refill stream and the size of the rollout trace at save time (with its path
relative to output_dir, so a copied or moved run folder still finds it). On resume the trace is
cut back to that size, so steps the killed run wrote after the checkpoint (and that the resumed
run repeats) appear once. `checkpoint_problems` tells a complete checkpoint from one a kill left
half-written (missing or truncated files, checked from their headers).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from sagc.trace import TraceWriter

logger = logging.getLogger(__name__)

STATE_FILE = "sagc_state.json"
FORMAT = 1


def write_state(folder: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """Write sagc_state.json into `folder` atomically (temp file in the same folder + os.replace)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / STATE_FILE
    fd, tmp = tempfile.mkstemp(prefix=f".{STATE_FILE}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"format": FORMAT, **payload}, f, indent=1, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_state(folder: str | os.PathLike) -> dict:
    """Read a checkpoint's sagc_state.json; a missing or foreign file is a clear error."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the checkpoint was not written by SAGCGRPOTrainer, or the run was killed while "
            "saving it. Resume from an earlier checkpoint (each holds its own sagc_state.json)")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})") from None
    found = state.get("format") if isinstance(state, dict) else state
    if found != FORMAT:
        raise ValueError(f"{path}: unsupported sagc state format {found!r} (this version reads format {FORMAT})")
    return state


def open_trace(path: str | os.PathLike, resumed: bool, size_at_resume: int | None) -> TraceWriter:
    """The rollout trace of a train() call: a fresh run starts a fresh one; a resumed run cuts the
    steps written after its checkpoint (the trace's size recorded there) and appends."""
    if not resumed:
        return TraceWriter(path, mode="w")
    if size_at_resume is None:
        logger.warning("sagc: the checkpoint does not record the trace %s; appending to it as is", path)
    else:
        removed = cut_trace(path, size_at_resume)
        if removed:
            logger.info("sagc: cut %d bytes of steps after the checkpoint from %s", removed, path)
    return TraceWriter(path, mode="a")


def cut_trace(path: str | os.PathLike, size: int) -> int:
    """Cut the trace back to `size` bytes (its size at the checkpoint); returns the bytes removed."""
    path = Path(path)
    if not path.exists():
        if size > 0:
            raise FileNotFoundError(f"the rollout trace {path} held {size} bytes at the checkpoint but is gone; "
                                    "restore it or pass trace_path=None")
        return 0
    current = path.stat().st_size
    if current < size:
        raise ValueError(f"the rollout trace {path} has {current} bytes, fewer than the {size} it had at the "
                         "checkpoint: it was replaced or truncated since")
    if current > size:
        os.truncate(path, size)
    return current - size


# ---- is a checkpoint folder complete? (a kill during a save leaves a partial one) ---------------
# What Trainer._save_checkpoint writes, in order: weights, optimizer.pt, scheduler.pt, rng state,
# trainer_state.json (sagc_state.json is written first, see SAGCGRPOTrainer._save_checkpoint).
# A folder missing any of them, or with a truncated file, would resume wrongly or crash inside
# transformers; these checks read headers only (no tensors are loaded).
CHECKPOINT_PREFIX = "checkpoint-"
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
           "adapter_model.safetensors", "adapter_model.bin")


def _safetensors_problem(path: Path) -> str | None:
    """A safetensors file is 8 bytes of header size, the JSON header, then the tensor bytes."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or n > size - 8:
                return f"{path.name} is truncated ({size} bytes)"
            header = json.loads(f.read(n))
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError):
        return f"{path.name} has a corrupt header"
    if size < 8 + n + end:
        return f"{path.name} is truncated ({size} of {8 + n + end} bytes)"
    return None


def _zip_problem(path: Path) -> str | None:
    """torch.save writes a zip archive; a truncated one has no central directory at its end."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            z.infolist()
    except (zipfile.BadZipFile, OSError, EOFError):
        return f"{path.name} is truncated or corrupt"
    return None


def _file_problem(path: Path) -> str | None:
    if not path.is_file():
        return f"{path.name} is missing"
    if path.suffix == ".safetensors":
        return _safetensors_problem(path)
    if path.suffix in (".pt", ".pth", ".bin"):
        return _zip_problem(path)
    if path.suffix == ".json":
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            return f"{path.name} is truncated or not JSON"
    return None


def checkpoint_problems(folder: str | os.PathLike) -> list[str]:
    """Why `folder` cannot be resumed from (empty list: a complete checkpoint)."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    problems = []
    if not (folder / STATE_FILE).is_file():
        problems.append(f"{STATE_FILE} is missing")
    else:
        try:
            read_state(folder)
        except ValueError:
            problems.append(f"{STATE_FILE} is truncated or unreadable")
    for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt"):
        problems.append(_file_problem(folder / name))
    weights = [folder / w for w in WEIGHTS if (folder / w).is_file()]
    if not weights:
        problems.append("the model weights (model.safetensors) are missing")
    for w in weights:
        if w.name.endswith(".index.json"):
            problem = _file_problem(w)
            if problem is None:
                shards = set(json.loads(w.read_text(encoding="utf-8")).get("weight_map", {}).values())
                problems.extend(_file_problem(folder / s) for s in sorted(shards))
            problems.append(problem)
        else:
            problems.append(_file_problem(w))
    rng = sorted(folder.glob("rng_state*.pth"))
    problems.extend([_file_problem(p) for p in rng] if rng else ["rng_state.pth is missing"])
    return [p for p in problems if p]


def checkpoint_step(folder: str | os.PathLike) -> int | None:
    """N of a `checkpoint-N` folder name (None for another name)."""
    name = Path(folder).name
    tail = name[len(CHECKPOINT_PREFIX):] if name.startswith(CHECKPOINT_PREFIX) else ""
    return int(tail) if tail.isdigit() else None


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """The checkpoint-N folders of a run, newest (largest N) first."""
    p = Path(output_dir)
    found = [q for q in p.iterdir() if q.is_dir() and checkpoint_step(q) is not None] if p.is_dir() else []
    return sorted(found, key=lambda q: checkpoint_step(q), reverse=True)  # type: ignore[arg-type, return-value]


def latest_complete_checkpoint(output_dir: str | os.PathLike) -> tuple[Path | None, list[tuple[Path, list[str]]]]:
    """(newest complete checkpoint or None, [(newer incomplete checkpoint, its problems)])."""
    skipped = []
    for folder in list_checkpoints(output_dir):
        problems = checkpoint_problems(folder)
        if not problems:
            return folder, skipped
        skipped.append((folder, problems))
    return None, skipped


def resolve_resume(output_dir: str | os.PathLike, request: Any) -> tuple[Any, list[tuple[Path, list[str]]]]:
    """What to hand transformers for `train(resume_from_checkpoint=request)`, and the newer
    incomplete checkpoints skipped. True: the newest complete checkpoint (True again when there
    is none at all, so transformers says so); a folder: itself, or a ValueError if incomplete."""
    newest, skipped = latest_complete_checkpoint(output_dir)
    if request is True:
        if newest is None and skipped:
            raise ValueError(f"no complete checkpoint in {output_dir}: "
                             + "; ".join(f"{f.name}: {', '.join(p)}" for f, p in skipped))
        return (str(newest) if newest is not None else True), skipped
    problems = checkpoint_problems(request)
    if problems and not all(STATE_FILE in p for p in problems):  # that alone: read_state says why, later
        use = f"resume from {newest} instead" if newest is not None else "no complete checkpoint is left"
        raise ValueError(f"checkpoint {request} is incomplete ({'; '.join(problems)}), probably because the run "
                         f"stopped while saving it; {use}")
    return request, []


def trace_record(trace_path: str, output_dir: str) -> dict:
    """The trace's entry in sagc_state.json: its size, and its path relative to output_dir too
    (a copied or moved run folder still finds it)."""
    rel = os.path.relpath(os.path.abspath(trace_path), os.path.abspath(output_dir))
    return {"path": trace_path, "relative": None if rel.startswith("..") else rel,
            "bytes": os.path.getsize(trace_path)}


def same_trace(recorded: Mapping[str, Any], trace_path: str | None, output_dir: str) -> bool:
    """Is the trace a checkpoint recorded this run's trace (by its place in output_dir, else its path)?"""
    if trace_path is None:
        return False
    here = os.path.normpath(os.path.abspath(trace_path))
    if recorded.get("relative"):
        return os.path.normpath(os.path.join(os.path.abspath(output_dir), recorded["relative"])) == here
    return os.path.normpath(os.path.abspath(str(recorded.get("path")))) == here
