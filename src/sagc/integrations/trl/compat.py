"""The TRL / transformers internals SAGCGRPOTrainer overrides or relies on, checked up front.

We override a few private methods of GRPOTrainer and call super(); if TRL renames one or
changes its parameters, the override would silently stop being called (or break at step 1000).
`check_trl_compat()` compares today's signatures with the ones this integration was written
against; the trainer refuses to start on a mismatch and the test suite fails loudly.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from types import MethodType
from typing import Any, Iterator

# TRL versions this integration was tested with (the [trl] extra pins a range around them).
# 1.15.0 was not: its own GRPOTrainer fails on torch 2.13 CPU before sagc is involved.
# Iterable (streaming) train sets need TRL >= 1.14 (TRL's own support for them).
TESTED_TRL = ("1.0.0", "1.14.0", "1.16.0")
TESTED_RANGE = ("1.0", "1.17")  # [low, high): what the [trl] extra should allow

# (owner, method) -> parameter names, in order. "override": we override it and call super();
# "rely": we call it or depend on its behaviour (documented next to each entry).
EXPECTED_SIGNATURES: dict[tuple[str, str], tuple[str, ...]] = {
    # overridden
    ("GRPOTrainer", "_generate_and_score_completions"): ("self", "inputs"),  # G per step, group layout
    ("GRPOTrainer", "_generate"): ("self", "prompts"),  # rollout wall time; returns (prompt_ids, completion_ids, ...)
    ("GRPOTrainer", "_calculate_rewards"): ("self", "inputs", "prompts", "completions", "completion_ids_list"),
    ("GRPOTrainer", "_get_train_sampler"): ("self", "dataset"),  # G-independent prompt slots
    ("GRPOTrainer", "get_train_dataloader"): ("self",),  # same, for iterable datasets
    ("GRPOTrainer", "_save_checkpoint"): ("self", "model", "trial"),  # controller state into checkpoints
    ("GRPOTrainer", "_load_optimizer_and_scheduler"): ("self", "checkpoint"),  # ... and back on resume
    ("GRPOTrainer", "_set_signature_columns_if_needed"): ("self",),  # keeps sagc_prompt_id (per-prompt G)
    # relied on
    ("GRPOTrainer", "_prepare_inputs"): ("self", "generation_batch"),  # regenerates when _step % every == 0
    ("GRPOTrainer", "training_step"): ("self", "model", "inputs", "num_items_in_batch"),  # counts _step
    ("Trainer", "_get_output_dir"): ("self", "trial"),  # checkpoint folder
    ("Trainer", "_remove_unused_columns"): ("self", "dataset", "description"),  # refill rows as the loader's
    ("RepeatSampler", "__init__"): ("self", "data_source", "mini_repeat_count", "batch_size", "repeat_count",
                                    "shuffle", "seed"),
}

# Attributes a constructed GRPOTrainer must have (read or set by the integration).
EXPECTED_ATTRIBUTES = ("num_generations", "_step", "_metrics", "reward_weights", "accelerator", "shuffle_dataset",
                       "num_iterations")
# GRPOConfig fields the layout is computed from.
EXPECTED_CONFIG_FIELDS = ("num_generations", "generation_batch_size", "steps_per_generation",
                          "gradient_accumulation_steps", "num_iterations", "use_vllm", "vllm_mode",
                          "loss_type", "epsilon_high", "mask_truncated_completions", "scale_rewards")


# DISPO (sagc.integrations.trl.dispo) overrides the per-token weight of TRL's VESPO loss branch;
# checked only when DISPO is used (older TRL without VESPO still runs SAGCGRPOTrainer).
DISPO_SIGNATURES: dict[tuple[str, str], tuple[str, ...]] = {
    ("GRPOTrainer", "get_gamma_weights"): ("advantages", "log_ratio_per_token", "mask", "importance_sampling_ratio",
                                           "k_pos", "lambda_pos", "k_neg", "lambda_neg"),  # staticmethod: no self
    ("GRPOTrainer", "_compute_loss"): ("self", "model", "inputs"),  # calls it as -phi * advantages * logps
}
DISPO_SOURCE_MARKERS = ("self.get_gamma_weights(", "per_token_loss = -phi_seq * advantages * per_token_logps",
                        '"cispo", "dapo", "vespo"')  # the call, the loss shape, token-level aggregation


def check_dispo_compat() -> list[str]:
    """Mismatches between the installed TRL and what DISPO's hook expects (empty: compatible)."""
    owners = _owners()
    problems = []
    for (owner, method), want in DISPO_SIGNATURES.items():
        fn = getattr(owners[owner], method, None)
        got = None if fn is None else tuple(inspect.signature(fn).parameters)
        if got is None:
            problems.append(f"{owner}.{method} no longer exists (expected parameters {want})")
        elif got != want:
            problems.append(f"{owner}.{method} has parameters {got}, expected {want}")
    try:
        source = inspect.getsource(owners["GRPOTrainer"]._compute_loss)
    except (OSError, TypeError, AttributeError):
        source = None
    if source is not None:
        problems += [f"GRPOTrainer._compute_loss no longer contains {m!r}" for m in DISPO_SOURCE_MARKERS
                     if m not in source]
    return problems


# Per-prompt group sizes (sagc.integrations.trl.ragged) score a ragged step with num_generations = 1
# and replace TRL's advantages; their loss weights depend on how _compute_loss aggregates each loss
# type, and the layout on how _generate_and_score_completions slices the gathered rewards.
RAGGED_SOURCE_MARKERS = {
    "_compute_loss": ('if self.loss_type in ["grpo", "sapo"]:', 'elif self.loss_type == "bnpo":',
                      'elif self.loss_type == "dr_grpo":', 'elif self.loss_type in ["cispo", "dapo", "vespo"]:',
                      'elif self.loss_type == "luspo":'),
    "_generate_and_score_completions": ("self.accelerator.process_index * len(prompts)",
                                        "rewards_per_func = self._calculate_rewards("),
}


def check_ragged_compat() -> list[str]:
    """Mismatches between the installed TRL and what ragged groups rely on (empty: compatible)."""
    return _missing_markers(RAGGED_SOURCE_MARKERS)


def _missing_markers(markers_by_method: dict[str, tuple[str, ...]]) -> list[str]:
    """GRPOTrainer methods whose source no longer holds the lines an integration relies on."""
    trainer = _owners()["GRPOTrainer"]
    problems = []
    for method, markers in markers_by_method.items():
        try:
            source = inspect.getsource(getattr(trainer, method))
        except (OSError, TypeError, AttributeError):
            problems.append(f"GRPOTrainer.{method} cannot be read")
            continue
        problems += [f"GRPOTrainer.{method} no longer contains {m!r}" for m in markers if m not in source]
    return problems


# Tail control (sagc.integrations.trl.tail) hands its completions to TRL's scoring through
# _generate_single_turn (its first five parameters; TRL 1.16 added has_tool_images after them), and
# puts each token's loss weight in the per-token loss mask `tool_mask`, which _compute_loss
# multiplies into the completion mask (context kept, gradient weighted).
TAIL_SIGNATURE_PREFIX = ("self", "prompt_ids", "images", "multimodal_fields", "num_generations")
TAIL_SOURCE_MARKERS = {
    "_compute_loss": ('completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]',),
    "_generate": ("self._generate_single_turn(",),
}


def check_tail_compat() -> list[str]:
    """Mismatches between the installed TRL and what tail control relies on (empty: compatible)."""
    trainer = _owners()["GRPOTrainer"]
    fn = getattr(trainer, "_generate_single_turn", None)
    if fn is None:
        return ["GRPOTrainer._generate_single_turn no longer exists"]
    params = tuple(inspect.signature(fn).parameters)
    problems = []
    if params[:len(TAIL_SIGNATURE_PREFIX)] != TAIL_SIGNATURE_PREFIX:
        problems.append(f"GRPOTrainer._generate_single_turn has parameters {params}, expected them to start with "
                        f"{TAIL_SIGNATURE_PREFIX}")
    return problems + _missing_markers(TAIL_SOURCE_MARKERS)


def _owners() -> dict[str, Any]:
    from transformers import Trainer
    from trl import GRPOTrainer
    from trl.trainer.utils import RepeatSampler

    return {"GRPOTrainer": GRPOTrainer, "Trainer": Trainer, "RepeatSampler": RepeatSampler}


def current_signatures() -> dict[tuple[str, str], tuple[str, ...] | None]:
    """Parameter names of each expected method in the installed versions (None: missing)."""
    owners = _owners()
    found: dict[tuple[str, str], tuple[str, ...] | None] = {}
    for owner, method in EXPECTED_SIGNATURES:
        fn = getattr(owners[owner], method, None)
        found[(owner, method)] = None if fn is None else tuple(inspect.signature(fn).parameters)
    return found


def check_trl_compat() -> list[str]:
    """Mismatches between the installed TRL and what this integration expects (empty: compatible)."""
    from trl import GRPOConfig

    problems = []
    for key, params in current_signatures().items():
        want = EXPECTED_SIGNATURES[key]
        if params is None:
            problems.append(f"{key[0]}.{key[1]} no longer exists (expected parameters {want})")
        elif params != want:
            problems.append(f"{key[0]}.{key[1]} has parameters {params}, expected {want}")
    fields = getattr(GRPOConfig, "__dataclass_fields__", {})
    problems += [f"GRPOConfig has no field {f!r}" for f in EXPECTED_CONFIG_FIELDS if f not in fields]
    return problems


def missing_attributes(trainer: Any) -> list[str]:
    return [a for a in EXPECTED_ATTRIBUTES if not hasattr(trainer, a)]


def trl_version() -> str:
    import trl

    return str(getattr(trl, "__version__", "unknown"))


def version_tested(version: str | None = None) -> bool:
    """Whether a TRL version lies in the tested range TESTED_RANGE."""
    from packaging.version import InvalidVersion, Version

    try:
        v = Version(version or trl_version())
    except InvalidVersion:
        return False
    return Version(TESTED_RANGE[0]) <= v < Version(TESTED_RANGE[1])


def check_completion_count(result: Any, prompts: int, args: Any) -> None:
    """Groups are contiguous runs of G rows, so a backend that drops a request would shift every
    later completion into the wrong group. transformers' continuous batching does that: when a
    request fails, `generate_batch` logs "Requests [...] failed / not found" and returns the rest.
    TRL's _generate returns (prompt_ids, completion_ids, ...); we check completion_ids."""
    if not (isinstance(result, tuple) and len(result) > 1 and isinstance(result[1], list)):
        return
    got = len(result[1])
    if got != prompts:
        engine = ("transformers continuous batching (see its log for the failed requests)"
                  if getattr(args, "use_transformers_continuous_batching", False) else "the generation backend")
        raise RuntimeError(f"sagc: {engine} returned {got} completions for {prompts} prompt rows; "
                           "the groups of G rows would be misaligned, so this step cannot be scored")


def fp32_output_wrapper(model: Any) -> Any:
    """accelerate's ConvertOutputsToFp32 around `model.forward` (set on the instance by its
    mixed-precision prepare_model), or None: no mixed precision, or an accelerate we don't know."""
    try:
        from accelerate.utils.operations import ConvertOutputsToFp32
    except ImportError:  # accelerate reorganised: nothing we know how to unwrap
        return None
    forward = model.__dict__.get("forward")
    inner = getattr(getattr(forward, "__func__", forward), "__wrapped__", None)
    return inner if isinstance(inner, ConvertOutputsToFp32) else None


@contextlib.contextmanager
def engine_outputs_unconverted(model: Any, args: Any) -> Iterator[None]:
    """For transformers' continuous batching only: run the model without accelerate's fp32 output
    conversion (autocast stays on), then put it back.

    With mixed precision (TRL's default bf16), accelerate wraps `model.forward` so that every output
    with a half-precision `dtype` gets `.float()`. Since transformers 5.24 the engine's forward
    output carries its PagedAttentionCache, which has a half `dtype` and no `.float()`: every
    request fails ("'PagedAttentionCache' object has no attribute 'float'") and TRL stops on an
    empty completion (measured with transformers 5.24.0, accelerate 1.15.0; 5.23.0 worked). The
    engine casts its logits to fp32 itself, so nothing it needs is lost. A no-op without the
    wrapper, or when accelerate's wrapper is not what it was when this was written."""
    inner = fp32_output_wrapper(model) if getattr(args, "use_transformers_continuous_batching", False) else None
    if inner is None or not callable(getattr(inner, "model_forward", None)):
        yield
        return
    wrapped = model.__dict__["forward"]
    # bound (accelerate's usual case): the autocast function takes self; else it is already bound
    model.forward = MethodType(inner.model_forward, model) if isinstance(wrapped, MethodType) else inner.model_forward
    try:
        yield
    finally:
        model.forward = wrapped


def warn_unsized_cpu_continuous_batching(args: Any, device: Any) -> None:
    """On CPU, transformers sizes the continuous-batching KV cache and batch from *system* RAM when
    num_blocks / max_batch_tokens are unset, and every generate_batch call then zero-fills static
    tensors of that size (measured: 12.7 s of a 15.5 s call for 8 short prompts with a tiny model;
    1.4 s with num_blocks=32, max_batch_tokens=256)."""
    if not getattr(args, "use_transformers_continuous_batching", False) or getattr(device, "type", "") != "cpu":
        return
    cfg = args.transformers_continuous_batching_config or {}
    if isinstance(cfg, dict) and (cfg.get("num_blocks") is None or cfg.get("max_batch_tokens") is None):
        logging.getLogger("sagc.integrations.trl.trainer").warning(
            "sagc: use_transformers_continuous_batching on CPU without num_blocks and max_batch_tokens in "
            "transformers_continuous_batching_config: transformers sizes its cache from system RAM and each rollout "
            "spends seconds clearing it; set both (see docs/trl.md)")
