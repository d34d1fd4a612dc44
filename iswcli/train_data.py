"""Training data: join samples, scores, z and pairs into flat arrays, with checks.

Everything here is plain Python/numpy on the artifacts' columns, so every
join rule fails with a message naming the file and the first bad key before
any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from iswcli import artifacts
from iswcli.errors import IswtError
from iswcli.estimators import group_zscore

SAMPLE_COLUMNS = ["prompt_token_ids", "response_token_ids", "token_logprobs_q", "logprob_q"]


@dataclass
class TrainData:
    """One entry per sample (in the samples artifact's order) plus the index of training examples."""

    prompt_ids: list[str]
    sample_idx: np.ndarray
    prompt_tokens: list[list[int]]
    response_tokens: list[list[int]]
    token_logq: list[list[float]]
    reward: np.ndarray
    logprob_ref: np.ndarray | None  # from scores, when present
    prompt_index: np.ndarray  # dense 0..P-1 per sample
    prompt_names: list[str]  # prompt_index -> prompt_id
    log_z: np.ndarray | None = None  # per prompt_index (frozen Z)
    advantage: np.ndarray | None = None  # group z-scored rewards (grpo/gspo)
    examples: np.ndarray | None = None  # rows (samples) or (chosen, rejected) pairs
    pair_weight: np.ndarray | None = None

    @property
    def n_tokens(self) -> np.ndarray:
        return np.array([len(r) for r in self.response_tokens])


def load(samples: artifacts.Artifact, scores: artifacts.Artifact) -> TrainData:
    """Samples joined with their scores; every sample needs exactly one score."""
    s = samples.table
    keys = list(zip(s.column("prompt_id").to_pylist(), s.column("sample_idx").to_pylist()))
    score_rows = scores.table.to_pydict()
    score_of = {
        (p, i): row
        for row, (p, i) in enumerate(zip(score_rows["prompt_id"], score_rows["sample_idx"]))
    }
    missing = [k for k in keys if k not in score_of]
    if missing:
        raise IswtError(
            f"{scores.path}: no score for {len(missing)} sample(s) of {samples.path}, first {missing[0]}"
        )
    order = [score_of[k] for k in keys]
    reward = np.asarray(score_rows["reward"], dtype=np.float64)[order]
    bad = np.flatnonzero(~np.isfinite(reward))
    if bad.size:
        raise IswtError(f"{scores.path}: reward is not finite for sample {keys[bad[0]]}")
    logprob_ref = None
    if "logprob_ref" in score_rows:
        logprob_ref = np.asarray(score_rows["logprob_ref"], dtype=np.float64)[order]

    prompt_ids = [k[0] for k in keys]
    names, prompt_index = np.unique(np.asarray(prompt_ids, dtype=object), return_inverse=True)
    return TrainData(
        prompt_ids=prompt_ids,
        sample_idx=np.asarray([k[1] for k in keys]),
        prompt_tokens=s.column("prompt_token_ids").to_pylist(),
        response_tokens=s.column("response_token_ids").to_pylist(),
        token_logq=s.column("token_logprobs_q").to_pylist(),
        reward=reward,
        logprob_ref=logprob_ref,
        prompt_index=prompt_index,
        prompt_names=[str(n) for n in names],
    )


def attach_z(data: TrainData, z: artifacts.Artifact) -> None:
    """Frozen log Z per prompt; every trained prompt must have one."""
    table = z.table.to_pydict()
    log_z_of = dict(zip(table["prompt_id"], table["log_z"]))
    missing = [p for p in data.prompt_names if p not in log_z_of]
    if missing:
        raise IswtError(f"{z.path}: no log_z for {len(missing)} prompt(s) of the samples, first {missing[0]!r}")
    values = np.array([log_z_of[p] for p in data.prompt_names], dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise IswtError(f"{z.path}: log_z is not finite for prompt {data.prompt_names[int(np.argmin(np.isfinite(values)))]!r}")
    data.log_z = values


def attach_pairs(data: TrainData, pairs: artifacts.Artifact) -> None:
    """(chosen row, rejected row) per pair with its weight; pairs must point at existing samples."""
    row_of = {(p, int(i)): row for row, (p, i) in enumerate(zip(data.prompt_ids, data.sample_idx))}
    table = pairs.table.to_pydict()
    chosen, rejected = [], []
    for p, c, r in zip(table["prompt_id"], table["chosen_idx"], table["rejected_idx"]):
        for idx in (c, r):
            if (p, idx) not in row_of:
                raise IswtError(f"{pairs.path}: pair refers to sample ({p!r}, {idx}) that is not in the samples")
        chosen.append(row_of[(p, c)])
        rejected.append(row_of[(p, r)])
    weight = np.asarray(table["weight"], dtype=np.float64)
    if weight.size == 0:
        raise IswtError(f"{pairs.path}: holds no pairs")
    if not np.all(np.isfinite(weight)) or np.any(weight < 0):
        raise IswtError(f"{pairs.path}: column 'weight' must be finite and >= 0")
    data.examples = np.stack([chosen, rejected], axis=1)
    data.pair_weight = weight


def select_samples(data: TrainData, loss: str, sft_select: str) -> None:
    """Which sample rows are training examples: all of them, or the SFT selection."""
    rows = np.arange(len(data.prompt_ids))
    if loss == "sft":
        rows = _sft_rows(data, sft_select)
        if rows.size == 0:
            raise IswtError(f"--sft-select {sft_select}: selects no samples (no reward reaches 1.0?)")
    if loss in ("grpo", "gspo"):
        data.advantage = group_zscore(data.reward, data.prompt_index)
    data.examples = rows


def _sft_rows(data: TrainData, how: str) -> np.ndarray:
    """best: the top reward per prompt (lowest sample_idx on ties); correct: reward >= 1; all."""
    if how == "all":
        return np.arange(len(data.prompt_ids))
    if how == "correct":
        return np.flatnonzero(data.reward >= 1.0)
    order = np.lexsort((data.sample_idx, -data.reward, data.prompt_index))
    first = np.ones(order.size, dtype=bool)
    first[1:] = data.prompt_index[order][1:] != data.prompt_index[order][:-1]
    return np.sort(order[first])


def epoch_batches(n_examples: int, batch_size: int, epoch: int, seed: int) -> list[np.ndarray]:
    """Micro-batches of example indices for one epoch, shuffled by (seed, epoch) alone.

    Fixed by the seed, not by a stateful loader, so a resumed run sees the
    same batches and every process of a distributed run agrees on them.
    """
    order = np.random.default_rng([seed, epoch]).permutation(n_examples)
    return [order[i : i + batch_size] for i in range(0, n_examples, batch_size)]
