"""`iswt score`: a reward for every sample, and optionally reference log-probs.

Read top to bottom: validate flags, read the samples (only the columns this
run needs), build the reward and check every row against it before any
heavy work, then score fixed parts of `batch_size` samples. Parts land one by
one in OUT.partial/, so a killed run re-run with the same command resumes;
OUT appears only when complete.

Rewards must be finite. A NaN or infinite reward (a python reward that
raised or returned a non-number counts as NaN) stops the run with a line
naming the sample; with --on-error skip the sample is left out of OUT and
recorded in its provenance instead.

logprob_ref is the teacher-forced log-prob of the stored response token ids
given the stored prompt token ids under --ref-model (no re-tokenization),
from iswcli.logprobs.teacher_forced_logprobs, the function train uses for
the policy, so reference and policy log-probs share one code path.

--seed seeds Python's `random` (for user reward functions) and torch; the
built-in rewards and teacher forcing draw no random numbers.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from iswcli import artifacts, cache, console, models, outputs, rewards, tasks
from iswcli.errors import IswtError, raise_first_failure, rule_of
from iswcli.results import StageResult

ON_ERROR = ("fail", "skip")
FIELD_ALIASES = {"test": "tests"}  # the code reward also accepts 'tests'
BASE_COLUMNS = ["prompt_id", "sample_idx", "prompt", "task_fields", "response", "finish_reason"]
TOKEN_COLUMNS = ["prompt_token_ids", "response_token_ids"]
SKIPPED_IN_PROVENANCE = 1000


@dataclass(frozen=True)
class ScoreConfig:
    samples: str
    reward: str
    out: str
    ref_model: str | None = None
    ref_adapter: str | None = None
    workers: int = 4
    timeout: float = 10.0
    baseline: str | None = None
    batch_size: int = 32
    shard: str | None = None
    on_error: str = "fail"
    seed: int = 0
    device: str = "auto"
    force: bool = False  # re-run even when the output is up to date

    @property
    def reward_options(self) -> rewards.RewardOptions:
        return rewards.RewardOptions(
            workers=self.workers,
            timeout_s=self.timeout,
            batch_size=self.batch_size,
            device=self.device,
            baseline=self.baseline,
            samples=self.samples,
        )


@dataclass(frozen=True)
class Sample:
    """One row to score: the reward's input plus the stored token ids."""

    item: rewards.RewardItem
    prompt_ids: list[int] | None
    response_ids: list[int] | None

    @property
    def key(self) -> tuple[str, int]:
        return self.item.key


@dataclass(frozen=True, kw_only=True)
class ScoreResult(StageResult):
    sha256: str | None = None
    reward: str | None = None  # the --reward spec
    samples: int | None = None
    prompts: int | None = None
    skipped_non_finite: int | None = None  # samples left out for a NaN/inf reward (--on-error skip)
    # Over the rewards written; None when every sample was skipped.
    reward_mean: float | None = None
    reward_std: float | None = None
    pass_rate: float | None = None  # also None when the rewards are not all 0 or 1
    histogram: list[tuple[str, int]] | None = None  # (value or bin, samples) in increasing order
    prompts_all_rewards_equal: int | None = None  # prompts whose samples carry no preference signal
    logprob_ref_mean: float | None = None  # with --ref-model
    sandbox: str | None = None  # the isolation the code reward ran under
    samples_per_s: float | None = None  # samples scored by this run (a resumed run: its own) per second

    def rows(self) -> dict:
        rows: dict[str, Any] = {
            "output": self.output,
            "sha256": self.sha256[:16],
            "reward": self.reward,
            "samples": self.samples,
            "prompts": self.prompts,
            "skipped (non-finite reward)": self.skipped_non_finite,
        }
        if self.reward_mean is not None:
            rows.update(
                {
                    "reward mean": self.reward_mean,
                    "reward std": self.reward_std,
                    "pass rate": "n/a (rewards are not 0/1)" if self.pass_rate is None else self.pass_rate,
                    "histogram": text_histogram(self.histogram),
                    "prompts with all rewards equal": self.prompts_all_rewards_equal,
                }
            )
        if self.logprob_ref_mean is not None:
            rows["logprob_ref mean"] = self.logprob_ref_mean
        if self.sandbox is not None:
            rows["sandbox"] = self.sandbox
        rows["samples/s (this run)"] = self.samples_per_s
        return rows


def validate(config: ScoreConfig) -> None:
    checks = [
        (config.workers >= 1, f"--workers {config.workers}: must be at least 1"),
        (config.timeout > 0, f"--timeout {config.timeout}: must be > 0 seconds"),
        (config.batch_size >= 1, f"--batch-size {config.batch_size}: must be at least 1"),
        (config.on_error in ON_ERROR, f"--on-error {config.on_error}: must be fail or skip"),
        (config.ref_adapter is None or config.ref_model is not None, "--ref-adapter needs --ref-model"),
        (
            config.baseline is None or config.reward.startswith("pairwise:"),
            f"--baseline {config.baseline}: only --reward pairwise:PATH uses a baseline",
        ),
    ]
    raise_first_failure(checks)
    if config.shard is not None:
        tasks.parse_shard(config.shard)
    artifacts.check_output_path(config.out)
    models.check_device(config.device)
    models.check_adapter(config.ref_adapter)
    if config.ref_model is not None:
        resolve_ref(config.ref_model)


def resolve_ref(spec: str) -> models.ModelRef:
    """--ref-model classified cheaply; errors name the flag."""
    try:
        return models.resolve_model(spec)
    except IswtError as exc:
        raise IswtError(f"--ref-model {spec}: {rule_of(exc)}") from None


def run(config: ScoreConfig) -> ScoreResult:
    validate(config)
    with outputs.claim(config.out, {"--samples": config.samples, "--baseline": config.baseline}):
        inputs = {"samples": cache.input_ref(config.samples)}
        cached = cache.up_to_date(config.out, "score", asdict(config), inputs, result=ScoreResult)
        if cached:
            return cached
        samples_art = read_samples(config)
        samples = select_shard(to_samples(samples_art.table, config.samples), config.shard)
        reward = rewards.make_reward(config.reward, config.reward_options)
        check_samples(samples, reward, config.samples)
        if config.ref_model:
            check_token_ids(samples, config.samples)
        reward_record = describe_reward(config.reward, reward)
        reference = load_reference(config, samples) if config.ref_model else None
        random.seed(config.seed)

        resume_key = {k: v for k, v in asdict(config).items() if k != "workers"}  # workers change no result
        writer = artifacts.PartWriter(
            config.out,
            artifacts.SCORES,
            {
                **resume_key,
                "samples_sha256": samples_art.sha256,
                "reward_record": reward_record,
                "ref_identity": reference.identity if reference else None,
            },
        )
        parts = [samples[i : i + config.batch_size] for i in range(0, len(samples), config.batch_size)]
        started, scored = time.perf_counter(), 0
        with _partial_kept_only_with_parts(writer):
            already = writer.open()
            if already:
                console.warn(f"resuming {config.out}: {already} of {len(parts)} parts already done")
            with console.progress(len(samples), "scoring", rate_unit="samples/s") as bar:
                bar.advance(sum(len(parts[i]) for i in writer.done if i < len(parts)))
                for index, part in enumerate(parts):
                    if index in writer.done:
                        continue
                    table, skipped = score_part(part, reward, reference, config)
                    _write_skipped(writer, index, skipped)
                    writer.write_part(index, table)
                    scored += len(part)
                    bar.advance(len(part), rate=scored / (time.perf_counter() - started))

        skipped = _read_skipped(writer)
        provenance = artifacts.make_provenance(
            "score",
            asdict(config),
            inputs={"samples": samples_art},
            model=reference.identity if reference else None,
            seed=config.seed,
            reward=reward_record,
            skipped={"count": len(skipped), "samples": skipped[:SKIPPED_IN_PROVENANCE]},
        )
        sha = writer.finish(provenance)
        return summarize(config, sha, len(skipped), scored, time.perf_counter() - started, reward_record)


# --------------------------------------------------------------------------- reading


def needed_columns(config: ScoreConfig) -> list[str]:
    return BASE_COLUMNS + (TOKEN_COLUMNS if config.ref_model else [])


def read_samples(config: ScoreConfig) -> artifacts.Artifact:
    """The samples artifact, checked for (and reduced to) the columns this run needs."""
    names = needed_columns(config)
    schema = pa.schema([artifacts.SAMPLES.schema.field(n) for n in names])
    spec = artifacts.ArtifactSpec("samples", artifacts.SAMPLES.key, schema)
    art = artifacts.read_artifact(config.samples, spec, columns=names)
    if art.table.num_rows == 0:
        raise IswtError(f"{config.samples}: holds no samples")
    return art


def to_samples(table: pa.Table, where: str) -> list[Sample]:
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    out = []
    for i in range(table.num_rows):
        row = {name: values[i] for name, values in columns.items()}
        key = (row["prompt_id"], row["sample_idx"])
        for name in ("prompt", "response"):
            if row[name] is None:
                raise IswtError(f"{where}: column '{name}' is null for {rewards.describe_key(key)}")
        item = rewards.RewardItem(
            prompt=row["prompt"],
            response=row["response"],
            fields=task_fields(row["task_fields"], key, where),
            key=key,
            messages=tasks.chat_messages(row["prompt"]),
            finish_reason=row.get("finish_reason") or "",
        )
        out.append(Sample(item, row.get("prompt_token_ids"), row.get("response_token_ids")))
    return out


def task_fields(text: str | None, key: tuple, where: str) -> dict:
    """The task_fields JSON object ({} when null)."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise IswtError(f"{where}: column 'task_fields' of {rewards.describe_key(key)} is not a JSON object")
    return value


def select_shard(samples: list[Sample], shard: str | None) -> list[Sample]:
    if shard is None:
        return samples
    i, n = tasks.parse_shard(shard)
    kept = [s for s in samples if tasks.shard_index(s.key[0], n) == i]
    if not kept:
        raise IswtError(f"--shard {shard}: no prompts fall in this shard")
    return kept


def check_samples(samples: list[Sample], reward: rewards.Reward, where: str) -> None:
    """Every row carries the task fields the reward needs; the reward's own checks pass."""
    for field in reward.required_fields:
        alias = FIELD_ALIASES.get(field)
        for s in samples:
            fields = s.item.fields
            if fields.get(field) is None and (alias is None or fields.get(alias) is None):
                raise IswtError(
                    f"{where}: {rewards.describe_key(s.key)} has no task field '{field}' in column "
                    f"'task_fields'; the {reward.name} reward needs it"
                )
    reward.check_items([s.item for s in samples])


def check_token_ids(samples: list[Sample], where: str) -> None:
    """Teacher forcing needs a non-empty prompt and a (possibly empty) response per row."""
    for s in samples:
        if s.prompt_ids is None or s.response_ids is None:
            column = "prompt_token_ids" if s.prompt_ids is None else "response_token_ids"
            raise IswtError(f"{where}: column '{column}' is null for {rewards.describe_key(s.key)}")
        if not s.prompt_ids:
            raise IswtError(
                f"{where}: column 'prompt_token_ids' is empty for {rewards.describe_key(s.key)}; "
                "logprob_ref conditions on the prompt"
            )


def describe_reward(spec: str, reward: rewards.Reward) -> dict[str, Any]:
    """The reward's provenance; for sandboxed rewards, the isolation and its warning (printed)."""
    record: dict[str, Any] = {"spec": spec, "name": reward.name}
    record.update(reward.provenance())
    isolation = reward.isolation
    if isolation is not None:
        record["sandbox"] = {"isolation": isolation.kind, "warning": isolation.warning, "detail": isolation.detail}
        if isolation.warning:
            console.warn(isolation.warning)
    return record


# --------------------------------------------------------------------------- reference


@dataclass
class Reference:
    """The reference model that gives logprob_ref."""

    model: Any
    pad_id: int
    identity: dict

    def logprobs(self, samples: list[Sample]) -> list[float]:
        """Sequence sums of teacher-forced token log-probs, one forward pass."""
        if not samples:
            return []
        import torch

        from iswcli.logprobs import teacher_forced_logprobs

        with torch.inference_mode():
            per_token = teacher_forced_logprobs(
                self.model, [s.prompt_ids for s in samples], [s.response_ids for s in samples], self.pad_id
            )
        return [float(t.double().sum()) for t in per_token]


def load_reference(config: ScoreConfig, samples: list[Sample]) -> Reference:
    """Load --ref-model (and --ref-adapter) after checking its vocabulary covers the stored ids."""
    import torch
    from transformers import AutoConfig

    ref = resolve_ref(config.ref_model)
    path = models.local_path(ref)
    vocab = AutoConfig.from_pretrained(path).get_text_config().vocab_size
    largest = max((max(s.prompt_ids + s.response_ids, default=0) for s in samples), default=0)
    if largest >= vocab:
        raise IswtError(
            f"--ref-model {config.ref_model}: its vocabulary ({vocab} tokens) does not cover the stored token "
            f"id {largest}; the reference must share the sampler's tokenizer"
        )
    identity = models.model_identity(ref, path, config.ref_adapter)
    torch.manual_seed(config.seed)
    model = models.load_model(path, config.ref_adapter, models.pick_device(config.device))
    pad_id = models.load_tokenizer(path).pad_token_id
    return Reference(model, pad_id if pad_id is not None else 0, identity)


# --------------------------------------------------------------------------- scoring


def score_part(part: list[Sample], reward, reference: Reference | None, config: ScoreConfig):
    """The part's scores table and the samples it skipped (non-finite rewards)."""
    results = reward.score_batch([s.item for s in part])
    kept, skipped = [], []
    for sample, result in zip(part, results):
        if math.isfinite(result.reward):
            kept.append((sample, result))
            continue
        if config.on_error == "fail":
            raise IswtError(
                f"{config.samples}: {rewards.describe_key(sample.key)} got reward {result.reward} "
                f"({result.info}); rewards must be finite (--on-error skip leaves such samples out)"
            )
        skipped.append(
            {"prompt_id": sample.key[0], "sample_idx": sample.key[1], "reward": str(result.reward), "info": result.info}
        )
    logprob_ref = reference.logprobs([s for s, _ in kept]) if reference else None
    return scores_table(kept, logprob_ref), skipped


def scores_table(kept: list[tuple[Sample, rewards.RewardResult]], logprob_ref: list[float] | None) -> pa.Table:
    columns = {
        "prompt_id": [s.key[0] for s, _ in kept],
        "sample_idx": [s.key[1] for s, _ in kept],
        "reward": [r.reward for _, r in kept],
        "reward_info": [r.info for _, r in kept],
    }
    fields = list(artifacts.SCORES.schema)
    if logprob_ref is not None:
        columns["logprob_ref"] = logprob_ref
        fields.append(pa.field("logprob_ref", pa.float64()))
    return pa.table(columns, schema=pa.schema(fields))


@contextmanager
def _partial_kept_only_with_parts(writer: artifacts.PartWriter):
    """On failure, remove OUT.partial/ if this run created it and finished no part, or refused its input.

    Parts are kept for a re-run of the same command after a kill; after a
    refusal the command must change, and parts it made would only block it.
    """
    created = not writer.directory.exists()
    try:
        yield
    except BaseException as exc:
        refused = isinstance(exc, IswtError)
        if created and writer.directory.exists() and (refused or not any(writer.directory.glob("part-*.parquet"))):
            shutil.rmtree(writer.directory, ignore_errors=True)
        raise


def _write_skipped(writer: artifacts.PartWriter, index: int, skipped: list[dict]) -> None:
    """Skipped samples sit beside their part, so a resumed run still reports them."""
    (writer.directory / f"skipped-{index:06d}.json").write_text(json.dumps(skipped))


def _read_skipped(writer: artifacts.PartWriter) -> list[dict]:
    found: list[dict] = []
    for file in sorted(writer.directory.glob("skipped-*.json")):
        found += json.loads(file.read_text())
    return found


# --------------------------------------------------------------------------- summary


def histogram(values: list[float], bins: int = 10) -> list[tuple[str, int]]:
    """Samples per distinct value when there are few, else per equal-width bin."""
    distinct = sorted(set(values))
    if len(distinct) <= bins:
        return [(f"{v:.4g}", values.count(v)) for v in distinct]
    lo, hi = distinct[0], distinct[-1]
    step = (hi - lo) / bins
    counts = [0] * bins
    for v in values:
        counts[min(int((v - lo) / step), bins - 1)] += 1
    return [(f"[{lo + i * step:.3g}, {lo + (i + 1) * step:.3g})", c) for i, c in enumerate(counts)]


def text_histogram(labelled: list[tuple[str, int]], width: int = 30) -> str:
    """One line per bin: its label, a bar and its count."""
    top = max(c for _, c in labelled)
    pad = max(len(label) for label, _ in labelled)
    return "\n".join(f"{label:>{pad}} {'#' * round(width * c / top):<{width}} {c}" for label, c in labelled)


def pass_rate(values: list[float]) -> float | None:
    """The share of rewards equal to 1, when every reward is 0 or 1."""
    if all(v in (0.0, 1.0) for v in values):
        return sum(values) / len(values)
    return None


def all_equal_prompts(prompt_ids: list[str], values: list[float]) -> int:
    """Prompts whose samples all got the same reward: no preference signal."""
    by_prompt: dict[str, set[float]] = {}
    for pid, v in zip(prompt_ids, values):
        by_prompt.setdefault(pid, set()).add(v)
    return sum(len(v) == 1 for v in by_prompt.values())


def summarize(
    config: ScoreConfig, sha: str, n_skipped: int, scored: int, seconds: float, reward_record: dict
) -> ScoreResult:
    table = artifacts.read_artifact(config.out, artifacts.SCORES).table
    values = table.column("reward").to_pylist()
    prompt_ids = table.column("prompt_id").to_pylist()
    over_rewards: dict[str, Any] = {}
    if values:
        over_rewards = {
            "reward_mean": statistics.fmean(values),
            "reward_std": statistics.pstdev(values),
            "pass_rate": pass_rate(values),
            "histogram": histogram(values),
            "prompts_all_rewards_equal": all_equal_prompts(prompt_ids, values),
        }
        if "logprob_ref" in table.column_names:
            over_rewards["logprob_ref_mean"] = statistics.fmean(table.column("logprob_ref").to_pylist())
    return ScoreResult(
        output=config.out,
        sha256=sha,
        reward=config.reward,
        samples=len(values),
        prompts=len(set(prompt_ids)),
        skipped_non_finite=n_skipped,
        **over_rewards,
        sandbox=reward_record["sandbox"]["isolation"] if "sandbox" in reward_record else None,
        samples_per_s=scored / seconds if seconds > 0 else 0.0,
    )
