"""Online risk model: predicted P(straggler event | G) for every allowed G (design section 4.1).

Model (log-lengths, per step t, prompt i, completion j):

    log L_tij = mu_t + a_ti + e_tij,   a ~ N(0, tau^2)  (prompt effect),   e ~ F_e  (within prompt)
    plus, with probability r, a completion runs away to the length cap (truncated).

Lengths of one prompt's completions share a_ti, so the chance that *some* completion of a step
crosses a threshold grows more slowly with G than for iid lengths; that is why we model a.

Estimation, from a trailing window of steps, each kept as a small JSON summary:
  * mu_t: mean log-length of the step's completions, truncated ones imputed as E[y | y > cap]
    under their group's normal law (censoring, one EM step; drift is absorbed per step);
  * tau^2 and sigma^2: one-way random-effects ANOVA (method of moments, ragged groups);
  * F_e: pooled within-group residuals e_ij - mean_i, inflated by sqrt(n_i / (n_i - 1)) to undo
    the shrinkage of subtracting the group mean; body = weighted empirical CDF, tail above the
    90% point = generalized Pareto fitted by moments (peaks over threshold), so the model
    extrapolates to G (and so quantiles) never observed;
  * r: fraction of truncated completions; the part the fitted law does not explain by itself
    (r_run) is runaways, loops that hit the cap whatever the prompt.

Prediction for the next step with threshold t = kappa x reference (the rule's own), B prompts:

    P(no event | G) = ( E_a[ P(completion ok | a)^G ] )^B,   E_a by Gauss-Hermite quadrature.

Only per-completion rules (reference, truncation) are predicted in closed form; the tail rule
by Monte Carlo from the same fitted law (or a plug-in quantile for large steps, see
`tail_event_prob`); for the group and time rules see `SAGCSettings` docs.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Mapping, Sequence

import numpy as np

from sagc.rules import tail_index
from sagc.stats import StepStats

SKETCH_EXACT = 256  # steps with at most this many residuals keep them all
SKETCH_TOP = 64  # larger steps keep their top residuals exactly (the tail matters) ...
SKETCH_BINS = 192  # ... and the rest as equal-count bin means
TAIL_FRACTION = 0.10  # peaks over the 90% point of the residuals form the fitted tail
BODY_LEVELS = 4096  # resolution of the sampled body (quantiles at evenly spaced levels)
TAIL_MC_MAX = 1024  # tail rule: steps of up to this many completions are predicted by Monte Carlo ...
TAIL_MC_DRAWS = 2**17  # ... with about this many completions drawn (200 to 1000 steps)
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(24)  # nodes/weights for E over N(0, 1)
_GH_W = _GH_W / _GH_W.sum()


def summarize_step(stats: StepStats) -> dict[str, Any]:
    """Reduce one step to the O(1)-size JSON summary the risk model needs."""
    # Truncated completions are censored, not missing: dropping them (or keeping the capped value)
    # biases the level and both spreads low, and the tail rule is sensitive to that (a step's
    # q90 3-5% low turned every cap hit into an event on code-heavy-tail). One EM step: each
    # truncated log-length becomes E[y | y > cap] under its group's normal law.
    n_trunc = int(np.count_nonzero(stats.truncated))
    keep = ~stats.truncated if n_trunc == stats.n else np.ones(stats.n, dtype=bool)
    y = np.log(stats.length[keep].astype(np.float64))  # (m,) log tokens
    gi = stats.group_index[keep]
    if 0 < n_trunc < stats.n:
        y = _impute_censored(y, stats.truncated, gi, stats.num_groups)
    cap = float(stats.length[stats.truncated].max()) if n_trunc else None
    summary: dict[str, Any] = {"n": stats.n, "n_trunc": n_trunc, "cap": cap, "mu": None,
                               "ssw": 0.0, "dfw": 0, "ssb": 0.0, "dfb": 0, "nb": 0.0,
                               "res": [], "w": [], "loo": [], "wloo": [], "m2": 0.0,
                               "m4": 0.0, "c2": 0.0, "c22": 0.0, "c4": 0.0, "maxlen": float(stats.length.max()),
                               "tokens": float(stats.length.sum())}
    if y.size == 0:
        return summary
    mu = float(y.mean())
    counts = np.bincount(gi, minlength=stats.num_groups).astype(np.float64)  # (B,) n_i
    sums = np.bincount(gi, weights=y, minlength=stats.num_groups)
    has = counts > 0
    means = np.where(has, sums / np.maximum(counts, 1), 0.0)  # (B,) group mean log-length
    dev = y - means[gi]  # (m,) within-group residuals
    big = counts[gi] >= 2
    n_tot, k = float(y.size), int(has.sum())
    summary.update(
        mu=mu,
        ssw=float(np.sum(dev**2)),
        dfw=int(y.size - k),
        ssb=float(np.sum(counts[has] * (means[has] - mu) ** 2)),
        dfb=int(k - 1),
        nb=float(n_tot - np.sum(counts[has] ** 2) / n_tot),  # E[SSB] = dfb*s2 + nb*tau2
    )
    n_i = counts[gi][big]
    # Body: scale by sqrt(n/(n-1)) so the variance is sigma^2 again (exact for normal e).
    values, weights = _sketch(dev[big] * np.sqrt(n_i / (n_i - 1.0)))
    summary["res"], summary["w"] = values, weights
    # Tail: the leave-one-out residual e_j - mean(e_-j) = dev * n/(n-1) keeps the tail *shape*
    # of e (one large e_j dominates it), which the variance scaling above would thin out.
    values, weights = _sketch(dev[big] * n_i / (n_i - 1.0))
    summary["loo"], summary["wloo"] = values, weights
    # Moment sums for the excess kurtosis of e (the tail-shape signal, see _tail_blend):
    # d = e_j - mean_i is linear in iid e, so E[d^2] = s2 c2 and E[d^4] = k4 c4 + 3 s2^2 c2^2.
    d, c2 = dev[big], (n_i - 1.0) / n_i
    summary["m2"], summary["m4"] = float(np.sum(d**2)), float(np.sum(d**4))
    summary["c2"], summary["c22"] = float(np.sum(c2)), float(np.sum(c2**2))
    summary["c4"] = float(np.sum((n_i - 1.0) * (n_i**2 - 3 * n_i + 3) / n_i**3))
    return summary


def _impute_censored(y: np.ndarray, cens: np.ndarray, gi: np.ndarray, groups: int) -> np.ndarray:
    """Truncated log-lengths replaced by E[y | y > cap] under their group's normal (one EM step)."""
    obs = ~cens
    cnt = np.bincount(gi[obs], minlength=groups).astype(np.float64)
    sums = np.bincount(gi[obs], weights=y[obs], minlength=groups)
    step_mean = float(y[obs].mean())
    means = np.where(cnt > 0, sums / np.maximum(cnt, 1), step_mean)  # (B,)
    dev = y[obs] - means[gi[obs]]
    dof = max(int(obs.sum() - np.count_nonzero(cnt)), 1)
    s = max(math.sqrt(float(dev @ dev) / dof), 1e-3)  # pooled within-group sd
    out = y.copy()
    z = (y[cens] - means[gi[cens]]) / s  # (c,) standardised cap
    mills = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) / np.maximum(_norm_sf(z), 1e-300)
    out[cens] = means[gi[cens]] + s * mills  # E[y | y > cap]
    return out


def _sketch(res: np.ndarray) -> tuple[list[float], list[float]]:
    """Weighted summary of residuals: exact if few, else exact top + equal-count bin means."""
    res = np.sort(res)
    if res.size <= SKETCH_EXACT:
        return [round(float(v), 12) for v in res], [1.0] * int(res.size)
    top = res[-SKETCH_TOP:]
    body = res[:-SKETCH_TOP]
    edges = np.unique(np.linspace(0, body.size, SKETCH_BINS + 1).round().astype(int))
    wts = np.diff(edges).astype(np.float64)  # (bins,) residuals per bin
    vals = (np.add.reduceat(body, edges[:-1]) / wts).tolist()  # bin means
    wts = wts.tolist()
    vals += [float(v) for v in top]
    wts += [1.0] * SKETCH_TOP
    return [round(v, 12) for v in vals], wts


class ResidualDistribution:
    """Within-prompt residual law: weighted empirical body, fitted upper tail beyond u.

    The tail (above the 90% point u, probability zeta) is a mixture: with weight 1 - blend a
    normal tail with the pooled within-prompt sigma (exact for lognormal lengths), with weight
    blend a generalized Pareto tail fitted to leave-one-out residuals (exponential-like log
    tails, i.e. Pareto lengths). `blend` comes from the excess kurtosis of e (`_tail_blend`).
    """

    def __init__(self, values: np.ndarray, weights: np.ndarray, sigma: float,
                 tail_values: np.ndarray, tail_weights: np.ndarray, blend: float) -> None:
        order = np.argsort(values, kind="stable")
        self.x = values[order]  # (m,) sorted residuals, log tokens
        w = weights[order]
        self.total = float(w.sum())
        self.cum_above = self.total - np.cumsum(w)  # (m,) weight strictly above x[k]
        self.sigma = sigma
        self.blend = blend
        self.u, _, _, self.zeta = _fit_tail(self.x, w, self.total, sigma)
        order = np.argsort(tail_values, kind="stable")
        # The leave-one-out residual e_j - mean(e_-j) keeps the tail *shape* of e (one large e_j
        # dominates it), which the variance scaling of the body would thin out.
        _, self.xi, self.beta, _ = _fit_tail(tail_values[order], tail_weights[order], self.total, sigma)
        # Normal tail: the scale whose mean excess over u matches the data's (robust to mixtures,
        # e.g. wrong answers being longer, that make the pooled sigma understate the tail).
        above = self.x > self.u
        if math.isfinite(self.u) and above.sum() >= 5:
            fitted = _normal_scale_for_excess(self.u, float(np.average(self.x[above] - self.u,
                                                                       weights=w[above])), sigma)
            # half way (geometrically) to the fitted scale: the ANOVA sigma is far less noisy
            self.sigma_tail = math.sqrt(sigma * fitted)
        else:
            self.sigma_tail = sigma
        self._norm_u = _norm_sf(np.array([self.u / self.sigma_tail]))[0] if math.isfinite(self.u) else 1.0

    def _tail(self, z: np.ndarray) -> np.ndarray:
        """P(e > z | e > u) for z >= u under the mixture tail."""
        exc = np.maximum(z - self.u, 0.0)
        if self.xi < 1e-6:
            gpd = np.exp(-exc / self.beta)
        else:
            gpd = (1.0 + self.xi * exc / self.beta) ** (-1.0 / self.xi)
        normal = _norm_sf(np.maximum(z, self.u) / self.sigma_tail) / max(self._norm_u, 1e-300)
        return (1.0 - self.blend) * normal + self.blend * gpd

    def survival(self, z: np.ndarray) -> np.ndarray:
        """P(e > z), vectorised over z."""
        z = np.asarray(z, dtype=np.float64)
        if self.total <= 0:  # no within-group data yet: a normal with the pooled sigma
            return _norm_sf(z / self.sigma)
        idx = np.searchsorted(self.x, z, side="right")  # number of values <= z
        body = np.where(idx > 0, self.cum_above[np.clip(idx - 1, 0, None)], self.total) / self.total
        above = z >= self.u
        if z.ndim == 0 or above.all():
            return np.where(above, self.zeta * self._tail(z), body)
        if above.any():  # the tail only where it is used (elementwise: the same floats)
            body[above] = self.zeta * self._tail(z[above])
        return body

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Draws from the fitted law by inverting it (body: empirical; tail: the mixture)."""
        if self.total <= 0:
            return rng.normal(0.0, self.sigma, shape)
        return self.quantile(rng.random(shape))

    def quantile(self, v: np.ndarray) -> np.ndarray:
        """z with P(e > z) = v, vectorised: inverse survival of the fitted law (any shape)."""
        v = np.asarray(v, dtype=np.float64)
        if self.total <= 0:
            return self.sigma * _norm_isf_table(v)
        log_s, z = self._tail_table()
        body = self._body_table()  # (BODY_LEVELS,) body quantiles at survival levels 1 .. zeta
        j = ((1.0 - v) / max(1.0 - self.zeta, 1e-12) * (body.size - 1)).astype(np.int64)
        out = body[np.minimum(j, body.size - 1)]
        in_tail = v < self.zeta
        out[in_tail] = np.interp(np.log(v[in_tail]), log_s, z)  # log_s increasing, z decreasing
        return out

    def _body_table(self) -> np.ndarray:
        """Empirical quantiles of the body at BODY_LEVELS evenly spaced survival levels (cached):
        sampling then indexes an array instead of searching the weights for every draw."""
        if getattr(self, "_body", None) is None:
            levels = np.linspace(1.0, self.zeta, BODY_LEVELS)  # survival levels, body only
            idx = np.searchsorted(-self.cum_above, -levels * self.total, side="left")
            self._body = self.x[np.clip(idx, 0, self.x.size - 1)]
        return self._body

    def _tail_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(log P(e > z), z) on a grid from u far into the tail, log-survival increasing (cached).

        Sampling inverts the mixture tail by interpolation on this grid: vectorised and cheap,
        where inverting the normal part per draw would need a bisection."""
        if getattr(self, "_table", None) is None:
            floor = 1e-12  # survival levels below this are never drawn in practice
            if self.xi < 1e-6:
                far = self.beta * math.log(max(self.zeta, floor) / floor)
            else:
                far = self.beta / self.xi * ((floor / max(self.zeta, floor)) ** (-self.xi) - 1.0)
            far = min(max(far, 8.0 * self.sigma_tail + abs(self.u)), 60.0)
            z = self.u + np.concatenate([[0.0], np.geomspace(1e-4, far, 511)])  # (512,) log tokens
            surv = np.maximum(self.zeta * self._tail(z), 1e-300)
            self._table = (np.log(surv)[::-1].copy(), z[::-1].copy())
        return self._table


def _normal_scale_for_excess(u: float, mean_excess: float, sigma: float) -> float:
    """sigma' with E[X - u | X > u] = mean_excess for X ~ N(0, sigma'^2), within [sigma/2, 2 sigma]."""
    def excess(s: float) -> float:
        z = u / s
        sf = max(float(_norm_sf(np.array([z]))[0]), 1e-300)
        return s * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) / sf - u

    lo, hi = 0.5 * sigma, 2.0 * sigma
    if excess(lo) >= mean_excess:
        return lo
    if excess(hi) <= mean_excess:
        return hi
    for _ in range(40):  # the mean excess grows with the scale: bisection
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if excess(mid) < mean_excess else (lo, mid)
    return 0.5 * (lo + hi)


def _norm_sf(z: np.ndarray) -> np.ndarray:
    """Standard normal survival function (numpy only: no scipy in the core)."""
    return 0.5 * _erfc(np.asarray(z, dtype=np.float64) / math.sqrt(2.0))


@lru_cache(maxsize=8)
def _tail_uniforms(seed: int, b: int, g_max: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standard normals (R, B, 1) for prompt effects, uniforms (R, B, Gmax) for residuals and
    runaways: the tail rule's Monte Carlo draws, R = TAIL_MC_DRAWS / (B Gmax) in [200, 1000]."""
    reps = int(np.clip(TAIL_MC_DRAWS // (b * g_max), 200, 1000))
    rng = np.random.default_rng([seed, b, g_max])
    out = (rng.standard_normal((reps, b, 1)), rng.random((reps, b, g_max)), rng.random((reps, b, g_max)))
    for arr in out:
        arr.flags.writeable = False  # shared across fits: never modified
    return out


def _norm_isf_table(v: np.ndarray) -> np.ndarray:
    """Standard normal inverse survival by interpolation on a fine grid (vectorised, ~1e-4)."""
    z = np.linspace(-9.0, 9.0, 4001)
    sf = _norm_sf(z)  # decreasing in z
    return np.interp(-np.asarray(v), -sf, z)


def _fit_tail(x: np.ndarray, w: np.ndarray, total: float, sigma: float) -> tuple[float, float, float, float]:
    """Peaks-over-threshold GPD fit by the method of moments (Hosking & Wallis 1987)."""
    if total <= 0:
        return math.inf, 0.0, 1.0, 0.0
    cum = np.cumsum(w)
    k = int(np.searchsorted(cum, (1.0 - TAIL_FRACTION) * total))
    k = min(k, x.size - 1)
    u = float(x[k])
    above = x > u
    zeta = float(w[above].sum() / total)  # P(e > u)
    if above.sum() < 5 or zeta <= 0:  # too few peaks: exponential tail with the normal's scale
        return u, 0.0, max(sigma, 1e-3) * 0.5, max(zeta, 1.0 / max(total, 1.0))
    exc, we = x[above] - u, w[above]
    m = float(np.average(exc, weights=we))
    v = float(np.average((exc - m) ** 2, weights=we))
    if m <= 0 or v <= 0:
        return u, 0.0, max(m, 1e-3), zeta
    xi = 0.5 * (1.0 - m * m / v)
    # xi < 0 would put a finite end on the tail and make large G look safe: never below 0. A
    # heavier-than-exponential log tail (xi > 0) is kept only beyond 2 standard errors (about
    # 1 / sqrt(peaks) at xi = 0): a noisy xi of 0.1 from 320 peaks over-predicted the tail
    # rule's risk at G = 32 by 0.13 on a Pareto stream (whose log tail is exponential).
    xi = float(np.clip(xi, 0.0, 0.5))
    beta = m * (1.0 - xi)  # mean excess of a GPD is beta / (1 - xi)
    return u, xi, max(beta, 1e-6), zeta


_ERFC = np.frompyfunc(math.erfc, 1, 1)
_MAX_GRID = np.geomspace(0.25, 64.0, 24)  # expected_max's grid, in units of the reference length
_MAX_GRID.flags.writeable = False


def _erfc(x: np.ndarray) -> np.ndarray:
    return np.asarray(_ERFC(x), dtype=np.float64)


def _forecast_level(mu: np.ndarray, short: int) -> float:
    """Next step's mean log-length from the per-step means mu (oldest first). (scalar)

    Stationary streams: the mean of the whole window (its noise is mostly prompt effects, so
    more steps help). Drifting streams: a least-squares line over the window, extrapolated one
    step ahead, used only when its slope is clearly non-zero (|t| > 3), since a line's endpoint
    is about twice as noisy as a mean.
    """
    n = mu.size
    if n < 2 * short:  # too short to tell drift from noise: the recent mean
        return float(mu[-short:].mean())
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    slope = float(x @ (mu - mu.mean()) / (x @ x))
    resid = mu - mu.mean() - slope * x
    se = math.sqrt(max(float(resid @ resid) / (n - 2), 1e-12) / float(x @ x))
    if abs(slope) > 3.0 * se:
        return float(mu.mean() + slope * (n - 1) / 2.0 + slope)  # line at the next step
    return float(mu.mean())


def _excess_kurtosis(summaries: Sequence[Mapping[str, Any]]) -> float:
    """Excess kurtosis of the within-prompt law e, corrected for the group-mean subtraction."""
    c2, c22, c4 = (sum(s[k] for s in summaries) for k in ("c2", "c22", "c4"))
    if c2 <= 0 or c4 <= 0:
        return 0.0
    s2 = sum(s["m2"] for s in summaries) / c2
    if s2 <= 0:
        return 0.0
    k4 = (sum(s["m4"] for s in summaries) - 3 * s2 * s2 * c22) / c4
    return k4 / (s2 * s2)


def _tail_blend(kurtosis: float) -> float:
    """0 for a normal-like e (excess kurtosis <= 0.5), 1 for exponential-like (>= 2) log-tails.

    Saturates well below the exponential law's 6: sample kurtosis of a heavy tail is biased low
    (a 50-step window rarely holds the extremes), and under-weighting the GPD tail made large G
    look safe (-0.1 at G=16 on heavy-tail after 50 steps at G=8)."""
    return float(np.clip((kurtosis - 0.5) / 1.5, 0.0, 1.0))


class RiskModel:
    """Pools a window of step summaries and predicts P(event | G) for the next step."""

    def __init__(self, summaries: Sequence[Mapping[str, Any]], mu_window: int) -> None:
        usable = [s for s in summaries if s["mu"] is not None]
        self.ready = len(usable) > 0
        n = sum(s["n"] for s in summaries)
        # Truncation rate. A window without one cannot tell "no runaways" from "rare runaways" (a
        # 0.02% loop rate shows in 1 of 3 windows of 50 x 64 completions, yet is an event on 5% of
        # G = 32 steps), and a prior count would turn into certain events at an unknown cap: the
        # observed rate, and the observed queue, not the model, covers rare loops.
        self.r = sum(s["n_trunc"] for s in summaries) / max(n, 1)
        caps = [s["cap"] for s in summaries if s["cap"] is not None]
        self.cap = max(caps) if caps else math.inf
        if not self.ready:
            return
        dfw = sum(s["dfw"] for s in usable)
        self.sigma2 = sum(s["ssw"] for s in usable) / dfw if dfw > 0 else 0.25
        nb = sum(s["nb"] for s in usable)
        ssb, dfb = sum(s["ssb"] for s in usable), sum(s["dfb"] for s in usable)
        self.tau2 = max((ssb - dfb * self.sigma2) / nb, 0.0) if nb > 0 else 0.0
        self.mu_next = _forecast_level(np.array([s["mu"] for s in usable]), mu_window)
        vals = np.concatenate([np.asarray(s["res"], dtype=np.float64) for s in usable])
        wts = np.concatenate([np.asarray(s["w"], dtype=np.float64) for s in usable])
        tv = np.concatenate([np.asarray(s["loo"], dtype=np.float64) for s in usable])
        tw = np.concatenate([np.asarray(s["wloo"], dtype=np.float64) for s in usable])
        self.kurtosis = _excess_kurtosis(usable)
        self.res = ResidualDistribution(vals, wts, math.sqrt(max(self.sigma2, 1e-6)), tv, tw,
                                        _tail_blend(self.kurtosis))
        # Truncations are of two kinds. Natural ones: the fitted law itself reaches the cap, most
        # often for a long prompt whose other completions are long too. Runaways: loops, which
        # hit the cap whatever the prompt. Only the excess over the natural rate is a runaway;
        # counting every truncation as one put cap hits in random prompts and over-predicted the
        # tail rule at small G (+0.09 at G = 2 on code-heavy-tail, 2.5% natural truncation).
        nat = 0.0
        if math.isfinite(self.cap):
            a = math.sqrt(self.tau2) * _GH_X
            nat = float(self.res.survival(math.log(self.cap) - self.mu_next - a) @ _GH_W)
        self.r_nat = min(nat, 0.999)
        self.r_run = max((self.r - self.r_nat) / (1.0 - self.r_nat), 0.0)

    def ok_prob(self, thresholds: np.ndarray, rules: Sequence[str]) -> np.ndarray:
        """P(one completion does not trigger the rules | prompt effect a) at the quadrature nodes.

        thresholds: (k,) length thresholds in tokens. Returns (k, nodes).
        """
        t = np.asarray(thresholds, dtype=np.float64)[:, None]  # (k, 1) tokens
        a = math.sqrt(self.tau2) * _GH_X[None, :]  # (1, nodes) prompt effect, log tokens
        # no truncation: no runaway, and the law stays below the cap (prompt-dependent)
        no_trunc = (1.0 - self.r_run) * ((1.0 - self.res.survival(math.log(self.cap) - self.mu_next - a))
                                         if math.isfinite(self.cap) else 1.0)
        no_trunc = np.broadcast_to(no_trunc, (t.shape[0], _GH_X.size))
        if "reference" in rules:  # below the cap a runaway or a natural exceedance is an event
            within = (1.0 - self.res.survival(np.log(t) - self.mu_next - a)) * (1.0 - self.r_run)
            above = no_trunc if "truncation" in rules else 1.0  # at the cap only truncation counts
            return np.where(t < self.cap, within, above)
        if "truncation" in rules:
            return no_trunc.copy()
        return np.ones((t.shape[0], _GH_X.size))

    def event_prob(self, threshold: float, sizes: Sequence[int], prompts: Sequence[int],
                   rules: Sequence[str]) -> np.ndarray:
        """P(step event | G) for each G in sizes with B = prompts[k] groups. (k,) probabilities."""
        ok = self.ok_prob(np.array([threshold]), rules)[0]  # (nodes,)
        g = np.asarray(sizes, dtype=np.float64)[:, None]  # (k, 1)
        per_prompt = (ok[None, :] ** g) @ _GH_W  # (k,) P(all G completions ok), over a
        b = np.asarray(prompts, dtype=np.float64)
        return 1.0 - np.exp(b * np.log(np.clip(per_prompt, 1e-300, 1.0)))

    def expected_max(self, sizes: Sequence[int], prompts: Sequence[int], ref: float) -> np.ndarray:
        """E[longest completion | G] in tokens, from P(max <= x) on a log grid (for goodput)."""
        grid = ref * _MAX_GRID  # (m,) tokens
        if math.isfinite(self.cap):
            grid = np.minimum(grid, self.cap)
        ok = self.ok_prob(grid, ("reference",))  # (m, nodes)
        g = np.asarray(sizes, dtype=np.float64)
        b = np.asarray(prompts, dtype=np.float64)
        per_prompt = np.einsum("gmn,n->gm", ok[None, :, :] ** g[:, None, None], _GH_W)  # (k, m)
        cdf = np.exp(b[:, None] * np.log(np.clip(per_prompt, 1e-300, 1.0)))  # P(max <= x)
        # E[max] = x0 + integral of P(max > x) dx over the grid (trapezoid), tail beyond ignored
        surv = 1.0 - cdf
        return grid[0] + np.sum(0.5 * (surv[:, 1:] + surv[:, :-1]) * np.diff(grid)[None, :], axis=1)

    # ---- the tail rule (sagc.rules: share of decode iterations after q of completions ended) ----
    def tail_event_prob(self, sizes: Sequence[int], prompts: Sequence[int], quantile: float, share: float,
                        seed: int = 0) -> np.ndarray:
        """P(tail share > share | G) for each G with B = prompts[k]. (k,) probabilities.

        The event is L_max > c L_(k), c = 1 / (1 - share), k = ceil(q n), n = B G. Small steps
        (n <= TAIL_MC_MAX): Monte Carlo over whole steps drawn from the fitted model (prompt
        effects, residual law, runaways to the cap), common draws for every G of one B, so the
        curve is smooth in G, and the same uniform draws at every step (seeded by `seed`), so the
        prediction moves only when the fitted law does. Larger steps: the order statistic L_(k) concentrates on the
        population q-quantile Q, and the event is "some completion exceeds c Q", which the
        closed form of `event_prob` gives (prompt effects by quadrature, extrapolating in G).
        """
        c = 1.0 / (1.0 - share)
        sizes = [int(g) for g in sizes]
        prompts = [int(b) for b in prompts]
        out = np.zeros(len(sizes))
        for b in sorted(set(prompts)):
            idx = [i for i, bb in enumerate(prompts) if bb == b]
            small = [i for i in idx if b * sizes[i] <= TAIL_MC_MAX]
            if small:
                out[small] = self._tail_mc([sizes[i] for i in small], b, quantile, c, seed)
            large = [i for i in idx if b * sizes[i] > TAIL_MC_MAX]
            if large:
                q_len = self._length_quantile(quantile)
                out[large] = self.event_prob(c * q_len, [sizes[i] for i in large], [b] * len(large),
                                             ("reference",))
        return out

    def _tail_mc(self, sizes: list[int], b: int, quantile: float, c: float, seed: int) -> np.ndarray:
        g_max = max(sizes)
        u_a, u_e, u_r = _tail_uniforms(seed, b, g_max)  # fixed draws: the same every step
        reps = u_e.shape[0]
        a = math.sqrt(self.tau2) * u_a  # (R, B, 1) prompt effects
        log_len = self.mu_next + a + self.res.quantile(u_e)  # (R, B, Gmax) log tokens
        # runaways loop until the cap (not seen yet: far beyond anything, an event in any case)
        log_cap = math.log(self.cap) if math.isfinite(self.cap) else 700.0
        log_len = np.minimum(log_len, log_cap)
        if self.r_run > 0:
            log_len = np.where(u_r < self.r_run, log_cap, log_len)
        log_c = math.log(c)
        out = []
        # the event tail_share > share (sagc.rules.tail_shares) written in log space: a runaway at
        # an unknown cap sits at log length 700, which exp() cannot hold
        for g in sizes:  # the first g completions of each prompt: common draws across G
            flat = log_len[:, :, :g].reshape(reps, -1)  # (R, n)
            k = int(tail_index(flat.shape[1], quantile))
            body = np.partition(flat, k, axis=1)[:, k]  # (R,) log L_(k)
            out.append(float(np.mean(flat.max(axis=1) > log_c + body)))
        return np.asarray(out)

    def _length_quantile(self, quantile: float) -> float:
        """Population q-quantile of one completion's length (prompt effect and runaways mixed in)."""
        if math.isfinite(self.cap) and self.r_run >= 1.0 - quantile:
            return float(self.cap)  # at least a share 1 - q of completions sits at the cap
        sd = math.sqrt(self.sigma2 + self.tau2)
        lo, hi = self.mu_next - 12.0 * sd - 1.0, self.mu_next + 12.0 * sd + 1.0
        if math.isfinite(self.cap):
            hi = min(hi, math.log(self.cap))
        a = math.sqrt(self.tau2) * _GH_X  # (nodes,)
        for _ in range(50):  # P(L <= x) rises with x: bisection on log x
            mid = 0.5 * (lo + hi)
            cdf = (1.0 - self.r_run) * float((1.0 - self.res.survival(mid - self.mu_next - a)) @ _GH_W)
            lo, hi = (mid, hi) if cdf < quantile else (lo, mid)
        return math.exp(0.5 * (lo + hi))
