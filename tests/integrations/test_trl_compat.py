"""Fails loudly when TRL changes a method SAGCGRPOTrainer overrides or relies on."""

from __future__ import annotations

import inspect

import pytest

from sagc.integrations.trl import compat


def test_overridden_and_relied_on_signatures_are_unchanged():
    found = compat.current_signatures()
    changed = {f"{o}.{m}": (found[(o, m)], want) for (o, m), want in compat.EXPECTED_SIGNATURES.items()
               if found[(o, m)] != want}
    assert not changed, (f"TRL {compat.trl_version()} changed methods sagc overrides or relies on "
                         f"(found, expected): {changed}; review sagc/integrations/trl before updating the pins")


def test_check_trl_compat_reports_nothing_for_the_installed_trl():
    assert compat.check_trl_compat() == []


def test_our_overrides_keep_trl_signatures():
    # an override with different parameters would break TRL's own calls into it
    from trl import GRPOTrainer

    from sagc.integrations.trl import SAGCGRPOTrainer

    for (owner, method), _ in compat.EXPECTED_SIGNATURES.items():
        ours = SAGCGRPOTrainer.__dict__.get(method)
        if owner == "GRPOTrainer" and ours is not None:
            theirs = getattr(GRPOTrainer, method)
            assert list(inspect.signature(ours).parameters) == list(inspect.signature(theirs).parameters), method


def test_trainer_refuses_to_start_when_an_expected_signature_changed(monkeypatch, tmp_path, tokenizer):
    from trl_helpers import build_dataset, build_model, make_config, parity_reward

    from sagc.integrations.trl import SAGCGRPOTrainer

    monkeypatch.setitem(compat.EXPECTED_SIGNATURES, ("GRPOTrainer", "_generate"), ("self", "prompts", "images"))
    with pytest.raises(RuntimeError, match=r"GRPOTrainer._generate has parameters \('self', 'prompts'\)"):
        SAGCGRPOTrainer(model=build_model(tokenizer), reward_funcs=parity_reward, args=make_config(tmp_path),
                        train_dataset=build_dataset(), processing_class=tokenizer)


def test_version_range():
    assert compat.version_tested(compat.TESTED_TRL[0]) and compat.version_tested(compat.TESTED_TRL[-1])
    assert not compat.version_tested("0.29.0") and not compat.version_tested("2.0.0")


# ---- DISPO's hook (sagc.integrations.trl.dispo): checked only when DISPO is used -------------
def test_dispo_hook_signature_and_source_are_unchanged():
    assert compat.check_dispo_compat() == [], (
        f"TRL {compat.trl_version()} changed the VESPO weight hook DISPO overrides; review "
        "sagc/integrations/trl/dispo.py before updating the pins")


def test_dispo_refuses_to_start_when_the_hook_changed(monkeypatch, tmp_path, tokenizer):
    from trl import GRPOTrainer
    from trl_helpers import build_dataset, build_model, make_config, parity_reward

    from sagc.integrations.trl import DISPOGRPOTrainer

    def renamed(advantages, log_ratio, mask, importance_sampling_ratio, k_pos=2.0, lambda_pos=3.0, k_neg=3.0,
                lambda_neg=2.0):
        return None

    monkeypatch.setattr(GRPOTrainer, "get_gamma_weights", staticmethod(renamed))
    assert any("get_gamma_weights has parameters" in p for p in compat.check_dispo_compat())
    with pytest.raises(RuntimeError, match="DISPO rides on TRL's loss_type='vespo' weight hook"):
        DISPOGRPOTrainer(model=build_model(tokenizer), reward_funcs=parity_reward, args=make_config(tmp_path),
                         train_dataset=build_dataset(), processing_class=tokenizer, dispo={})
    # without dispo the hook is not needed: SAGC on a TRL without VESPO still starts
    monkeypatch.setattr(compat, "DISPO_SOURCE_MARKERS", ("no such line",))
    assert any("no longer contains" in p for p in compat.check_dispo_compat())


# ---- tail control's hooks (sagc.integrations.trl.tail): checked only when a rollout policy aborts --------
def test_tail_control_hooks_are_unchanged():
    assert compat.check_tail_compat() == [], (
        f"TRL {compat.trl_version()} changed what tail control relies on (_generate_single_turn, the tool_mask "
        "in _compute_loss); review sagc/integrations/trl/tail.py before updating the pins")
    assert compat.check_ragged_compat() == []


def test_tail_control_refuses_to_start_when_its_hook_changed(monkeypatch, tmp_path, tokenizer):
    from trl_helpers import build_dataset, build_model, make_config, parity_reward

    from sagc.integrations.trl import SAGCGRPOTrainer

    monkeypatch.setattr(compat, "TAIL_SOURCE_MARKERS", {"_compute_loss": ("no such line",)})
    with pytest.raises(RuntimeError, match="tail control relies on TRL internals.*no such line"):
        SAGCGRPOTrainer(model=build_model(tokenizer), reward_funcs=parity_reward, args=make_config(tmp_path),
                        train_dataset=build_dataset(), processing_class=tokenizer, rollout="resume")
    # rollout="full" does not use the hook: the trainer starts
    SAGCGRPOTrainer(model=build_model(tokenizer), reward_funcs=parity_reward, args=make_config(tmp_path),
                    train_dataset=build_dataset(), processing_class=tokenizer, rollout="full")
