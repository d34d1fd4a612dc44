"""`iswt evaluate --target-beta`: each prompt's exact distance to pi*, written as OUT.target.parquet.

The measures come from :mod:`iswcli.exact_targets` (teacher forcing of every
listed answer under the policy and the reference). This module adds what the
evaluate stage needs around them: the target artifact's schema, an estimate-z
artifact's log Z and interval checked against the exact value (--z), the
split of the error by answers the policy's training samples held
(--train-samples), the flags' checks, and the values --compare and the report
read back.
"""

from __future__ import annotations

import math
import os

import numpy as np

from iswcli.errors import IswtError, rule_of
from iswcli.exact_targets import (
    answer_logprobs,
    match_answer,
    measures,
    prompt_answers,
    target_probs,
    tokenize_answers,
)

TARGET_COLUMNS = (
    "log_z_exact",
    "p_valid",
    "p_valid_target",
    "kl_set",
    "tv_set",
    "eff_answers",
    "eff_answers_target",
    "p_valid_ref",
)
Z_COLUMNS = ("log_z_estimate", "log_z_error", "log_z_lo", "log_z_hi", "log_z_covered")
# the per-prompt values `evaluate` summarizes and `--compare` puts side by side
SUMMARY_METRICS = (
    "p_valid",
    "p_valid_target",
    "kl_set",
    "tv_set",
    "eff_answers",
    "eff_answers_target",
    "log_z_error",
    "log_z_covered",
)


def target_spec():
    import pyarrow as pa

    from iswcli import artifacts

    fields = [
        ("prompt_id", pa.string()),
        ("beta", pa.float64()),
        ("n_answers", pa.int32()),
        *((c, pa.float64()) for c in TARGET_COLUMNS),
        *((c, pa.float64()) for c in Z_COLUMNS),
        ("answers", pa.string()),
        ("p_answers", pa.list_(pa.float64())),
        ("p_answers_target", pa.list_(pa.float64())),
    ]
    return artifacts.ArtifactSpec("target", ("prompt_id",), pa.schema([pa.field(n, t) for n, t in fields]))


def set_default(reward_spec: str) -> float:
    """r_0 of `set` / `set:D`; any other reward has no exact target."""
    name, colon, arg = reward_spec.partition(":")
    if name != "set":
        raise IswtError(
            f"--target-beta: needs --reward set (or set:DEFAULT), not {reward_spec!r}: the exact "
            f"target is defined by the answer sets"
        )
    return float(arg) if colon else 0.0


def z_intervals(z_path: str, beta: float) -> dict[str, tuple[float, float, float]]:
    """Per prompt (log Z estimate, lo, hi) from an estimate-z artifact: its bootstrap interval when it has
    one, else log Z +- 1.96 standard errors."""
    from iswcli import artifacts

    table = artifacts.read_artifact(z_path, artifacts.Z).table
    out = {}
    for row in table.select(["prompt_id", "log_z", "beta", "log_z_se", "log_z_lo", "log_z_hi"]).to_pylist():
        if not math.isclose(row["beta"], beta, rel_tol=1e-9):
            raise IswtError(
                f"--z {z_path}: prompt {row['prompt_id']!r} has beta {row['beta']}, but --target-beta "
                f"is {beta}; log Z depends on beta"
            )
        if row["log_z"] is None or not math.isfinite(row["log_z"]):
            raise IswtError(f"--z {z_path}: log_z is not finite for prompt {row['prompt_id']!r}")
        lo, hi = row["log_z_lo"], row["log_z_hi"]
        if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
            se = row["log_z_se"] if row["log_z_se"] is not None else float("nan")
            lo, hi = row["log_z"] - 1.96 * se, row["log_z"] + 1.96 * se
        out[row["prompt_id"]] = (row["log_z"], lo, hi)
    return out


def check_z_covers(z_path: str, beta: float, prompt_ids: list[str]) -> None:
    """--z has a log Z for every evaluated prompt (checked before anything is sampled)."""
    missing = sorted(set(prompt_ids) - set(z_intervals(z_path, beta)))
    if missing:
        raise IswtError(f"--z {z_path}: has no log Z for {len(missing)} evaluated prompts (e.g. {missing[0]!r})")


def answer_mass_errors(p_policy, p_target, sampled: list[bool]) -> dict[str, float]:
    """Where the policy's error lies: sum over the answers that were sampled of (pi - pi*), and over those never
    sampled (the rest of the error is on "anything else"). tb with an IS log Z from the same samples pushes the
    sampled answers down and mass toward the unsampled ones; these two numbers show how much."""
    diff = np.asarray(p_policy, dtype=float) - np.asarray(p_target, dtype=float)
    seen = np.asarray(sampled, dtype=bool)
    return {
        "mass_error_sampled": float(diff[seen].sum()),
        "mass_error_unsampled": float(diff[~seen].sum()),
        "answers_sampled": int(seen.sum()),
        "answers_unsampled": int((~seen).sum()),
    }


def check_train_samples(train_samples: str, prompt_ids: list[str]) -> None:
    """--train-samples holds samples of every evaluated prompt (checked before anything is sampled)."""
    from iswcli import artifacts

    art = artifacts.read_artifact(train_samples, artifacts.SAMPLES, columns=[])
    held = set(art.table.column("prompt_id").to_pylist())
    missing = [pid for pid in prompt_ids if pid not in held]
    if missing:
        raise IswtError(
            f"--train-samples {train_samples}: has no samples of {len(missing)} evaluated prompt(s) (e.g. "
            f"{missing[0]!r}); the split by sampled answers needs the prompts the policy was trained on"
        )


def sampled_answers(train_samples: str, tokenizer, prompts: dict) -> dict[str, set[str]]:
    """Per evaluated prompt, the listed answers some training sample *is* (token ids + a stop token)."""
    from iswcli import artifacts

    check_train_samples(train_samples, list(prompts))
    art = artifacts.read_artifact(train_samples, artifacts.SAMPLES, columns=["response_token_ids"])
    stops = (art.provenance.get("sampling") or {}).get("stop_token_ids") or []
    responses: dict[str, list] = {}
    for pid, ids in zip(art.table.column("prompt_id").to_pylist(), art.table.column("response_token_ids").to_pylist()):
        responses.setdefault(pid, []).append(ids)
    out = {}
    for pid, (_, answers) in prompts.items():
        answer_ids = tokenize_answers(tokenizer, answers, f"prompt {pid!r}")
        out[pid] = {a for a in (match_answer(r, answer_ids, stops) for r in responses[pid]) if a is not None}
    return out


def evaluate_targets(
    out: str,
    samples_path: str,
    *,
    reward: str,
    beta: float,
    model: str,
    adapter: str | None = None,
    ref_model: str | None = None,
    z_path: str | None = None,
    device: str = "auto",
    seed: int = 0,
    batch_size: int = 64,
    train_samples: str | None = None,
) -> dict:
    """Write OUT (one row per prompt: exact log Z, p_valid, kl_set, ...) and return its summary.

    The policy is MODEL (+ ADAPTER); the reference that defines pi* is
    REF_MODEL, or else MODEL without the adapter. TRAIN_SAMPLES (the samples the policy was trained on)
    adds the split of each prompt's error by answers sampled and never sampled (`answer_mass_errors`).
    """
    import json

    import pyarrow as pa

    from iswcli import artifacts, metrics, models

    r0 = set_default(reward)
    prompts, stops, _, samples_art = prompt_answers(samples_path)
    z = z_intervals(z_path, beta) if z_path else None
    if z is not None and not set(prompts) <= set(z):
        missing = sorted(set(prompts) - set(z))
        raise IswtError(f"--z {z_path}: has no log Z for {len(missing)} evaluated prompts (e.g. {missing[0]!r})")
    ref = models.resolve_model(model)
    path = models.local_path(ref)
    tokenizer = models.load_tokenizer(path)
    sampled = sampled_answers(train_samples, tokenizer, prompts) if train_samples else None
    if stops is None:
        stops = models.stop_token_ids(models.load_model(path), tokenizer)
    dev = models.pick_device(device)
    policy = models.load_model(path, adapter, dev)
    reference, ref_identity = None, models.model_identity(ref, path, None)
    if ref_model is not None:
        rref = models.resolve_model(ref_model)
        rpath = models.local_path(rref)
        reference, ref_identity = models.load_model(rpath, None, dev), models.model_identity(rref, rpath, None)

    rows, split = [], {}
    for pid, (prompt_ids, answers) in prompts.items():
        answer_ids = tokenize_answers(tokenizer, answers, f"prompt {pid!r}")
        ids = list(answer_ids.values())
        lp_policy = answer_logprobs(policy, prompt_ids, ids, stops, tokenizer.pad_token_id, batch_size)
        if reference is not None:
            lp_ref = answer_logprobs(reference, prompt_ids, ids, stops, tokenizer.pad_token_id, batch_size)
        elif adapter is not None:
            with policy.disable_adapter():
                lp_ref = answer_logprobs(policy, prompt_ids, ids, stops, tokenizer.pad_token_id, batch_size)
        else:
            lp_ref = lp_policy
        rewards = [answers[a] for a in answer_ids]
        m = measures(lp_policy, lp_ref, rewards, r0, beta)
        row = {
            "prompt_id": pid,
            "beta": beta,
            "n_answers": len(ids),
            **m.as_row(),
            "answers": json.dumps(list(answer_ids)),
            "p_answers": np.exp(lp_policy).tolist(),
            "p_answers_target": target_probs(lp_ref, rewards, r0, beta)[:-1].tolist(),
        }
        est, lo, hi = z[pid] if z is not None else (float("nan"),) * 3
        row.update(
            {
                "log_z_estimate": est,
                "log_z_error": est - m.log_z_exact,
                "log_z_lo": lo,
                "log_z_hi": hi,
                "log_z_covered": float(lo <= m.log_z_exact <= hi)
                if z is not None and math.isfinite(lo)
                else float("nan"),
            }
        )
        rows.append(row)
        if sampled is not None:
            split[pid] = answer_mass_errors(
                row["p_answers"], row["p_answers_target"], [a in sampled[pid] for a in answer_ids]
            )

    spec = target_spec()
    table = pa.Table.from_pylist(rows, schema=spec.schema)
    per_prompt = {name: np.array([r[name] for r in rows], dtype=float) for name in SUMMARY_METRICS}
    pooled = {name: metrics.bootstrap_ci(v, 2000, seed)._asdict() for name, v in per_prompt.items()}
    summary = {
        "beta": beta,
        "default_reward": r0,
        "reference": ref_identity,
        "z": z_path,
        "prompts": len(rows),
        "means": pooled,
    }
    if sampled is not None:
        summary["answer_split"] = {
            "train_samples": train_samples,
            "prompts": split,
            "means": {
                name: metrics.bootstrap_ci(np.array([v[name] for v in split.values()]), 2000, seed)._asdict()
                for name in ("mass_error_sampled", "mass_error_unsampled")
            },
        }
    inputs = {"samples": samples_art}
    if z_path:
        inputs["z"] = artifacts.read_artifact(z_path, artifacts.Z)
    provenance = artifacts.make_provenance(
        "evaluate",
        {
            "target_beta": beta,
            "reward": reward,
            "model": model,
            "adapter": adapter,
            "ref_model": ref_model,
            "z": z_path,
        },
        inputs=inputs,
        model=models.model_identity(ref, path, adapter),
        seed=seed,
        summary=summary,
        reference=ref_identity,
    )
    summary["sha256"] = artifacts.write_artifact(table, out, spec, provenance)
    summary["target"] = out
    return summary


def _check_one_beta(targets: list[str]) -> None:
    """Targets measured at different betas are distances to different pi*: they never pair."""
    from iswcli import artifacts

    betas = {}
    for path in targets:
        column = artifacts.read_artifact(path, target_spec(), columns=["beta"]).table.column("beta").to_pylist()
        betas[path] = sorted(set(column))
    first = targets[0]
    for path in targets[1:]:
        if betas[path] != betas[first]:
            ours, theirs = (", ".join(f"{b:g}" for b in betas[t]) for t in (first, path))
            raise IswtError(
                f"--compare: {first} measures pi* at beta {ours} and {path} at beta {theirs}: "
                "different targets; evaluate both at one --target-beta"
            )


def read_target_values(path: str) -> dict[str, dict[str, float]]:
    """prompt_id -> {metric: value} of a target artifact (for --compare and the report)."""
    from iswcli import artifacts

    table = artifacts.read_artifact(path, target_spec(), columns=SUMMARY_METRICS).table  # refuses garbage by name
    rows = table.to_pylist()
    return {r["prompt_id"]: {k: (float("nan") if r[k] is None else r[k]) for k in SUMMARY_METRICS} for r in rows}


def display_rows(summary: dict | None) -> dict[str, str]:
    """Lines for evaluate's closing table: each exact measure's mean over prompts with its 95% CI."""
    if not summary:
        return {}
    rows = {}
    for name, ci in summary["means"].items():
        if ci["n"] == 0:
            continue
        rows[f"{name} (exact, beta {summary['beta']:g})"] = f"{ci['estimate']:.4f} [{ci['lo']:.4f}, {ci['hi']:.4f}]"
    for name, ci in (summary.get("answer_split") or {}).get("means", {}).items():
        rows[f"{name} (exact)"] = f"{ci['estimate']:+.4f} [{ci['lo']:+.4f}, {ci['hi']:+.4f}]"
    rows["target"] = summary["target"]
    return rows


def check_target_flags(
    target_beta: float | None, z: str | None, ref_model: str | None, reward: str, train_samples: str | None = None
) -> None:
    """--target-beta, --z, --ref-model and --train-samples of `evaluate`, checked before any heavy work."""
    from iswcli import artifacts, models

    if target_beta is None:
        if z is not None or ref_model is not None or train_samples is not None:
            raise IswtError("--z, --ref-model and --train-samples belong to the exact target: give --target-beta too")
        return
    if train_samples is not None:
        artifacts.open_artifact(train_samples, artifacts.SAMPLES, columns=["response_token_ids"])
    if not (math.isfinite(target_beta) and target_beta > 0):
        raise IswtError(f"--target-beta {target_beta}: must be a finite number > 0")
    set_default(reward)
    if z is not None and not os.path.exists(z):
        raise IswtError(f"--z {z}: no such file")
    if z is not None:
        z_intervals(z, target_beta)  # its kind and beta, before anything is sampled
    if ref_model is not None:
        try:
            models.resolve_model(ref_model)
        except IswtError as exc:
            raise IswtError(f"--ref-model {ref_model}: {rule_of(exc)}") from None


def add_compare_values(eval_paths: list[str], common: list[str], values: list[dict]) -> None:
    """When every eval file has its OUT.target.parquet beside it, add the exact measures to --compare's values."""
    from pathlib import Path

    targets = [str(Path(p).with_suffix(".target.parquet")) for p in eval_paths]
    if not all(os.path.exists(t) for t in targets):
        return
    _check_one_beta(targets)
    nan = dict.fromkeys(SUMMARY_METRICS, float("nan"))
    per_run = [read_target_values(t) for t in targets]
    exact: list[dict] = [{} for _ in values]
    for name in SUMMARY_METRICS:
        columns = [np.array([per.get(pid, nan)[name] for pid in common], dtype=float) for per in per_run]
        if any(np.isfinite(c).any() for c in columns):  # log_z_error only where a run had --z
            for run_exact, column in zip(exact, columns):
                run_exact[name] = column
    for run_values, run_exact in zip(values, exact):  # the exact measures first, the sampled metrics after
        sampled = dict(run_values)
        run_values.clear()
        run_values.update({**run_exact, **sampled})
