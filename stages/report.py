"""`iswt report`: one self-contained HTML page of figures from any mix of artifacts.

Read top to bottom: validate the output path, discover what the inputs hold
(artifacts by their `iswt.artifact` kind, train runs by `manifest.json`,
directories walked for both), build one section per kind that is present,
each with its figures, tables, a caption and the provenance of what it used,
and write the page atomically. The figures are also written as PNG files into
`<out stem>_figures/` and embedded in the page as base64 data URIs, so the
page needs nothing beside itself.

Sections: rewards (scores), importance weights (z; the log-weights are
recomputed from the z artifact's inputs when they are still on disk), pair
weights (pairs; iso weights recomputed at several gamma from the pairs'
scores), training curves (runs), evaluation and diversity comparisons with
bootstrap intervals over prompts.
"""

from __future__ import annotations

import base64
import glob as globlib
import html
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from iswcli import __version__, artifacts, console, estimators, metrics, outputs, pairing, plots
from iswcli.errors import IswtError
from iswcli.chain import load_scored
from iswcli.proposal import LOG_RATIO_REF

DEFAULT_GAMMAS = (0.5, 1.0, 2.0, 4.0)
EVAL_COLUMNS = ("prompt_id", "sample_idx", "reward", "correct")
DIVERSITY_METRICS = (
    ("n_strategies", "strategies (judge)"),
    ("distinct_2", "distinct-2"),
    ("self_bleu", "self-BLEU (lower: more diverse)"),
    ("embed_dispersion", "embedding dispersion"),
)
#: Train-log columns that are not parts of the loss.
LOG_BOOKKEEPING = ("step", "loss", "lr", "grad_norm", "tokens_per_s", "log_ratio_mean")
#: Config keys that say nothing about what an artifact is (where it went, how fast it ran).
NOT_HIGHLIGHTS = frozenset({"out", "plot", "device", "workers", "batch_size", "shard", "resume", "save_every"})
#: Flagged prompts listed per z artifact; the rest are counted.
MAX_FLAGGED_ROWS = 40
#: Pooled metrics from an eval's summary.json shown in the table (the file itself has them all).
MAX_POOLED_COLUMNS = 12


@dataclass(frozen=True)
class ReportConfig:
    inputs: tuple[str, ...]
    out: str
    title: str = "iswt report"
    gammas: tuple[float, ...] = DEFAULT_GAMMAS
    bootstrap: int = 2000
    seed: int = 0

    @property
    def figures_dir(self) -> Path:
        out = Path(self.out)
        return out.with_name(f"{out.stem}_figures")


def validate(config: ReportConfig) -> None:
    if not config.inputs:
        raise IswtError("give at least one artifact, run directory or directory to report on")
    if any(not (math.isfinite(g) and g > 0) for g in config.gammas):
        raise IswtError(f"--gammas {','.join(map(str, config.gammas))}: each must be a finite number > 0")
    if config.bootstrap < 1:
        raise IswtError(f"--bootstrap {config.bootstrap}: must be at least 1")
    target = Path(config.out)
    if target.suffix.lower() not in (".html", ".htm"):
        raise IswtError(f"--out {config.out}: must end in .html")
    if target.is_dir():
        raise IswtError(f"--out {config.out}: is a directory, expected an .html file path")
    existing = next((p for p in [target.parent, *target.parent.parents] if p.exists()), None)
    if existing is not None and not (existing.is_dir() and os.access(existing, os.W_OK)):
        raise IswtError(f"--out {config.out}: {existing} is not a writable directory")


def run(config: ReportConfig) -> dict:
    validate(config)
    with outputs.claim(config.out, {f"argument {i + 1}": path for i, path in enumerate(config.inputs)}):
        found = discover(config.inputs, exclude=(Path(config.out), config.figures_dir))
        reportable = [s for s in found.sources if s.kind != "samples"]
        if not reportable and not found.runs:
            what = "only samples artifacts" if found.sources else "no iswt artifact and no train run directory"
            raise IswtError(
                f"{', '.join(config.inputs)}: nothing to report: found {what} "
                "(give scores, z, pairs, eval or diversity artifacts, train run directories, or a directory holding them)"
            )
        figures = FigureWriter(config.figures_dir)
        builders = (
            rewards_section, importance_section, pairs_section, training_section, evaluation_section, diversity_section,
            exact_target_section,
        )  # fmt: skip
        sections = [section for build in builders for section in build(found, config, figures)]
        if not sections:
            raise IswtError(f"nothing to report: no input could be read ({found.notes[0] if found.notes else 'no notes'})")
        outputs.write_atomically(config.out, render_page(config, found, sections))
        figures.remove_stale()
        for note in found.notes[:5]:
            console.warn(note)
        if len(found.notes) > 5:
            console.warn(f"... and {len(found.notes) - 5} more notes (listed in the report)")
        return {
            "output": config.out,
            "figures": f"{figures.directory} ({len(figures.written)} PNG)",
            "sections": ", ".join(s.title for s in sections),
            "artifacts": {kind: len(found.of_kind(kind)) for kind in artifacts.SPECS if found.of_kind(kind)},
            "train runs": len(found.runs),
            "skipped": len(found.notes),
        }


# --------------------------------------------------------------------------
# Discovery: what the inputs hold
# --------------------------------------------------------------------------


@dataclass
class Source:
    """One artifact: a file, a directory of shards or a glob, as `artifacts.read_artifact` takes it."""

    path: str
    kind: str
    provenance: dict
    label: str = ""
    sha256: str | None = None  # set once the artifact has been read


@dataclass
class Run:
    """A train run directory: its log and its manifest (empty when the run never finished)."""

    path: Path
    manifest: dict
    label: str = ""
    sha256: str | None = None


@dataclass
class Found:
    sources: list[Source] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def of_kind(self, kind: str) -> list[Source]:
        return [s for s in self.sources if s.kind == kind]

    def first_visit(self, path) -> bool:
        key = os.path.realpath(path)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def discover(inputs, exclude=()) -> Found:
    """Find artifacts and runs in the inputs; anything else becomes a note.

    A path that does not exist is an error (most likely a typo); a file that
    is not an artifact is skipped with a note.
    """
    found = Found()
    excluded = {os.path.realpath(p) for p in exclude}
    for path in inputs:
        if globlib.has_magic(path) and not os.path.exists(path):
            _add_parquet_group(found, artifacts.resolve_files(path), group_path=path)
        elif os.path.isdir(path):
            _visit_dir(found, Path(path), excluded)
        elif os.path.isfile(path):
            _visit_file(found, Path(path), explicit=True)
        else:
            raise IswtError(f"{path}: no such file or directory")
    _label(found.sources)
    _label(found.runs)
    return found


def _visit_dir(found: Found, directory: Path, excluded: set[str]) -> None:
    if (directory / "manifest.json").is_file() or (directory / "train_log.parquet").is_file():
        _add_run(found, directory)
        return  # weights, tokenizer and checkpoints of a run are not artifacts
    entries = sorted(directory.iterdir())
    visible = [e for e in entries if not e.name.startswith(".") and os.path.realpath(e) not in excluded]
    shards = [str(e) for e in visible if e.is_file() and e.suffix == ".parquet"]
    _add_parquet_group(found, shards, group_path=str(directory))
    others = [e.name for e in visible if e.is_file() and e.suffix != ".parquet" and not _companion(e)]
    if others:
        shown = ", ".join(others[:4]) + (", ..." if len(others) > 4 else "")
        found.notes.append(f"{directory}: {len(others)} file(s) that are not artifacts skipped ({shown})")
    for sub in visible:
        if sub.is_dir() and not sub.name.endswith(".partial"):  # .partial: a stage still running or killed
            _visit_dir(found, sub, excluded)


def _companion(path: Path) -> bool:
    """OUT.summary.json beside OUT.parquet (from `iswt evaluate`): read with its artifact, not on its own."""
    name = path.name
    return name.endswith(".summary.json") and path.with_name(name.removesuffix(".summary.json") + ".parquet").is_file()


def _visit_file(found: Found, path: Path, explicit: bool) -> None:
    if path.name == "manifest.json":
        _add_run(found, path.parent)
    elif path.suffix == ".parquet":
        _add_parquet_group(found, [str(path)], group_path=str(path))
    elif explicit:
        found.notes.append(f"{path}: not a Parquet artifact or a run manifest; skipped")


def _add_parquet_group(found: Found, files: list[str], group_path: str) -> None:
    """Files of one directory (or glob): one sharded artifact when they agree, else one artifact each."""
    metas = {}
    for file in files:
        try:
            _, kind, provenance = artifacts.read_metadata(file)
        except IswtError as exc:
            found.notes.append(f"{exc}; skipped")
            continue
        if kind == "target":  # OUT.target.parquet of `evaluate --target-beta`: read with its eval
            continue
        if kind not in artifacts.SPECS:
            found.notes.append(f"{file}: no iswt artifact kind in its metadata; skipped")
            continue
        metas[file] = (kind, provenance)
    if len(metas) > 1 and len(metas) == len(files) and _one_artifact(list(metas.values())):
        kind, provenance = next(iter(metas.values()))
        _add_source(found, group_path, kind, provenance)
        return
    for file, (kind, provenance) in metas.items():
        _add_source(found, file, kind, provenance)


def _one_artifact(metas: list[tuple[str, dict]]) -> bool:
    """Shards of one artifact share kind, stage and config (bar the keys shards may differ in)."""

    def identity(kind: str, provenance: dict):
        config = provenance.get("config") or {}
        shared = {k: v for k, v in config.items() if k not in artifacts.SHARD_LOCAL_KEYS}
        return kind, provenance.get("stage"), json.dumps(shared, sort_keys=True, default=str)

    return len({identity(kind, prov) for kind, prov in metas}) == 1


def _add_source(found: Found, path: str, kind: str, provenance: dict) -> None:
    if kind == "train_log":  # a run's log given on its own: report the run
        _add_run(found, Path(path).parent)
    elif found.first_visit(path):
        found.sources.append(Source(path, kind, provenance))


def _add_run(found: Found, directory: Path) -> None:
    if not found.first_visit(directory):
        return
    manifest_file = directory / "manifest.json"
    manifest = {}
    if manifest_file.is_file():
        try:
            manifest = json.loads(manifest_file.read_text())
        except (OSError, ValueError) as exc:
            found.notes.append(f"{manifest_file}: not readable JSON ({exc}); its run is shown without provenance")
    found.runs.append(Run(directory, manifest))


def _label(items) -> None:
    """Short names for legends and tables: the file stem, with parent folders added until unique."""
    for item, name in zip(items, console.short_names([item.path for item in items])):
        item.label = name


# --------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------


@dataclass
class Section:
    title: str
    caption: str
    blocks: list[str]  # HTML fragments: figures, tables, notes
    sources: list  # Source or Run: what the section used


def rewards_section(found: Found, config: ReportConfig, figures: FigureWriter) -> list[Section]:
    blocks, used = [], []
    for source in found.of_kind("scores"):
        art = _read(found, source, artifacts.SCORES, ["reward"])
        if art is None:
            continue
        reward = _float_column(art.table, "reward")
        codes, n_prompts = _prompt_codes(art.table)
        fig = plots.reward_figure(reward, _group_mean(codes, n_prompts, reward))
        blocks.append(figures.add(fig, f"rewards-{source.label}", f"reward distribution of {source.label}"))
        used.append(source)
    if not used:
        return []
    caption = (
        "The reward of every scored sample (left) and each prompt's mean reward (right), per scores artifact. "
        "Discrete rewards get one bar per value."
    )
    return [Section("Rewards", caption, blocks, used)]


def importance_section(found: Found, config: ReportConfig, figures: FigureWriter) -> list[Section]:
    blocks, used = [], []
    for source in found.of_kind("z"):
        art = _read(found, source, artifacts.Z, None)
        if art is None:
            continue
        relative, note = _relative_log_weights(source, art.table)
        table = art.table
        low_ess = float((source.provenance.get("config") or {}).get("low_ess") or estimators.LOW_ESS_FRAC)
        notes = [n for n in table["khat_note"].to_pylist() if n]
        khat_note = max(set(notes), key=notes.count) if notes else ""
        fig = plots.z_figure(
            relative, _float_column(table, "ess_frac"), _float_column(table, "khat"), low_ess, khat_note
        )
        blocks.append(figures.add(fig, f"importance-{source.label}", f"importance weights of {source.label}"))
        if note:
            blocks.append(_note(note))
        blocks.append(_flag_tables(source.label, table))
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


def pairs_section(found: Found, config: ReportConfig, figures: FigureWriter) -> list[Section]:
    blocks, used = [], []
    for source in found.of_kind("pairs"):
        art = _read(found, source, artifacts.PAIRS, ["weight"])
        if art is None:
            continue
        codes, _ = _prompt_codes(art.table)
        method = (source.provenance.get("config") or {}).get("method", "?")
        series = [(f"stored ({method})", *_relative_weights(codes, _float_column(art.table, "weight")))]
        recomputed, note = _iso_series(source, config.gammas)
        series += recomputed
        fig = plots.pair_weight_figure([s[:3] for s in series])
        blocks.append(figures.add(fig, f"pairs-{source.label}", f"pair weights of {source.label}"))
        if note:
            blocks.append(_note(note))
        blocks.append(_pair_table(series))
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


def training_section(found: Found, config: ReportConfig, figures: FigureWriter) -> list[Section]:
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
        parts = {
            name: _float_column(table, name)
            for name in table.column_names
            if name not in LOG_BOOKKEEPING and pa.types.is_floating(table.schema.field(name).type)
        }
        log_ratio = _float_column(table, "log_ratio_mean") if "log_ratio_mean" in table.column_names else None
        fig = plots.training_figure(_float_column(table, "step"), _float_column(table, "loss"), parts, log_ratio)
        blocks.append(figures.add(fig, f"training-{run.label}", f"training curves of {run.label}"))
        blocks.append(_run_summary(run, table))
        used.append(run)
    if not used:
        return []
    caption = (
        "Per run: the loss, the parts it logged (e.g. the trajectory-balance residual δ, or a pair loss's margin "
        "and accuracy) and the mean log-ratio log πθ − log πref of the training samples, against the optimizer "
        "step. At step 0 the policy is the reference, so the log-ratio starts at 0."
    )
    return [Section("Training curves", caption, blocks, used)]


def evaluation_section(found: Found, config: ReportConfig, figures: FigureWriter) -> list[Section]:
    rows, used = [], []
    for source in found.of_kind("eval"):
        try:
            table, source.sha256 = _read_columns(source.path, "eval", EVAL_COLUMNS)
        except IswtError as exc:
            found.notes.append(f"{exc}; skipped")
            continue
        codes, n_prompts = _prompt_codes(table)
        correct = _group_mean(codes, n_prompts, _float_column(table, "correct"))
        reward = _group_mean(codes, n_prompts, _float_column(table, "reward"))
        ci = [metrics.bootstrap_ci(v, config.bootstrap, config.seed) for v in (correct, reward)]
        pooled, note = _eval_summary(source.path, source.sha256)
        if note:
            found.notes.append(note)
        rows.append((source, table.num_rows, ci, pooled))
        used.append(source)
    if not used:
        return []
    labels = [s.label for s in used]
    panels = [
        ("mean correctness (Mean@k)", labels, *_interval_arrays([r[2][0] for r in rows])),
        ("mean reward", labels, *_interval_arrays([r[2][1] for r in rows])),
    ]
    blocks = [figures.add(plots.interval_bars_figure(panels), "evaluation", "evaluation comparison"), _eval_table(rows)]
    caption = (
        "Mean correctness and mean reward of each evaluated policy: averaged over each prompt's samples, then over "
        f"prompts. Error bars are 95% percentile bootstrap intervals resampling prompts ({config.bootstrap} "
        "resamples). The table adds the pooled metrics of each evaluation's summary.json when there is one."
    )
    return [Section("Evaluation", caption, blocks, used)]


def diversity_section(found: Found, config: ReportConfig, figures: FigureWriter) -> list[Section]:
    intervals, used = [], []
    for source in found.of_kind("diversity"):
        try:
            table, source.sha256 = _read_columns(source.path, "diversity", [n for n, _ in DIVERSITY_METRICS])
        except IswtError as exc:
            found.notes.append(f"{exc}; skipped")
            continue
        intervals.append([
            metrics.bootstrap_ci(_float_column(table, name), config.bootstrap, config.seed)
            for name, _ in DIVERSITY_METRICS
        ])  # fmt: skip
        used.append(source)
    if not used:
        return []
    labels = [s.label for s in used]
    panels = [
        (title, labels, *_interval_arrays([row[i] for row in intervals]))
        for i, (_, title) in enumerate(DIVERSITY_METRICS)
    ]
    table_rows = [
        [s.label, str(row[0].n), *(_interval_text(ci) for ci in row)] for s, row in zip(used, intervals)
    ]
    blocks = [
        figures.add(plots.interval_bars_figure(panels), "diversity", "diversity comparison"),
        _table(["artifact", "prompts", *(title for _, title in DIVERSITY_METRICS)], table_rows),
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


def exact_target_section(found: Found, config: ReportConfig, figures: FigureWriter) -> list[Section]:
    """Answer sets (`evaluate --target-beta`): each policy's exact distance to pi*, read from OUT.target.parquet."""
    from iswcli import exact_targets

    rows, used = [], []
    for source in found.of_kind("eval"):
        path = Path(source.path).with_suffix(".target.parquet")
        if not path.is_file():
            continue
        try:
            per = exact_targets.read_target_values(str(path))
        except (OSError, KeyError, pa.ArrowException) as exc:
            found.notes.append(f"{path}: not a readable target artifact ({exc}); skipped")
            continue
        cis = {name: metrics.bootstrap_ci(np.array([v[name] for v in per.values()], dtype=float), config.bootstrap,
                                          config.seed) for name in exact_targets.SUMMARY_METRICS}  # fmt: skip
        rows.append(cis)
        used.append(source)
    if not used:
        return []
    labels = [s.label for s in used]
    panels = [(title, labels, *_interval_arrays([r[name] for r in rows])) for name, title in EXACT_PANELS]
    shown = [name for name in exact_targets.SUMMARY_METRICS if any(r[name].n for r in rows)]
    table_rows = [[s.label, str(r["kl_set"].n), *(_interval_text(r[name]) for name in shown)] for s, r in zip(used, rows)]
    blocks = [
        figures.add(plots.interval_bars_figure(panels), "exact-target", "exact target comparison"),
        _table(["eval", "prompts", *shown], table_rows),
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


# --------------------------------------------------------------------------
# Reading and recomputing
# --------------------------------------------------------------------------


def _read(found: Found, source: Source, spec: artifacts.ArtifactSpec, columns):
    """The artifact, or None with a note: one bad artifact should not sink the whole report."""
    try:
        art = artifacts.read_artifact(source.path, spec, columns=columns)
    except IswtError as exc:
        found.notes.append(f"{exc}; skipped")
        return None
    source.sha256 = art.sha256
    return art


def _read_columns(path: str, kind: str, columns) -> tuple[pa.Table, str]:
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
    tables = [pq.read_table(f, columns=list(columns)).replace_schema_metadata(None) for f in files]
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    return table, artifacts.combined_sha256(files)


def _eval_summary(path: str, sha256: str) -> tuple[dict, str]:
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


def _relative_log_weights(source: Source, z_table: pa.Table) -> tuple[np.ndarray | None, str]:
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
            proposal, scores,
            sample_columns=["logprob_q"] if use_ref else [],
            score_columns=["reward", "logprob_ref"] if use_ref else ["reward"],
            purpose="recomputing log-weights",
        )  # fmt: skip
    except IswtError as exc:
        return None, f"{source.label}: log-weights not recomputed ({exc})."
    if (scored.samples.sha256, scored.scores.sha256) != (proposal_sha, scores_sha):
        return None, f"{source.label}: {proposal} or {scores} changed since log Z was estimated; log-weights not recomputed."
    reward = _float_column(scored.table, "reward")
    if config.get("reward_transform") == "group-zscore":
        reward = estimators.group_zscore(reward, scored.group)
    beta = float(config.get("beta", prov.get("beta", 1.0)))
    if use_ref:
        lw = estimators.log_weights(
            _float_column(scored.table, "logprob_ref"), _float_column(scored.table, "logprob_q"), reward, beta
        )
    else:
        lw = estimators.log_weights(None, None, reward, beta)
    position = pc.index_in(scored.prompt_ids, value_set=z_table["prompt_id"].combine_chunks())
    if position.null_count:
        return None, f"{source.label}: its inputs hold prompts it does not; log-weights not recomputed."
    log_z = _float_column(z_table, "log_z")[position.to_numpy()]
    return lw - log_z[scored.group], ""


def _iso_series(source: Source, gammas) -> tuple[list, str]:
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
    codes, _ = _prompt_codes(art.table)
    sample_idx = art.table["sample_idx"].to_numpy()
    reward = _float_column(art.table, "reward")
    series = []
    for gamma in gammas:
        try:
            table = pairing.weight_pairs(
                codes, sample_idx, reward, method="iso", gamma=gamma,
                rng=np.random.default_rng(config.get("seed", 0)), **options,
            )  # fmt: skip
        except IswtError as exc:
            return series, f"{source.label}: iso weights not recomputed ({exc})."
        series.append((f"iso γ={gamma:g}", *_relative_weights(table.prompt_id, table.weight)))
    return series, ""


def _relative_weights(codes: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def _prompt_codes(table: pa.Table) -> tuple[np.ndarray, int]:
    """Each row's prompt as its rank 0..P-1 in prompt_id order.

    prompt_id order is also the order in which `iswt weight-pairs` numbers
    prompts for the pairing driver.
    """
    codes, distinct = artifacts.rank_strings(table["prompt_id"])
    return codes, len(distinct)


def _group_mean(codes: np.ndarray, n_groups: int, values: np.ndarray) -> np.ndarray:
    """Mean of the finite values per group; NaN for a group with none."""
    ok = np.isfinite(values)
    sums = np.bincount(codes[ok], weights=values[ok], minlength=n_groups)
    counts = np.bincount(codes[ok], minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def _float_column(table: pa.Table, name: str) -> np.ndarray:
    """A numeric or boolean column as float64, missing values as NaN."""
    column = table[name]
    if not pa.types.is_floating(column.type):
        column = pc.cast(column, pa.float64())
    return column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def _interval_arrays(intervals) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.array([getattr(ci, part) for ci in intervals]) for part in ("estimate", "lo", "hi"))


# --------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------


def _flag_tables(label: str, table: pa.Table) -> str:
    """Counts per flag, then the flagged prompts, lowest ESS/K first."""
    flags = table["flags"].to_pylist()
    counts = [[name, str(sum(name in (f or []) for f in flags))] for name in estimators.FLAG_NAMES]
    parts = [_table(["flag", f"prompts of {table.num_rows}"], counts, f"flags in {label}")]
    flagged = [i for i, f in enumerate(flags) if f]
    if not flagged:
        return parts[0] + _note(f"{label}: no prompt is flagged.")
    ess = _float_column(table, "ess_frac")
    flagged.sort(key=lambda i: (ess[i], i))
    columns = {name: _float_column(table, name) for name in ("ess_frac", "khat", "max_weight_share", "log_z", "log_z_se")}
    ids = table["prompt_id"].to_pylist()
    rows = [
        [ids[i], ", ".join(flags[i]), *(_num(columns[c][i]) for c in columns)] for i in flagged[:MAX_FLAGGED_ROWS]
    ]
    parts.append(_table(["prompt_id", "flags", "ESS/K", "k-hat", "max weight share", "log Z", "log Z s.e."], rows,
                        f"flagged prompts in {label}"))  # fmt: skip
    if len(flagged) > MAX_FLAGGED_ROWS:
        parts.append(_note(f"... and {len(flagged) - MAX_FLAGGED_ROWS} more flagged prompts."))
    return "".join(parts)


def _pair_table(series) -> str:
    rows = [
        [label, str(relative.size), str(ess.size), _num(_median(ess)), _num(_median(heaviest))]
        for label, relative, ess, heaviest in series
    ]
    return _table(["weights", "pairs", "prompts", "median ESS / pairs", "median weight of a prompt's heaviest pair"], rows)


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if values.size else math.nan


def _run_summary(run: Run, table: pa.Table) -> str:
    loss = _float_column(table, "loss")
    objective = run.manifest.get("objective") or (run.manifest.get("config") or {}).get("loss", "unknown")
    rows = [
        ["objective", str(objective)],
        ["steps", str(table.num_rows)],
        ["loss first → last", f"{_num(loss[0])} → {_num(loss[-1])}" if loss.size else "n/a"],
    ]
    if "log_ratio_mean" in table.column_names:
        rows.append(["log-ratio mean at first step", _num(_float_column(table, "log_ratio_mean")[0])])
    if not run.manifest:
        rows.append(["manifest", "missing: the run did not finish"])
    return _table(["run " + run.label, ""], rows)


def _eval_table(rows) -> str:
    """Per eval: prompts, samples, the two bootstrapped means, then the pooled metrics of its summary.json."""
    extra_keys = list(dict.fromkeys(k for *_, pooled in rows for k in pooled))[:MAX_POOLED_COLUMNS]
    body = [
        [source.label, str(correct.n), str(n_samples), _interval_text(correct), _interval_text(reward),
         *(_num(pooled.get(k, math.nan)) for k in extra_keys)]
        for source, n_samples, (correct, reward), pooled in rows
    ]  # fmt: skip
    headers = ["eval", "prompts", "samples", "mean correctness [95% CI]", "mean reward [95% CI]", *extra_keys]
    return _table(headers, body)


# --------------------------------------------------------------------------
# Figures and HTML
# --------------------------------------------------------------------------


class FigureWriter:
    """Saves each figure as a PNG in the figures directory and returns it as embedded HTML."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.written: list[Path] = []

    def remove_stale(self) -> None:
        """Drop figures an earlier report left under this name, so the folder matches the page."""
        for old in self.directory.glob("[0-9][0-9]-*.png"):
            if old not in self.written:
                old.unlink()

    def add(self, fig, name: str, alt: str) -> str:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        path = self.directory / f"{len(self.written) + 1:02d}-{safe}.png"
        data = plots.save_png(fig, str(path))
        self.written.append(path)
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        return (
            f'<figure><img src="{uri}" alt="{_e(alt)}" width="{width}" height="{height}">'
            f"<figcaption>{_e(alt)} · {_e(path.name)}</figcaption></figure>"
        )


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 1150px; margin: 24px auto; padding: 0 16px; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 1.6em; }
.meta, figcaption, .prov { color: #555; font-size: 0.85em; }
.caption { margin: 0.3em 0 0.8em; }
figure { margin: 0.6em 0; } img { max-width: 100%; height: auto; display: block; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } caption { text-align: left; font-weight: 600; padding: 2px 0; }
.note { color: #8a5300; font-size: 0.85em; }
code { font-size: 0.95em; } details { margin: 0.2em 0 0.4em; }
"""


def render_page(config: ReportConfig, found: Found, sections: list[Section]) -> str:
    toc = " · ".join(f'<a href="#s{i}">{_e(s.title)}</a>' for i, s in enumerate(sections))
    body = [
        f"<h1>{_e(config.title)}</h1>",
        f'<p class="meta">iswt {__version__} · {time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())} · inputs: '
        + f"{_e(', '.join(config.inputs))}</p>",
        f'<p class="meta">{toc}</p>',
    ]
    for i, section in enumerate(sections):
        body.append(f'<section id="s{i}"><h2>{_e(section.title)}</h2><p class="caption">{_e(section.caption)}</p>')
        body.extend(section.blocks)
        body.append(_provenance(section.sources))
        body.append("</section>")
    if found.notes:
        items = "".join(f"<li>{_e(n)}</li>" for n in found.notes)
        body.append(f'<section id="skipped"><h2>Skipped</h2><ul class="note">{items}</ul></section>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(config.title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _provenance(sources) -> str:
    """One line per artifact (stage, time, hash, config highlights, input hashes), the full record folded."""
    lines = []
    for item in sources:
        prov = item.manifest if isinstance(item, Run) else item.provenance
        config = prov.get("config") or {}
        inputs = prov.get("inputs") or {}
        input_paths = {ref.get("path") for ref in inputs.values() if isinstance(ref, dict)}
        highlights = [
            f"{k}={v}" for k, v in config.items()
            if k not in NOT_HIGHLIGHTS and v is not None and not isinstance(v, (list, dict)) and v not in input_paths
        ][:12]  # fmt: skip
        used = [
            f"{role} {ref.get('path')} ({str(ref.get('sha256', ''))[:12]})"
            for role, ref in inputs.items() if isinstance(ref, dict)
        ]  # fmt: skip
        head = (
            f"<b>{_e(item.label)}</b> <code>{_e(str(item.path))}</code> · {_e(prov.get('stage', 'unknown stage'))}"
            f" · {_e(prov.get('created_at', 'time unknown'))} · sha256 {_e((item.sha256 or '?')[:12])}"
        )
        detail = f"config: {_e(', '.join(highlights) or 'none recorded')}"
        detail += f"<br>inputs: {_e('; '.join(used) or 'none recorded')}"
        if isinstance(item, Run) and prov.get("z_sha256"):
            detail += f"<br>anchored to z {_e(prov['z_sha256'][:12])}"
        full = _e(json.dumps({k: prov.get(k) for k in ("config", "inputs", "model", "seed")}, indent=1, default=str))
        lines.append(
            f'<div class="prov">{head}<br>{detail}<details><summary>full provenance</summary>'
            f"<pre>{full}</pre></details></div>"
        )
    return '<div class="prov"><b>Provenance</b></div>' + "".join(lines)


def _table(headers, rows, caption: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return f"<table>{cap}<tr>{head}</tr>{body}</table>"


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _interval_text(ci: metrics.Interval) -> str:
    return "n/a" if ci.n == 0 else f"{_num(ci.estimate)} [{_num(ci.lo)}, {_num(ci.hi)}]"


def _num(value) -> str:
    value = float(value)
    return "n/a" if math.isnan(value) else f"{value:.4g}"


def _e(text) -> str:
    return html.escape(str(text), quote=True)



