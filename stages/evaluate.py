"""`iswt evaluate`: what training did, measured on held-out prompts.

Read top to bottom: resolve the defaults and check every flag, the prompts
and the baseline before any heavy work; generate with the sample stage into
OUT.samples.parquet and score with the score stage into OUT.scores.parquet;
join the two into OUT (one row per sample); compute the metrics; write OUT
and its summary (in OUT's provenance and in OUT.summary.json). There is no
second generation or reward path. The companion files stay beside OUT to be
inspected; a re-run with the same config reuses them, and one cut off while
sampling or scoring resumes where it stopped (the stages' own OUT.partial/).

Correctness: a sample is correct when its reward is >= 1.0. For the 0/1
rewards (math, code) that means "solved". For other rewards (rm:, python:)
it reads "reached 1.0", and Mean@k, pass@k and maj@k inherit that meaning;
the summary says whether the rewards were all 0 or 1.

Metrics (iswcli.metrics), per prompt and pooled (the plain mean over
prompts): Mean@n, unbiased pass@k for k in 1, 2, 4, ..., n, maj@k over the
extracted final answers (math reward only) and the mean reward.

Win rate (--baseline EVAL --judge rm:PATH|pairwise:PATH): the opponent of the
policy's sample (prompt_id, j) is the baseline's sample with the same key.
Identical responses tie without asking the judge. The other pairs go through
the score stage: rm: scores both responses and the higher wins; pairwise:
the judge's margin for the policy response over the baseline's, positive
wins. Equal scores tie. A prompt's win rate is the mean over its samples
(win 1, tie 1/2, loss 0), the pooled one the mean over prompts. The judged
pairs live in OUT.judge.*.parquet under ids "prompt_id#sample_idx".

`compare` puts eval files side by side over the prompts they all share, with
percentile bootstrap intervals over prompts and the paired difference of
each run to the first.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from iswcli import artifacts, cache, chain, exact_targets, metrics, models, outputs, rewards, target_eval, tasks
from iswcli.errors import IswtError, raise_first_failure, rule_of
from iswcli.results import StageResult
from stages import sample, score

CORRECT_AT = 1.0
CORRECT_RULE = "correct = reward >= 1.0"
JUDGES = ("rm", "pairwise")
DEFAULT_REWARDS = {"arith": "math", "humaneval": "code", "sets": "set"}


@dataclass(frozen=True)
class EvaluateConfig:
    out: str
    reward: str | None = None  # None: math for arith, code for humaneval
    model: str = models.DEFAULT_MODEL
    adapter: str | None = None
    task: str | None = None  # None with no --prompts: arith
    prompts: str | None = None
    split: str | None = None  # None: test for arith (held out); the source's default otherwise
    limit: int | None = None
    n: int = 8
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 32
    backend: str = "hf"  # generation engine, as in sample: hf or vllm
    dtype: str = "float32"
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = sample.vllm_backend.DEFAULT_GPU_MEMORY_UTILIZATION
    max_model_len: int | None = None
    baseline: str | None = None
    judge: str | None = None
    workers: int = 4
    timeout: float = 10.0
    device: str = "auto"
    force: bool = False  # re-sample and re-score even when the files beside OUT are up to date
    target_beta: float | None = None  # exact targets on answer sets (OUT.target.parquet); needs --reward set
    z: str | None = None  # an estimate-z artifact whose log Z is measured against the exact one
    ref_model: str | None = None  # the reference of the target pi*; None: MODEL without the adapter
    train_samples: str | None = None  # the policy's training samples: split the exact error by sampled answers


@dataclass(frozen=True, kw_only=True)
class EvaluateResult(StageResult):
    """The pooled metrics and where things went; the per-prompt ones are in OUT and its summary file."""

    sha256: str
    summary_path: str  # OUT.summary.json
    reward: str
    prompts: int
    samples_per_prompt: int
    pooled: dict[str, float]  # metric (Mean@k, pass@k, maj@k, mean reward, win rate) -> mean over prompts
    rewards_all_0_or_1: bool
    sampling: str  # generated, reused (up to date beside OUT) or given (evaluate_samples)
    scoring: str  # scored or reused
    target: dict | None = None  # with --target-beta: the exact target's summary
    win: dict | None = None  # with --baseline: the judge, pairs judged and the win rate's 95% CI

    def rows(self) -> dict:
        """Pooled metrics first, where things went last."""
        rows: dict[str, Any] = {
            "prompts": self.prompts,
            "samples per prompt": self.samples_per_prompt,
            "reward": self.reward,
            **self.pooled,
        }
        if not self.rewards_all_0_or_1:
            rows["note"] = f"rewards are not all 0/1; {CORRECT_RULE}"
        if self.target is not None:
            rows.update(target_eval.display_rows(self.target))
        if self.win is not None:
            rows["win rate 95% CI"] = f"[{self.win['ci95'][0]:.3f}, {self.win['ci95'][1]:.3f}]"
            rows["judged pairs / identical (ties)"] = f"{self.win['pairs_judged']} / {self.win['identical_pairs']}"
        where = {"output": self.output, "sha256": self.sha256[:16], "summary": self.summary_path}
        return {**rows, **where, "samples": self.sampling, "scores": self.scoring}


@dataclass
class Group:
    """One prompt's samples, in sample_idx order."""

    prompt_id: str
    sample_idx: list[int] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    answers: list[str | None] = field(default_factory=list)


def beside(out: str, suffix: str) -> str:
    """OUT's companion file: eval.parquet -> eval.samples.parquet."""
    return str(Path(out).with_suffix(suffix))


def resolve(config: EvaluateConfig) -> EvaluateConfig:
    """Fill the defaults that depend on the task: prompt source, held-out split, reward."""
    task = config.task if config.task or config.prompts else "arith"
    family = (task or "").split(":")[0]
    split = config.split if config.split is not None or family != "arith" else "test"
    reward = config.reward or DEFAULT_REWARDS.get(family)
    if reward is None:
        raise IswtError("--reward: required for this prompt source (math, code, rm:PATH or python:MODULE:FUNCTION)")
    return replace(config, task=task, split=split, reward=reward)


def sample_config(config: EvaluateConfig) -> sample.SampleConfig:
    return sample.SampleConfig(
        out=beside(config.out, ".samples.parquet"),
        model=config.model,
        adapter=config.adapter,
        task=config.task,
        prompts=config.prompts,
        split=config.split,
        limit=config.limit,
        n=config.n,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        seed=config.seed,
        batch_size=config.batch_size,
        device=config.device,
        force=config.force,
        backend=config.backend,
        dtype=config.dtype,
        tensor_parallel_size=config.tensor_parallel_size,
        gpu_memory_utilization=config.gpu_memory_utilization,
        max_model_len=config.max_model_len,
    )


def score_config(config: EvaluateConfig, samples_path: str) -> score.ScoreConfig:
    return score.ScoreConfig(
        samples=samples_path,
        reward=config.reward,
        out=beside(config.out, ".scores.parquet"),
        workers=config.workers,
        timeout=config.timeout,
        batch_size=config.batch_size,
        seed=config.seed,
        device=config.device,
        force=config.force,
    )


def validate(config: EvaluateConfig) -> None:
    checks = [
        (
            not config.reward.startswith("pairwise:"),
            f"--reward {config.reward}: a pairwise judge needs a baseline; use --baseline EVAL --judge pairwise:PATH",
        ),
        (
            (config.baseline is None) == (config.judge is None),
            "--baseline and --judge go together: the judge decides who wins against the baseline",
        ),
    ]
    raise_first_failure(checks)
    target_eval.check_target_flags(config.target_beta, config.z, config.ref_model, config.reward, config.train_samples)
    artifacts.check_output_path(config.out)
    sample.validate(sample_config(config))
    score.validate(score_config(config, beside(config.out, ".samples.parquet")))
    if config.judge is not None:
        check_judge(config.judge)


def check_judge(spec: str) -> None:
    """--judge names rm:PATH or pairwise:PATH with a model that exists (not loaded here)."""
    name, _, path = spec.partition(":")
    if name not in JUDGES or not path:
        raise IswtError(f"--judge {spec}: expected rm:PATH (a reward model) or pairwise:PATH (a causal LM judge)")
    try:
        models.resolve_model(path)
    except IswtError as exc:
        raise IswtError(f"--judge {spec}: {rule_of(exc)}") from None


def check_prompts(config: EvaluateConfig) -> list[str]:
    """The prompt ids to evaluate, after checking the reward's spec and the task fields it needs."""
    prompts = tasks.load_prompts(config.task, config.prompts, config.split, config.limit)
    reward = rewards.make_reward(config.reward, score_config(config, "").reward_options)
    for name in reward.required_fields:
        alias = score.FIELD_ALIASES.get(name)
        for p in prompts:
            if p.fields.get(name) is None and (alias is None or p.fields.get(alias) is None):
                raise IswtError(f"prompt {p.prompt_id!r} has no task field '{name}'; the {reward.name} reward needs it")
    if reward.name == "set":  # the answers' own rules and reachability, before anything is sampled
        tokenizer, stops = _tokenizer_and_stops(config.model)
        for p in prompts:
            where = f"prompt {p.prompt_id!r}"
            answer_ids = exact_targets.tokenize_answers(
                tokenizer, exact_targets.parse_answers(p.fields["answers"], where), where
            )
            exact_targets.check_reachable(answer_ids, stops, config.max_new_tokens, where)
    ids = [p.prompt_id for p in prompts]
    if config.z is not None:
        target_eval.check_z_covers(config.z, config.target_beta, ids)
    return ids


def _tokenizer_and_stops(model: str):
    """The sampling model's tokenizer and stop ids, from its configs (no weights loaded), as sample finds them."""
    from types import SimpleNamespace

    from transformers import AutoConfig, GenerationConfig

    path = models.local_path(models.resolve_model(model))
    try:
        generation = GenerationConfig.from_pretrained(path)
    except OSError:  # no generation_config.json
        generation = None
    tokenizer = models.load_tokenizer(path)
    config = SimpleNamespace(generation_config=generation, config=AutoConfig.from_pretrained(path))
    return tokenizer, models.stop_token_ids(config, tokenizer)


def run(config: EvaluateConfig) -> EvaluateResult:
    config = resolve(config)
    validate(config)
    with outputs.claim(config.out, {"--baseline": config.baseline, "--prompts": config.prompts}):
        prompt_ids = check_prompts(config)
        if config.train_samples is not None:
            target_eval.check_train_samples(config.train_samples, prompt_ids)
        if config.baseline is not None:
            _, baseline = read_baseline(config.baseline)
            check_baseline(baseline, [(pid, j) for pid in prompt_ids for j in range(config.n)], config.baseline)
        how = generate(config)
        return evaluate_samples(config, beside(config.out, ".samples.parquet"), how)


def generate(config: EvaluateConfig) -> str:
    """The sample stage, which skips itself when the samples beside OUT are up to date."""
    return "reused" if sample.run(sample_config(config)).reused else "generated"


def run_score(sc: score.ScoreConfig) -> str:
    """The score stage, which skips itself when these very samples were scored the same way."""
    return "reused" if score.run(sc).reused else "scored"


# --------------------------------------------------------------------------- assembly


def evaluate_samples(config: EvaluateConfig, samples_path: str, how: str = "given") -> EvaluateResult:
    """Score a samples artifact with the score stage, then build OUT and its summary.

    `run` calls this on what the sample stage drew; called directly, it
    evaluates samples made elsewhere (config's generation fields then unused).
    """
    config = resolve(config)
    sc = score_config(config, samples_path)
    scored = run_score(sc)
    scored_join = chain.load_scored(
        samples_path,
        sc.out,
        sample_columns=["prompt", "response"],
        score_columns=["reward", "reward_info"],
        purpose="evaluation",
        min_samples=1,
    )
    samples_art, scores_art = scored_join.samples, scored_join.scores
    table = assemble(scored_join.table, config.reward)
    groups = group_rows(table)
    k = equal_k(groups, samples_path)
    values = prompt_metrics(groups, k, with_maj=config.reward == "math")
    inputs: dict[str, Any] = {"samples": samples_art, "scores": scores_art}
    win = None
    if config.baseline is not None:
        values["win rate"], win, judge_inputs = win_rates(config, samples_art, table, groups)
        inputs.update(judge_inputs)
    summary = summarize(config, groups, values, k, win)
    if config.target_beta is not None:  # exact pi*, Z and KL on answer sets: iswcli.exact_targets
        summary["target"] = target_eval.evaluate_targets(
            beside(config.out, ".target.parquet"),
            samples_path,
            reward=config.reward,
            beta=config.target_beta,
            model=config.model,
            adapter=config.adapter,
            ref_model=config.ref_model,
            z_path=config.z,
            device=config.device,
            seed=config.seed,
            train_samples=config.train_samples,
        )
    provenance = artifacts.make_provenance(
        "evaluate",
        asdict(config),
        inputs=inputs,
        model=samples_art.provenance.get("model"),
        seed=config.seed,
        summary=summary,
    )
    sha = artifacts.write_artifact(table, config.out, artifacts.EVAL, provenance)
    summary_path = beside(config.out, ".summary.json")
    summary_json = json.dumps({"eval": config.out, "sha256": sha, **summary}, indent=2, default=str)
    outputs.write_atomically(summary_path, summary_json)
    return EvaluateResult(
        output=config.out,
        sha256=sha,
        summary_path=summary_path,
        reward=config.reward,
        prompts=summary["prompts"],
        samples_per_prompt=k,
        pooled=summary["pooled"],
        rewards_all_0_or_1=summary["rewards_all_0_or_1"],
        sampling=how,
        scoring=scored,
        target=summary.get("target"),
        win=summary.get("win"),
    )


def assemble(joined: pa.Table, reward: str) -> pa.Table:
    """The eval rows: each sample with its score (already joined, in key order), its correctness and answer."""
    reward_values = joined["reward"].to_pylist()
    correct = [value >= CORRECT_AT for value in reward_values]
    answers = [canonical_answer(r) if reward == "math" else None for r in joined["response"].to_pylist()]
    table = joined.select(["prompt_id", "sample_idx", "prompt", "response", "reward", "reward_info"])
    table = table.append_column("correct", pa.array(correct, pa.bool_()))
    table = table.append_column("answer", pa.array(answers, pa.string()))
    return table.cast(artifacts.EVAL.schema)


def canonical_answer(response: str) -> str | None:
    """The final answer the math reward reads, in one spelling per value, so votes for 5 and 5.0 pool."""
    found = rewards.extract_answer(response)
    if found is None:
        return None
    number = rewards.as_number(found[0])
    return str(number) if number is not None else "".join(found[0].split())


def columns(table: pa.Table, *names: str):
    """Rows of the named columns as tuples."""
    return zip(*(table.column(n).to_pylist() for n in names))


def group_rows(table: pa.Table) -> list[Group]:
    """Eval rows per prompt, prompts in first-seen order, samples by sample_idx."""
    groups: dict[str, Group] = {}
    names = ("prompt_id", "sample_idx", "response", "reward", "correct", "answer")
    for pid, idx, response, reward, correct, answer in columns(table, *names):
        g = groups.setdefault(pid, Group(pid))
        g.sample_idx.append(idx)
        g.responses.append(response)
        g.rewards.append(reward)
        g.correct.append(bool(correct))
        g.answers.append(answer)
    for g in groups.values():
        order = np.argsort(g.sample_idx, kind="stable")
        for name in ("sample_idx", "responses", "rewards", "correct", "answers"):
            setattr(g, name, [getattr(g, name)[i] for i in order])
    return list(groups.values())


def equal_k(groups: list[Group], where: str) -> int:
    """The samples per prompt, which Mean@k and pass@k need equal for every prompt."""
    counts = {len(g.sample_idx) for g in groups}
    if len(counts) != 1:
        small = min(groups, key=lambda g: len(g.sample_idx))
        raise IswtError(
            f"{where}: prompts have {min(counts)} to {max(counts)} samples (e.g. {small.prompt_id!r} has "
            f"{len(small.sample_idx)}); the metrics need the same number for every prompt"
        )
    return counts.pop()


# --------------------------------------------------------------------------- metrics


def prompt_metrics(groups: list[Group], k: int, with_maj: bool) -> dict[str, np.ndarray]:
    """Per-prompt values of every metric over each prompt's first k samples."""
    correct = np.array([g.correct[:k] for g in groups], dtype=float)
    values = {f"Mean@{k}": metrics.mean_at_k_per_prompt(correct)}
    for kk in metrics.ks_up_to(k):
        values[f"pass@{kk}"] = np.asarray(metrics.pass_at_k(k, correct.sum(axis=1).astype(int), kk), dtype=float)
    if with_maj:
        for kk in metrics.ks_up_to(k):
            values[f"maj@{kk}"] = np.array([maj_one(g, kk) for g in groups])
    values["mean reward"] = np.array([np.mean(g.rewards[:k]) for g in groups])
    return values


def maj_one(group: Group, k: int) -> float:
    """maj@k of one prompt; NaN when one answer was scored both right and wrong (math-verify's
    verdicts can differ for spellings that share a canonical form)."""
    try:
        return float(metrics.maj_at_k_per_prompt([group.answers], [group.correct], k)[0])
    except IswtError:
        return float("nan")


def summarize(config: EvaluateConfig, groups: list[Group], values: dict, k: int, win: dict | None) -> dict:
    """The summary recorded in OUT's provenance and in OUT.summary.json."""
    all_rewards = [r for g in groups for r in g.rewards]
    pooled = {name: metrics.nanmean(v) for name, v in values.items()}
    per_prompt = [
        {"prompt_id": g.prompt_id, "correct": int(sum(g.correct)), **{name: float(v[i]) for name, v in values.items()}}
        for i, g in enumerate(groups)
    ]
    summary = {
        "reward": config.reward,
        "correct_rule": CORRECT_RULE,
        "rewards_all_0_or_1": all(r in (0.0, 1.0) for r in all_rewards),
        "prompts": len(groups),
        "samples_per_prompt": k,
        "pooled": pooled,
        "per_prompt": per_prompt,
    }
    if win is not None:
        ci = metrics.bootstrap_ci(values["win rate"], metrics.N_BOOT, config.seed)
        summary["win"] = {**win, "win_rate": ci.estimate, "ci95": [ci.lo, ci.hi]}
    return summary


# --------------------------------------------------------------------------- win rate


def read_baseline(path: str) -> tuple[artifacts.Artifact, dict[tuple[str, int], str]]:
    """The baseline eval's responses by (prompt_id, sample_idx)."""
    fields = [artifacts.EVAL.schema.field(n) for n in ("prompt_id", "sample_idx", "response")]
    spec = artifacts.ArtifactSpec("eval", artifacts.EVAL.key, pa.schema(fields))
    art = artifacts.read_artifact(path, spec, columns=["response"])
    return art, {(pid, idx): text for pid, idx, text in columns(art.table, "prompt_id", "sample_idx", "response")}


def check_baseline(baseline: dict, policy_keys: list[tuple[str, int]], path: str) -> None:
    """Same prompts, and a baseline sample for every policy sample index."""
    flag = f"--baseline {path}"
    policy_ids = {pid for pid, _ in policy_keys}
    base_ids = {pid for pid, _ in baseline}
    if policy_ids != base_ids:
        missing, extra = sorted(policy_ids - base_ids), sorted(base_ids - policy_ids)
        raise IswtError(
            f"{flag}: its prompt_ids differ from the evaluated prompts ({len(missing)} missing, e.g. "
            f"{missing[:1]}; {len(extra)} extra, e.g. {extra[:1]}); a win rate compares the same prompts"
        )
    for pid, idx in policy_keys:
        if (pid, idx) not in baseline:
            have = sum(1 for p, _ in baseline if p == pid)
            raise IswtError(
                f"{flag}: prompt {pid!r} has no sample_idx {idx} (it has {have} samples); the win rate "
                "matches sample indices, so the baseline needs every one evaluated (--n)"
            )


@dataclass(frozen=True)
class Duel:
    prompt_id: str
    sample_idx: int
    prompt: str
    policy: str
    baseline: str

    @property
    def id(self) -> str:
        return f"{self.prompt_id}#{self.sample_idx}"


def win_rates(config: EvaluateConfig, samples_art: artifacts.Artifact, table: pa.Table, groups: list[Group]):
    """Per-prompt win rates against the baseline, what to record about them, and the input artifacts.

    The prompts come from the eval rows in `table`: the joined samples artifact carries no rows.
    """
    base_art, baseline = read_baseline(config.baseline)
    check_baseline(baseline, [(g.prompt_id, i) for g in groups for i in g.sample_idx], config.baseline)
    prompt_of = dict(columns(table, "prompt_id", "prompt"))
    duels = [
        Duel(g.prompt_id, i, prompt_of[g.prompt_id], response, baseline[(g.prompt_id, i)])
        for g in groups
        for i, response in zip(g.sample_idx, g.responses)
    ]
    differing = [d for d in duels if d.policy != d.baseline]
    scores = judge(config, differing, samples_art, base_art) if differing else {}
    # identical responses meet at (0, 0): a tie
    policy = [[scores.get((g.prompt_id, i), (0.0, 0.0))[0] for i in g.sample_idx] for g in groups]
    base = [[scores.get((g.prompt_id, i), (0.0, 0.0))[1] for i in g.sample_idx] for g in groups]
    record = {
        "judge": config.judge,
        "baseline": config.baseline,
        "pairs_judged": len(differing),
        "identical_pairs": len(duels) - len(differing),
    }
    return metrics.win_rate_per_prompt(policy, base), record, {"baseline": base_art}


def judge(config: EvaluateConfig, duels: list[Duel], samples_art, base_art) -> dict[tuple, tuple[float, float]]:
    """(policy score, baseline score) per judged key, through the score stage.

    rm: one samples file holding both sides (sample_idx 0 policy, 1 baseline);
    pairwise: the policy side, with the baseline side as the judge's
    one-response-per-id baseline file, and 0 standing for the baseline.
    """
    kind = config.judge.split(":", 1)[0]
    duel_path, base_path = beside(config.out, ".judge.samples.parquet"), beside(config.out, ".judge.baseline.parquet")
    step = {"step": "judge pairs", "judge": config.judge}
    fresh = cache.is_fresh(duel_path, "evaluate", step, {"samples": samples_art, "baseline": base_art})
    if not fresh or (kind == "pairwise" and not Path(base_path).is_file()):
        provenance = artifacts.make_provenance("evaluate", step, inputs={"samples": samples_art, "baseline": base_art})
        sides = [(d, 0, d.policy) for d in duels] + ([(d, 1, d.baseline) for d in duels] if kind == "rm" else [])
        artifacts.write_artifact(duel_table(sides), duel_path, artifacts.SAMPLES, provenance)
        if kind == "pairwise":
            base_side = duel_table([(d, 0, d.baseline) for d in duels])
            artifacts.write_artifact(base_side, base_path, artifacts.SAMPLES, provenance)
    sc = score.ScoreConfig(
        samples=duel_path,
        reward=config.judge,
        out=beside(config.out, ".judge.scores.parquet"),
        baseline=base_path if kind == "pairwise" else None,
        batch_size=config.batch_size,
        seed=config.seed,
        device=config.device,
    )
    run_score(sc)
    table = artifacts.read_artifact(sc.out, artifacts.SCORES).table
    got = {(pid, idx): r for pid, idx, r in columns(table, "prompt_id", "sample_idx", "reward")}
    if kind == "rm":
        return {(d.prompt_id, d.sample_idx): (got[(d.id, 0)], got[(d.id, 1)]) for d in duels}
    return {(d.prompt_id, d.sample_idx): (got[(d.id, 0)], 0.0) for d in duels}


def duel_table(sides: list[tuple[Duel, int, str]]) -> pa.Table:
    """A samples artifact for the judge; the token columns stay empty (no judge reads them)."""
    empty = {
        "task": "judge",
        "task_fields": "{}",
        "prompt_text": "",
        "prompt_token_ids": [],
        "response_token_ids": [],
        "token_logprobs_q": [],
        "logprob_q": 0.0,
        "token_logprobs_model": [],
        "logprob_model": 0.0,
        "n_tokens": 0,
        "finish_reason": "stop",
    }
    rows = [{**empty, "prompt_id": d.id, "sample_idx": i, "prompt": d.prompt, "response": text} for d, i, text in sides]
    return pa.Table.from_pylist(rows, schema=artifacts.SAMPLES.schema)


# --------------------------------------------------------------------------- compare


def compare(paths: list[str], k: int | None = None, seed: int = 0) -> dict:
    """Eval files side by side over the prompts common to all, on each prompt's first k samples.

    k defaults to the fewest samples any of those prompts has in any run.
    """
    if len(paths) < 2:
        raise IswtError("--compare: give at least two eval files to put side by side")
    arts = [artifacts.read_artifact(p, artifacts.EVAL) for p in paths]
    runs = [{g.prompt_id: g for g in group_rows(a.table)} for a in arts]
    common = [pid for pid in runs[0] if all(pid in r for r in runs[1:])]
    if not common:
        raise IswtError(f"--compare: {paths[0]} shares no prompt_id with the other runs")
    k = check_k(paths, runs, common, k)
    with_maj = all((a.provenance.get("config") or {}).get("reward") == "math" for a in arts)
    values = [prompt_metrics([r[pid] for pid in common], k, with_maj) for r in runs]
    target_eval.add_compare_values(paths, common, values)  # the exact measures, where OUT.target.parquet exist
    result = metrics.side_by_side(paths, values, seed)
    result.update({"prompts_common": len(common), "prompts_per_run": [len(r) for r in runs], "k": k})
    return result


def check_k(paths: list[str], runs: list[dict], common: list[str], k: int | None) -> int:
    """The k to compare at: given (every run must have that many samples per prompt) or the fewest there are."""
    if k is not None and k < 1:
        raise IswtError(f"--n {k}: must be at least 1")
    fewest = min((len(r[pid].sample_idx), path, pid) for path, r in zip(paths, runs) for pid in common)
    if k is None:
        return fewest[0]
    if k > fewest[0]:
        raise IswtError(f"--n {k}: {fewest[1]}: prompt {fewest[2]!r} has only {fewest[0]} samples")
    return k
