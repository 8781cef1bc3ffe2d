"""Pion: the scalar map, the matrix iteration (by SVD), per-head mode, and a step on a tiny Llama."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from sagc.optim.pion import (SQRT_2_3, Pion, from_head_blocks, head_blocks, high_pass_ns,  # noqa: E402
                             high_pass_scalar, matrix_update, pass_band_threshold, pion_param_groups)


@pytest.mark.parametrize("promotion", [0, 1, 2])
def test_scalar_map_is_a_high_pass_filter(promotion):
    cut = pass_band_threshold(promotion)
    assert 0 < cut <= SQRT_2_3 + 1e-12
    if promotion:
        assert cut < pass_band_threshold(promotion - 1)  # promotion lowers the cut-off
    s = torch.linspace(0.0, 1.0, 2001, dtype=torch.float64)
    out = high_pass_scalar(s, promotion, 8)
    above, below = s >= cut * 1.1, s <= cut * 0.9
    assert torch.all((out[above] - 1).abs() < 1e-3), "singular values above the band must go to 1"
    assert torch.all(out[below] < 1e-3), "singular values below the band must go to 0"
    assert torch.all(out >= 0) and torch.all(out <= 1 + 1e-9)


def _matrix(singular: list[float], rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(rows, rows, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, cols, generator=g, dtype=torch.float64))
    k = len(singular)
    return u[:, :k] @ torch.diag(torch.tensor(singular, dtype=torch.float64)) @ v[:, :k].T


@pytest.mark.parametrize("shape", [(24, 40), (40, 24)])
def test_matrix_iteration_filters_singular_values(shape):
    promotion, suppression = 2, 6
    cut = pass_band_threshold(promotion)
    # after Frobenius normalisation the first three are well above the cut, the rest well below
    raw = [10.0, 9.0, 8.0] + [0.9 - 0.04 * i for i in range(20)]
    m = _matrix(raw, *shape)
    normalised = torch.linalg.svdvals(m) / torch.linalg.matrix_norm(m)
    assert normalised[2] > 1.2 * cut and normalised[3] < 0.8 * cut
    out = high_pass_ns(m, promotion, suppression, dtype=torch.float64)
    s = torch.linalg.svdvals(out)
    torch.testing.assert_close(s[:3], torch.ones(3, dtype=torch.float64), atol=1e-3, rtol=0)
    assert torch.all(s[3:] < 1e-3)
    # the singular vectors are kept: out = U f(S) V^T, so the top subspace is m's
    u, _, vh = torch.linalg.svd(m)
    torch.testing.assert_close(out, u[:, :3] @ vh[:3], atol=2e-3, rtol=0)
    # the scalar map predicts every singular value
    predicted = high_pass_scalar(normalised, promotion, suppression)
    torch.testing.assert_close(s, predicted.sort(descending=True).values[:len(s)], atol=1e-6, rtol=0)


@pytest.mark.parametrize("axis", [0, 1])
def test_per_head_mode_equals_the_iteration_on_each_head_block(axis):
    torch.manual_seed(0)
    heads, head_dim, other = 4, 8, 32
    m = torch.randn(heads * head_dim, other) if axis == 0 else torch.randn(other, heads * head_dim)
    group = {"spectral": "pion", "ns_steps": 5, "promotion_steps": 2, "scale": 1.0, "ns_dtype": torch.float64,
             "head_axis": axis, "head_dim": head_dim}
    got = matrix_update(m.double(), group)
    blocks = [m[h * head_dim:(h + 1) * head_dim] if axis == 0 else m[:, h * head_dim:(h + 1) * head_dim]
              for h in range(heads)]
    scale = max(head_dim, other) ** 0.5
    want = [high_pass_ns(b.double(), 2, 3) * scale for b in blocks]
    want = torch.cat(want, dim=axis)
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, high_pass_ns(m.double(), 2, 3) * (max(m.shape) ** 0.5))  # not whole-matrix
    torch.testing.assert_close(from_head_blocks(head_blocks(m, axis, head_dim), axis), m)


def test_param_groups_route_matrices_heads_and_the_rest(tiny_llama):
    model = tiny_llama()
    groups = pion_param_groups(model, per_head=True)
    names = {id(p): n for n, p in model.named_parameters()}
    by_kind = {(g["kind"], g.get("head_axis")): sorted(names[id(p)] for p in g["params"]) for g in groups}
    assert all(n.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight")) for n in by_kind[("matrix", 0)])
    assert all(n.endswith("o_proj.weight") for n in by_kind[("matrix", 1)])
    assert all("mlp" in n for n in by_kind[("matrix", None)])
    rest = by_kind[("adamw", None)]
    assert any("embed_tokens" in n for n in rest) and any("lm_head" in n for n in rest)
    assert any("norm" in n for n in rest)
    assert sum(len(v) for v in by_kind.values()) == len(list(model.parameters()))


@pytest.mark.parametrize("kind", ["pion", "muon"])
def test_a_training_step_on_the_tiny_llama_changes_parameters(kind, tiny_llama):
    from sagc.optim import make_optimizer

    model = tiny_llama()
    opt = make_optimizer({"kind": kind, "promotion_steps": 2} if kind == "pion" else kind, model, lr=1e-3)
    assert isinstance(opt, Pion)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.randint(4, model.config.vocab_size, (4, 12), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert any("q_proj" in n for n in changed) and any("mlp" in n for n in changed)
    assert any("embed_tokens" in n for n in changed)  # the AdamW part
    for n, p in model.named_parameters():
        assert torch.isfinite(p).all(), n
    # the state round-trips
    clone = make_optimizer({"kind": kind, "promotion_steps": 2} if kind == "pion" else kind, model, lr=1e-3)
    clone.load_state_dict(opt.state_dict())
    assert clone.state_dict()["param_groups"] == opt.state_dict()["param_groups"]


def test_pure_suppression_drops_a_flat_spectrum():
    # the reference default (no promotion) passes only a dominant direction: a flat spectrum
    # (every normalised singular value 1/sqrt(8) < sqrt(2/3)) is suppressed to ~0
    m = _matrix([1.0] * 8, 16, 16)
    assert torch.linalg.matrix_norm(high_pass_ns(m, 0, 5, dtype=torch.float64)) < 1e-2
    m2 = _matrix([5.0] + [0.5] * 7, 16, 16)
    assert torch.linalg.svdvals(high_pass_ns(m2, 0, 5, dtype=torch.float64))[0] > 0.99
