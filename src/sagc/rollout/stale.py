"""Loss weights of stale tokens: tokens of a resumed completion sampled by an older policy.

Under `resume` / `auto` a completion cut at a step's end is continued in the next step, so its
tokens span policy versions. A trainer weights each trained token (numpy here, so the formula is
checked against a hand computation; the TRL trainer applies it as a per-token loss mask):

- "mask": a stale token gets weight 0. It stays in the context of the tokens after it, but adds
  no gradient: every trained token was sampled by the policy being updated (slime's mask of
  the off-policy part of partial rollouts, `--mask-offpolicy-in-partial-rollout`).
- "tis": truncated importance sampling (slime's `--use-tis`, with `--tis-clip 2.0` and
  `--tis-clip-low 0` as in its recipes): a stale token gets
      w = clip(exp(logp_now - logp_sampler), tis_clip_low, tis_clip)
  where logp_sampler is the token's log-prob under the policy that sampled it (kept with the
  partial completion) and logp_now the log-prob under the policy at the start of this update
  (the "proximal" policy of decoupled PPO). The PPO ratio then runs against logp_now as usual.
- "keep": every token weighs 1, as if on-policy (APRIL's default in slime without --use-tis).

On-policy tokens (sampled by this step's version) always weigh 1.
"""

from __future__ import annotations

import numpy as np

STALE_MODES = ("tis", "mask", "keep")


def stale_weights(version: np.ndarray, current: int, mode: str, logp_now: np.ndarray | None = None,
                  logp_sampler: np.ndarray | None = None, clip: float = 2.0, clip_low: float = 0.0) -> np.ndarray:
    """(n, T) float weights. version: (n, T) int policy version that sampled each token (-1 for
    padding: weight 0); current: this step's version. logp_now / logp_sampler: (n, T) float,
    needed for "tis" (only their values at stale tokens are read)."""
    if mode not in STALE_MODES:
        raise ValueError(f"stale_tokens must be one of {list(STALE_MODES)}, got {mode!r}")
    version = np.asarray(version, dtype=np.int64)
    real = version >= 0
    if np.any(version[real] > current):
        raise ValueError(f"a token's version is after the current one ({current})")
    stale = real & (version < current)
    w = real.astype(np.float64)
    if mode == "mask":
        w[stale] = 0.0
    elif mode == "tis" and stale.any():
        if logp_now is None or logp_sampler is None:
            raise ValueError("stale_tokens='tis' needs logp_now and logp_sampler")
        diff = np.asarray(logp_now, dtype=np.float64)[stale] - np.asarray(logp_sampler, dtype=np.float64)[stale]
        if not np.all(np.isfinite(diff)):
            raise ValueError("stale_tokens='tis' needs a finite sampler log-prob for every stale token")
        w[stale] = np.clip(np.exp(diff), clip_low, clip)
    return w


__all__ = ["STALE_MODES", "stale_weights"]
