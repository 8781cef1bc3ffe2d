"""The continuous-batching example config of `sagc train` parses, validates and builds its TRL settings."""

from pathlib import Path

import pytest

pytest.importorskip("trl")

from sagc.demo.train import load_train_config  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train-cpu-continuous-batching.yaml"


def test_continuous_batching_example_validates_and_builds_its_engine_config(tmp_path):
    from transformers.generation import ContinuousBatchingConfig
    from trl import GRPOConfig

    config = load_train_config(EXAMPLE)
    assert config.trl["use_transformers_continuous_batching"] is True
    cb = dict(config.trl["transformers_continuous_batching_config"])
    assert {"num_blocks", "max_batch_tokens"} <= set(cb)  # sized explicitly: the CPU warning stays quiet
    engine = ContinuousBatchingConfig(**cb)  # every key is one transformers knows
    # the cache holds a whole step at the largest G: B x G_max requests of up to 256 tokens
    pages_per_request = -(-256 // engine.page_size)
    assert engine.num_blocks >= config.prompts_per_step * max(config.group_sizes) * pages_per_request
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=config.max_steps, num_generations=4,
                      per_device_train_batch_size=config.prompts_per_step * 4, **dict(config.trl))
    assert args.use_transformers_continuous_batching and args.use_cpu
