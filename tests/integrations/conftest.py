"""Fixtures of the TRL integration tests (helpers: trl_helpers.py, a name unique in tests/).

Without the [trl] extra (torch, transformers, trl) the whole folder is skipped.
"""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("trl") is None:  # core-only install: nothing here can run
    collect_ignore_glob = ["test_trl_*.py", "dist_worker.py"]
else:
    import torch

    # Tiny models: one thread is faster than several and leaves the shared cores to other jobs.
    torch.set_num_threads(1)


def pytest_configure(config):
    # transformers 5 warns on every generate() about renamed checkpointing helpers TRL still calls
    config.addinivalue_line("filterwarnings", "ignore:.*gradient_checkpointing.*:FutureWarning")
    config.addinivalue_line("filterwarnings", "ignore:.*is_gradient_checkpointing.*:FutureWarning")


@pytest.fixture(scope="session")
def tokenizer():
    from trl_helpers import build_tokenizer

    return build_tokenizer()
