"""`iswt estimate-z`: freeze each prompt's importance-sampling estimate of log Z.

Read top to bottom: validate flags, decide from the proposal's provenance
which log-ratio applies, open the join of samples and scores (only the
columns that needs: keys, reward, logprob_q and logprob_ref when used; never
the token lists), then per batch of whole prompts compute log-weights and
the per-prompt estimates with `iswcli.estimators` and write them as a row
group of the z artifact; finish it with its provenance and summarize.

The join runs out of core on DuckDB (`iswcli.chain.ScoredStream`, shared
with every stage that reads these artifacts, with its consistency checks),
so memory is bounded by a batch, not by the inputs; --shard takes one
share of the prompts. The --plot is drawn with `iswcli.plots`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from iswcli import artifacts, cache, console, estimators, outputs
from iswcli import proposal as proposal_facts
from iswcli.chain import Scored, ScoredStream, has_column
from iswcli.errors import IswtError, raise_first_failure
from iswcli.plots import check_plot_path, thinned, write_histograms
from iswcli.results import StageResult
from iswcli.tasks import parse_shard

REWARD_TRANSFORMS = ("none", "group-zscore")


@dataclass(frozen=True)
class EstimateZConfig:
    proposal: str
    scores: str
    beta: float
    out: str
    bootstrap: int = 0
    seed: int = 0
    reward_transform: str = "none"
    estimator: str = estimators.ESTIMATORS[0]  # snis, cv or is (iswcli/estimators.py); all equal when q is pi_ref
    low_ess: float = estimators.LOW_ESS_FRAC
    plot: str | None = None
    shard: str | None = None  # i/n: this job's share of the prompts (by sha256 of prompt_id, as score)
    mismatch_threshold: float = proposal_facts.MISMATCH_THRESHOLD  # nats per sequence, sampler vs reference
    force: bool = False  # re-run even when the output is up to date


def validate(config: EstimateZConfig) -> None:
    checks = [
        (math.isfinite(config.beta) and config.beta > 0, f"--beta {config.beta}: must be a finite number > 0"),
        (config.bootstrap >= 0, f"--bootstrap {config.bootstrap}: must be >= 0 (0 turns it off)"),
        (
            config.reward_transform in REWARD_TRANSFORMS,
            f"--reward-transform {config.reward_transform}: must be one of {', '.join(REWARD_TRANSFORMS)}",
        ),
        (
            config.estimator in estimators.ESTIMATORS,
            f"--estimator {config.estimator}: must be one of {', '.join(estimators.ESTIMATORS)}",
        ),
        (0 < config.low_ess <= 1, f"--low-ess {config.low_ess}: must be in (0, 1]"),
        (
            math.isfinite(config.mismatch_threshold) and config.mismatch_threshold > 0,
            f"--mismatch-threshold {config.mismatch_threshold}: must be a finite number > 0",
        ),
    ]
    raise_first_failure(checks)
    artifacts.check_output_path(config.out)
    if config.plot is not None:
        check_plot_path(config.plot)
    if config.shard is not None:
        parse_shard(config.shard)


@dataclass(frozen=True, kw_only=True)
class EstimateZResult(StageResult):
    sha256: str | None = None
    prompts: int | None = None
    samples: int | None = None
    log_ratio: str | None = None  # proposal_facts.LOG_RATIO_REF or LOG_RATIO_ZERO, as in the provenance
    estimator: str | None = None
    reward_transform: str | None = None
    ess_frac: dict[str, float] | None = None  # ESS/K over prompts: min, median, max
    share_flagged: dict[str, float] | None = None  # flag -> share of prompts
    log_z: dict[str, float] | None = None  # min, max
    log_mean_ratio: dict[str, float] | None = None  # min, median, max over prompts: 0 in expectation
    khat_nan: int | None = None
    interval_width: dict[str, float] | None = None  # the 95% interval's width: min, median, max
    bootstrap: bool | None = None  # the interval is a bootstrap one
    shard: str | None = None
    notes: tuple[str, ...] | None = None  # the warnings printed
    sampler_gap: dict[str, Any] | None = None  # proposal.gap_report

    def rows(self) -> dict:
        zero = "0 (untruncated proposal = reference)"
        rows: dict[str, Any] = {
            "output": self.output,
            "sha256": self.sha256[:16],
            "prompts": self.prompts,
            "samples": self.samples,
            "log-ratio": self.log_ratio if self.log_ratio == proposal_facts.LOG_RATIO_REF else zero,
            "estimator": self.estimator,
            "reward transform": self.reward_transform,
            "ESS/K": self.ess_frac,
            "share flagged": self.share_flagged,
            "log Z": self.log_z,
            "log mean ratio (0 expected)": self.log_mean_ratio,
            "k-hat NaN": self.khat_nan,
            "95% interval width" + (" (bootstrap)" if self.bootstrap else ""): self.interval_width,
        }
        if self.shard:
            rows["shard"] = self.shard
        if self.notes:
            rows["notes"] = " | ".join(self.notes)
        rows["sampler gap"] = self.sampler_gap
        return rows


def run(config: EstimateZConfig) -> EstimateZResult:
    validate(config)
    with outputs.claim(config.out, {"--proposal": config.proposal, "--scores": config.scores}):
        inputs = {"proposal": cache.input_ref(config.proposal), "scores": cache.input_ref(config.scores)}
        cached = cache.up_to_date(config.out, "estimate-z", asdict(config), inputs, result=EstimateZResult)
        if cached:
            return cached
        proposal = proposal_sampling(config.proposal)
        use_ref = has_column(config.scores, "logprob_ref")
        if not use_ref and not proposal["zero_log_ratio"]:
            raise IswtError(
                f"{config.scores}: column 'logprob_ref' is missing, and {config.proposal} is not proven to be the "
                f"reference's own numbers at temperature 1 without truncation ({proposal['why']}); "
                "run `iswt score --ref-model ...` to add reference log-probs"
            )
        compare_gap, gap_why = proposal_facts.gap_plan(
            _provenance(config.proposal), _provenance(config.scores), use_ref
        )
        stream = ScoredStream(
            config.proposal,
            config.scores,
            sample_columns=(["logprob_q"] + (["logprob_model"] if compare_gap else [])) if use_ref else [],
            score_columns=["reward", "logprob_ref"] if use_ref else ["reward"],
            purpose="estimating log Z",
            shard=None if config.shard is None else parse_shard(config.shard),
            spill_beside=config.out,
        )
        # a prompt whose rewards are all equal could still hold any reward the artifact shows elsewhere;
        # a group z-score maps such a prompt's rewards to 0, whatever it missed
        bounds = reward_range(stream.scores) if config.reward_transform == "none" else None
        n_rows = artifacts.row_count(stream.samples) if config.plot else 0  # to thin the plot's points
        estimate = EstimatesByBatch(config, proposal, use_ref, compare_gap, bounds, n_rows)
        with stream, artifacts.ArtifactWriter(config.out, artifacts.Z) as writer:
            for batch in stream:
                writer.write(estimate.batch(batch))
            gap_report = proposal_facts.gap_report(estimate.gap(), gap_why, config.mismatch_threshold)
            provenance = artifacts.make_provenance(
                "estimate-z",
                asdict(config),
                inputs={"proposal": stream.samples, "scores": stream.scores},
                model=stream.samples.provenance.get("model"),
                seed=config.seed,
                beta=config.beta,
                log_ratio=proposal_facts.LOG_RATIO_REF if use_ref else proposal_facts.LOG_RATIO_ZERO,
                estimator=config.estimator,
                proposal_sampling=proposal,
                sampler_gap=gap_report,
                reward_transform=_transform_note(config.reward_transform),
            )
            sha = writer.finish(provenance)
        if config.plot:
            # log(w_k / mean w) = lw_k - log Z_hat: 0 is a sample carrying exactly its share.
            write_histograms(
                config.plot,
                [
                    (estimate.joined("relative"), "log-weight relative to the prompt mean", "lw - log Z_hat"),
                    (estimate.joined("ess_frac"), "ESS / K per prompt", "ESS / K"),
                ],
            )
        notes = _warnings(proposal, config)
        if gap_report.get("prompts flagged"):
            notes.append(
                f"{gap_report['prompts flagged']} prompt(s) have a sampler/reference gap past "
                f"{config.mismatch_threshold} nats (flag sampler_mismatch): the sampler's numerics are not the "
                "reference's (another engine or dtype); its logprob_q is used as what q was"
            )
        notes += _flag_notes(estimate.flag_counts, config.estimator)
        for note in notes:
            console.warn(note)
        return _result(config, sha, stream.rows, estimate, use_ref, notes, gap_report)


class EstimatesByBatch:
    """log Z and its diagnostics, one key-ordered batch of whole prompts at a time.

    Each batch becomes the z rows of its prompts; what the summary, the
    provenance and the plot need of all prompts is kept per prompt (a few
    floats each), and per sample only a strided subsample for the plot.
    """

    def __init__(self, config: EstimateZConfig, proposal: dict, use_ref: bool, compare_gap: bool, bounds, n_rows: int):
        self.config, self.proposal, self.use_ref, self.compare_gap = config, proposal, use_ref, compare_gap
        self.bounds = bounds
        self.rng = np.random.default_rng(config.seed)
        self.n_rows = n_rows
        self.kept: dict[str, list[np.ndarray]] = {}
        self.flag_counts = dict.fromkeys(estimators.FLAG_NAMES, 0)

    def batch(self, scored: Scored) -> pa.Table:
        config = self.config
        reward = scored.finite("reward", config.scores, "rewards must be finite numbers")
        target_reward = reward
        if config.reward_transform == "group-zscore":
            target_reward = estimators.group_zscore(reward, scored.group)
        log_ratio = None
        if self.use_ref:
            ref = scored.finite("logprob_ref", config.scores, "reference log-probs must be finite")
            q = scored.finite("logprob_q", config.proposal, "proposal log-probs must be finite")
            lw = estimators.log_weights(ref, q, target_reward, config.beta)
            log_ratio = ref - q
        else:
            lw = estimators.log_weights(None, None, target_reward, config.beta)
        n_prompts = len(scored.prompt_ids)
        gap = None
        if self.compare_gap:
            raw = scored.finite("logprob_model", config.proposal, "the sampler's raw log-probs must be finite")
            gap = proposal_facts.sampler_gap(scored.group, n_prompts, raw, ref, config.mismatch_threshold)
        z = estimators.estimate_groups(
            scored.group,
            lw,
            log_ratio=log_ratio,
            estimator=config.estimator,
            rewards=reward,
            n_boot=config.bootstrap,
            rng=self.rng,
            sampler_mismatch=None if gap is None else gap["flagged"],
            low_ess_frac=config.low_ess,
            reward_bounds=self.bounds,
            beta=config.beta,
        )
        for i, name in enumerate(estimators.FLAG_NAMES):
            self.flag_counts[name] += int(np.count_nonzero(z.flag_bits >> i & 1))
        self._keep(
            log_z=z.log_z,
            log_mean_ratio=z.log_mean_ratio,
            ess_frac=z.ess_frac,
            khat=z.khat,
            width=z.log_z_hi - z.log_z_lo,
            relative=(thinned(lw - z.log_z[scored.group], len(lw) / self.n_rows) if config.plot else np.empty(0)),
            **({} if gap is None else {f"gap_{k}": v for k, v in gap.items()}),
        )
        table = _z_table(scored.prompt_ids, z, config.beta)
        for name, values in proposal_facts.gap_columns(gap, n_prompts).items():
            table = table.append_column(name, pa.array(values, pa.float64()))
        return table

    def _keep(self, **columns: np.ndarray) -> None:
        for name, values in columns.items():
            self.kept.setdefault(name, []).append(values)

    def joined(self, name: str) -> np.ndarray:
        return np.concatenate(self.kept.get(name, [np.empty(0)]))

    def gap(self) -> dict[str, np.ndarray] | None:
        if not self.compare_gap:
            return None
        return {k: self.joined(f"gap_{k}") for k in ("mean", "mean_abs", "max_abs", "flagged")}


def reward_range(scores: artifacts.Artifact) -> tuple[float, float]:
    """Lowest and highest reward of the scores, read a row group at a time."""
    low, high = np.inf, -np.inf
    for file in scores.files:
        with (
            artifacts.readable(file),
            pq.ParquetFile(file, pre_buffer=False) as parquet,
        ):  # pre-buffering holds every row group read
            for batch in parquet.iter_batches(columns=["reward"], batch_size=1 << 20):
                values = batch["reward"].to_numpy(zero_copy_only=False).astype(np.float64)
                values = values[np.isfinite(values)]  # the join refuses the rest, naming the row
                if values.size:
                    low, high = min(low, float(values.min())), max(high, float(values.max()))
    return low, high


# --------------------------------------------------------------------------
# The proposal's sampling settings, from its provenance
# --------------------------------------------------------------------------


def proposal_sampling(path: str) -> dict:
    """What the samples' provenance proves about q, without reading rows (see `iswcli.proposal.describe`)."""
    return proposal_facts.describe(_provenance(path))


def _provenance(path: str) -> dict:
    return artifacts.read_metadata(artifacts.resolve_files(path)[0])[2]


def _transform_note(name: str) -> dict:
    if name == "none":
        return {"name": name, "changes_target": False}
    return {
        "name": name,
        "changes_target": True,
        "note": "rewards are standardized within each prompt, so the target is "
        "pi_ref * exp(beta * z-scored reward), not pi_ref * exp(beta * reward)",
    }


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def _z_table(prompt_ids: pa.Array, z: estimators.ZTable, beta: float) -> pa.Table:
    # estimate_groups orders groups by their code, which is prompt_id order.
    return pa.table(
        {
            "prompt_id": prompt_ids,
            "log_z": z.log_z,
            "beta": np.full(z.log_z.size, beta),
            "n_samples": z.n_samples.astype(np.int32),
            "ess": z.ess,
            "ess_frac": z.ess_frac,
            "max_weight_share": z.max_weight_share,
            "khat": z.khat,
            "khat_note": pa.array(z.khat_note, pa.string()),
            "log_z_is": z.log_z_is,
            "log_mean_ratio": z.log_mean_ratio,
            "ratio_ess_frac": z.ratio_ess_frac,
            "ratio_khat": z.ratio_khat,
            "log_z_se": z.log_z_se,
            "log_z_lo": z.log_z_lo,
            "log_z_hi": z.log_z_hi,
            "flags": _flag_lists(z.flag_bits),
        }
    )


def _flag_lists(bits: np.ndarray) -> pa.Array:
    """The flags column: each prompt's flag names, looked up by its bits (few distinct sets, many prompts)."""
    spelled = pa.array([list(names) for names in estimators.FLAG_SETS], pa.list_(pa.string()))
    return spelled.take(pa.array(bits))


def _warnings(proposal: dict, config: EstimateZConfig) -> list[str]:
    notes = []
    if proposal["truncated"]:
        notes.append(
            f"the proposal was sampled with temperature {proposal['temperature']}, top_p {proposal['top_p']}, "
            f"top_k {proposal['top_k']}: q misses part of pi_ref's support, and no estimate sees what lies there "
            "(per prompt, log_mean_ratio estimates the log of the share q covers; flag weight_mass_off)"
        )
    elif not proposal["known"]:
        notes.append(f"{config.proposal}: {proposal['why']}; whether q truncates pi_ref's support is unknown")
    if config.reward_transform != "none":
        notes.append(f"--reward-transform {config.reward_transform} changes the target distribution")
    return notes


def _flag_notes(counts: dict[str, int], estimator: str) -> list[str]:
    """A warning for each flag that says an estimate is unusable as it stands."""
    notes = []
    if counts["weight_mass_off"]:
        consequence = (
            "plain IS (--estimator is) is off by that log mean ratio there; --estimator snis is not"
            if estimator == "is"
            else "the self-normalized estimate there rests on the part of pi_ref the samples reached"
        )
        notes.append(
            f"{counts['weight_mass_off']} prompt(s) flagged weight_mass_off: their samples' mean ratio pi_ref/q, "
            f"1 in expectation, is more than {estimators.WEIGHT_MASS_NATS} nats from 1 in log space; {consequence}"
        )
    if counts["outside_reward_bounds"]:
        notes.append(
            f"{counts['outside_reward_bounds']} prompt(s) flagged outside_reward_bounds: log Z lies outside "
            "[beta * lowest reward, beta * highest reward], where no Z can be; --estimator snis stays inside"
        )
    return notes


def _result(
    config, sha, n_samples: int, estimate: EstimatesByBatch, use_ref: bool, notes, gap_report
) -> EstimateZResult:
    log_z = estimate.joined("log_z")
    return EstimateZResult(
        output=config.out,
        sha256=sha,
        prompts=int(log_z.size),
        samples=int(n_samples),
        log_ratio=proposal_facts.LOG_RATIO_REF if use_ref else proposal_facts.LOG_RATIO_ZERO,
        estimator=config.estimator,
        reward_transform=config.reward_transform,
        ess_frac=_spread(estimate.joined("ess_frac")),
        share_flagged={name: count / log_z.size for name, count in estimate.flag_counts.items()},
        log_z={"min": float(log_z.min()), "max": float(log_z.max())},
        log_mean_ratio=_spread(estimate.joined("log_mean_ratio")),
        khat_nan=int(np.isnan(estimate.joined("khat")).sum()),
        interval_width=_spread(estimate.joined("width")),
        bootstrap=bool(config.bootstrap),
        shard=config.shard,
        notes=tuple(notes),
        sampler_gap=gap_report,
    )


def _spread(values: np.ndarray) -> dict:
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}
