"""Training data: samples, scores, z and pairs as flat arrays.

The artifacts are joined and checked by `iswcli.chain` (the one join of the
pipeline), so every rule fails with a message naming the file and the first
bad key before any model is loaded; here they become the arrays the
training loop indexes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from iswcli import chain
from iswcli.errors import IswtError
from iswcli.estimators import all_equal_per_group, group_zscore

SAMPLE_COLUMNS = ["prompt_token_ids", "response_token_ids", "token_logprobs_q", "logprob_q", "logprob_model"]


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
    logprob_model: np.ndarray | None = None  # the sampler's own log-probs (log pi_ref when sampled from it as is)
    log_z: np.ndarray | None = None  # per prompt_index (frozen Z)
    logprob_q: np.ndarray | None = None  # the sampler's sequence log-prob, for dpg's importance weights
    advantage: np.ndarray | None = None  # group z-scored rewards (grpo/gspo)
    examples: np.ndarray | None = None  # rows (samples) or (chosen, rejected) pairs
    pair_weight: np.ndarray | None = None

    @property
    def n_tokens(self) -> np.ndarray:
        return np.array([len(r) for r in self.response_tokens])


def load(samples_path: str, scores_path: str) -> tuple[TrainData, chain.Scored]:
    """Samples joined with their scores (by `iswcli.chain`, in key order); every sample needs exactly one score."""
    score_columns = ["reward", "logprob_ref"] if chain.has_column(scores_path, "logprob_ref") else ["reward"]
    scored = chain.load_scored(
        samples_path,
        scores_path,
        sample_columns=SAMPLE_COLUMNS,
        score_columns=score_columns,
        purpose="training",
        min_samples=1,
    )
    table = scored.table
    reward = scored.finite("reward", scores_path, "rewards must be finite numbers")
    logprob_ref = None
    if "logprob_ref" in table.column_names:
        logprob_ref = scored.finite("logprob_ref", scores_path, "reference log-probs must be finite")
    data = TrainData(
        prompt_ids=table["prompt_id"].to_pylist(),
        sample_idx=table["sample_idx"].to_numpy(),
        prompt_tokens=table["prompt_token_ids"].to_pylist(),
        response_tokens=table["response_token_ids"].to_pylist(),
        token_logq=table["token_logprobs_q"].to_pylist(),
        reward=reward,
        logprob_ref=logprob_ref,
        logprob_model=table["logprob_model"].to_numpy(zero_copy_only=False).astype(np.float64),
        prompt_index=scored.group,
        prompt_names=scored.prompt_ids.to_pylist(),
    )
    return data, scored


def attach_z(data: TrainData, z: chain.FrozenZ, scored: chain.Scored, weights_need_q: bool) -> None:
    """Frozen log Z per prompt, and the rewards the target was defined on (z-scored when the z says so).

    weights_need_q: the objective divides by q (dpg's importance weights), so every logprob_q must be finite.
    """
    if weights_need_q:
        data.logprob_q = scored.finite(
            "logprob_q", scored.samples.path, "importance weights need the sampler's log-probs"
        )
    data.log_z = z.log_z
    if z.reward_transform == "group-zscore":
        data.reward = group_zscore(data.reward, data.prompt_index)


def attach_pairs(data: TrainData, pairs: chain.JoinedPairs) -> None:
    """(chosen row, rejected row) per pair with its weight."""
    data.examples = pairs.rows
    data.pair_weight = pairs.weight


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


def prompts_with_equal_rewards(data: TrainData) -> int:
    """How many prompts give every one of their samples the same reward (no signal for tb, grpo or gspo there)."""
    return int(np.count_nonzero(all_equal_per_group(data.prompt_index, data.reward)))


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


def epoch_batches(
    n_examples: int,
    batch_size: int,
    epoch: int,
    seed: int,
    prompt_of: np.ndarray | None = None,
    length_of: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Micro-batches of example indices for one epoch, shuffled by (seed, epoch) alone.

    Fixed by the seed, not by a stateful loader, so a resumed run sees the
    same batches and every process of a distributed run agrees on them.
    With ``prompt_of`` (each example's prompt) the prompts are shuffled and
    each prompt's examples kept together (shuffled among themselves), so a
    micro-batch holds as few distinct prompts as it can: each runs once and
    its responses continue from it (`logprobs.shared_prompt_logprobs`).
    With ``length_of`` too (each example's response tokens), a prompt's
    examples go by length, up and down in turn from one prompt to the next,
    so a micro-batch pads its responses to a length close to their own, also
    where it holds the end of one prompt and the start of the next (ties in
    random order).
    """
    rng = np.random.default_rng([seed, epoch])
    if prompt_of is None:
        order = rng.permutation(n_examples)
    else:
        prompts, index = np.unique(prompt_of, return_inverse=True)
        rank = rng.permutation(prompts.size)[index.ravel()]
        tie_break = rng.random(n_examples)
        if length_of is None:
            order = np.lexsort((tie_break, rank))
        else:
            by_length = np.where(rank % 2 == 0, length_of, -np.asarray(length_of))
            order = np.lexsort((tie_break, by_length, rank))
    return [order[i : i + batch_size] for i in range(0, n_examples, batch_size)]


def example_prompts(data: TrainData) -> np.ndarray:
    """Each training example's prompt index (a pair's: its chosen sample's, which shares the prompt)."""
    return data.prompt_index[data.examples[:, 0] if data.examples.ndim == 2 else data.examples]


def example_lengths(data: TrainData, pairs: bool) -> np.ndarray:
    """Response tokens per training example: a sample's, or a pair's longer side (both run in one batch)."""
    n_tokens = data.n_tokens
    if pairs:
        return np.maximum(n_tokens[data.examples[:, 0]], n_tokens[data.examples[:, 1]])
    return n_tokens[data.examples]
