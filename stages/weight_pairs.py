"""`iswt weight-pairs`: preference pairs from scored samples, weighted per prompt.

Read top to bottom: validate flags, open the join of the samples' keys and
the scores' rewards (nothing else), then per batch of whole prompts build
and weight the pairs with `iswcli.pairing.weight_pairs` (whole-array numpy
per group size) and write them as row groups of the pairs artifact; finish
it with its provenance and summarize.

The join runs out of core on DuckDB (`iswcli.chain.ScoredStream`), so
memory is bounded by a batch of prompts and its pairs, not by the inputs;
--shard takes one share of the prompts. Within a batch, prompts are integer
codes in prompt_id order, so sorting and grouping never touch Python
strings; the strings come back as the dictionary of the prompt_id column.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from iswcli import artifacts, cache, console, outputs, pairing
from iswcli.chain import Scored, ScoredStream
from iswcli.errors import IswtError
from iswcli.plots import check_plot_path, thinned, write_histograms
from iswcli.results import StageResult
from iswcli.tasks import parse_shard


@dataclass(frozen=True)
class WeightPairsConfig:
    samples: str
    scores: str
    method: str
    out: str
    gamma: float | None = None
    beta: float | None = None
    num_accept: int | None = None
    pairing: str | None = None  # None: 'all' for iso/direct, 'first-round' for rso
    max_pairs_per_prompt: int | None = None
    seed: int = 0
    plot: str | None = None
    shard: str | None = None  # i/n: this job's share of the prompts (by sha256 of prompt_id, as score)
    force: bool = False  # re-run even when the output is up to date

    @property
    def resolved_pairing(self) -> str:
        if self.pairing is not None:
            return self.pairing
        return "first-round" if self.method == "rso" else "all"


# Which method reads which flag; a flag given to a method that ignores it gets a warning.
_USES = {"gamma": ("iso",), "beta": ("rso",), "num_accept": ("rso",)}


def validate(config: WeightPairsConfig) -> None:
    if config.method not in pairing.METHODS:
        raise IswtError(f"--method {config.method}: must be one of {', '.join(pairing.METHODS)}")
    if config.resolved_pairing not in pairing.PAIRINGS:
        raise IswtError(f"--pairing {config.pairing}: must be one of {', '.join(pairing.PAIRINGS)}")
    for name in ("gamma", "beta"):
        value = getattr(config, name)
        if value is None and config.method in _USES[name]:
            raise IswtError(f"--{name} is required with --method {config.method}")
        if value is not None and not (math.isfinite(value) and value > 0):
            raise IswtError(f"--{name} {value}: must be a finite number > 0")
    for flag, value in (("--num-accept", config.num_accept), ("--max-pairs-per-prompt", config.max_pairs_per_prompt)):
        if value is not None and value < 1:
            raise IswtError(f"{flag} {value}: must be at least 1")
    artifacts.check_output_path(config.out)
    if config.plot is not None:
        check_plot_path(config.plot)
    if config.shard is not None:
        parse_shard(config.shard)


@dataclass(frozen=True, kw_only=True)
class WeightPairsResult(StageResult):
    sha256: str | None = None
    method: str | None = None
    pairing: str | None = None  # resolved
    prompts_in: int | None = None
    pairs: int | None = None
    pairs_per_prompt: dict[str, float] | None = None  # mean, max over kept prompts
    dropped_prompts: int | None = None
    weight_ess_median: float | None = None
    weight_ess_median_per_pair: float | None = None  # median of ESS / pairs
    shard: str | None = None
    acceptance_rate: dict[str, float] | None = None  # rso: mean, min, max

    def rows(self) -> dict:
        rows: dict[str, Any] = {
            "output": self.output,
            "sha256": self.sha256[:16],
            "method": self.method,
            "pairing": self.pairing,
            "prompts in": self.prompts_in,
            "pairs": self.pairs,
            "pairs per prompt": self.pairs_per_prompt,
            "dropped prompts": self.dropped_prompts,
            "weight ESS per prompt": {
                "median": self.weight_ess_median,
                "median / pairs": self.weight_ess_median_per_pair,
            },
        }
        if self.shard:
            rows["shard"] = self.shard
        if self.acceptance_rate is not None:
            rows["acceptance rate"] = self.acceptance_rate
        return rows


def run(config: WeightPairsConfig) -> WeightPairsResult:
    validate(config)
    with outputs.claim(config.out, {"--samples": config.samples, "--scores": config.scores}):
        inputs = {"samples": cache.input_ref(config.samples), "scores": cache.input_ref(config.scores)}
        cached = cache.up_to_date(config.out, "weight-pairs", asdict(config), inputs, result=WeightPairsResult)
        if cached:
            return cached
        stream = ScoredStream(
            config.samples,
            config.scores,
            sample_columns=[],
            score_columns=["reward"],
            purpose="pairing",
            shard=None if config.shard is None else parse_shard(config.shard),
            spill_beside=config.out,
        )
        pairs = PairsByBatch(config, artifacts.row_count(stream.samples) if config.plot else 0)
        with stream, artifacts.ArtifactWriter(config.out, artifacts.PAIRS) as writer:
            for batch in stream:
                writer.write(pairs.batch(batch))
            if pairs.n_pairs == 0:
                raise IswtError(
                    f"{config.scores}: no prompt has two samples with different rewards, so there is no pair "
                    f"(all {pairs.n_prompts} prompts dropped)"
                )
            provenance = artifacts.make_provenance(
                "weight-pairs",
                asdict(config),
                inputs={"samples": stream.samples, "scores": stream.scores},
                model=stream.samples.provenance.get("model"),
                seed=config.seed,
                method=config.method,
                pairing=config.resolved_pairing,
                # None: rejection sampling ran until each prompt's candidates ran out
                num_accept=config.num_accept if config.method == "rso" else None,
                dropped_prompts=pairs.n_dropped,
            )
            sha = writer.finish(provenance)
        per_prompt, ess = pairs.joined("per_prompt"), pairs.joined("ess")
        if config.plot:
            write_histograms(
                config.plot,
                [
                    (pairs.joined("relative"), "pair weight relative to uniform", "log10(weight x pairs in prompt)"),
                    (ess / per_prompt, "weight ESS / pairs per prompt", "ESS / pairs"),
                ],
            )
        for note in _warnings(config, pairs):
            console.warn(note)
        return _result(config, sha, pairs, per_prompt, ess)


class PairsByBatch:
    """Pairs of one key-ordered batch of whole prompts at a time, written as they are made.

    What the summary, the provenance and the plot need of all prompts is
    kept per kept prompt (pairs, ESS, acceptance rate); pair weights for the
    plot only as a strided subsample.
    """

    def __init__(self, config: WeightPairsConfig, n_rows: int):
        self.config, self.n_rows = config, n_rows  # n_rows: the input's, to thin the plot's points
        self.rng = np.random.default_rng(config.seed)
        self.kept: dict[str, list[np.ndarray]] = {}
        self.n_prompts = self.n_pairs = self.n_dropped = 0
        self.first_dropped: str | None = None

    def batch(self, scored: Scored) -> pa.Table:
        config = self.config
        reward = scored.finite("reward", config.scores, "rewards must be finite numbers")
        pairs = pairing.weight_pairs(
            scored.group,
            scored.table["sample_idx"].to_numpy(),
            reward,
            method=config.method,
            pairing=config.resolved_pairing,
            gamma=config.gamma,
            beta=config.beta,
            # Without --num-accept rejection sampling runs until the candidates run out.
            num_accept=config.num_accept or int(scored.counts.max()),
            max_pairs_per_prompt=config.max_pairs_per_prompt,
            rng=self.rng,
        )
        per_prompt, ess = _pairs_and_ess(pairs)
        self.n_prompts += pairs.n_prompts
        self.n_pairs += pairs.weight.size
        self.n_dropped += pairs.dropped_prompt_ids.size
        if self.first_dropped is None and pairs.dropped_prompt_ids.size:
            self.first_dropped = scored.prompt_ids[int(pairs.dropped_prompt_ids[0])].as_py()
        relative = np.empty(0)
        if config.plot:
            relative = thinned(np.log10(pairs.weight * np.repeat(per_prompt, per_prompt)), len(reward) / self.n_rows)
        for name, values in (("per_prompt", per_prompt), ("ess", ess), ("rate", pairs.acceptance_rate)):
            self.kept.setdefault(name, []).append(values)
        self.kept.setdefault("relative", []).append(relative)
        return _pairs_table(pairs, scored.prompt_ids)

    def joined(self, name: str) -> np.ndarray:
        return np.concatenate(self.kept.get(name, [np.empty(0)]))


def _pairs_and_ess(pairs: pairing.PairsTable) -> tuple[np.ndarray, np.ndarray]:
    """Pairs and Kish ESS of the weights, per kept prompt, in prompt order.

    Same formula as `pairing.pair_weight_ess`, but pairs already come grouped
    by prompt code, so bincount replaces its sort of millions of ids.
    """
    per_prompt = np.bincount(pairs.prompt_id)
    total = np.bincount(pairs.prompt_id, weights=pairs.weight)
    square = np.bincount(pairs.prompt_id, weights=pairs.weight * pairs.weight)
    kept = per_prompt > 0
    return per_prompt[kept], total[kept] ** 2 / square[kept]


def _pairs_table(pairs: pairing.PairsTable, prompt_ids: pa.Array) -> pa.Table:
    # pairs.prompt_id holds prompt codes: with the prompt ids as dictionary,
    # millions of pair rows are written without building or hashing their strings.
    n_pairs = pairs.weight.size
    return pa.table(
        {
            "prompt_id": pa.DictionaryArray.from_arrays(pairs.prompt_id.astype(np.int32), prompt_ids),
            "chosen_idx": pairs.chosen_idx.astype(np.int32),
            "rejected_idx": pairs.rejected_idx.astype(np.int32),
            "r_chosen": pairs.r_chosen,
            "r_rejected": pairs.r_rejected,
            "log_weight_base": pairs.log_weight_base,
            "margin_score": pairs.margin_score,
            "weight": pairs.weight,
            "method": pa.DictionaryArray.from_arrays(np.zeros(n_pairs, dtype=np.int32), [pairs.method]),
        }
    )


def _warnings(config: WeightPairsConfig, pairs: PairsByBatch) -> list[str]:
    notes = []
    for name, methods in _USES.items():
        if getattr(config, name) is not None and config.method not in methods:
            notes.append(f"--{name.replace('_', '-')} is ignored with --method {config.method}")
    if pairs.n_dropped:
        notes.append(f"{pairs.n_dropped} prompt(s) dropped: no untied pair (first: {pairs.first_dropped!r})")
    return notes


def _result(config, sha, pairs: PairsByBatch, per_prompt: np.ndarray, ess: np.ndarray) -> WeightPairsResult:
    rate = pairs.joined("rate")
    return WeightPairsResult(
        output=config.out,
        sha256=sha,
        method=config.method,
        pairing=config.resolved_pairing,
        prompts_in=pairs.n_prompts,
        pairs=int(pairs.n_pairs),
        pairs_per_prompt={"mean": float(per_prompt.mean()), "max": int(per_prompt.max())},
        dropped_prompts=int(pairs.n_dropped),
        weight_ess_median=float(np.median(ess)),
        weight_ess_median_per_pair=float(np.median(ess / per_prompt)),
        shard=config.shard,
        acceptance_rate=(
            {"mean": float(rate.mean()), "min": float(rate.min()), "max": float(rate.max())}
            if config.method == "rso"
            else None
        ),
    )
