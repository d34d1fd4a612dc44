"""`iswt estimate-z`: freeze each prompt's importance-sampling estimate of log Z.

Read top to bottom: validate flags, decide from the proposal's provenance
which log-ratio applies, read only the columns that needs (keys, reward,
logprob_q and logprob_ref when used; never the token lists), join scores to
samples on (prompt_id, sample_idx), compute log-weights and the per-prompt
estimates with `iswcli.estimators`, write the z artifact atomically and
summarize. Everything after the reads is whole-array numpy.

The join, its consistency checks and the finite-column check live in
`iswcli.chain`, shared with every stage that reads these artifacts; the
--plot is drawn with `iswcli.plots`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from iswcli import artifacts, cache, console, estimators, outputs
from iswcli import proposal as proposal_facts
from iswcli.chain import Scored, has_column, load_scored
from iswcli.errors import IswtError, raise_first_failure
from iswcli.plots import check_plot_path, write_histograms

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
    low_ess: float = estimators.LOW_ESS_FRAC
    plot: str | None = None
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


def run(config: EstimateZConfig) -> dict:
    validate(config)
    with outputs.claim(config.out, {"--proposal": config.proposal, "--scores": config.scores}):
        inputs = {"proposal": cache.input_ref(config.proposal), "scores": cache.input_ref(config.scores)}
        cached = cache.up_to_date(config.out, "estimate-z", asdict(config), inputs)
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

        scored = load_scored(
            config.proposal,
            config.scores,
            sample_columns=(["logprob_q"] + (["logprob_model"] if compare_gap else [])) if use_ref else [],
            score_columns=["reward", "logprob_ref"] if use_ref else ["reward"],
            purpose="estimating log Z",
        )
        reward = scored.finite("reward", config.scores, "rewards must be finite numbers")
        target_reward = reward
        if config.reward_transform == "group-zscore":
            target_reward = estimators.group_zscore(reward, scored.group)
        if use_ref:
            ref = scored.finite("logprob_ref", config.scores, "reference log-probs must be finite")
            q = scored.finite("logprob_q", config.proposal, "proposal log-probs must be finite")
            lw = estimators.log_weights(ref, q, target_reward, config.beta)
        else:
            lw = estimators.log_weights(None, None, target_reward, config.beta)

        gap = None
        if compare_gap:
            raw = scored.finite("logprob_model", config.proposal, "the sampler's raw log-probs must be finite")
            gap = proposal_facts.sampler_gap(scored.group, len(scored.prompt_ids), raw, ref, config.mismatch_threshold)
        gap_report = proposal_facts.gap_report(gap, gap_why, config.mismatch_threshold)

        z = estimators.estimate_groups(
            scored.group,
            lw,
            rewards=reward,
            n_boot=config.bootstrap,
            rng=np.random.default_rng(config.seed),
            tempered_proposal=proposal["tempered"],
            truncated_proposal=proposal["truncated"],
            sampler_mismatch=None if gap is None else gap["flagged"],
            low_ess_frac=config.low_ess,
            # a prompt whose rewards are all equal could still hold any reward the artifact shows elsewhere;
            # a group z-score maps such a prompt's rewards to 0, whatever it missed
            reward_bounds=(float(reward.min()), float(reward.max())) if config.reward_transform == "none" else None,
            beta=config.beta,
        )
        table = _z_table(scored.prompt_ids, z, config.beta)
        for name, values in proposal_facts.gap_columns(gap, len(scored.prompt_ids)).items():
            table = table.append_column(name, pa.array(values, pa.float64()))
        provenance = artifacts.make_provenance(
            "estimate-z",
            asdict(config),
            inputs={"proposal": scored.samples, "scores": scored.scores},
            model=scored.samples.provenance.get("model"),
            seed=config.seed,
            beta=config.beta,
            log_ratio=proposal_facts.LOG_RATIO_REF if use_ref else proposal_facts.LOG_RATIO_ZERO,
            proposal_sampling=proposal,
            sampler_gap=gap_report,
            reward_transform=_transform_note(config.reward_transform),
        )
        sha = artifacts.write_artifact(table, config.out, artifacts.Z, provenance)
        if config.plot:
            # log(w_k / mean w) = lw_k - log Z_hat: 0 is a sample carrying exactly its share.
            relative = lw - z.log_z[scored.group]
            write_histograms(
                config.plot,
                [
                    (relative, "log-weight relative to the prompt mean", "lw - log Z_hat"),
                    (z.ess_frac, "ESS / K per prompt", "ESS / K"),
                ],
            )
        notes = _warnings(proposal, config)
        if gap_report.get("prompts flagged"):
            notes.append(
                f"{gap_report['prompts flagged']} prompt(s) have a sampler/reference gap past "
                f"{config.mismatch_threshold} nats (flag sampler_mismatch): the sampler's numerics are not the "
                "reference's (another engine or dtype); its logprob_q is used as what q was"
            )
        for note in notes:
            console.warn(note)
        summary = _summary(config, sha, scored, z, use_ref, notes)
        summary["sampler gap"] = gap_report
        return summary


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
            "khat_note": pa.array(z.khat_note.tolist(), pa.string()),
            "log_z_se": z.log_z_se,
            "log_z_lo": z.log_z_lo,
            "log_z_hi": z.log_z_hi,
            "flags": pa.array([list(f) for f in z.flags], pa.list_(pa.string())),
        }
    )


def _warnings(proposal: dict, config: EstimateZConfig) -> list[str]:
    notes = []
    if proposal["truncated"]:
        notes.append(
            f"the proposal was sampled with temperature {proposal['temperature']}, top_p {proposal['top_p']}, "
            f"top_k {proposal['top_k']}: q can miss part of pi_ref's support, so Z is underestimated "
            "(flag truncated_proposal)"
        )
    elif not proposal["known"]:
        notes.append(f"{config.proposal}: {proposal['why']}; truncated_proposal could not be checked")
    if config.reward_transform != "none":
        notes.append(f"--reward-transform {config.reward_transform} changes the target distribution")
    return notes


def _summary(config, sha, scored: Scored, z: estimators.ZTable, use_ref: bool, notes: list[str]) -> dict:
    n = z.log_z.size
    flagged = {name: sum(name in f for f in z.flags) / n for name in estimators.FLAG_NAMES}
    rows = {
        "output": config.out,
        "sha256": sha[:16],
        "prompts": int(n),
        "samples": int(scored.table.num_rows),
        "log-ratio": proposal_facts.LOG_RATIO_REF if use_ref else "0 (untruncated proposal = reference)",
        "reward transform": config.reward_transform,
        "ESS/K": _spread(z.ess_frac),
        "share flagged": flagged,
        "log Z": {"min": float(z.log_z.min()), "max": float(z.log_z.max())},
        "k-hat NaN": int(np.isnan(z.khat).sum()),
    }
    rows["95% interval width" + (" (bootstrap)" if config.bootstrap else "")] = _spread(z.log_z_hi - z.log_z_lo)
    if notes:
        rows["notes"] = " | ".join(notes)
    return rows


def _spread(values: np.ndarray) -> dict:
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}
