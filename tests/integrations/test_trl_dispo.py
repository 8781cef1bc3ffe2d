"""DISPO: the formula per regime, through TRL's real `_compute_loss`, and equality with TRL's CISPO.

The trainer tests are the canary of the hook (the signature guard is in test_trl_compat.py):
they run TRL's own `_compute_loss` (loss_type "vespo" with our weight), so a TRL change to that
branch fails here, not in a training run.
"""

from __future__ import annotations

import pytest
import torch

from sagc.losses import DISPOSettings, dispo_per_token_loss, resolve_loss

SETTINGS = DISPOSettings(eps_low_pos=0.1, eps_high_pos=0.2, eps_low_neg=0.3, eps_high_neg=0.5)


def test_per_token_gradient_equals_the_formula_in_each_regime():
    # rows: A = +1.5 (correct) and A = -0.5 (incorrect); tokens: ratio above, below, inside the bounds
    ratios = torch.tensor([[2.0, 0.5, 1.05], [2.0, 0.5, 0.9]])
    logps = torch.log(torch.tensor([[0.3, 0.2, 0.6], [0.1, 0.4, 0.5]])).requires_grad_(True)
    old = (logps - torch.log(ratios)).detach()
    adv = torch.tensor([1.5, -0.5])
    dispo_per_token_loss(logps, old, adv, SETTINGS).sum().backward()
    # dL/dlogp = -w * A with w = clip(r, [1 - eps_low, 1 + eps_high] of the sign)
    w = torch.tensor([[1.2, 0.9, 1.05], [1.5, 0.7, 0.9]])
    expected = -w * adv[:, None]
    torch.testing.assert_close(logps.grad, expected)
    assert logps.grad[0, 0] != logps.grad[1, 0] * (1.5 / -0.5)  # the two signs really use different bounds


def test_settings_validate_and_name_the_field():
    with pytest.raises(ValueError, match="eps_low_neg"):
        DISPOSettings(eps_low_neg=1.5)
    with pytest.raises(ValueError, match="eps_high_pos"):
        DISPOSettings(eps_high_pos=0)
    assert DISPOSettings(eps_high_neg=None).bounds("neg") == (0.8, float("inf"))
    with pytest.raises(ValueError, match="loss.kind must be one of"):
        resolve_loss({"kind": "dispoo"})
    with pytest.raises(ValueError, match="eps_hgh_pos"):
        resolve_loss({"kind": "dispo", "eps_hgh_pos": 0.2})
    with pytest.raises(ValueError, match="takes no settings"):
        resolve_loss({"kind": "dapo", "epsilon": 0.2})


def _batch(tokenizer, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    rows, p_len, c_len = 4, 3, 5
    prompt = torch.randint(4, len(tokenizer), (rows, p_len), generator=g)
    completion = torch.randint(4, len(tokenizer), (rows, c_len), generator=g)
    mask = torch.ones(rows, c_len, dtype=torch.long)
    mask[1, 3:] = 0  # a shorter completion
    return {"prompt_ids": prompt, "prompt_mask": torch.ones_like(prompt), "completion_ids": completion,
            "completion_mask": mask, "advantages": torch.tensor([1.0, -1.0, 0.5, -2.0]),
            "num_items_in_batch": mask.sum().float()}


def _trainer(cls, tmp_path, tokenizer, **kwargs):
    from trl_helpers import build_dataset, build_model, make_config, parity_reward

    loss_type = kwargs.pop("loss_type", "dapo")
    trainer = cls(model=build_model(tokenizer), processing_class=tokenizer, reward_funcs=[parity_reward],
                  args=make_config(tmp_path, loss_type=loss_type, epsilon_high=kwargs.pop("epsilon_high", None)),
                  train_dataset=build_dataset(), **kwargs)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop otherwise
    trainer.model.train()
    return trainer


def _loss_and_grads(trainer, inputs: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
    trainer.model.zero_grad()
    loss = trainer._compute_loss(trainer.model, inputs)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]


def _off_policy(trainer, inputs: dict, scale: float = 0.6) -> dict:
    """old logps = current logps shifted per token, so ratios fall on both sides of the bounds."""
    with torch.no_grad():
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        att = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        logps = trainer._get_per_token_logps_and_entropies(trainer.model, ids, att,
                                                           inputs["completion_ids"].size(1))[0]
    shift = scale * torch.linspace(-1.0, 1.0, logps.numel()).reshape(logps.shape)
    return {**inputs, "old_per_token_logps": logps - shift}  # log ratio = shift, ratio in [0.55, 1.8]


def test_trl_compute_loss_with_dispo_equals_the_formula(tmp_path, tokenizer):
    from sagc.integrations.trl import DISPOGRPOTrainer

    trainer = _trainer(DISPOGRPOTrainer, tmp_path, tokenizer, dispo=SETTINGS)
    assert trainer.loss_type == "vespo" and trainer.dispo == SETTINGS
    inputs = _off_policy(trainer, _batch(tokenizer))
    loss, grads = _loss_and_grads(trainer, inputs)

    trainer.model.zero_grad()
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    att = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    logps = trainer._get_per_token_logps_and_entropies(trainer.model, ids, att, inputs["completion_ids"].size(1))[0]
    per_token = dispo_per_token_loss(logps, inputs["old_per_token_logps"], inputs["advantages"], SETTINGS)
    mask = inputs["completion_mask"]
    want = (per_token * mask).sum() / mask.sum()  # token-level aggregation, as DAPO/CISPO
    want.backward()
    want_grads = [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]
    torch.testing.assert_close(loss, want.detach())
    for a, b in zip(grads, want_grads):
        torch.testing.assert_close(a, b)
    metrics = trainer._metrics["train"]
    assert metrics["dispo/clip_ratio/pos_high"][-1] > 0 and metrics["dispo/clip_ratio/neg_high"][-1] > 0


def test_equal_bounds_equal_trl_cispo(tmp_path, tokenizer):
    from trl import GRPOTrainer

    from sagc.integrations.trl import DISPOGRPOTrainer

    eps_max = 1.3  # TRL's CISPO: weight = min(ratio, epsilon_high), no lower bound
    cispo = _trainer(GRPOTrainer, tmp_path / "a", tokenizer, loss_type="cispo", epsilon_high=eps_max)
    same = DISPOSettings(eps_low_pos=1.0, eps_high_pos=eps_max - 1, eps_low_neg=1.0, eps_high_neg=eps_max - 1)
    dispo = _trainer(DISPOGRPOTrainer, tmp_path / "b", tokenizer, dispo=same)
    inputs = _off_policy(cispo, _batch(tokenizer, seed=3))
    loss_c, grads_c = _loss_and_grads(cispo, inputs)
    loss_d, grads_d = _loss_and_grads(dispo, inputs)
    torch.testing.assert_close(loss_d, loss_c)
    for a, b in zip(grads_d, grads_c):
        torch.testing.assert_close(a, b)
    # and decoupled bounds really change the loss
    dispo.dispo = SETTINGS
    loss_x, _ = _loss_and_grads(dispo, inputs)
    assert not torch.allclose(loss_x, loss_c)


def test_without_dispo_the_mixin_leaves_trl_alone(tmp_path, tokenizer):
    from sagc.integrations.trl import SAGCGRPOTrainer

    trainer = _trainer(SAGCGRPOTrainer, tmp_path, tokenizer, loss_type="dapo")
    assert trainer.dispo is None and trainer.loss_type == "dapo"


def test_sagc_trainer_trains_off_policy_with_dispo(tmp_path, tokenizer):
    from trl_helpers import build_dataset, build_model, length_reward, make_config

    from sagc.integrations.trl import SAGCGRPOTrainer

    model = build_model(tokenizer)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = SAGCGRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=[length_reward],
                              args=make_config(tmp_path, max_steps=2, num_iterations=2), train_dataset=build_dataset(),
                              group_controller="static", dispo={"eps_high_neg": 1.0})
    trainer.train()
    assert trainer.state.global_step == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    logged = {k for row in trainer.state.log_history for k in row}
    assert {"dispo/clip_ratio/pos_high", "dispo/clip_ratio/neg_low"} <= logged
