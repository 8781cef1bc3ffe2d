"""Simulator scenarios: the YAML contract of `sagc simulate` (design section 5).

Every key, with its default when it is optional (required keys have none):

    name: heavy-tail              # default: the file name without .yaml
    steps: 2000                   # required, >= 1
    seed: 0                       # >= 0
    prompts_per_step: 8           # B, required
    group_sizes: [2, 4, 8, 16, 32]  # allowed G, required
    lengths:                      # required
      model: lognormal            # lognormal | pareto | trace
      median: 400                 # tokens: median of a typical prompt's correct completions
      sigma: 0.8                  # lognormal only (required there): within-prompt log-sd, > 0
      alpha: 2.5                  # pareto only (required there): within-prompt tail index, > 1
      prompt_sigma: 0.0           # between-prompt log-sd of the median, >= 0
      max_tokens: 8192            # truncation cap, > median
      runaway_prob: 0.0           # chance a completion loops until max_tokens, in [0, 1)
      wrong_length_factor: 1.0    # incorrect completions are this much longer, > 0
      prompt_tokens: 256          # (extension) prompt length, for the prefill cost
      drift: none                 # or {kind: sine, amplitude: 0.5, period: 600}
                                  # or {kind: linear, per_step: 0.0005}
                                  # (extension) tail_amplitude (sine) / tail_per_step (linear):
                                  # the within-prompt spread also drifts, by the factor
                                  # exp(tail_amplitude * sin(2 pi t / period)) or exp(tail_per_step * t)
      # model: trace takes only `path` (a trace JSONL, relative to the scenario file) and
      # `prompt_tokens`: each simulated prompt replays one recorded group.
    rewards:                      # with model: trace, only for recorded groups without rewards
      pass_rate: {beta: [1.0, 1.0]}   # per-prompt pass rate ~ Beta(a, b), a, b > 0
    engine:                       # all optional; see sagc.sim.engine
      replicas: 1
      slots: 256
      decode_s_per_iter: 0.02
      decode_s_per_seq: 0.0001
      prefill_s_per_token: 0.0
      train_s_per_token: 0.00001
      overhead_s: 2.0
    straggler: {rule: tail, tail_share: 0.5, tail_quantile: 0.9}   # the rule that scores every run
                                  # (also kappa: 4.0, window: 8 for the reference/group/time rules)
    prompts:                      # (extension, issue 22) default: every prompt is new
      pool: 2000                  # a finite dataset of N prompts, each epoch in a fresh order
                                  # (prompt ids 0..N-1); each prompt keeps its pass rate and its
                                  # length scale (prompt_sigma). With model: trace, prompt k
                                  # replays recorded group k (N <= the trace's groups).
      learning:                   # pass rates move as the model learns (not with model: trace):
        per_visit: 0.0            # log-odds gained by a prompt each time it is trained on with
                                  # mixed rewards
        per_step: 0.0             # log-odds gained by every prompt per step (see docs/per_prompt.md)
    controllers:                  # default: none (then only the static hindsight runs)
      - {kind: static, group_size: 32}
      - {kind: sagc, delta: 0.1, V: 10, label: sagc-0.1}  # (extension) label names the run
      - {kind: sagc, rollout: {policy: resume, over_sample: 1.5}}  # tail control inside the step
                                  # (sagc.rollout: full | drop | resume | defer | auto; default full)

A controller entry without its own `straggler` gets the scenario's.
Errors name the key path, the file and the line: "lengths.sigma must be > 0, got -1
(in scenarios/x.yaml, line 9)".
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sagc._io import InputError, load_yaml
from sagc.rules import STRAGGLER_KEYS, StragglerSettings, make_rule
from sagc.sim.pool import recorded_pool

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "scenarios"

_TOP_KEYS = ("name", "steps", "seed", "prompts_per_step", "group_sizes", "lengths", "rewards", "engine",
             "straggler", "controllers", "prompts")
_SHAPE_KEYS = ("median", "sigma", "alpha", "prompt_sigma", "max_tokens", "runaway_prob", "wrong_length_factor",
               "drift")
_MODEL_KEYS = {
    "lognormal": ("model", "median", "sigma", "prompt_sigma", "max_tokens", "runaway_prob",
                  "wrong_length_factor", "prompt_tokens", "drift"),
    "pareto": ("model", "median", "alpha", "prompt_sigma", "max_tokens", "runaway_prob",
               "wrong_length_factor", "prompt_tokens", "drift"),
    "trace": ("model", "path", "prompt_tokens"),
}
_DRIFT_KEYS = {"none": ("kind",), "sine": ("kind", "amplitude", "period", "tail_amplitude"),
               "linear": ("kind", "per_step", "tail_per_step")}


@dataclass(frozen=True)
class DriftSettings:
    """Slow change of the length distribution over steps (log scale)."""

    kind: str = "none"  # none | sine | linear
    amplitude: float = 0.0  # sine: log-median shift amplitude
    period: float = 1.0  # sine: steps per cycle
    per_step: float = 0.0  # linear: log-median shift per step
    tail_amplitude: float = 0.0  # sine: log of the spread factor's amplitude
    tail_per_step: float = 0.0  # linear: log spread factor per step

    def _phase(self, step: Any) -> np.ndarray:
        t = np.asarray(step, dtype=np.float64)
        if self.kind == "sine":
            return np.sin(2.0 * np.pi * t / self.period)
        if self.kind == "linear":
            return t
        return np.zeros_like(t)

    def shift(self, step: Any) -> np.ndarray:
        """Log-median shift at step(s) t."""
        scale = {"sine": self.amplitude, "linear": self.per_step}.get(self.kind, 0.0)
        return scale * self._phase(step)

    def spread(self, step: Any) -> np.ndarray:
        """Factor on the within-prompt log-sd (lognormal) or on 1/alpha (pareto)."""
        scale = {"sine": self.tail_amplitude, "linear": self.tail_per_step}.get(self.kind, 0.0)
        return np.exp(scale * self._phase(step))


@dataclass(frozen=True)
class LengthSettings:
    model: str  # lognormal | pareto | trace
    median: float = float("nan")  # tokens
    sigma: float | None = None  # lognormal within-prompt log-sd
    alpha: float | None = None  # pareto tail index
    prompt_sigma: float = 0.0
    max_tokens: int = 8192
    runaway_prob: float = 0.0
    wrong_length_factor: float = 1.0
    prompt_tokens: int = 256
    drift: DriftSettings = DriftSettings()
    path: str | None = None  # trace: as written in the scenario
    resolved_path: str | None = None  # trace: absolute path used to read it


@dataclass(frozen=True)
class RewardSettings:
    beta: tuple[float, float] = (1.0, 1.0)  # per-prompt pass rate ~ Beta(a, b)


@dataclass(frozen=True)
class PromptSettings:
    """Where prompts come from: None = a new prompt every time; N = a pool of N, epoch after epoch."""

    pool: int | None = None
    per_visit: float = 0.0  # log-odds of a prompt's pass rate gained per training visit with signal
    per_step: float = 0.0  # log-odds gained by every prompt per step

    def to_dict(self) -> dict:
        return {"pool": self.pool, "learning": {"per_visit": self.per_visit, "per_step": self.per_step}}


@dataclass(frozen=True)
class EngineSettings:
    replicas: int = 1
    slots: int = 256  # concurrent sequences per replica
    decode_s_per_iter: float = 0.02
    decode_s_per_seq: float = 0.0001
    prefill_s_per_token: float = 0.0
    train_s_per_token: float = 0.00001  # per completion token
    overhead_s: float = 2.0


@dataclass(frozen=True)
class Scenario:
    name: str
    steps: int
    seed: int
    prompts_per_step: int
    group_sizes: tuple[int, ...]
    lengths: LengthSettings
    rewards: RewardSettings
    engine: EngineSettings
    straggler: StragglerSettings
    controllers: tuple[dict, ...]  # each {"kind": ..., settings..., optional "label"}
    source: str | None = None  # the file it came from
    prompts: PromptSettings = PromptSettings()  # (issue 22) a finite pool of recurring prompts

    def replace(self, **changes: Any) -> "Scenario":
        """A copy with some top-level fields changed (e.g. steps=200, seed=3), re-validated."""
        data = self.to_dict()
        for key, value in changes.items():
            if key not in _TOP_KEYS:
                raise InputError(f"unknown scenario key {key!r}; valid keys are {list(_TOP_KEYS)}")
            data[key] = value
        same_trace = self.lengths.resolved_path is not None and "lengths" not in changes
        if same_trace:  # re-check the same file, keep the path as written
            data["lengths"]["path"] = self.lengths.resolved_path
        base = Path(self.source).parent if self.source else None
        new = parse_scenario(data, source=self.source, base_dir=base)
        if same_trace:
            new = dataclasses.replace(new, lengths=dataclasses.replace(new.lengths, path=self.lengths.path))
        return new

    def to_dict(self) -> dict:
        """Plain dict in the YAML layout (parse_scenario(to_dict()) gives the scenario back)."""
        ls = self.lengths
        if ls.model == "trace":
            lengths: dict[str, Any] = {"model": "trace", "path": ls.path, "prompt_tokens": ls.prompt_tokens}
        else:
            lengths = {k: getattr(ls, k) for k in _MODEL_KEYS[ls.model] if k != "drift"}
            d = ls.drift
            lengths["drift"] = {k: getattr(d, k) for k in _DRIFT_KEYS[d.kind]}
        st = self.straggler
        out = {
            "name": self.name, "steps": self.steps, "seed": self.seed, "prompts_per_step": self.prompts_per_step,
            "group_sizes": list(self.group_sizes), "lengths": lengths,
            "engine": dataclasses.asdict(self.engine),
            "straggler": {"rule": st.rule if isinstance(st.rule, str) else list(st.rule), "kappa": st.kappa,
                          "window": st.window, "tail_share": st.tail_share, "tail_quantile": st.tail_quantile},
            "controllers": [copy.deepcopy(c) for c in self.controllers],
        }
        out["rewards"] = {"pass_rate": {"beta": list(self.rewards.beta)}}
        if self.prompts.pool is not None:  # absent for plain scenarios: their JSON is unchanged
            out["prompts"] = self.prompts.to_dict()
        return out


# ---- loading ------------------------------------------------------------------------------
def list_scenarios() -> list[str]:
    """Names of the scenarios shipped with sagc (usable as `load_scenario(name)`)."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


def load_scenario(path_or_name: str | os.PathLike) -> Scenario:
    """Load and validate a scenario file, or a shipped scenario by bare name ("heavy-tail")."""
    p = Path(path_or_name)
    if not p.is_file():
        text = str(path_or_name)
        if os.sep not in text and "/" not in text and not text.endswith((".yaml", ".yml")):
            shipped = SHIPPED_DIR / f"{text}.yaml"
            if shipped.is_file():
                p = shipped
            else:
                raise InputError(f"no scenario file {text!r} and no shipped scenario of that name; "
                                 f"shipped scenarios are {list_scenarios()}")
        else:
            raise InputError(f"scenario file {text} does not exist")
    data, lines = load_yaml(p)  # names file and line for bad YAML, bad bytes, a key given twice
    if not isinstance(data, Mapping):
        raise InputError(f"{p}: a scenario must be a YAML mapping of keys to values")
    data = dict(data)
    data.setdefault("name", p.stem)
    return parse_scenario(data, source=str(p), lines=lines, base_dir=p.parent)


# ---- validation ---------------------------------------------------------------------------
class _Checker:
    """Builds error messages that name the key path, the file and the line."""

    def __init__(self, source: str | None, lines: Mapping[str, int] | None) -> None:
        self.source = source
        self.lines = lines or {}

    def where(self, path: str) -> str:
        if self.source is None:
            return ""
        p = path
        while p and p not in self.lines:  # fall back to the enclosing key's line
            p = p.rsplit(".", 1)[0] if "." in p else (p.rsplit("[", 1)[0] if "[" in p else "")
        line = self.lines.get(p)
        return f" (in {self.source}, line {line})" if line else f" (in {self.source})"

    def error(self, path: str, message: str) -> InputError:
        return InputError(f"{path} {message}{self.where(path)}")

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
        if not isinstance(value, Mapping):
            raise self.error(path, f"must be a mapping, got {value!r}")
        for key in value:
            if key not in allowed:
                raise self.error(f"{path}.{key}" if path else str(key),
                                 f"is not a known key; valid keys{' here' if path else ''} are {list(allowed)}")
        for key in required:
            if key not in value:
                raise self.error(path or "scenario", f"needs the key {key!r}")
        return dict(value)

    def integer(self, value: Any, path: str, lo: int, hi: int = 2**31 - 1) -> int:
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or (isinstance(value, float) and not value.is_integer())):  # also NaN and inf
            raise self.error(path, f"must be an integer >= {lo}, got {value!r}")
        if value < lo:
            raise self.error(path, f"must be >= {lo}, got {value!r}")
        if value > hi:  # beyond this a count is a typo, and numpy would overflow or exhaust memory
            raise self.error(path, f"must be <= {hi}, got {value!r}")
        return int(value)

    def number(self, value: Any, path: str, lo: float | None = None, hi: float | None = None,
               lo_open: bool = False, hi_open: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            raise self.error(path, f"must be a finite number, got {value!r}")
        v = float(value)
        below = lo is not None and (v <= lo if lo_open else v < lo)
        above = hi is not None and (v >= hi if hi_open else v > hi)
        if not (below or above):
            return v
        if hi is None:
            raise self.error(path, f"must be {'>' if lo_open else '>='} {lo:g}, got {value!r}")
        if lo is None:
            raise self.error(path, f"must be {'<' if hi_open else '<='} {hi:g}, got {value!r}")
        left, right = ("(" if lo_open else "["), (")" if hi_open else "]")
        raise self.error(path, f"must be in {left}{lo:g}, {hi:g}{right}, got {value!r}")


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def parse_scenario(data: Mapping[str, Any], source: str | None = None, lines: Mapping[str, int] | None = None,
                   base_dir: str | os.PathLike | None = None) -> Scenario:
    """Validate a scenario given as a plain dict (as loaded from YAML, or built in code)."""
    c = _Checker(source, lines)
    top = c.mapping(data, "", _TOP_KEYS, ("steps", "prompts_per_step", "group_sizes", "lengths"))
    name = str(top.get("name", "scenario"))
    steps = c.integer(top["steps"], "steps", 1)
    seed = c.integer(top.get("seed", 0), "seed", 0, hi=2**63 - 1)
    prompts = c.integer(top["prompts_per_step"], "prompts_per_step", 1)
    sizes_raw = top["group_sizes"]
    if not isinstance(sizes_raw, (list, tuple)) or not sizes_raw:
        raise c.error("group_sizes", f"must be a non-empty list of integers, got {sizes_raw!r}")
    sizes = [c.integer(g, f"group_sizes[{i}]", 1) for i, g in enumerate(sizes_raw)]
    if len(set(sizes)) != len(sizes):
        raise c.error("group_sizes", f"must not repeat a size, got {sizes}")
    lengths = _parse_lengths(c, top["lengths"], base_dir)
    # With a trace, rewards: is the law for recorded groups that have no rewards (length-only traces)
    rewards = _parse_rewards(c, top.get("rewards", {"pass_rate": {"beta": [1.0, 1.0]}}))
    engine = _parse_engine(c, top.get("engine", {}))
    straggler = _parse_straggler(c, top.get("straggler", {}))
    controllers = _parse_controllers(c, top.get("controllers", []), straggler, tuple(sizes))
    pool = _parse_prompts(c, top["prompts"], lengths) if top.get("prompts") is not None else PromptSettings()
    return Scenario(name=name, steps=steps, seed=seed, prompts_per_step=prompts, group_sizes=tuple(sorted(sizes)),
                    lengths=lengths, rewards=rewards, engine=engine, straggler=straggler,
                    controllers=controllers, source=source, prompts=pool)


def _parse_prompts(c: _Checker, raw: Any, lengths: LengthSettings) -> PromptSettings:
    p = c.mapping(raw, "prompts", ("pool", "learning"), ("pool",))
    pool = c.integer(p["pool"], "prompts.pool", 1, hi=2**26)
    if lengths.model == "trace":
        groups = int(recorded_pool(lengths.resolved_path).size.shape[0])
        if pool > groups:
            raise c.error("prompts.pool", f"must be <= the trace's {groups} recorded groups (prompt k replays "
                                          f"group k), got {pool}")
        if any(v != 0 for v in (p.get("learning") or {}).values()):  # to_dict writes zeros
            raise c.error("prompts.learning", "is not used with model: trace (a replayed prompt keeps its "
                                              "recorded completions)")
    learning = p.get("learning") or {}
    lr = c.mapping(learning, "prompts.learning", ("per_visit", "per_step"))
    return PromptSettings(pool=pool, per_visit=c.number(lr.get("per_visit", 0.0), "prompts.learning.per_visit", lo=0.0),
                          per_step=c.number(lr.get("per_step", 0.0), "prompts.learning.per_step", lo=0.0))


def _parse_lengths(c: _Checker, raw: Any, base_dir: str | os.PathLike | None) -> LengthSettings:
    if not isinstance(raw, Mapping):
        raise c.error("lengths", f"must be a mapping, got {raw!r}")
    model = raw.get("model")
    if model not in _MODEL_KEYS:
        raise c.error("lengths.model", f"must be one of {list(_MODEL_KEYS)}, got {model!r}")
    for key in raw:
        if key not in _MODEL_KEYS[model]:
            if key in _SHAPE_KEYS or key == "path":
                why = {"trace": "takes only path and prompt_tokens (the shape comes from the trace)",
                       "pareto": "uses alpha instead of sigma", "lognormal": "uses sigma, not alpha or path"}[model]
                raise c.error(f"lengths.{key}", f"is not used with model: {model}; {model} {why}")
            raise c.error(f"lengths.{key}", f"is not a known key; valid keys for model {model} are "
                                            f"{list(_MODEL_KEYS[model])}")
    prompt_tokens = c.integer(raw.get("prompt_tokens", 256), "lengths.prompt_tokens", 0)
    if model == "trace":
        if "path" not in raw or not isinstance(raw["path"], str) or not raw["path"]:
            raise c.error("lengths", "needs path: (the trace JSONL to replay) with model: trace")
        resolved = Path(base_dir or ".") / raw["path"]
        if not resolved.is_file():
            what = "a folder, not a trace file" if resolved.is_dir() else "a trace file that does not exist"
            raise c.error("lengths.path", f"names {what}: {resolved}")
        try:  # read (and cache) the trace now, so a bad line fails before any output or work
            recorded_pool(str(resolved.resolve()))
        except InputError as exc:
            raise InputError(f"{exc}; the trace named by lengths.path{c.where('lengths.path')}") from None
        return LengthSettings(model="trace", prompt_tokens=prompt_tokens, path=raw["path"],
                              resolved_path=str(resolved.resolve()))
    shape_key = "sigma" if model == "lognormal" else "alpha"
    for key in ("median", shape_key):
        if key not in raw:
            raise c.error("lengths", f"needs the key {key!r} with model: {model}")
    median = c.number(raw["median"], "lengths.median", lo=0.0, lo_open=True)
    sigma = alpha = None
    if model == "lognormal":
        sigma = c.number(raw["sigma"], "lengths.sigma", lo=0.0, lo_open=True)
    else:
        alpha = c.number(raw["alpha"], "lengths.alpha", lo=1.0, lo_open=True)
    max_tokens = c.integer(raw.get("max_tokens", 8192), "lengths.max_tokens", 1)
    if max_tokens <= median:
        raise c.error("lengths.max_tokens", f"must be > lengths.median ({median:g}), got {max_tokens}")
    return LengthSettings(
        model=model, median=median, sigma=sigma, alpha=alpha,
        prompt_sigma=c.number(raw.get("prompt_sigma", 0.0), "lengths.prompt_sigma", lo=0.0),
        max_tokens=max_tokens,
        runaway_prob=c.number(raw.get("runaway_prob", 0.0), "lengths.runaway_prob", 0.0, 1.0, hi_open=True),
        wrong_length_factor=c.number(raw.get("wrong_length_factor", 1.0), "lengths.wrong_length_factor",
                                     lo=0.0, lo_open=True),
        prompt_tokens=prompt_tokens, drift=_parse_drift(c, raw.get("drift", "none")),
    )


def _parse_drift(c: _Checker, raw: Any) -> DriftSettings:
    if raw is None or raw == "none":
        return DriftSettings()
    if not isinstance(raw, Mapping):
        raise c.error("lengths.drift", f"must be none or a mapping with a kind, got {raw!r}")
    kind = raw.get("kind")
    if kind not in _DRIFT_KEYS:
        raise c.error("lengths.drift.kind", f"must be one of {list(_DRIFT_KEYS)}, got {kind!r}")
    c.mapping(raw, "lengths.drift", _DRIFT_KEYS[kind])
    if kind == "sine":
        for key in ("amplitude", "period"):
            if key not in raw:
                raise c.error("lengths.drift", f"needs the key {key!r} with kind: sine")
        return DriftSettings(kind="sine", amplitude=c.number(raw["amplitude"], "lengths.drift.amplitude"),
                             period=c.number(raw["period"], "lengths.drift.period", lo=0.0, lo_open=True),
                             tail_amplitude=c.number(raw.get("tail_amplitude", 0.0), "lengths.drift.tail_amplitude"))
    if kind == "linear":
        if "per_step" not in raw:
            raise c.error("lengths.drift", "needs the key 'per_step' with kind: linear")
        return DriftSettings(kind="linear", per_step=c.number(raw["per_step"], "lengths.drift.per_step"),
                             tail_per_step=c.number(raw.get("tail_per_step", 0.0), "lengths.drift.tail_per_step"))
    return DriftSettings()


def _parse_rewards(c: _Checker, raw: Any) -> RewardSettings:
    r = c.mapping(raw, "rewards", ("pass_rate",), ("pass_rate",))
    pr = c.mapping(r["pass_rate"], "rewards.pass_rate", ("beta",), ("beta",))
    beta = pr["beta"]
    if not isinstance(beta, (list, tuple)) or len(beta) != 2:
        raise c.error("rewards.pass_rate.beta", f"must be a list [a, b] of two numbers > 0, got {beta!r}")
    a = c.number(beta[0], "rewards.pass_rate.beta[0]", lo=0.0, lo_open=True)
    b = c.number(beta[1], "rewards.pass_rate.beta[1]", lo=0.0, lo_open=True)
    return RewardSettings(beta=(a, b))


def _parse_engine(c: _Checker, raw: Any) -> EngineSettings:
    fields = tuple(f.name for f in dataclasses.fields(EngineSettings))
    e = c.mapping(raw, "engine", fields)
    out: dict[str, Any] = {}
    for key in fields:
        if key not in e:
            continue
        if key in ("replicas", "slots"):
            out[key] = c.integer(e[key], f"engine.{key}", 1)
        else:
            out[key] = c.number(e[key], f"engine.{key}", lo=0.0)
    settings = EngineSettings(**out)
    if settings.decode_s_per_iter + settings.decode_s_per_seq <= 0:
        raise c.error("engine.decode_s_per_iter", "and engine.decode_s_per_seq cannot both be 0 "
                                                  "(a decode iteration must take time)")
    return settings


def _parse_straggler(c: _Checker, raw: Any) -> StragglerSettings:
    s = c.mapping(raw, "straggler", STRAGGLER_KEYS)
    if isinstance(s.get("rule"), list):
        s["rule"] = tuple(s["rule"])
    try:
        return make_rule(s).settings
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        key = next((k for k in STRAGGLER_KEYS if f"straggler.{k}" in msg), None)
        path = f"straggler.{key}" if key else "straggler"
        raise InputError(f"{msg}{c.where(path)}") from None


def _parse_controllers(c: _Checker, raw: Any, straggler: StragglerSettings,
                       sizes: tuple[int, ...]) -> tuple[dict, ...]:
    from sagc.controllers import from_config

    if not isinstance(raw, (list, tuple)):
        raise c.error("controllers", f"must be a list of mappings with a kind, got {raw!r}")
    out = []
    for i, entry in enumerate(raw):
        path = f"controllers[{i}]"
        if not isinstance(entry, Mapping) or "kind" not in entry:
            raise c.error(path, f"must be a mapping with a 'kind' key, got {entry!r}")
        entry = copy.deepcopy(dict(entry))
        if "label" in entry and (not isinstance(entry["label"], str) or not entry["label"]):
            raise c.error(f"{path}.label", f"must be a non-empty string, got {entry['label']!r}")
        if "rollout" in entry:
            entry["rollout"] = _parse_rollout(c, entry["rollout"], f"{path}.rollout")
        try:  # building it is the validation: unknown kinds and bad settings fail here
            controller_from_entry(entry, straggler, from_config)
        except (ValueError, TypeError) as exc:
            msg = str(exc)  # point at the setting's own line when the message starts with its name
            key = next((k for k in entry if msg.startswith(f"{k} ") or msg.startswith(f"straggler.{k}")), None)
            raise InputError(f"{path}: {msg}{c.where(f'{path}.{key}' if key else path)}") from None
        for key in ("group_size", "initial_group_size"):  # a G outside group_sizes would run at another G
            g = entry.get(key)
            if g is not None and g not in sizes:
                raise c.error(f"{path}.{key}", f"must be one of group_sizes {list(sizes)}, got {g!r}")
        out.append(entry)
    return tuple(out)


def _parse_rollout(c: _Checker, raw: Any, path: str) -> dict:
    """A controller entry's `rollout:` (sagc.rollout.RolloutSettings), checked; errors name the key."""
    from sagc.rollout import KNOBS, rollout_settings

    if isinstance(raw, str):
        raw = {"policy": raw}
    value = c.mapping(raw, path, tuple(KNOBS))
    try:
        return rollout_settings(value).to_dict()
    except (ValueError, TypeError) as exc:
        msg = str(exc).removeprefix("rollout: ").removeprefix("rollout.")
        key = next((k for k in KNOBS if msg.startswith(k)), None)
        raise InputError(f"{path}.{msg}{c.where(f'{path}.{key}' if key else path)}") from None


def controller_from_entry(entry: Mapping[str, Any], straggler: StragglerSettings, build: Any = None) -> Any:
    """Build a controller from a scenario entry (without `label`, with the scenario's straggler
    rule unless the entry sets its own)."""
    if build is None:
        from sagc.controllers import from_config as build
    from sagc.controllers import REGISTRY

    from sagc.controllers import tail_defaults
    from sagc.rollout import rollout_settings

    config = tail_defaults({k: v for k, v in entry.items() if k not in ("label", "rollout")},
                           rollout_settings(entry.get("rollout")).policy)
    cls = REGISTRY.get(str(config.get("kind")))
    if cls is not None and "straggler" not in config:
        if any(f.name == "straggler" for f in dataclasses.fields(cls.Settings)):
            config["straggler"] = straggler
    return build(config)


__all__ = ["Scenario", "PromptSettings", "LengthSettings", "DriftSettings", "RewardSettings", "EngineSettings", "load_scenario",
           "list_scenarios", "parse_scenario", "controller_from_entry", "SHIPPED_DIR"]
