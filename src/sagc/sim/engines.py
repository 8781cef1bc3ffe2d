"""Engine presets for `sagc whatif`: typical GPU continuous-batching set-ups, with their sources.

    preset = get_engine("llama-8b-h100-vllm")
    preset.settings            # an EngineSettings (see sagc.sim.engine for the model)
    preset.prompt_tokens       # prompt length the prefill constant is meant for

The engine model (sagc.sim.engine) charges a decode iteration
    decode_s_per_iter + decode_s_per_seq * active
seconds. Public benchmarks report time per output token (TPOT) at a given number of concurrent
requests, which is exactly that iteration time. Two points (small batch, full batch) give both
constants:
    decode_s_per_seq  = (TPOT(full) - TPOT(small)) / (n_full - n_small)
    decode_s_per_iter = TPOT(small) - n_small * decode_s_per_seq
Each preset says which figures it uses and which of its constants are *estimates* (derived from
a roofline or scaled from another cited figure rather than read from a benchmark). The training
side (train_s_per_token, overhead_s) depends on the trainer far more than on the engine; those
constants are estimates throughout (6 x params FLOPs per trained token at ~40% of peak, plus the
policy's log-prob pass), so compare controllers with them, not absolute seconds.
Presets are starting points: `sagc whatif --engine calibrate` fits the constants to your own
run's timings instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from sagc.sim.scenario import EngineSettings

# Sources (cited by the presets below):
_LAMBDA_V0 = ("Lambda Labs, 'LLMs inference benchmarks, using vLLM, on Lambda Cloud' "
              "(github.com/LambdaLabsML/vllm-benchmark, benchmark_v0.md): vLLM v0.6.0, num-scheduler-steps 10, "
              "max-num-seq 256, rps inf, 5000 ShareGPT prompts")
_LAMBDA_P10 = ("Lambda Labs vllm-benchmark, "
               "results/prompt_10/1xH100-80GB-SXM/Meta-Llama-3-8B-Instruct_tp1_len2048.json: "
               "10 concurrent requests on 1x H100 SXM")
_VLLM_SEQS = "vLLM engine argument max_num_seqs (concurrent sequences per engine); 256 in the benchmarks above"


@dataclass(frozen=True)
class EnginePreset:
    name: str
    description: str
    settings: EngineSettings
    prompt_tokens: int  # prompt length the prefill constant assumes (tokens)
    sources: tuple[str, ...]
    derivation: str  # how each constant follows from the sources; what is an estimate


_PRESETS: tuple[EnginePreset, ...] = (
    EnginePreset(
        name="llama-8b-h100-vllm",
        description="7-8B dense model (Llama-3.1-8B class), bf16, one H100 80GB SXM, vLLM, 256 slots",
        settings=EngineSettings(replicas=1, slots=256, decode_s_per_iter=0.0068, decode_s_per_seq=0.0000736,
                                prefill_s_per_token=0.000045, train_s_per_token=0.0001, overhead_s=2.0),
        prompt_tokens=256,
        sources=(_LAMBDA_V0, _LAMBDA_P10, _VLLM_SEQS),
        derivation=(
            "Median TPOT 7.56 ms at 10 concurrent requests (prompt_10 JSON) and 25.57 ms at 256 "
            "(benchmark_v0.md, Llama 3.1 8B, v0.6.0, 10 scheduler steps) give decode_s_per_seq = "
            "(25.57 - 7.56) / 246 ms = 0.0736 ms and decode_s_per_iter = 7.56 - 10 x 0.0736 = 6.8 ms. "
            "Cross-check: 256 / 8088 output tok/s (same table) = 31.7 ms per iteration with prefills "
            "mixed in. prefill_s_per_token: the prompt_10 run's median TTFT 62 ms for 1369 prompt "
            "tokens = 0.045 ms per token (an upper bound: it includes queueing). train_s_per_token "
            "(0.1 ms) and overhead_s (2 s, weight sync + scoring) are estimates."),
    ),
    EnginePreset(
        name="qwen-1.5b-h100-vllm",
        description="1.5B dense model (Qwen2.5-1.5B class), bf16, one H100 80GB SXM, vLLM, 256 slots",
        settings=EngineSettings(replicas=1, slots=256, decode_s_per_iter=0.0045, decode_s_per_seq=0.000018,
                                prefill_s_per_token=0.000009, train_s_per_token=0.00002, overhead_s=1.0),
        prompt_tokens=256,
        sources=(_LAMBDA_V0, _LAMBDA_P10, _VLLM_SEQS),
        derivation=(
            "ESTIMATE, scaled from the 8B preset's cited figures (no public 1.5B TPOT sweep was found): "
            "per-sequence cost scales with KV-cache bytes and FLOPs per token, ~1/4 of the 8B model's "
            "(0.0736 -> 0.018 ms); the per-iteration floor does not fall with size as fast because at "
            "1.5B it is launch/scheduler bound (4.5 ms vs 6.8 ms). Prefill and training scale with "
            "parameters (8B / 1.5B ~ 5x). Calibrate on your own trace for real numbers."),
    ),
    EnginePreset(
        name="llama-70b-h100x4-tp-vllm",
        description="~70B dense model (Llama-3.1-70B class) on 4x H100 80GB SXM, tensor parallel 4, vLLM, 256 slots "
                    "(the large-model tensor-parallel set-up; a 32B model sits between this and the 8B preset)",
        settings=EngineSettings(replicas=1, slots=256, decode_s_per_iter=0.015, decode_s_per_seq=0.00018,
                                prefill_s_per_token=0.0001, train_s_per_token=0.0008, overhead_s=8.0),
        prompt_tokens=256,
        sources=(_LAMBDA_V0, _VLLM_SEQS),
        derivation=(
            "Median TPOT 61.10 ms at 256 concurrent requests (benchmark_v0.md, Llama 3.1 70B, tp=4, v0.6.0, "
            "10 scheduler steps; 3543 output tok/s, i.e. 72 ms per iteration with prefills). The small-batch "
            "point is an ESTIMATE: 140 GB of bf16 weights read once per iteration over 4 x 3.35 TB/s is "
            "10.4 ms; at ~70% of bandwidth plus all-reduce, 15 ms. Then decode_s_per_seq = (61.1 - 15) / 256 "
            "= 0.18 ms. Prefill, training and overhead (weight sync of 140 GB) are estimates."),
    ),
)

REGISTRY: dict[str, EnginePreset] = {p.name: p for p in _PRESETS}


def list_engines() -> list[str]:
    return sorted(REGISTRY)


def get_engine(name: str) -> EnginePreset:
    """The preset of that name; a miss lists the valid names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; valid engines are {list_engines()} "
                         f"(or 'calibrate' to fit one to the trace's own timings)") from None


__all__ = ["EnginePreset", "REGISTRY", "get_engine", "list_engines"]
