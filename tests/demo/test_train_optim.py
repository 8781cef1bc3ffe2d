"""`sagc train` with `optimizer:` and `loss:`: validated up front, and 3 steps with each choice."""

import json

import pytest

pytest.importorskip("trl")

from sagc.demo.train import load_train_config  # noqa: E402

TINY = """
model: builtin
dataset: builtin
output_dir: {out}
controller: {{kind: static, group_size: 2}}
group_sizes: [2, 4]
prompts_per_step: 2
max_steps: 3
warmstart: {{steps: 4, batch_size: 8, max_completion_tokens: 24, num_threads: 1,
            model: {{hidden_size: 16, num_layers: 1, num_heads: 2, intermediate_size: 32}}}}
trl: {{max_completion_length: 12, learning_rate: 1.0e-3, disable_tqdm: true{trl}}}
"""


def write(tmp_path, extra="", trl=""):
    path = tmp_path / "train.yaml"
    path.write_text(TINY.format(out=tmp_path / "out", trl=trl) + extra)
    return path


@pytest.mark.parametrize("text,needle", [
    ("optimizer: {kind: lion}\n", r"optimizer.kind must be one of \['adamw', 'muon', 'pion', 'ema_nesterov'\]"),
    ("optimizer: {kind: pion, promotion_steps: 9}\n", "PionSettings.promotion_steps"),
    ("optimizer: {kind: pion, per_hed: true}\n", "per_hed"),
    ("optimizer: {kind: ema_nesterov, base: {kind: adamw, lr: -1}}\n", "AdamWSettings.lr"),
    ("optimizer: pion\nloss: {kind: dispo, eps_low_neg: 2}\n", "DISPOSettings.eps_low_neg"),
    ("loss: {kind: ppo}\n", r"loss.kind must be one of"),
    ("loss: [dapo]\n", "loss must be a mapping with a 'kind' key"),
])
def test_bad_optimizer_and_loss_values_are_named(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=needle) as info:
        load_train_config(path)
    assert str(path) in str(info.value)
    assert not (tmp_path / "out").exists()


def test_loss_and_trl_loss_type_must_agree(tmp_path):
    with pytest.raises(ValueError, match="contradicts trl.loss_type"):
        load_train_config(write(tmp_path, "loss: {kind: dispo}\n", trl=", loss_type: dapo"))
    cfg = load_train_config(write(tmp_path, "loss: dapo\n", trl=", loss_type: dapo"))
    assert cfg.loss == "dapo"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    # one tiny warm-start for every run of this module
    mp = pytest.MonkeyPatch()
    mp.setenv("SAGC_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.mark.parametrize("extra", [
    "optimizer: {kind: adamw}\n",
    "optimizer: {kind: muon}\n",
    "optimizer: {kind: pion, promotion_steps: 1}\n",
    "optimizer: {kind: ema_nesterov, beta: 0.5, base: {kind: adamw}}\n",
    "loss: {kind: dispo, eps_high_neg: 1.0}\n",
], ids=["adamw", "muon", "pion", "ema_nesterov", "dispo"])
def test_sagc_train_runs_three_steps(tmp_path, cache, extra):
    from rich.console import Console

    from sagc.demo.train import run_train

    log = run_train(load_train_config(write(tmp_path, extra)), Console(quiet=True))
    assert len(log["history"]) == 3
    session = json.loads((tmp_path / "out" / "sagc_session.json").read_text())
    assert len(session["history"]) == 3 and session["status"] == "finished"
