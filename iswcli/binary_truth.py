"""The true log Z of a binary reward, from a large sample of the reference itself.

With r in {0, 1}, Z(x) = E_ref[e^{beta r}] = 1 + (e^beta - 1) P_ref(r = 1 | x),
so a large sample of the reference at temperature 1 without truncation pins
log Z down to the binomial uncertainty of P_ref(correct): an exact
Clopper-Pearson interval for P maps to one for log Z at every beta (log Z is
increasing in P). That is a ground truth for any proposal's estimate on
reasoning traces, where no answer set can be enumerated.

`reference_counts` reads and checks the reference's samples and scores;
`against_truth` sets a z artifact's estimates beside the truth. Used by
examples/log_z_truth.py (any user's check of their proposal) and the study
table examples/log_z_reasoning_table.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from iswcli import artifacts, proposal
from iswcli.chain import load_scored
from iswcli.errors import IswtError

#: Bisection steps for the Clopper-Pearson ends: 2^-60 of the unit interval.
_BISECTIONS = 60


@dataclass(frozen=True)
class ReferenceCounts:
    """Per prompt (ascending prompt_id): samples of the reference and how many earned reward 1."""

    prompt_ids: list[str]
    n: np.ndarray
    correct: np.ndarray
    model_sha256: str | None
    max_new_tokens: int | None


def _log_binomial_tail(successes: int, n: int, p: float) -> float:
    """log P(X >= successes) for X ~ Binomial(n, p), by a log-sum over the pmf."""
    if successes <= 0:
        return 0.0
    if successes > n or p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return 0.0
    ks = np.arange(successes, n + 1, dtype=np.float64)
    log_comb = _LGAMMA(n + 1.0) - _LGAMMA(ks + 1.0) - _LGAMMA(n - ks + 1.0)
    terms = log_comb + ks * math.log(p) + (n - ks) * math.log1p(-p)
    peak = terms.max()
    return float(peak + math.log(np.exp(terms - peak).sum()))


_LGAMMA = np.vectorize(math.lgamma, otypes=[np.float64])


def _tail_crossing(successes: int, n: int, log_target: float) -> float:
    """The p in [0, 1] where log P(X >= successes | n, p), increasing in p, crosses ``log_target``."""
    lo, hi = 0.0, 1.0
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2.0
        lo, hi = (lo, mid) if _log_binomial_tail(successes, n, mid) > log_target else (mid, hi)
    return (lo + hi) / 2.0


def clopper_pearson(correct, n, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial interval of P from ``correct`` of ``n`` trials, per entry.

    The lower end is the p at which P(X >= c) = (1 - level)/2 (0 when c = 0),
    the upper the p at which P(X <= c) = (1 - level)/2, that is P(X >= c + 1)
    = (1 + level)/2 (1 when c = n); both tails increase in p, so bisection.
    """
    correct = np.asarray(correct, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    if np.any(n < 1) or np.any((correct < 0) | (correct > n)):
        raise IswtError("clopper_pearson: need 0 <= correct <= n and n >= 1 for every entry")
    low_tail, high_tail = math.log((1.0 - level) / 2.0), math.log((1.0 + level) / 2.0)
    lower, upper = np.zeros(correct.shape), np.ones(correct.shape)
    for i, (c, m) in enumerate(zip(correct.ravel().tolist(), n.ravel().tolist())):
        if c > 0:
            lower.flat[i] = _tail_crossing(c, m, low_tail)
        if c < m:
            upper.flat[i] = _tail_crossing(c + 1, m, high_tail)
    return lower, upper


def log_z_of(p_correct, beta: float) -> np.ndarray:
    """log Z = log(1 + (e^beta - 1) P_ref(correct)) for a reward in {0, 1}."""
    return np.log1p(np.expm1(beta) * np.asarray(p_correct, dtype=np.float64))


def reference_counts(samples_path: str, scores_path: str) -> ReferenceCounts:
    """Each prompt's sample count and correct count, from samples that are the reference itself.

    Refuses samples drawn at another temperature or with truncation (they
    are not pi_ref, so their rate of correct answers is not P_ref) and
    rewards outside {0, 1} (the closed form needs a binary reward).
    """
    provenance = artifacts.read_metadata(artifacts.resolve_files(samples_path)[0])[2]
    facts = proposal.describe(provenance)
    if not facts["untruncated"]:
        raise IswtError(
            f"{samples_path}: not a sample of the reference itself (temperature {facts['temperature']:g}, "
            f"top_p {facts['top_p']:g}, top_k {facts['top_k']}); the truth needs temperature 1 without truncation"
        )
    if (provenance.get("model") or {}).get("adapter"):
        raise IswtError(f"{samples_path}: was sampled with an adapter; the truth needs the reference model itself")
    scored = load_scored(
        samples_path, scores_path, sample_columns=[], score_columns=["reward"], purpose="the reference's P(correct)"
    )
    reward = scored.finite("reward", scores_path, "rewards must be finite numbers")
    if not np.all((reward == 0.0) | (reward == 1.0)):
        raise IswtError(f"{scores_path}: rewards must be 0 or 1 for Z = 1 + (e^beta - 1) P_ref(correct)")
    correct = np.bincount(scored.group, weights=reward, minlength=len(scored.prompt_ids)).astype(np.int64)
    return ReferenceCounts(
        prompt_ids=scored.prompt_ids.to_pylist(),
        n=scored.counts.astype(np.int64),
        correct=correct,
        model_sha256=(provenance.get("model") or {}).get("weights_sha256"),
        max_new_tokens=(provenance.get("config") or {}).get("max_new_tokens"),
    )


def truth_table(counts: ReferenceCounts, beta: float, level: float = 0.95) -> pa.Table:
    """Per prompt: P_ref(correct) with its exact interval, and log Z with the interval it maps to at ``beta``."""
    p_hat = counts.correct / counts.n
    p_lo, p_hi = clopper_pearson(counts.correct, counts.n, level)
    return pa.table(
        {
            "prompt_id": counts.prompt_ids,
            "n_reference": counts.n,
            "correct": counts.correct,
            "p_correct": p_hat,
            "p_lo": p_lo,
            "p_hi": p_hi,
            "beta": np.full(p_hat.size, float(beta)),
            "log_z_true": log_z_of(p_hat, beta),
            "log_z_true_lo": log_z_of(p_lo, beta),
            "log_z_true_hi": log_z_of(p_hi, beta),
        }
    )


def against_truth(z_path: str, counts: ReferenceCounts, level: float = 0.95) -> pa.Table:
    """A z artifact's estimates beside the truth at its beta: error, whether its interval covers, its flags.

    ``covered``: the z's interval holds the truth's point value. Every prompt
    of the z must be in the reference sample, and the z's proposal must come
    from the reference's base model (an adapter on it is fine).
    """
    z = artifacts.read_artifact(z_path, artifacts.Z)
    base = (z.provenance.get("model") or {}).get("weights_sha256")
    if counts.model_sha256 and base and base != counts.model_sha256:
        raise IswtError(f"{z_path}: its proposal's base model is not the model the reference sample came from")
    proposal_path = ((z.provenance.get("inputs") or {}).get("proposal") or {}).get("path")
    if proposal_path and counts.max_new_tokens is not None:
        cap = (artifacts.read_metadata(artifacts.resolve_files(proposal_path)[0])[2].get("config") or {}).get(
            "max_new_tokens"
        )
        if cap is not None and cap != counts.max_new_tokens:
            raise IswtError(
                f"{z_path}: its proposal was cut at {cap} new tokens, the reference sample at "
                f"{counts.max_new_tokens}: the truth is that of the capped reference, so the caps must agree"
            )
    betas = np.unique(z.table["beta"].to_numpy())
    if betas.size != 1:
        raise IswtError(f"{z_path}: column 'beta' must hold one value, found {betas.tolist()[:5]}")
    truth = truth_table(counts, float(betas[0]), level)
    position = {pid: i for i, pid in enumerate(counts.prompt_ids)}
    z_ids = z.table["prompt_id"].to_pylist()
    missing = [pid for pid in z_ids if pid not in position]
    if missing:
        raise IswtError(f"{z_path}: {len(missing)} prompt(s) are not in the reference sample, first {missing[0]!r}")
    rows = pa.array([position[pid] for pid in z_ids])
    out = truth.take(rows)
    log_z = z.table["log_z"].to_numpy()
    lo, hi = z.table["log_z_lo"].to_numpy(), z.table["log_z_hi"].to_numpy()
    true = out["log_z_true"].to_numpy()
    for name, values in {
        "log_z": log_z,
        "log_z_lo": lo,
        "log_z_hi": hi,
        "error": log_z - true,
        "covered": (lo <= true) & (true <= hi),
        "flags": z.table["flags"],
    }.items():
        out = out.append_column(name, pa.array(values) if not isinstance(values, pa.ChunkedArray) else values)
    return out
