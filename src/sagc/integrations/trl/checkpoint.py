"""Controller state in TRL checkpoints: one JSON file per checkpoint folder, written atomically.

    checkpoint-120/
        model.safetensors, optimizer.pt, rng_state.pth, trainer_state.json   (transformers)
        sagc_state.json                                                     (this module)

sagc_state.json holds the controller's state_dict, the number of finished SAGC steps, the
dynamic-sampling refill stream and the size of the rollout trace at save time. On resume the
trace is cut back to that size, so steps the killed run wrote after the checkpoint (and that
the resumed run repeats) appear once.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

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
