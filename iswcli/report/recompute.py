"""Reading what a section shows: artifact columns, eval summaries, and the per-sample log-weights and iso pair weights recomputed from an artifact's inputs when they are still on disk and unchanged."""

from __future__ import annotations

import glob as globlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iswcli import artifacts, estimators, pairing
from iswcli.chain import load_scored
from iswcli.errors import IswtError
from iswcli.proposal import LOG_RATIO_REF
from iswcli.report.discovery import Found, Source


def read_source(found: Found, source: Source, spec: artifacts.ArtifactSpec, columns):
    """The artifact, or None with a note: one bad artifact should not sink the whole report."""
    try:
        art = artifacts.read_artifact(source.path, spec, columns=columns)
    except IswtError as exc:
        found.notes.append(f"{exc}; skipped")
        return None
    source.sha256 = art.sha256
    return art


def read_columns(path: str, kind: str, columns) -> tuple[pa.Table, str]:
    """Just the named columns of an artifact, and its hash.

    For eval and diversity, whose schemas grow with their stages: the report
    needs only these columns, so it does not insist on the rest.
    """
    files = artifacts.resolve_files(path)
    for file in files:
        names = artifacts.read_metadata(file)[0].names
        missing = [c for c in columns if c not in names]
        if missing:
            raise IswtError(f"{file}: column '{missing[0]}' is missing (required in {kind})")
    tables = [artifacts.read_rows(f, list(columns)) for f in files]
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    return table, artifacts.combined_sha256(files)


def eval_summary(path: str, sha256: str) -> tuple[dict, str]:
    """Pooled metrics from the OUT.summary.json that `iswt evaluate` writes beside OUT, and a note.

    A summary whose recorded sha256 is not the artifact's belongs to an older
    version of it, so its numbers are left out rather than shown beside new bars.
    """
    candidate = Path(path).with_suffix(".summary.json")
    if not candidate.is_file():
        return {}, ""
    try:
        summary = json.loads(candidate.read_text())
    except (OSError, ValueError) as exc:
        return {}, f"{candidate}: not readable JSON ({exc}); its pooled metrics are left out."
    if summary.get("sha256") not in (None, sha256):
        return {}, f"{candidate}: written for another version of {path} (sha256 differs); its metrics are left out."
    pooled = summary.get("pooled", summary)
    return {k: v for k, v in pooled.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}, ""


def _input_path(source: Source, role: str) -> tuple[str | None, str]:
    """Where the input `role` of an artifact lies now, and the hash it had; None when it is gone.

    Provenance records paths as given on the command line, so they are tried
    as they are and then beside the artifact (a pipeline directory moved or
    read from elsewhere); the caller checks the hash before trusting a match.
    """
    ref = (source.provenance.get("inputs") or {}).get(role) or {}
    recorded = ref.get("path")
    if not recorded:
        return None, ""
    beside = Path(source.path).parent
    for candidate in (recorded, str(beside / recorded), str(beside / Path(recorded).name)):
        if os.path.exists(candidate) or (globlib.has_magic(candidate) and globlib.glob(candidate)):
            return candidate, ref.get("sha256", "")
    return None, ref.get("sha256", "")


def relative_log_weights(source: Source, z_table: pa.Table) -> tuple[np.ndarray | None, str]:
    """lw - log Z_hat of every sample behind a z artifact, recomputed from its inputs.

    The z artifact keeps per-prompt numbers only; the per-sample weights need
    the proposal and scores it was made from, unchanged (same sha256).
    """
    proposal, proposal_sha = _input_path(source, "proposal")
    scores, scores_sha = _input_path(source, "scores")
    if proposal is None or scores is None:
        return None, f"{source.label}: its proposal or scores input is not on disk; log-weights not recomputed."
    prov = source.provenance
    config = prov.get("config") or {}
    use_ref = prov.get("log_ratio") == LOG_RATIO_REF
    try:
        scored = load_scored(
            proposal,
            scores,
            sample_columns=["logprob_q"] if use_ref else [],
            score_columns=["reward", "logprob_ref"] if use_ref else ["reward"],
            purpose="recomputing log-weights",
        )
    except IswtError as exc:
        return None, f"{source.label}: log-weights not recomputed ({exc})."
    if (scored.samples.sha256, scored.scores.sha256) != (proposal_sha, scores_sha):
        return (
            None,
            f"{source.label}: {proposal} or {scores} changed since log Z was estimated; log-weights not recomputed.",
        )
    reward = float_column(scored.table, "reward")
    if config.get("reward_transform") == "group-zscore":
        reward = estimators.group_zscore(reward, scored.group)
    beta = float(config.get("beta", prov.get("beta", 1.0)))
    if use_ref:
        lw = estimators.log_weights(
            float_column(scored.table, "logprob_ref"), float_column(scored.table, "logprob_q"), reward, beta
        )
    else:
        lw = estimators.log_weights(None, None, reward, beta)
    position = pc.index_in(scored.prompt_ids, value_set=z_table["prompt_id"].combine_chunks())
    if position.null_count:
        return None, f"{source.label}: its inputs hold prompts it does not; log-weights not recomputed."
    log_z = float_column(z_table, "log_z")[position.to_numpy()]
    return lw - log_z[scored.group], ""


def iso_series(source: Source, gammas) -> tuple[list, str]:
    """Iso weights of the pairs' scores at each gamma, as (label, relative weights, ESS/pairs) series."""
    scores, scores_sha = _input_path(source, "scores")
    if scores is None:
        return [], f"{source.label}: its scores input is not on disk; only the stored weights are shown."
    try:
        art = artifacts.read_artifact(scores, artifacts.SCORES, columns=["reward"])
    except IswtError as exc:
        return [], f"{source.label}: weights not recomputed ({exc})."
    if art.sha256 != scores_sha:
        return [], f"{source.label}: {scores} changed since the pairs were made; only the stored weights are shown."
    config = source.provenance.get("config") or {}
    options = {
        # the same candidate pairs as the stored artifact: same scheme, seed and cap
        "pairing": source.provenance.get("pairing") or config.get("pairing") or "all",
        "max_pairs_per_prompt": config.get("max_pairs_per_prompt"),
    }
    codes, _ = prompt_codes(art.table)
    sample_idx = art.table["sample_idx"].to_numpy()
    reward = float_column(art.table, "reward")
    series = []
    for gamma in gammas:
        try:
            table = pairing.weight_pairs(
                codes,
                sample_idx,
                reward,
                method="iso",
                gamma=gamma,
                rng=np.random.default_rng(config.get("seed", 0)),
                **options,
            )
        except IswtError as exc:
            return series, f"{source.label}: iso weights not recomputed ({exc})."
        series.append((f"iso γ={gamma:g}", *relative_weights(table.prompt_id, table.weight)))
    return series, ""


def relative_weights(codes: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pair log10(weight x pairs in its prompt); per prompt Kish ESS / pairs and the heaviest pair's share."""
    pairs = np.bincount(codes)
    total = np.bincount(codes, weights=weight)
    square = np.bincount(codes, weights=weight * weight)
    heaviest = np.zeros(pairs.size)
    np.maximum.at(heaviest, codes, weight)
    kept = pairs > 0
    with np.errstate(divide="ignore"):
        relative = np.log10(weight * pairs[codes])
    return relative, (total[kept] ** 2 / square[kept]) / pairs[kept], heaviest[kept] / total[kept]


def prompt_codes(table: pa.Table) -> tuple[np.ndarray, int]:
    """Each row's prompt as its rank 0..P-1 in prompt_id order.

    prompt_id order is also the order in which `iswt weight-pairs` numbers
    prompts for the pairing driver.
    """
    codes, distinct = artifacts.rank_strings(table["prompt_id"])
    return codes, len(distinct)


def group_mean(codes: np.ndarray, n_groups: int, values: np.ndarray) -> np.ndarray:
    """Mean of the finite values per group; NaN for a group with none."""
    ok = np.isfinite(values)
    sums = np.bincount(codes[ok], weights=values[ok], minlength=n_groups)
    counts = np.bincount(codes[ok], minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def float_column(table: pa.Table, name: str) -> np.ndarray:
    """A numeric or boolean column as float64, missing values as NaN."""
    column = table[name]
    if not pa.types.is_floating(column.type):
        column = pc.cast(column, pa.float64())
    return column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def interval_arrays(intervals) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.array([getattr(ci, part) for ci in intervals]) for part in ("estimate", "lo", "hi"))
