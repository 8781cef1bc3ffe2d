"""The bad-input catalogue: shared helpers (issue 10).

Every module in tests/bad_inputs/ is a parametrised list of inputs a user may get wrong, and
for each one the same promise: the CLI exits with code 2 and one clear message (naming the
field or key, and the file and line where there is one), never a traceback, and leaves no
output file or folder behind; the Python API raises ValueError naming the field.
A new feature extends the catalogue by adding cases (or a module) here.

    from bad_input_cli import run_cli, assert_clean_failure   # this folder is on sys.path in tests

(`conftest.py` re-exports both names, but `from conftest import` is fragile: when pytest is given
several test folders, "conftest" may be another folder's module.)

    res = run_cli(["simulate", str(scenario), "--json", str(out)], cwd=tmp_path)
    assert_clean_failure(res, "groups[0].lengths[1]", "line 3", str(trace), left_behind=[out])

run_cli(args, cwd=None, env=None, subprocess=False) -> CliResult
    Runs `sagc <args>` in folder `cwd` (default: the current one). In-process through typer's
    CliRunner by default (fast); `subprocess=True` runs `python -m sagc.cli` in a child process
    (for signals, real stdin/stdout, or process-wide state). `env` adds environment variables.
    The result has .exit_code, .output (stdout + stderr) and .exception (an exception that
    escaped the command, which is what a user would have seen as a traceback; None if none).

assert_clean_failure(result, *must_contain, left_behind=(), code=2) -> str
    Asserts the exit code, that no exception escaped and no "Traceback" was printed, that the
    output contains each of `must_contain` (compared with whitespace collapsed, so a message
    the console wrapped still matches), and that none of the paths in `left_behind` exists
    (nor a temp file of ours next to it). Returns the whitespace-collapsed output.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess as _subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

SRC = str(Path(__file__).resolve().parents[2] / "src")


@dataclass
class CliResult:
    exit_code: int
    output: str  # stdout + stderr
    exception: BaseException | None = None  # escaped from the command (not SystemExit)


@contextlib.contextmanager
def _chdir(path: str | os.PathLike | None):
    if path is None:
        yield
        return
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run_cli(args: Sequence[str], cwd: str | os.PathLike | None = None, env: Mapping[str, str] | None = None,
            subprocess: bool = False) -> CliResult:
    """Run `sagc <args>` (see the module docstring)."""
    args = [str(a) for a in args]
    if subprocess:
        full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]),
                    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})}
        proc = _subprocess.run([sys.executable, "-m", "sagc.cli", *args], cwd=cwd, env=full_env,
                               stdout=_subprocess.PIPE, stderr=_subprocess.STDOUT, text=True, timeout=600)
        return CliResult(exit_code=proc.returncode, output=proc.stdout)
    from typer.testing import CliRunner

    from sagc.cli import app

    with _chdir(cwd):
        res = CliRunner().invoke(app, args, env=dict(env) if env else None)
    exc = res.exception if res.exception is not None and not isinstance(res.exception, SystemExit) else None
    return CliResult(exit_code=res.exit_code, output=res.output, exception=exc)


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def assert_clean_failure(result: CliResult, *must_contain: str, left_behind: Iterable[str | os.PathLike] = (),
                         code: int = 2) -> str:
    """Exit `code`, no traceback, the message names what it must, nothing left behind."""
    out = result.output
    assert result.exception is None, f"an exception escaped the CLI: {result.exception!r}\n{out}"
    assert "Traceback" not in out, f"the CLI printed a traceback:\n{out}"
    assert result.exit_code == code, f"exit code {result.exit_code}, expected {code}:\n{out}"
    flat = _squash(out)
    for text in must_contain:
        assert _squash(str(text)) in flat, f"the message does not mention {text!r}:\n{out}"
    for path in left_behind:
        p = Path(path)
        assert not p.exists(), f"{p} was left behind after a failed command:\n{out}"
        if p.parent.is_dir():  # sagc._io.atomic_path temp files are named .<name>.*
            stale = sorted(q.name for q in p.parent.glob(f".{p.name}.*"))
            assert not stale, f"temp files left next to {p}: {stale}"
    return flat
