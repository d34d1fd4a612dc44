"""Importance-sampling estimates of a prompt's partition function, with diagnostics.

For one prompt with K samples y_k drawn from a proposal q, the log-ratios and
log-weights are

    lr_k = log pi_ref(y_k|x) - log q(y_k|x),    lw_k = lr_k + beta * r_k

and Z(x) = E_{y~pi_ref}[exp(beta * r)] has two estimators:

- ``is`` (plain): Z_hat = mean_k exp(lw_k), log Z_hat = logsumexp(lw) - log K.
  Unbiased for Z, but over long sequences from a proposal that is not pi_ref
  the ratios exp(lr) spread over many nats and their sample mean, which is 1
  in expectation, falls far below 1: the estimate then lies below
  beta * min r, a bound no Z can break.
- ``snis`` (self-normalized): Z_hat = sum_k exp(lw_k) / sum_k exp(lr_k), a
  weighted mean of exp(beta r), so it stays within [beta min r, beta max r];
  consistent, biased O(1/K).
- ``cv`` (control variate): mean(e^lw) - c (mean(e^lr) - 1) with the
  regression slope c, using E_q[pi_ref/q] = 1 to cancel the sample's error
  in it (`control_variate`); cut to the bounds.

When lr is exactly 0 all three are the same number.

The sample's log mean ratio, logsumexp(lr) - log K, is 0 in expectation: it
measures how much of pi_ref's mass the proposal's samples visited, and it is
exactly the gap between the two estimates (log Z_is = log Z_snis + it).
Everything is computed in log space: beta * r of a few thousand is routine
and exp() of it overflows.

`estimate_groups` takes many prompts at once and works on whole arrays
(np.unique + ufunc.reduceat); only the bootstrap draws and the Pareto tail fit
work per block of equally sized groups, never per element.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from iswcli.errors import IswtError

#: Default ESS/K below which a prompt is flagged ``low_ess``.
LOW_ESS_FRAC = 0.1
#: Fewest tail weights (distinct, above the threshold) the Pareto fit accepts,
#: as in the loo package; with M = ceil(min(K/5, 3 sqrt K)) this means K >= 21.
KHAT_MIN_TAIL = 5
#: Weakly informative prior of PSIS (Vehtari et al. 2024): the fitted shape is
#: averaged with this many pseudo-observations at k = 0.5.
_KHAT_PRIOR_COUNT = 10.0
_KHAT_PRIOR_SHAPE = 0.5
#: Upper bound on elements of one temporary array in the batched tail fit and
#: bootstrap, so memory stays flat for millions of prompts.
_CHUNK_ELEMENTS = 4_000_000

#: The estimators of log Z (module docstring); the first is estimate-z's default (docs/study/log_z_reasoning_study.md).
ESTIMATORS = ("snis", "cv", "is")
#: Nats past beta * min r or beta * max r before ``outside_reward_bounds``: float32 log-probs summed over a
#: sequence put a teacher-forced reference some 1e-6 nats off the sampler's own numbers, so a proposal that
#: is the reference would otherwise break the bound by rounding.
BOUND_TOLERANCE = 1e-3
#: |log mean ratio| (nats) past which a prompt is flagged ``weight_mass_off``.
WEIGHT_MASS_NATS = 0.5

#: Per-prompt flags, in the order they are listed. Each says something about
#: this prompt's estimate, not about the proposal as a whole (a tempered or
#: truncated proposal is a fact of the samples' provenance, recorded in the z's):
#: ``low_ess``: ESS/K of the weights below the threshold; ``high_khat``: the
#: Pareto tail of the weights is too heavy for K; ``weight_mass_off``: the
#: sample's mean ratio pi_ref/q is more than WEIGHT_MASS_NATS from 1 in log
#: space, so the samples saw the wrong share of pi_ref's mass (plain IS is off
#: by exactly that much; a top-p proposal shows here the share it cut);
#: ``high_ratio_khat``: the same Pareto test on the ratios alone;
#: ``outside_reward_bounds``: the estimate breaks beta min r <= log Z <= beta
#: max r (only plain IS can); ``sampler_mismatch``: the sampler's raw
#: log-probs differ from the teacher-forced reference's on the same weights.
FLAG_NAMES = (
    "low_ess",
    "high_khat",
    "weight_mass_off",
    "high_ratio_khat",
    "outside_reward_bounds",
    "all_equal_rewards",
    "sampler_mismatch",
)


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ZTable:
    """Column arrays of `estimate_groups`, one entry per group.

    Groups are in ascending order of their id (the order of ``np.unique``).
    ``flag_bits`` holds each group's flags as bits (bit i: FLAG_NAMES[i]);
    ``flags`` spells them out, one tuple of names per group.
    """

    group_id: np.ndarray
    log_z: np.ndarray  # the chosen estimator's
    log_z_is: np.ndarray  # the plain estimate, whichever was chosen
    log_mean_ratio: np.ndarray  # log mean_k pi_ref/q: 0 in expectation
    n_samples: np.ndarray
    ess: np.ndarray
    ess_frac: np.ndarray
    ratio_ess_frac: np.ndarray  # Kish ESS/K of the ratios alone: what the self-normalization rests on
    max_weight_share: np.ndarray
    khat: np.ndarray
    khat_note: np.ndarray
    ratio_khat: np.ndarray
    log_z_se: np.ndarray
    log_z_lo: np.ndarray
    log_z_hi: np.ndarray
    flag_bits: np.ndarray

    @property
    def flags(self) -> list[tuple[str, ...]]:
        return [FLAG_SETS[bits] for bits in self.flag_bits.tolist()]


#: The flag names of every combination of bits (index: the bits), in the order of FLAG_NAMES.
FLAG_SETS = tuple(
    tuple(name for i, name in enumerate(FLAG_NAMES) if bits >> i & 1) for bits in range(1 << len(FLAG_NAMES))
)


# --------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------


def _shown(value) -> str:
    """repr of an id or index as the user wrote it (numpy scalars unwrapped)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _positive(value: float, name: str) -> float:
    """Return ``value`` as a float, or raise unless it is given, finite and > 0."""
    if value is None:
        raise IswtError(f"{name} is required")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise IswtError(f"{name} must be a finite number > 0 (got {value})")
    return value


def _finite_array(values, name: str) -> np.ndarray:
    """Return ``values`` as a 1-D float64 array, refusing NaN and infinities."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise IswtError(f"{name} must be one-dimensional (got shape {arr.shape})")
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.argmax(bad))
        what = "NaN" if np.isnan(arr[row]) else "an infinite value"
        raise IswtError(f"{name} contains {what} (row {row}); every value must be a finite number")
    return arr


# --------------------------------------------------------------------------
# Log-weights and reward transforms
# --------------------------------------------------------------------------


def log_weights(logprob_ref, logprob_q, reward, beta: float) -> np.ndarray:
    """Importance log-weights toward pi_ref * exp(beta * r): log pi_ref - log q + beta * r.

    Pass ``logprob_ref`` and ``logprob_q`` both as None when q is pi_ref at
    temperature 1 without truncation (the log-ratio is then exactly 0). Giving
    only one of them is an error: half a ratio would silently be wrong.
    """
    beta = _positive(beta, "beta")
    reward = _finite_array(reward, "reward")
    if (logprob_ref is None) != (logprob_q is None):
        raise IswtError("logprob_ref and logprob_q must both be given or both be None")
    lw = beta * reward
    if logprob_ref is not None:
        ref = _finite_array(logprob_ref, "logprob_ref")
        prop = _finite_array(logprob_q, "logprob_q")
        if not (ref.shape == prop.shape == reward.shape):
            raise IswtError("logprob_ref, logprob_q and reward must have one value per sample")
        lw = lw + (ref - prop)
    return lw


def group_zscore(rewards, group_ids) -> np.ndarray:
    """Standardize rewards within each group: (r - group mean) / group std.

    Uses the population std (ddof=0). A group whose rewards are all equal has
    std 0 and maps to zeros rather than NaN. Output is in input row order.
    Note that this changes the target distribution pi_ref * exp(beta * r).
    """
    rewards = _finite_array(rewards, "reward")
    group_ids = np.asarray(group_ids)
    if group_ids.shape != rewards.shape:
        raise IswtError("group ids and rewards must have one value per sample")
    if rewards.size == 0:
        return rewards.copy()
    _, inverse, counts = np.unique(group_ids, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    mean = np.bincount(inverse, weights=rewards) / counts
    centered = rewards - mean[inverse]
    std = np.sqrt(np.bincount(inverse, weights=centered * centered) / counts)
    scale = std[inverse]
    return np.divide(centered, scale, out=np.zeros_like(centered), where=scale > 0)


def all_equal_per_group(group_ids, values) -> np.ndarray:
    """Per group, in ascending order of its id: whether all its values are equal."""
    _, order, starts, _ = _group_layout(np.asarray(group_ids))
    return _equal_within(np.asarray(values)[order], starts)


def _equal_within(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per group of group-contiguous ``values`` (groups begin at ``starts``): whether all its values are equal."""
    return np.maximum.reduceat(values, starts) == np.minimum.reduceat(values, starts)


# --------------------------------------------------------------------------
# Segment (per-group) reductions on group-contiguous arrays
# --------------------------------------------------------------------------


def _segment_logsumexp(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """logsumexp of each contiguous segment, shifted by the segment max for stability."""
    peak = np.maximum.reduceat(values, starts)
    total = np.add.reduceat(np.exp(values - np.repeat(peak, counts)), starts)
    return peak + np.log(total)


def _segment_stats(lw: np.ndarray, lr: np.ndarray, starts: np.ndarray, counts: np.ndarray, estimator: str) -> dict:
    """Both estimates of log Z, Kish ESS, largest weight share and the chosen estimate's se per segment.

    (``cv`` gets the self-normalized numbers here; `_estimate_sorted` replaces them per block of rows.)

    Plain IS: var(w)/mean(w)^2 = K (K/ESS - 1)/(K - 1) (sample variance,
    ddof=1), so se(log Z_hat) = sqrt((K/ESS - 1)/(K - 1)): no weight is ever
    exponentiated unshifted. Self-normalized: the delta-method variance of a
    ratio, sum_k w_k^2 (f_k - mean)^2 with w the normalized ratios and f =
    e^{beta r} (shifted by its segment max), times K/(K - 1) so that with
    equal ratios it is the plain se exactly. NaN for a single-sample group.
    """
    lse1 = _segment_logsumexp(lw, starts, counts)
    lse2 = _segment_logsumexp(2.0 * lw, starts, counts)
    lse_ratio = _segment_logsumexp(lr, starts, counts)
    k = counts.astype(np.float64)
    ess = np.exp(2.0 * lse1 - lse2)
    share = np.exp(np.maximum.reduceat(lw, starts) - lse1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if estimator == "is":
            rel_var = np.maximum(k / ess - 1.0, 0.0) / (k - 1.0)
        else:
            tilt = lw - lr  # beta * r
            f = np.exp(tilt - np.repeat(np.maximum.reduceat(tilt, starts), counts))
            w = np.exp(lr - np.repeat(lse_ratio, counts))
            mean = np.add.reduceat(w * f, starts)
            spread = np.add.reduceat((w * (f - np.repeat(mean, counts))) ** 2, starts)
            rel_var = spread / mean**2 * k / (k - 1.0)
    se = np.where(counts > 1, np.sqrt(rel_var), np.nan)
    log_z_is = lse1 - np.log(k)
    log_mean_ratio = lse_ratio - np.log(k)
    return {
        "log_z": log_z_is if estimator == "is" else lse1 - lse_ratio,
        "log_z_is": log_z_is,
        "log_mean_ratio": log_mean_ratio,
        "ess": ess,
        "ess_frac": ess / k,
        "ratio_ess_frac": np.exp(2.0 * lse_ratio - _segment_logsumexp(2.0 * lr, starts, counts)) / k,
        "max_weight_share": share,
        "log_z_se": se,
    }


# --------------------------------------------------------------------------
# Pareto k-hat (PSIS): Zhang & Stephens (2009) fit plus the PSIS prior
# --------------------------------------------------------------------------


def khat_threshold(n_samples):
    """Sample-size dependent k-hat threshold of PSIS: min(1 - 1/log10(K), 0.7), per K.

    Above it the importance-sampling estimate is unreliable for this K.
    """
    return np.minimum(1.0 - 1.0 / np.log10(np.asarray(n_samples, dtype=np.float64)), 0.7)


def _tail_length(n_samples: int) -> int:
    """M = ceil(min(K/5, 3 sqrt K)), the PSIS tail length (Vehtari et al. 2024, r_eff = 1)."""
    return int(math.ceil(min(0.2 * n_samples, 3.0 * math.sqrt(n_samples))))


def _khat_rows(sorted_lw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """k-hat and note for each row of an (R, K) array of ascending log-weights.

    The tail is the M largest weights; the threshold is the (M+1)-th largest.
    The exceedances w - w_threshold (scaled by the row's largest weight, so
    nothing overflows) that are > 0 are fitted; rows are batched by how many
    exceedances they have so the fit runs on whole matrices.
    """
    n_rows, k = sorted_lw.shape
    khat = np.full(n_rows, np.nan)
    notes = np.full(n_rows, "", dtype=object)
    m = _tail_length(k)
    if m < KHAT_MIN_TAIL or k <= m:
        notes[:] = f"K={k} samples give a tail of {m} weights; the Pareto fit needs {KHAT_MIN_TAIL} (K >= 21)"
        return khat, notes
    shifted = sorted_lw - sorted_lw[:, -1:]
    cutoff = np.exp(shifted[:, k - m - 1])
    exceed = np.exp(shifted[:, k - m :]) - cutoff[:, None]
    n_above = (exceed > 0).sum(axis=1)
    previous = np.concatenate([np.zeros((n_rows, 1)), exceed[:, :-1]], axis=1)
    n_distinct = (exceed > previous).sum(axis=1)
    too_few = n_distinct < KHAT_MIN_TAIL
    for row in np.nonzero(too_few)[0]:
        notes[row] = (
            f"{n_distinct[row]} distinct tail weights above the threshold, "
            f"fewer than the {KHAT_MIN_TAIL} the Pareto fit needs"
        )
    for n in np.unique(n_above[~too_few]):
        rows = np.nonzero(~too_few & (n_above == n))[0]
        khat[rows] = _gpd_shape_rows(exceed[rows, m - n :])
    return khat, notes


def _gpd_shape_rows(x: np.ndarray) -> np.ndarray:
    """Generalized Pareto shape k for each row of ascending positive exceedances.

    Zhang & Stephens (2009) empirical Bayes: with theta = -k/sigma, the
    profile log-likelihood is n (log(-theta/k(theta)) - k(theta) - 1) where
    k(theta) = mean log(1 - theta x). Average theta over a grid of
    m = 30 + floor(sqrt n) points (the PSIS choice) weighted by that
    likelihood, evaluate k at the average, then shrink toward 0.5 with the
    PSIS prior worth 10 observations. Here k > 0 means a heavy tail.
    """
    n_rows, n = x.shape
    grid = 30 + int(math.sqrt(n))
    j = np.arange(1, grid + 1, dtype=np.float64)
    spread = 1.0 - np.sqrt(grid / (j - 0.5))
    quartile = x[:, int(n / 4 + 0.5) - 1]
    out = np.empty(n_rows)
    step = max(1, _CHUNK_ELEMENTS // (grid * n))
    for lo in range(0, n_rows, step):
        xs = x[lo : lo + step]
        theta = 1.0 / xs[:, -1:] + spread[None, :] / (3.0 * quartile[lo : lo + step, None])
        shape = np.log1p(-theta[:, :, None] * xs[:, None, :]).mean(axis=2)
        with np.errstate(divide="ignore", invalid="ignore"):
            profile = n * (np.log(-theta / shape) - shape - 1.0)
        profile = np.where(np.isfinite(profile), profile, -np.inf)
        post = np.exp(profile - profile.max(axis=1, keepdims=True))
        theta_hat = (post * theta).sum(axis=1) / post.sum(axis=1)
        k_fit = np.log1p(-theta_hat[:, None] * xs).mean(axis=1)
        out[lo : lo + step] = (n * k_fit + _KHAT_PRIOR_COUNT * _KHAT_PRIOR_SHAPE) / (n + _KHAT_PRIOR_COUNT)
    return out


# --------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------


def _check_bootstrap(n_boot: int, rng, level: float) -> None:
    """Refuse a negative resample count, a missing rng or a level outside (0, 1)."""
    if n_boot < 0 or int(n_boot) != n_boot:
        raise IswtError(f"bootstrap resamples must be an integer >= 0 (got {n_boot})")
    if n_boot and rng is None:
        raise IswtError("bootstrap needs a seeded numpy Generator (rng)")
    if not 0.0 < level < 1.0:
        raise IswtError(f"bootstrap level must be in (0, 1) (got {level})")


def _bootstrap_rows(rows: np.ndarray, ratio_rows: np.ndarray, estimate, n_boot: int, rng, level: float):
    """Percentile interval of log Z_hat for each row of (R, K) log-weights and the same samples' log-ratios.

    Resamples K indices with replacement n_boot times per row and applies
    ``estimate(lw, lr)`` (over the last axis) to each draw, the ratios drawn
    with their samples; rows are taken in order and in chunks, so one rng
    gives reproducible results.
    """
    n_rows, k = rows.shape
    quantiles = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
    lo = np.empty(n_rows)
    hi = np.empty(n_rows)
    step = max(1, _CHUNK_ELEMENTS // (n_boot * k))
    for start in range(0, n_rows, step):
        block = slice(start, start + step)
        idx = rng.integers(0, k, size=(rows[block].shape[0], n_boot, k))
        log_z = estimate(
            np.take_along_axis(rows[block, None, :], idx, axis=2),
            np.take_along_axis(ratio_rows[block, None, :], idx, axis=2),
        )
        lo[block], hi[block] = np.quantile(log_z, quantiles, axis=1)
    return lo, hi


def _logsumexp_last(values: np.ndarray) -> np.ndarray:
    """logsumexp over the last axis, shifted by its max."""
    peak = values.max(axis=-1, keepdims=True)
    return peak[..., 0] + np.log(np.exp(values - peak).sum(axis=-1))


def control_variate(lr: np.ndarray, tilt: np.ndarray, floor=None, ceiling=None) -> tuple[np.ndarray, np.ndarray]:
    """log of the regression estimate of Z over the last axis, and its delta-method se.

    With rho = e^lr and f = e^tilt (tilt = beta r), Z_hat = mean(rho f) -
    c (mean(rho) - 1), c = Cov(rho f, rho) / Var(rho): E_q[rho] = 1 is known,
    so the sample's error in mean(rho) is subtracted in proportion to how
    much mean(rho f) moves with it. c = 0 is plain IS; c = Z is, to first
    order, the self-normalized estimate; the regression picks c from the
    data. Computed with rho and f scaled by their row maxima (no overflow);
    with equal ratios it is the mean of f. It can leave the bounds, so it is
    cut to [floor, ceiling] (log units; default the row's own range of
    tilt). se: the residuals rho f - c rho, sd / sqrt(K) / Z_hat.
    """
    k = lr.shape[-1]
    a = np.minimum(lr.max(axis=-1, keepdims=True), 700.0)
    b = tilt.max(axis=-1, keepdims=True)
    rho, f = np.exp(lr - a), np.exp(tilt - b)
    g = rho * f
    rho_bar, g_bar = rho.mean(axis=-1, keepdims=True), g.mean(axis=-1, keepdims=True)
    spread = rho - rho_bar
    var = (spread * spread).sum(axis=-1, keepdims=True)
    c = np.divide((spread * (g - g_bar)).sum(axis=-1, keepdims=True), var, out=np.zeros_like(var), where=var > 0)
    scaled = np.where(var > 0, np.exp(a) * (g_bar - c * rho_bar) + c, g_bar / rho_bar)  # Z_hat / e^b
    low = np.exp(tilt.min(axis=-1, keepdims=True) - b) if floor is None else np.exp(floor - b)
    high = 1.0 if ceiling is None else np.exp(ceiling - b)
    scaled = np.clip(scaled, low, high)
    residual = np.exp(a) * (g - c * rho)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = (
            residual.std(axis=-1, ddof=1) / math.sqrt(k) / scaled[..., 0]
            if k > 1
            else np.full(scaled[..., 0].shape, np.nan)
        )
    return (b + np.log(scaled))[..., 0], se


def _row_estimator(estimator: str, bounds=None):
    """``estimate(lw, lr)``: log Z_hat over the last axis of log-weights and log-ratios, for `_bootstrap_rows`."""
    if estimator == "is":
        return lambda lw, lr: _logsumexp_last(lw) - math.log(lw.shape[-1])
    if estimator == "snis":
        return lambda lw, lr: _logsumexp_last(lw) - _logsumexp_last(lr)
    floor, ceiling = (None, None) if bounds is None else bounds
    return lambda lw, lr: control_variate(lr, lw - lr, floor, ceiling)[0]


def unseen_mass_bound(n_samples: np.ndarray, level: float) -> np.ndarray:
    """Largest share of q's mass that K draws can all have missed: 1 - ((1 - level)/2)^(1/K).

    The exact one-sided binomial bound at (1 + level)/2 for zero events in K
    trials: about 3.7/K for a 95% interval (the rule of three, 3/K, is the
    one-sided 95% bound).
    """
    return 1.0 - ((1.0 - level) / 2.0) ** (1.0 / np.asarray(n_samples, dtype=np.float64))


def widen_for_unseen_rewards(lo, hi, lw, reward, starts, counts, reward_bounds, beta: float, level: float):
    """Widen each group's interval (lo, hi) by the rewards its K samples may have missed.

    K draws can all miss a share p of q's mass (`unseen_mass_bound`), and
    that share may hold any reward in ``reward_bounds`` (the lowest and
    highest reward of the artifact). Z is a mixture, so the upper end
    becomes (1 - p) e^hi + p w_top e^{beta (r_max - r_top)}, with w_top the
    largest weight among the samples of the highest reward seen (its
    log-ratio stands in for the unseen response's), and the lower end
    likewise toward r_min; an end only ever moves outward.

    Without it, a prompt whose K samples all earned the same reward gets an
    interval of zero width (equal weights: the bootstrap and the delta
    method see no spread), and one whose samples missed a rare, highly
    rewarded response a confidently low one. On the answer-set prompts at
    K = 8 the +-1.96 se interval covered the exact log Z 75% of the time
    (examples/log_z_coverage.py), this one 99%: conservative, because the
    artifact's highest reward stands for every prompt's, and many prompts
    cannot earn it. Widening only the all-equal prompts covered 93-94%
    there, but 64% on a prompt with a rare answer of the top reward.
    """
    group = np.repeat(np.arange(counts.size), counts)
    r_top = np.maximum.reduceat(reward, starts)
    r_bottom = np.minimum.reduceat(reward, starts)
    lw_top = np.maximum.reduceat(np.where(reward == r_top[group], lw, -np.inf), starts)
    lw_bottom = np.minimum.reduceat(np.where(reward == r_bottom[group], lw, np.inf), starts)
    p = unseen_mass_bound(counts, level)
    stay, miss = np.log1p(-p), np.log(p)
    widest_hi = np.logaddexp(stay + hi, miss + lw_top + beta * (reward_bounds[1] - r_top))
    widest_lo = np.logaddexp(stay + lo, miss + lw_bottom + beta * (reward_bounds[0] - r_bottom))
    return np.minimum(lo, widest_lo), np.maximum(hi, widest_hi)


def widen_for_unvisited_mass(lo, hi, log_mean_ratio, reward_bounds, beta: float):
    """Widen a self-normalized interval (lo, hi) by the share of pi_ref's mass the samples did not reach.

    E_q[pi_ref/q] = 1, so a sample whose ratios average m < 1 accounted for
    only m of pi_ref's mass; the self-normalized estimate spreads what it saw
    over the rest, but that share d = 1 - m may hold any reward in
    ``reward_bounds``. Z is a mixture, so the upper end becomes
    (1 - d) e^hi + d e^{beta r_max} and the lower (1 - d) e^lo + d e^{beta
    r_min}; with m >= 1 nothing moves. Over long sequences from a proposal
    that is not pi_ref, m is routinely e^-3 (the ratios' heavy right tail is
    never drawn) and the interval honestly spans most of the bounds.
    """
    deficit = np.clip(-np.expm1(log_mean_ratio), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        stay, miss = np.log1p(-deficit), np.log(deficit)
    lowest = np.logaddexp(stay + lo, miss + beta * reward_bounds[0])
    highest = np.logaddexp(stay + hi, miss + beta * reward_bounds[1])
    return np.minimum(lo, lowest), np.maximum(hi, highest)


# --------------------------------------------------------------------------
# Grouped driver
# --------------------------------------------------------------------------


def _group_layout(group_ids: np.ndarray):
    """Unique ids, a stable order that makes groups contiguous, their starts and sizes."""
    if np.all(group_ids[1:] >= group_ids[:-1]):  # already grouped in ascending order (the stages' case): no sort
        starts = np.flatnonzero(np.r_[True, group_ids[1:] != group_ids[:-1]])
        counts = np.diff(np.r_[starts, group_ids.size])
        return group_ids[starts], np.arange(group_ids.size), starts, counts
    unique, inverse, counts = np.unique(group_ids, return_inverse=True, return_counts=True)
    order = np.argsort(inverse.ravel(), kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return unique, order, starts, counts


def _rows_of_size(values: np.ndarray, starts: np.ndarray, groups: np.ndarray, size: int) -> np.ndarray:
    """Gather the groups ``groups`` (all of ``size`` elements) as an (R, size) matrix."""
    return values[starts[groups][:, None] + np.arange(size)[None, :]]


def _flag_bits(**on) -> np.ndarray:
    """Each group's flags as bits (bit i: FLAG_NAMES[i]); each flag a bool or a per-group array."""
    bits = np.zeros(len(on["low_ess"]), dtype=np.int64)
    for i, name in enumerate(FLAG_NAMES):
        bits |= np.asarray(on.get(name, False), dtype=np.int64) << i
    return bits


def _estimate_sorted(
    lw,
    lr,
    starts,
    counts,
    all_equal,
    *,
    estimator,
    n_boot,
    rng,
    boot_level,
    low_ess_frac,
    weight_mass_nats,
    unseen=None,
    sampler_mismatch=False,
):
    """All per-group columns for group-contiguous log-weights and log-ratios (groups of >= 2 samples).

    ``lr`` is None when every log-ratio is exactly 0 (q is pi_ref). ``unseen``,
    when given, is (rewards, reward_bounds, beta): the interval is widened by
    `widen_for_unseen_rewards` (and, self-normalized, `widen_for_unvisited_mass`),
    then cut to beta * reward_bounds, which no Z can leave, and an estimate
    outside them is flagged.
    """
    ratios = np.zeros_like(lw) if lr is None else lr
    stats = _segment_stats(lw, ratios, starts, counts, estimator)
    # snis and cv lean on the ratios' known mean of 1; with a log-ratio of exactly 0 all three are plain IS
    uses_ratio_mean = estimator != "is" and lr is not None
    log_bounds = None if unseen is None else (unseen[2] * unseen[1][0], unseen[2] * unseen[1][1])
    estimate = _row_estimator(estimator, log_bounds)
    n_groups = counts.size
    khat = np.full(n_groups, np.nan)
    notes = np.full(n_groups, "", dtype=object)
    ratio_khat = np.full(n_groups, np.nan)
    booted = np.zeros(n_groups, dtype=bool)
    lo, hi = np.empty(n_groups), np.empty(n_groups)
    for size in np.unique(counts):
        groups = np.nonzero(counts == size)[0]
        rows = _rows_of_size(lw, starts, groups, int(size))
        ratio_rows = _rows_of_size(ratios, starts, groups, int(size))
        khat[groups], notes[groups] = _khat_rows(np.sort(rows, axis=1))
        if lr is not None:
            ratio_khat[groups] = _khat_rows(np.sort(ratio_rows, axis=1))[0]
        if estimator == "cv":
            stats["log_z"][groups], stats["log_z_se"][groups] = control_variate(
                ratio_rows, rows - ratio_rows, *(log_bounds or (None, None))
            )
        if n_boot:
            lo[groups], hi[groups] = _bootstrap_rows(rows, ratio_rows, estimate, n_boot, rng, boot_level)
            booted[groups] = True
    half_width = NormalDist().inv_cdf((1.0 + boot_level) / 2.0) * stats["log_z_se"]
    lo = np.where(booted, lo, stats["log_z"] - half_width)
    hi = np.where(booted, hi, stats["log_z"] + half_width)
    outside = np.zeros(n_groups, dtype=bool)
    if unseen is not None:
        rewards, bounds, beta = unseen
        # snis is plain IS on weights whose ratios average 1 in the sample; cv is read as it
        shift = np.repeat(stats["log_mean_ratio"], counts) if uses_ratio_mean else 0.0
        lo, hi = widen_for_unseen_rewards(lo, hi, lw - shift, rewards, starts, counts, bounds, beta, boot_level)
        if uses_ratio_mean:
            lo, hi = widen_for_unvisited_mass(lo, hi, stats["log_mean_ratio"], bounds, beta)
        floor, ceiling = beta * bounds[0], beta * bounds[1]
        lo, hi = np.clip(lo, floor, ceiling), np.clip(hi, floor, ceiling)
        outside = (stats["log_z"] < floor - BOUND_TOLERANCE) | (stats["log_z"] > ceiling + BOUND_TOLERANCE)
    threshold = khat_threshold(counts)
    bits = _flag_bits(
        low_ess=stats["ess_frac"] < low_ess_frac,
        high_khat=np.nan_to_num(khat, nan=-np.inf) > threshold,
        weight_mass_off=np.abs(stats["log_mean_ratio"]) > weight_mass_nats,
        high_ratio_khat=np.nan_to_num(ratio_khat, nan=-np.inf) > threshold,
        outside_reward_bounds=outside,
        all_equal_rewards=all_equal,
        sampler_mismatch=sampler_mismatch,
    )
    return dict(
        stats,
        n_samples=counts.copy(),
        khat=khat,
        khat_note=notes,
        ratio_khat=ratio_khat,
        log_z_lo=lo,
        log_z_hi=hi,
        flag_bits=bits,
    )


def estimate_groups(
    group_ids,
    lw,
    *,
    log_ratio=None,
    estimator: str = ESTIMATORS[0],
    rewards=None,
    n_boot: int = 0,
    rng: np.random.Generator | None = None,
    boot_level: float = 0.95,
    sampler_mismatch=None,
    low_ess_frac: float = LOW_ESS_FRAC,
    weight_mass_nats: float = WEIGHT_MASS_NATS,
    reward_bounds: tuple[float, float] | None = None,
    beta: float | None = None,
) -> ZTable:
    """Estimate log Z and its diagnostics for every group (prompt) at once.

    ``group_ids`` and ``lw`` have one entry per sample, in any order; results
    come in ascending group-id order. ``log_ratio`` (log pi_ref - log q, the
    part of ``lw`` that is not beta * r) is None when it is exactly 0; then
    both estimators give the same numbers. With ``rewards`` the
    all_equal_rewards flag is set where a group's rewards are all equal. With
    ``n_boot`` > 0, bootstrap intervals are drawn from ``rng`` group by group
    in that order, so the same rng and input give the same intervals. Every
    group needs at least 2 samples. ``sampler_mismatch``, when given, is one
    bool per group in the order of the results.

    The interval (``log_z_lo``, ``log_z_hi``) is the bootstrap's with
    ``n_boot`` > 0 (each draw estimated as the whole is), else log Z_hat
    +- the normal quantile times the delta-method se. With ``rewards``,
    ``reward_bounds`` (the lowest and highest reward any sample could earn,
    as far as the caller knows) and ``beta`` it is widened by the rewards the
    samples may have missed (`widen_for_unseen_rewards`), for ``snis`` and ``cv`` by the
    share of pi_ref's mass they did not reach (`widen_for_unvisited_mass`),
    and cut to [beta * lowest, beta * highest].
    """
    if estimator not in ESTIMATORS:
        raise IswtError(f"estimator {estimator!r}: must be one of {', '.join(ESTIMATORS)}")
    lw = _finite_array(lw, "log-weights")
    group_ids = np.asarray(group_ids)
    if group_ids.shape != lw.shape:
        raise IswtError("group ids and log-weights must have one value per sample")
    if lw.size == 0:
        raise IswtError("no samples to estimate log Z from")
    if log_ratio is not None:
        log_ratio = _finite_array(log_ratio, "log-ratios")
        if log_ratio.shape != lw.shape:
            raise IswtError("log-ratios and log-weights must have one value per sample")
    _check_bootstrap(n_boot, rng, boot_level)
    unique, order, starts, counts = _group_layout(group_ids)
    if counts.min() < 2:
        bad = unique[int(np.argmin(counts))]
        raise IswtError(f"group {_shown(bad)} has 1 sample; estimating log Z needs at least 2 per prompt")
    all_equal = np.zeros(counts.size, dtype=bool)
    if rewards is not None:
        r = _finite_array(rewards, "reward")
        if r.shape != lw.shape:
            raise IswtError("rewards and log-weights must have one value per sample")
        r = r[order]
        all_equal = _equal_within(r, starts)
    unseen = None
    if reward_bounds is not None:
        if rewards is None or beta is None:
            raise IswtError("reward_bounds needs the rewards and beta")
        unseen = (r, reward_bounds, _positive(beta, "beta"))
    columns = _estimate_sorted(
        lw[order],
        None if log_ratio is None else log_ratio[order],
        starts,
        counts,
        all_equal,
        estimator=estimator,
        n_boot=n_boot,
        rng=rng,
        boot_level=boot_level,
        low_ess_frac=low_ess_frac,
        weight_mass_nats=weight_mass_nats,
        unseen=unseen,
        sampler_mismatch=False if sampler_mismatch is None else sampler_mismatch,
    )
    return ZTable(group_id=unique, **columns)
