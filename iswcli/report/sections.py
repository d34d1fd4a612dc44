"""One builder per kind of artifact: each returns its sections (title, caption, figures, tables, provenance) or none when that kind is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from iswcli import artifacts, estimators, metrics, plots, target_eval
from iswcli.errors import IswtError
from iswcli.report.discovery import Found
from iswcli.report.html import (
    FigureWriter,
    ReportOptions,
    Section,
    eval_table,
    flag_tables,
    html_table,
    interval_text,
    note_html,
    pair_table,
    run_summary,
)
from iswcli.report.recompute import (
    eval_summary,
    float_column,
    group_mean,
    interval_arrays,
    iso_series,
    prompt_codes,
    read_columns,
    read_source,
    relative_log_weights,
    relative_weights,
)
from iswcli.target_curves import CURVE_GROUPS, read_ends

EVAL_COLUMNS = ("prompt_id", "sample_idx", "reward", "correct")
DIVERSITY_METRICS = (
    ("n_strategies", "strategies (judge)"),
    ("distinct_2", "distinct-2"),
    ("self_bleu", "self-BLEU (lower: more diverse)"),
    ("embed_dispersion", "embedding dispersion"),
)
#: Train-log columns that are not parts of the loss.
LOG_BOOKKEEPING = (
    "step",
    "loss",
    "lr",
    "grad_norm",
    "tokens_per_s",
    "response_tokens",
    "seconds",
    "log_ratio_mean",
)


def overview_section(found: Found, config: ReportOptions, figures: FigureWriter) -> list[Section]:
    """The answer first: evaluation and diversity side by side with intervals, and the health of every log Z."""
    blocks = [*_evaluation_overview(found, config), *_diversity_overview(found, config), *_log_z_overview(found)]
    if not blocks:
        return []
    caption = (
        "The comparison at a glance: each policy's mean correctness (Mean@k) and reward over prompts with 95% "
        "bootstrap intervals, and its paired difference to the first evaluation on the prompts both share; the "
        "diversity measures likewise; and for each frozen log Z how many prompts carry a warning flag. The "
        "sections below hold the figures and the details."
    )
    return [Section("At a glance", caption, blocks, [])]


def _per_prompt(table: pa.Table, column: str) -> dict[str, float]:
    codes, n_prompts = prompt_codes(table)
    names = artifacts.rank_strings(table["prompt_id"])[1].to_pylist()
    return dict(zip(names, group_mean(codes, n_prompts, float_column(table, column))))


def _paired(values: dict[str, float], first: dict[str, float], config: ReportOptions) -> str:
    shared = sorted(values.keys() & first.keys())
    diff = metrics.paired_bootstrap_diff(
        [values[p] for p in shared], [first[p] for p in shared], config.bootstrap, config.seed
    )
    return interval_text(diff)


def _evaluation_overview(found: Found, config: ReportOptions) -> list[str]:
    runs = []
    for source in found.of_kind("eval"):
        try:
            table, _ = read_columns(source.path, "eval", EVAL_COLUMNS)
        except IswtError:
            continue  # the evaluation section notes it
        runs.append((source.label, _per_prompt(table, "correct"), _per_prompt(table, "reward")))
    rows = []
    for label, correct, reward in runs:
        cis = [metrics.bootstrap_ci(list(v.values()), config.bootstrap, config.seed) for v in (correct, reward)]
        versus = "" if label == runs[0][0] else _paired(correct, runs[0][1], config)
        rows.append([label, str(len(correct)), *(interval_text(ci) for ci in cis), versus])
    if not rows:
        return []
    first = runs[0][0]
    headers = ["evaluation", "prompts", "Mean@k", "mean reward", f"Mean@k minus {first}"]
    return [html_table(headers, rows, "evaluation")]


def _diversity_overview(found: Found, config: ReportOptions) -> list[str]:
    rows = []
    for source in found.of_kind("diversity"):
        try:
            table, _ = read_columns(source.path, "diversity", [n for n, _ in DIVERSITY_METRICS])
        except IswtError:
            continue
        cis = [
            metrics.bootstrap_ci(float_column(table, n), config.bootstrap, config.seed) for n, _ in DIVERSITY_METRICS
        ]
        rows.append([source.label, *(interval_text(ci) for ci in cis)])
    if not rows:
        return []
    return [html_table(["diversity", *(title for _, title in DIVERSITY_METRICS)], rows, "diversity")]


def _log_z_overview(found: Found) -> list[str]:
    rows = []
    for source in found.of_kind("z"):
        try:
            table, _ = read_columns(source.path, "z", ["ess_frac", "flags"])
        except IswtError:
            continue
        flags = table["flags"].to_pylist()
        counts: dict[str, int] = {}
        for name in (f for row in flags for f in row or []):
            counts[name] = counts.get(name, 0) + 1
        flagged = sum(1 for row in flags if row)
        shown = ", ".join(f"{name} {n}" for name, n in sorted(counts.items(), key=lambda c: -c[1])) or "none"
        median_ess = float(np.nanmedian(float_column(table, "ess_frac"))) if table.num_rows else float("nan")
        rows.append(
            [
                source.label,
                str(table.num_rows),
                f"{flagged} ({flagged / max(table.num_rows, 1):.0%})",
                f"{median_ess:.2f}",
                shown,
            ]
        )
    if not rows:
        return []
    headers = ["log Z", "prompts", "prompts flagged", "median ESS/K", "flags"]
    return [html_table(headers, rows, "health of the frozen log Z")]


def rewards_section(found: Found, config: ReportOptions, figures: FigureWriter) -> list[Section]:
    blocks, used = [], []
    for source in found.of_kind("scores"):
        art = read_source(found, source, artifacts.SCORES, ["reward"])
        if art is None:
            continue
        reward = float_column(art.table, "reward")
        codes, n_prompts = prompt_codes(art.table)
        fig = plots.reward_figure(reward, group_mean(codes, n_prompts, reward))
        blocks.append(figures.add(fig, f"rewards-{source.label}", f"reward distribution of {source.label}"))
        used.append(source)
    if not used:
        return []
    caption = (
        "The reward of every scored sample (left) and each prompt's mean reward (right), per scores artifact. "
        "Discrete rewards get one bar per value."
    )
    return [Section("Rewards", caption, blocks, used)]


def importance_section(found: Found, config: ReportOptions, figures: FigureWriter) -> list[Section]:
    blocks, used = [], []
    for source in found.of_kind("z"):
        art = read_source(found, source, artifacts.Z, None)
        if art is None:
            continue
        relative, note = relative_log_weights(source, art.table)
        table = art.table
        low_ess = float((source.provenance.get("config") or {}).get("low_ess") or estimators.LOW_ESS_FRAC)
        notes = [n for n in table["khat_note"].to_pylist() if n]
        khat_note = max(set(notes), key=notes.count) if notes else ""
        fig = plots.z_figure(relative, float_column(table, "ess_frac"), float_column(table, "khat"), low_ess, khat_note)
        blocks.append(figures.add(fig, f"importance-{source.label}", f"importance weights of {source.label}"))
        if note:
            blocks.append(note_html(note))
        blocks.append(flag_tables(source.label, table))
        used.append(source)
    if not used:
        return []
    caption = (
        "How well the proposal covers the reward-tilted target, per prompt. Left: log importance weights "
        "relative to their prompt's estimate (lw − log Ẑ; 0 is a sample carrying exactly its 1/K share, a long "
        "right tail means a few samples dominate). Middle: Kish ESS/K with the low-ESS flag threshold. Right: "
        "Pareto k-hat with 0.5 and 0.7 marked (above 0.7 the estimate is unreliable). The tables count and list "
        "the flagged prompts."
    )
    return [Section("Importance weights and log Z", caption, blocks, used)]


def pairs_section(found: Found, config: ReportOptions, figures: FigureWriter) -> list[Section]:
    blocks, used = [], []
    for source in found.of_kind("pairs"):
        art = read_source(found, source, artifacts.PAIRS, ["weight"])
        if art is None:
            continue
        codes, _ = prompt_codes(art.table)
        method = (source.provenance.get("config") or {}).get("method", "?")
        series = [(f"stored ({method})", *relative_weights(codes, float_column(art.table, "weight")))]
        recomputed, note = iso_series(source, config.gammas)
        series += recomputed
        fig = plots.pair_weight_figure([s[:3] for s in series])
        blocks.append(figures.add(fig, f"pairs-{source.label}", f"pair weights of {source.label}"))
        if note:
            blocks.append(note_html(note))
        blocks.append(pair_table(series))
        used.append(source)
    if not used:
        return []
    gammas = ", ".join(f"{g:g}" for g in config.gammas)
    caption = (
        "Pair weights relative to uniform (log10 of weight × pairs in the prompt; 0 is the uniform share): the "
        f"stored weights and iso weights recomputed from the same scores at γ = {gammas}. Right: each prompt's "
        "Kish ESS of its weights over its number of pairs (1 = uniform). Smaller γ puts more weight on pairs of "
        "high-reward samples; with 0/1 rewards every untied pair has the same rewards, so iso weights are uniform "
        "at any γ."
    )
    return [Section("Pair weights", caption, blocks, used)]


def training_section(found: Found, config: ReportOptions, figures: FigureWriter) -> list[Section]:
    blocks, used = [], []
    for run in found.runs:
        log = run.path / "train_log.parquet"
        try:
            art = artifacts.read_artifact(str(log), artifacts.TRAIN_LOG)
        except IswtError as exc:
            found.notes.append(f"{exc}; run {run.path} skipped")
            continue
        run.sha256 = art.sha256
        table = art.table.sort_by("step")
        logged = [
            name
            for name in table.column_names
            if name not in LOG_BOOKKEEPING and pa.types.is_floating(table.schema.field(name).type)
        ]
        curves = {name: float_column(table, name) for name in logged if name.endswith("_kl_set")}
        parts = {name: float_column(table, name) for name in logged if not name.startswith(CURVE_GROUPS)}
        log_ratio = float_column(table, "log_ratio_mean") if "log_ratio_mean" in table.column_names else None
        step, loss = float_column(table, "step"), float_column(table, "loss")
        fig = plots.training_figure(step, loss, parts, log_ratio, curves)
        blocks.append(figures.add(fig, f"training-{run.label}", f"training curves of {run.label}"))
        blocks.append(run_summary(run, table))
        used.append(run)
    if not used:
        return []
    caption = (
        "Per run: the loss, the parts it logged (e.g. the trajectory-balance residual δ, or a pair loss's margin "
        "and accuracy) and the mean log-ratio log πθ − log πref of the training samples, against the optimizer "
        "step. At step 0 the policy is the reference, so the log-ratio starts at 0. Runs trained with "
        "--eval-target-every add kl_set against the exact π* on the training and held-out prompts."
    )
    return [Section("Training curves", caption, blocks, used)]


def evaluation_section(found: Found, config: ReportOptions, figures: FigureWriter) -> list[Section]:
    rows, used = [], []
    for source in found.of_kind("eval"):
        try:
            table, source.sha256 = read_columns(source.path, "eval", EVAL_COLUMNS)
        except IswtError as exc:
            found.notes.append(f"{exc}; skipped")
            continue
        codes, n_prompts = prompt_codes(table)
        correct = group_mean(codes, n_prompts, float_column(table, "correct"))
        reward = group_mean(codes, n_prompts, float_column(table, "reward"))
        ci = [metrics.bootstrap_ci(v, config.bootstrap, config.seed) for v in (correct, reward)]
        pooled, note = eval_summary(source.path, source.sha256)
        if note:
            found.notes.append(note)
        rows.append((source, table.num_rows, ci, pooled))
        used.append(source)
    if not used:
        return []
    labels = [s.label for s in used]
    panels = [
        ("mean correctness (Mean@k)", labels, *interval_arrays([r[2][0] for r in rows])),
        ("mean reward", labels, *interval_arrays([r[2][1] for r in rows])),
    ]
    blocks = [figures.add(plots.interval_bars_figure(panels), "evaluation", "evaluation comparison"), eval_table(rows)]
    caption = (
        "Mean correctness and mean reward of each evaluated policy: averaged over each prompt's samples, then over "
        f"prompts. Error bars are 95% percentile bootstrap intervals resampling prompts ({config.bootstrap} "
        "resamples). The table adds the pooled metrics of each evaluation's summary.json when there is one."
    )
    return [Section("Evaluation", caption, blocks, used)]


def diversity_section(found: Found, config: ReportOptions, figures: FigureWriter) -> list[Section]:
    intervals, used = [], []
    for source in found.of_kind("diversity"):
        try:
            table, source.sha256 = read_columns(source.path, "diversity", [n for n, _ in DIVERSITY_METRICS])
        except IswtError as exc:
            found.notes.append(f"{exc}; skipped")
            continue
        intervals.append(
            [
                metrics.bootstrap_ci(float_column(table, name), config.bootstrap, config.seed)
                for name, _ in DIVERSITY_METRICS
            ]
        )
        used.append(source)
    if not used:
        return []
    labels = [s.label for s in used]
    panels = [
        (title, labels, *interval_arrays([row[i] for row in intervals]))
        for i, (_, title) in enumerate(DIVERSITY_METRICS)
    ]
    table_rows = [[s.label, str(row[0].n), *(interval_text(ci) for ci in row)] for s, row in zip(used, intervals)]
    blocks = [
        figures.add(plots.interval_bars_figure(panels), "diversity", "diversity comparison"),
        html_table(["artifact", "prompts", *(title for _, title in DIVERSITY_METRICS)], table_rows),
    ]
    caption = (
        "Per-prompt diversity of each policy's k solutions, averaged over prompts with 95% bootstrap intervals "
        "(prompts with an undefined value, such as an unparsable judge answer, are left out): the number of "
        "strategies the judge model found, distinct-2, self-BLEU (lower is more diverse) and the mean pairwise "
        "embedding distance."
    )
    return [Section("Diversity", caption, blocks, used)]


EXACT_PANELS = (
    ("kl_set", "KL(pi* || policy), answer set + other"),
    ("p_valid", "mass on the listed answers"),
    ("eff_answers", "effective number of answers"),
)


def exact_target_section(found: Found, config: ReportOptions, figures: FigureWriter) -> list[Section]:
    """Answer sets (`evaluate --target-beta`): each policy's exact distance to pi*, read from OUT.target.parquet."""
    rows, used = [], []
    for source in found.of_kind("eval"):
        path = Path(source.path).with_suffix(".target.parquet")
        if not path.is_file():
            continue
        try:
            per = target_eval.read_target_values(str(path))
        except (OSError, KeyError, pa.ArrowException) as exc:
            found.notes.append(f"{path}: not a readable target artifact ({exc}); skipped")
            continue
        cis = {
            name: metrics.bootstrap_ci(
                np.array([v[name] for v in per.values()], dtype=float), config.bootstrap, config.seed
            )
            for name in target_eval.SUMMARY_METRICS
        }
        rows.append(cis)
        used.append(source)
    if not used:
        return []
    labels = [s.label for s in used]
    panels = [(title, labels, *interval_arrays([r[name] for r in rows])) for name, title in EXACT_PANELS]
    shown = [name for name in target_eval.SUMMARY_METRICS if any(r[name].n for r in rows)]
    table_rows = [
        [s.label, str(r["kl_set"].n), *(interval_text(r[name]) for name in shown)] for s, r in zip(used, rows)
    ]
    blocks = [
        figures.add(plots.interval_bars_figure(panels), "exact-target", "exact target comparison"),
        html_table(["eval", "prompts", *shown], table_rows),
    ]
    caption = (
        "Answer-set prompts list every rewarded response, so the target pi* = pi_ref e^(beta r) / Z is exact "
        "(teacher forcing, no sampling): kl_set is KL(pi* || policy) over the listed answers plus 'anything else' "
        "(0: the target exactly), p_valid the policy's mass on the listed answers (p_valid_target: the target's), "
        "eff_answers exp(entropy) within the answer set (eff_answers_target: the target's); log_z_error an IS "
        "estimate's error against the exact log Z and log_z_covered whether its 95% interval held it. Means over "
        f"prompts with 95% bootstrap intervals ({config.bootstrap} resamples)."
    )
    return [Section("Exact target (answer sets)", caption, blocks, used)]


def target_by_n_section(found: Found, config: ReportOptions, figures: FigureWriter) -> list[Section]:
    """Runs trained with --eval-target-every, grouped by name and samples per prompt: kl_set's change from the
    base model against N, a line per run name with two or more N (e.g. a study's nN-sSEED/METHOD layout)."""
    changes: dict[tuple[str, int], list[dict]] = {}  # (run name, N) -> each seed's {group: {prompt: change}}
    used = []
    for run in found.runs:
        try:
            ends = read_ends(run.path)
        except IswtError as exc:
            found.notes.append(f"{exc}; run {run.path} left out of the distance against N")
            continue
        n = _samples_per_prompt(run)
        if ends is None or n is None:
            continue
        change = {g: {p: v["kl_set"] - v["base_kl_set"] for p, v in per.items()} for g, per in ends.items()}
        changes.setdefault((run.path.name, n), []).append(change)
        used.append(run)
    names = [name for name in dict.fromkeys(k for k, _ in changes) if len({n for m, n in changes if m == name}) > 1]
    if not names:
        return []
    panels, rows = [], []
    for group in ("train", "heldout"):
        series = {}
        for name in names:
            xs, est, lo, hi = [], [], [], []
            for n in sorted(n for m, n in changes if m == name):
                seeds = [c[group] for c in changes[name, n] if group in c]
                if not seeds:
                    continue
                per_prompt = [np.mean([s[p] for s in seeds if p in s]) for p in seeds[0]]  # seeds averaged
                ci = metrics.bootstrap_ci(np.array(per_prompt), config.bootstrap, config.seed)
                xs.append(n), est.append(ci.estimate), lo.append(ci.lo), hi.append(ci.hi)
                rows.append([group, name, str(n), str(len(seeds)), interval_text(ci)])
            if xs:
                series[name] = (xs, est, lo, hi)
        if series:
            panels.append(("training prompts" if group == "train" else "held-out prompts", series))
    fig = plots.against_n_figure(panels, "kl_set change from the base model")
    blocks = [
        figures.add(fig, "kl-set-by-n", "kl_set against samples per prompt"),
        html_table(["prompts", "run", "N", "seeds", "kl_set change [95% CI]"], rows),
    ]
    caption = (
        "Runs that measured the exact target while training (train --eval-target-every), grouped by run name and "
        "by the samples per prompt N of their samples artifact: each prompt's kl_set after the last update minus "
        "at step 0 (the base model), averaged over the runs (seeds) of a group, then over prompts with a 95% "
        f"bootstrap interval ({config.bootstrap} resamples). Below 0: closer to pi* than the base model."
    )
    return [Section("Distance to the target against samples per prompt", caption, blocks, used)]


def _samples_per_prompt(run) -> int | None:
    """--n of the samples the run trained on, from that artifact's provenance (None when unreadable)."""
    samples = ((run.manifest.get("inputs") or {}).get("samples") or {}).get("path")
    if samples and not Path(samples).exists():  # a path relative to where train ran: try beside the run
        samples = str(run.path.parent / Path(samples).name)
    try:
        return int(artifacts.read_metadata(artifacts.resolve_files(samples)[0])[2]["config"]["n"])
    except (IswtError, OSError, KeyError, TypeError, ValueError, IndexError):
        return None
