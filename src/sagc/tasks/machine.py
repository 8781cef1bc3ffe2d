"""The machine a run trains on: CPU precision and torch threads, chosen in one place, and the
machine line that every report and benchmark prints.

Why (issue 20): TRL's GRPOConfig defaults to bf16, which on a CPU runs under autocast. Without
native bf16 (avx512_bf16, AMX) autocast is emulated: one 7680x128 @ 128x512 linear took 181 ms
in bf16 against 14 ms in fp32 on a Zen 3 EPYC, and the demo made 3 steps in a 120 s budget.
Even with avx512_bf16 but no AMX, bf16 autocast was 1.5x slower than fp32 on the demo's model
shapes. And two torch threads were slower than one for small ops on a loaded 2-core machine. So
`choose` (used by the demo, `sagc train`, the warm-start and the benchmarks that train):

- precision: fp32, unless a short probe on this machine measures bf16 autocast faster by
  BF16_GAIN;
- threads: the fewest threads within THREAD_TIE of the fastest count the probe tried, and 1
  unless more are faster by THREAD_GAIN (1 when in doubt);
- an explicit choice (`trl.bf16`, `num_threads`) always wins and is reported as the user's;
- with CUDA (and not use_cpu), the GPU behaviour stays as it was: TRL's default bf16 and
  torch's own thread count.

The probe (about a second) times forward + backward of the tiny model's MLP shapes and a few
decode-sized calls. It runs once per machine and is cached in <cache>/machine/<key>.json (cache
as for the warm-start: $SAGC_CACHE, else $XDG_CACHE_HOME/sagc, else ~/.cache/sagc), keyed by CPU
model, flags, usable cores, torch version and $ONEDNN_MAX_CPU_ISA; delete the file to probe
again (a probe taken under heavy load chooses 1 thread). ONEDNN_MAX_CPU_ISA=AVX2 makes a CPU
with avx512_bf16 behave like one without: bf16 autocast then took 14x fp32's time here.

Nothing here imports torch at module level: `sagc report` formats a machine line without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")  # the CPU flags that make bf16 native
BF16_GAIN = 0.8  # bf16 only where the probe measures it at <= 0.8x fp32's time
THREAD_TIE = 1.1  # thread counts within 10% of the fastest count as tied: the fewest wins
THREAD_GAIN = 0.85  # more than 1 thread only where that is >= 1/0.85 = 1.18x faster than 1
PROBE_VERSION = 2  # bump when the probe's workload changes: old cached probes are then ignored


def cache_root() -> Path:
    """$SAGC_CACHE, else $XDG_CACHE_HOME/sagc, else ~/.cache/sagc."""
    if os.environ.get("SAGC_CACHE"):
        return Path(os.environ["SAGC_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "sagc"
    return Path.home() / ".cache" / "sagc"


# ---------------------------------------------------------------------------- what the CPU is

def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    out: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        key, _, value = line.partition(":")
        out.setdefault(key.strip(), value.strip())
    return out


def cpu_model() -> str:
    info = _cpuinfo()
    return info.get("model name") or platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> set[str]:
    info = _cpuinfo()
    return set((info.get("flags") or info.get("Features") or "").split())


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def cpu_info() -> dict[str, Any]:
    """CPU model, usable cores, the bf16 flags (FLAGS: present or not), load average. No torch."""
    flags = cpu_flags()
    return {"cpu": cpu_model(), "cores": usable_cores(), "flags": {f: f in flags for f in FLAGS},
            "load_avg": load_average()}


# ---------------------------------------------------------------------------------- the probe

def _workload(torch: Any, bf16: bool) -> Any:
    """One call = what a demo step spends its time on, at a reduced size: the built-in task's
    tiny Llama (sagc.tasks.config.ModelConfig defaults) runs a training forward + backward on 64
    rows of 48 tokens, then generates 12 tokens for 64 rows, as TRL's rollout does.

    The first probe timed only the MLP's matmuls (forward + backward on 2,048 tokens and 20
    decode-sized forwards); on the 2-core development machine it found 2 threads 12% slower
    than 1, while the demo itself made 1.7x more steps in 30 s with 2 threads (G=16: 7 vs 4;
    G=4: 40 vs 24). The whole model, generation included, is what has to be measured."""
    from sagc.tasks.config import ModelConfig
    from sagc.tasks.model import build_model
    from sagc.tasks.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    model = build_model(ModelConfig(), tokenizer, seed=0)
    gen = torch.Generator().manual_seed(0)
    vocab = len(tokenizer)
    batch = torch.randint(4, vocab, (64, 48), generator=gen)  # (rows, tokens)
    prompts = torch.randint(4, vocab, (64, 24), generator=gen)  # (rows, prompt tokens)

    def once() -> None:
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        model.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=12,
                           min_new_tokens=12, do_sample=False)
    return once


def _time_ms(torch: Any, threads: int, bf16: bool, repeats: int) -> float:
    """Median milliseconds of one workload call at `threads` threads, after one warm-up call."""
    torch.set_num_threads(threads)
    once = _workload(torch, bf16)
    once()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        times.append(1e3 * (time.perf_counter() - start))
        if sum(times) > 2000:  # a very slow machine: enough to tell
            break
    return round(statistics.median(times), 3)


def measure(max_threads: int | None = None, repeats: int = 5) -> dict[str, Any]:
    """Time the workload in fp32 and bf16 at 1 thread, then at 2, 4, ... threads (up to the
    usable cores, at most 8) in the faster precision. Restores torch's thread count."""
    import torch

    before = torch.get_num_threads()
    top = min(max_threads or usable_cores(), 8)
    try:
        fp32 = _time_ms(torch, 1, False, repeats)
        bf16 = _time_ms(torch, 1, True, repeats)
        fast_bf16 = bf16 <= BF16_GAIN * fp32
        threads = {"1": fp32 if not fast_bf16 else bf16}
        n = 2
        while n <= top:
            threads[str(n)] = _time_ms(torch, n, fast_bf16, repeats)
            n *= 2
    finally:
        torch.set_num_threads(before)
    return {"version": PROBE_VERSION, "fp32_ms": fp32, "bf16_ms": bf16, "threads_ms": threads,
            "when": time.strftime("%Y-%m-%d %H:%M"), "load_avg": load_average()}


def probe_key() -> str:
    import torch

    blob = json.dumps({"cpu": cpu_model(), "flags": sorted(cpu_flags()), "cores": usable_cores(),
                       "torch": torch.__version__, "version": PROBE_VERSION,
                       "isa": os.environ.get("ONEDNN_MAX_CPU_ISA")}, sort_keys=True)  # oneDNN's kernels
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def probe(refresh: bool = False) -> dict[str, Any]:
    """This machine's probe result, measured once and cached (see the module docstring)."""
    path = cache_root() / "machine" / f"probe-{probe_key()}.json"
    if not refresh and str(path) in _MEMO:
        return _MEMO[str(path)]
    if not refresh:
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            if cached.get("version") == PROBE_VERSION:
                _MEMO[str(path)] = cached
                return cached
        except (OSError, ValueError):
            pass
    result = measure()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # a read-only cache costs a probe per process, nothing else
        pass
    _MEMO[str(path)] = result
    return result


_MEMO: dict[str, dict[str, Any]] = {}  # probe results of this process, by cache file


def threads_from_probe(result: Mapping[str, Any]) -> int:
    """The fewest threads within THREAD_TIE of the fastest; 1 unless that is THREAD_GAIN faster."""
    times = {int(k): float(v) for k, v in result.get("threads_ms", {}).items()}
    if not times or 1 not in times:
        return 1
    best = min(times.values())
    pick = min(n for n, t in times.items() if t <= THREAD_TIE * best)
    return pick if pick == 1 or times[pick] <= THREAD_GAIN * times[1] else 1


def bf16_from_probe(result: Mapping[str, Any]) -> bool:
    return float(result["bf16_ms"]) <= BF16_GAIN * float(result["fp32_ms"])


# -------------------------------------------------------------------------------- the choice

@dataclass(frozen=True)
class Compute:
    """Where and how a run trains. bf16/threads None (GPU only): TRL's and torch's defaults."""

    device: str = "cpu"  # "cpu" or "cuda (<device name>)"
    bf16: bool | None = False
    bf16_by: str = "probe"  # "probe" | "user" | "TRL default (GPU)"
    threads: int | None = 1
    threads_by: str = "probe"  # "probe" | "user" | "torch default (GPU)"
    probe: Mapping[str, Any] | None = None  # the probe's measurements, where it ran

    @property
    def cpu(self) -> bool:
        return self.device == "cpu"

    def apply(self) -> None:
        """Set torch's intra-op threads (no-op where the choice is torch's default)."""
        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)

    def grpo_args(self) -> dict[str, Any]:
        """GRPOConfig keywords: use_cpu and bf16 on a CPU; nothing on a GPU (TRL's defaults)."""
        if not self.cpu:
            return {} if self.bf16 is None else {"bf16": self.bf16}
        return {"use_cpu": True, "bf16": bool(self.bf16)}

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "probe": dict(self.probe) if self.probe is not None else None}


def _check_threads(threads: Any, where: str) -> None:
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 256):
        raise ValueError(f"{where} must be an integer in [1, 256] or null (the machine's choice), got {threads!r}")


def choose(bf16: bool | None = None, threads: int | None = None, cuda: bool | None = None) -> Compute:
    """Precision and threads for a run: the user's where given (`bf16`, `threads`), else this
    machine's probe (CPU) or TRL's / torch's defaults (CUDA). cuda None: torch.cuda.is_available()."""
    if bf16 is not None and not isinstance(bf16, bool):
        raise ValueError(f"bf16 must be true, false or null (the machine's choice), got {bf16!r}")
    _check_threads(threads, "num_threads")
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if cuda:
        import torch

        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "?"
        return Compute(device=f"cuda ({name})", bf16=bf16, bf16_by="user" if bf16 is not None else "TRL default (GPU)",
                       threads=threads, threads_by="user" if threads is not None else "torch default (GPU)")
    result = probe() if bf16 is None or threads is None else None
    return Compute(device="cpu",
                   bf16=bf16 if bf16 is not None else bf16_from_probe(result),
                   bf16_by="user" if bf16 is not None else "probe",
                   threads=threads if threads is not None else threads_from_probe(result),
                   threads_by="user" if threads is not None else "probe", probe=result)


def machine_info(compute: Compute | None = None) -> dict[str, Any]:
    """cpu_info() plus the compute choice (where one was made): the machine line's input, as JSON."""
    info = cpu_info()
    if compute is not None:
        import torch

        info.update(compute.as_dict(), torch=torch.__version__)
    return info


# ------------------------------------------------------------------------------- the line

def _precision(info: Mapping[str, Any]) -> str | None:
    if "bf16" not in info:
        return None
    name = {True: "bf16", False: "fp32", None: "TRL's default precision"}[info["bf16"]]
    by = info.get("bf16_by", "")
    p = info.get("probe") or {}
    if by == "probe" and p.get("fp32_ms") and p.get("bf16_ms"):
        by = f"probe: bf16 {p['bf16_ms'] / p['fp32_ms']:.1f}x fp32's time"
    return f"{name} ({by})" if by else name


def _threads(info: Mapping[str, Any]) -> str | None:
    if "threads" not in info:
        return None
    n = info["threads"]
    what = "torch's default threads" if n is None else f"{n} thread{'s' * (n != 1)}"
    by = info.get("threads_by", "")
    return f"{what} ({by})" if by and n is not None else what


def machine_line(info: Mapping[str, Any] | None, rates: Mapping[str, float | None] | None = None) -> str:
    """One line a reader of a report from another machine needs to tell why its numbers differ:

    machine: <CPU>, <cores> cores (avx512_bf16 no, amx no); fp32 (probe: bf16 1.5x fp32's time),
    1 thread (probe); torch 2.13.0; load average 1.2 0.9 0.7; steps/s: static-G16 0.25, sagc 0.61

    `info` is machine_info()'s dict (as stored in a report's JSON); missing parts are left out.
    """
    info = info or {}
    flags = info.get("flags") or {}
    cpu = f"{info.get('cpu', 'unknown CPU')}, {info.get('cores', '?')} cores"
    if flags:
        amx = flags.get("amx_bf16") or flags.get("amx_tile")
        cpu += f" (avx512_bf16 {'yes' if flags.get('avx512_bf16') else 'no'}, amx {'yes' if amx else 'no'})"
    parts = [cpu]
    device = info.get("device")
    if device and device != "cpu":
        parts.append(str(device))
    setting = ", ".join(x for x in (_precision(info), _threads(info)) if x)
    if setting:
        parts.append(setting)
    if info.get("torch"):
        parts.append(f"torch {info['torch']}")
    load = info.get("load_avg")
    if load:
        parts.append("load average " + " ".join(f"{x:.1f}" for x in load))
    if rates:
        parts.append("steps/s: " + ", ".join(f"{k} {'-' if v is None else format(v, '.2f')}" for k, v in rates.items()))
    return "machine: " + "; ".join(parts)
