"""What a samples artifact proves about its proposal q, and how q's numerics compare to the reference.

Pure functions over provenance records and arrays; `iswt estimate-z` calls
them, and so can anything else that needs the same decisions.

Three facts about q come from the samples' provenance:

- ``tempered``: sampled at a temperature other than 1 (and above 0). q is
  not pi_ref, but its support is pi_ref's: with logprob_ref the estimate of
  Z stays unbiased.
- ``truncated``: top-p < 1, top-k > 0, or greedy (temperature 0). q misses
  part of pi_ref's support, so Z is underestimated whatever the log-ratio.
- ``zero_log_ratio``: log pi_ref - log q is exactly 0 for every sample, so
  no reference pass is needed. That holds only when q *is* the reference
  computed by the reference's own code: temperature 1, no truncation, the
  transformers backend (the family whose teacher-forced pass `score
  --ref-model` and `train` use for pi_ref), in the reference's dtype
  (float32), with the sampler's own weights and adapter. A vLLM sampler, or
  any sampler in bfloat16, computes other numbers even at temperature 1.

The sampler gap: when the samples' raw log-probs (``logprob_model``, the
sampler's engine at temperature 1) and teacher-forced ``logprob_ref`` come
from the same weights and adapter, their difference is pure numerics (engine,
dtype, kernels, batch shape). Its per-prompt statistics show the
rollout/training mismatch that online RL toolkits correct on the fly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The dtype in which `score --ref-model` and `train` hold the reference model.
REFERENCE_DTYPE = "float32"
#: The backend whose numerics are the reference's (one teacher-forced transformers code path).
REFERENCE_BACKEND = "hf"
#: Default per-sequence |logprob_model - logprob_ref| (nats) past which a prompt is flagged.
MISMATCH_THRESHOLD = 0.05
# What estimate-z records as the log-ratio it used (read back by the report).
LOG_RATIO_ZERO = "zero: the proposal is the reference sampled at temperature 1 without truncation"
LOG_RATIO_REF = "logprob_ref - logprob_q"


def describe(provenance: dict[str, Any]) -> dict[str, Any]:
    """The proposal's sampling settings and what they prove, from a samples provenance record.

    Returns a JSON-able dict: temperature, top_p, top_k, backend, dtype (None
    when unrecorded), ``untruncated`` (temperature 1 with full support),
    ``tempered``, ``truncated``, ``zero_log_ratio`` and ``why`` (one phrase
    saying what decided ``zero_log_ratio``), plus ``known`` (whether the
    provenance records the sampling settings at all).
    """
    sampling = provenance.get("sampling") or {}
    config = provenance.get("config") or {}
    known = "untruncated" in sampling or bool({"temperature", "top_p", "top_k"} & config.keys())
    temperature = float(config.get("temperature", 1.0))
    top_p = float(config.get("top_p", 1.0))
    top_k = int(config.get("top_k") or 0)
    backend = sampling.get("backend", config.get("backend"))
    dtype = sampling.get("dtype", config.get("dtype"))
    if dtype is None and backend == "hf":
        # before --dtype the transformers backend always loaded float32
        dtype = REFERENCE_DTYPE
    truncated = bool(known and (top_p < 1.0 or top_k > 0 or temperature == 0))
    tempered = bool(known and temperature not in (0.0, 1.0))
    untruncated = sampling.get("untruncated") is True and temperature == 1.0 and top_p >= 1.0 and top_k == 0
    settings = f"temperature {temperature:g}, top_p {top_p:g}, top_k {top_k}"

    if not known:
        zero, why = False, "its provenance does not record how it was sampled"
    elif not untruncated:
        zero, why = False, f"q is not the model itself ({settings})"
    elif backend is None:
        zero, why = False, "its provenance does not record the sampling backend"
    elif backend != REFERENCE_BACKEND:
        zero, why = (
            False,
            (
                f"it was sampled with --backend {backend}, whose numerics are not the reference's "
                f"(transformers, {REFERENCE_DTYPE})"
            ),
        )
    elif dtype != REFERENCE_DTYPE:
        zero, why = False, f"it was sampled in {dtype}, the reference is held in {REFERENCE_DTYPE}"
    else:
        zero, why = True, f"temperature 1, no truncation, --backend {backend} in {dtype}"
    return {
        "known": known,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "backend": backend,
        "dtype": dtype,
        "untruncated": bool(untruncated),
        "tempered": tempered,
        "truncated": truncated,
        "zero_log_ratio": zero,
        "why": why,
    }


def _adapter_hash(identity: dict[str, Any]) -> str | None:
    adapter = identity.get("adapter")
    return adapter.get("weights_sha256") if isinstance(adapter, dict) else None


def same_model(samples_provenance: dict[str, Any], scores_provenance: dict[str, Any]) -> tuple[bool, str]:
    """Whether the samples' model and the scores' reference share weights and adapter, and why (not)."""
    sampler = samples_provenance.get("model") or {}
    reference = scores_provenance.get("model") or {}
    if not reference:
        return False, "the scores' provenance names no reference model"
    if not sampler:
        return False, "the samples' provenance names no model"
    if not sampler.get("weights_sha256") or sampler.get("weights_sha256") != reference.get("weights_sha256"):
        return False, "the reference's weights differ from the sampler's"
    if _adapter_hash(sampler) != _adapter_hash(reference):
        return False, "the reference's adapter differs from the sampler's"
    return True, "same weights and adapter"


def sampler_gap(
    group: np.ndarray, n_groups: int, logprob_model, logprob_ref, threshold: float
) -> dict[str, np.ndarray]:
    """Per-prompt statistics of d = logprob_model - logprob_ref (sequence sums, nats).

    ``group`` numbers each sample's prompt 0..n_groups-1. Returns arrays of
    length n_groups: ``mean`` (signed mean of d), ``mean_abs``, ``max_abs``
    and ``flagged`` (max |d| > threshold).
    """
    group = np.asarray(group)
    d = np.asarray(logprob_model, dtype=np.float64) - np.asarray(logprob_ref, dtype=np.float64)
    counts = np.bincount(group, minlength=n_groups).astype(np.float64)
    safe = np.maximum(counts, 1.0)
    mean = np.bincount(group, weights=d, minlength=n_groups) / safe
    mean_abs = np.bincount(group, weights=np.abs(d), minlength=n_groups) / safe
    max_abs = np.zeros(n_groups)
    np.maximum.at(max_abs, group, np.abs(d))
    return {"mean": mean, "mean_abs": mean_abs, "max_abs": max_abs, "flagged": max_abs > threshold}


def gap_plan(samples_provenance: dict[str, Any], scores_provenance: dict[str, Any], has_ref: bool) -> tuple[bool, str]:
    """Whether the sampler gap can be measured (both log-probs exist for the same model), and why (not)."""
    if not has_ref:
        return False, "the scores have no logprob_ref"
    return same_model(samples_provenance, scores_provenance)


def gap_columns(gap: dict[str, np.ndarray] | None, n_groups: int) -> dict[str, np.ndarray]:
    """The z artifact's per-prompt gap columns; NaN where the gap was not measured."""
    if gap is None:
        empty = np.full(n_groups, np.nan)
        return {"sampler_gap_mean": empty, "sampler_gap_max": empty.copy()}
    return {"sampler_gap_mean": gap["mean"], "sampler_gap_max": gap["max_abs"]}


def gap_report(gap: dict[str, np.ndarray] | None, why: str, threshold: float) -> dict[str, Any]:
    """The gap in a few numbers, for the z provenance and summary."""
    if gap is None:
        return {"compared": False, "why": why}
    return {
        "compared": True,
        "threshold": threshold,
        "median |gap|": float(np.median(gap["mean_abs"])),
        "max |gap|": float(gap["max_abs"].max()),
        "mean gap": float(gap["mean"].mean()),
        "prompts flagged": int(gap["flagged"].sum()),
    }
