"""The pipeline's artifacts joined under one rule set.

Every stage that reads more than one artifact comes here: samples and scores
are aligned on (prompt_id, sample_idx) once, by `load_scored`; a z or pairs
artifact is attached to that join by `load_z` / `load_pairs`. Before any heavy
work each check that the artifacts form one chain: the scores were made from
these samples, the z from these samples and scores, the pairs likewise (by
the content hashes their provenance records), and the parameters that must
agree do. Artifacts made outside iswt (no provenance) cannot be traced and
are taken as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iswcli import artifacts
from iswcli.errors import IswtError

KEYS = ["prompt_id", "sample_idx"]

# --------------------------------------------------------------------------
# Provenance: each artifact names the inputs it was made from
# --------------------------------------------------------------------------


def check_made_from(art: artifacts.Artifact, role: str, source: artifacts.Artifact) -> None:
    """``art`` records ``source`` (by content hash) as its ``role`` input, or was made outside iswt."""
    recorded = (art.provenance.get("inputs") or {}).get(role) or {}
    sha = recorded.get("sha256")
    if sha is None or sha == source.sha256:
        return
    raise IswtError(
        f"{art.path}: was made from {role} {recorded.get('path')!r} (sha256 {sha[:12]}), not from "
        f"{source.path} (sha256 {source.sha256[:12]}); give the {role} it was made from, or re-run that stage"
    )


# --------------------------------------------------------------------------
# Samples joined to their scores
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    """Samples joined to their scores, sorted by (prompt_id, sample_idx).

    ``table`` holds the keys and the requested columns of both inputs;
    ``group`` numbers each row's prompt 0..P-1 in ascending prompt_id order,
    ``prompt_ids`` is the prompt_id of each number and ``counts`` its samples.
    """

    samples: artifacts.Artifact
    scores: artifacts.Artifact
    table: pa.Table
    group: np.ndarray
    prompt_ids: pa.Array
    counts: np.ndarray
    key: np.ndarray  # per row, ascending: the prompt number in the high 32 bits, sample_idx in the low

    def key_text(self, row: int) -> str:
        return _key_text(self.table, row)

    def finite(self, column: str, path: str, rule: str) -> np.ndarray:
        """A float column as float64, refusing missing, NaN and infinite values by name and key."""
        values = self.table[column].to_numpy().astype(np.float64, copy=False)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.argmax(bad))
            what = "NaN or missing" if np.isnan(values[row]) else "infinite"
            raise IswtError(
                f"{path}: column '{column}' has {int(bad.sum())} {what} value(s), first at "
                f"({self.key_text(row)}); {rule}"
            )
        return values


def has_column(path: str, column: str) -> bool:
    """Whether every shard of an artifact has ``column``; shards that disagree are an error."""
    files = artifacts.resolve_files(path)
    present = [column in artifacts.read_metadata(f)[0].names for f in files]
    if any(present) and not all(present):
        missing = files[present.index(False)]
        raise IswtError(f"{missing}: column '{column}' is missing, though other shards of {path} have it")
    return all(present)


def load_scored(
    samples_path, scores_path, *, sample_columns, score_columns, purpose: str, min_samples: int = 2
) -> Scored:
    """Read the needed columns of both artifacts and align them row for row.

    The scores must have been made from these samples; every score must have
    its sample and every sample its score (the error names the count and the
    first missing key), and every prompt needs at least ``min_samples``
    samples for ``purpose``.
    """
    # KeyOrder refuses duplicate keys, so the reads skip their own check
    samples = artifacts.read_artifact(samples_path, artifacts.SAMPLES, columns=sample_columns, check_key=False)
    scores = artifacts.read_artifact(scores_path, artifacts.SCORES, columns=score_columns, check_key=False)
    check_made_from(scores, "samples", samples)
    left, right = KeyOrder.of(samples.table, samples_path), KeyOrder.of(scores.table, scores_path)
    if not left.same_keys(right):
        _explain_key_mismatch(samples.table, scores.table, samples_path, scores_path)
    if samples.table.num_rows == 0:
        raise IswtError(f"{samples_path}: holds no samples")
    table = left.apply(samples.table)
    # equal keys: the scores' own key columns add nothing, so only their values are reordered
    values = right.apply(scores.table.drop_columns(KEYS))
    for name in values.column_names:
        table = table.append_column(name, values[name])
    group, prompt_ids = left.group, left.prompt_ids
    counts = np.bincount(group)
    if counts.min() < min_samples:
        first = int(np.argmin(counts))
        raise IswtError(
            f"{samples_path}: prompt {prompt_ids[first].as_py()!r} has {counts[first]} sample; "
            f"{purpose} needs at least {min_samples} samples per prompt"
        )
    return Scored(samples, scores, table, group, prompt_ids, counts, left.key)


@dataclass(frozen=True)
class KeyOrder:
    """How to put a table in (prompt_id, sample_idx) order, and each sorted row's prompt number.

    Sorting a million strings in Arrow is the slow part of a plain sort_by, so
    the strings are dictionary-encoded (a hash pass), only the distinct ones
    are sorted, and the rows are ordered by one int64 key: the prompt's rank
    in the high 32 bits, sample_idx (int32, offset to be >= 0) in the low 32.
    Rows already in order (the usual case for samples) are not moved; after a
    sort a duplicate key shows as two equal neighbours and is refused. Two
    tables hold the same keys exactly when their sorted distinct prompt ids
    and their keys are equal.
    """

    order: np.ndarray | None  # None: already in order
    key: np.ndarray  # per sorted row
    group: np.ndarray  # per sorted row: prompt number 0..P-1 in prompt_id order
    prompt_ids: pa.Array  # per prompt number

    @classmethod
    def of(cls, table: pa.Table, path: str) -> KeyOrder:
        for name in KEYS:
            if table[name].null_count:
                raise IswtError(f"{path}: column '{name}' has {table[name].null_count} missing value(s)")
        if table.num_rows == 0:
            empty = np.zeros(0, dtype=np.int64)
            return cls(None, empty, empty, pa.array([], pa.string()))
        group, prompt_ids = artifacts.rank_strings(table["prompt_id"])
        sample_idx = table["sample_idx"].to_numpy().astype(np.int64)
        key = (group << 32) | (sample_idx + 2**31)  # a fixed offset keeps keys comparable across tables
        if np.all(key[1:] > key[:-1]):
            return cls(None, key, group, prompt_ids)
        order = np.argsort(key)  # keys are unique (or refused below), so stability buys nothing
        key = key[order]
        repeated = np.flatnonzero(key[1:] == key[:-1])
        if repeated.size:
            row = int(order[repeated[0]])
            raise IswtError(f"{path}: duplicate key ({_key_text(table, row)}); each {'/'.join(KEYS)} must appear once")
        return cls(order, key, group[order], prompt_ids)

    def apply(self, table: pa.Table) -> pa.Table:
        return (table if self.order is None else table.take(pa.array(self.order))).combine_chunks()

    def same_keys(self, other: KeyOrder) -> bool:
        return np.array_equal(self.key, other.key) and self.prompt_ids.equals(other.prompt_ids)


def _sorted_by_key(table: pa.Table) -> pa.Table:
    return table.sort_by([(k, "ascending") for k in KEYS])


def _key_text(table: pa.Table, row: int) -> str:
    return ", ".join(f"{k}={table[k][row].as_py()!r}" for k in KEYS)


def _explain_key_mismatch(samples: pa.Table, scores: pa.Table, samples_path: str, scores_path: str) -> None:
    """Say which keys are missing where: scores must cover exactly the samples."""
    problems = []
    orphans = _missing_keys(scores, samples)
    if orphans.num_rows:
        problems.append(
            f"{scores_path}: {orphans.num_rows} score(s) have no matching sample in {samples_path} "
            f"(first: {_key_text(orphans, 0)})"
        )
    unscored = _missing_keys(samples, scores)
    if unscored.num_rows:
        problems.append(
            f"{samples_path}: {unscored.num_rows} sample(s) have no score in {scores_path} "
            f"(first: {_key_text(unscored, 0)})"
        )
    raise IswtError("; ".join(problems) + "; scores must cover exactly the samples")


def _missing_keys(table: pa.Table, other: pa.Table) -> pa.Table:
    """Keys of ``table`` absent from ``other``, sorted."""
    anti = table.select(KEYS).join(other.select(KEYS), keys=KEYS, join_type="left anti")
    return _sorted_by_key(anti)


# --------------------------------------------------------------------------
# z and pairs attached to a join
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class FrozenZ:
    """A z artifact checked against the join: log Z per prompt of the join and the target it was made for."""

    artifact: artifacts.Artifact
    log_z: np.ndarray  # per prompt number of the join
    beta: float
    reward_transform: str  # 'none' or 'group-zscore'


def z_beta(path: str) -> float | None:
    """The one beta a z artifact was estimated at (None when it holds no prompt)."""
    return _one_beta(artifacts.read_artifact(path, artifacts.Z, columns=["beta"]))


def _one_beta(art: artifacts.Artifact) -> float | None:
    if art.table.num_rows == 0:
        return None
    betas = np.unique(art.table["beta"].to_numpy())
    if betas.size != 1 or not np.isfinite(betas[0]):
        raise IswtError(f"{art.path}: column 'beta' must hold one finite value, found {betas.tolist()[:5]}")
    return float(betas[0])


def load_z(path: str, scored: Scored) -> FrozenZ:
    """The z made from exactly these samples and scores, with a finite log Z for every prompt."""
    art = artifacts.read_artifact(path, artifacts.Z, columns=["log_z", "beta"])
    check_made_from(art, "proposal", scored.samples)
    check_made_from(art, "scores", scored.scores)
    position = pc.index_in(scored.prompt_ids, value_set=art.table["prompt_id"].combine_chunks())
    if position.null_count:
        first = scored.prompt_ids.filter(position.is_null())[0].as_py()
        raise IswtError(
            f"{path}: no log_z for {position.null_count} prompt(s) of {scored.samples.path}, first {first!r}"
        )
    rows = position.to_numpy(zero_copy_only=False)
    log_z = art.table["log_z"].to_numpy()[rows].astype(np.float64)
    if not np.all(np.isfinite(log_z)):
        bad = scored.prompt_ids[int(np.argmin(np.isfinite(log_z)))].as_py()
        raise IswtError(f"{path}: log_z is not finite for prompt {bad!r}")
    transform = (art.provenance.get("reward_transform") or {}).get("name", "none")
    return FrozenZ(art, log_z, float(_one_beta(art)), transform)


@dataclass(frozen=True)
class JoinedPairs:
    """A pairs artifact checked against the join: each pair's chosen and rejected row of the join."""

    artifact: artifacts.Artifact
    rows: np.ndarray  # [pairs, 2]: (chosen, rejected) rows of the join
    weight: np.ndarray


def load_pairs(path: str, scored: Scored) -> JoinedPairs:
    """The pairs made from exactly these samples and scores, each side a sample of the join."""
    art = artifacts.read_artifact(path, artifacts.PAIRS, columns=["weight"])
    check_made_from(art, "samples", scored.samples)
    check_made_from(art, "scores", scored.scores)
    if art.table.num_rows == 0:
        raise IswtError(f"{path}: holds no pairs")
    group = pc.index_in(art.table["prompt_id"], value_set=scored.prompt_ids).to_numpy(zero_copy_only=False)
    known = ~np.isnan(group)  # the pair's prompt is in the join
    high = np.where(known, group, 0).astype(np.int64) << 32  # the join's key layout: prompt number, then sample_idx
    sides = []
    for column in ("chosen_idx", "rejected_idx"):
        idx = art.table[column].to_numpy().astype(np.int64)
        key = high | (idx + 2**31)
        row = np.searchsorted(scored.key, key).clip(max=scored.key.size - 1)
        found = known & (scored.key[row] == key)
        if not found.all():
            bad = int(np.argmin(found))
            raise IswtError(
                f"{path}: pair refers to sample (prompt_id={art.table['prompt_id'][bad].as_py()!r}, "
                f"sample_idx={int(idx[bad])}) that is not in {scored.samples.path}"
            )
        sides.append(row)
    weight = art.table["weight"].to_numpy().astype(np.float64)
    if not np.all(np.isfinite(weight)) or np.any(weight < 0):
        raise IswtError(f"{path}: column 'weight' must be finite and >= 0")
    return JoinedPairs(art, np.stack(sides, axis=1), weight)
