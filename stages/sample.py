"""`iswt sample`: draw K responses per prompt and record what q assigned them.

Read top to bottom: validate flags, load prompts, resolve the model, plan
fixed batches, generate the batches not yet on disk, assemble the artifact.
Batches land one by one in OUT.partial/, each seeded from the run seed and
its first key, so a killed run re-run with the same command resumes with
no sample lost or duplicated, and OUT appears only when complete.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import pyarrow as pa

from iswcli import artifacts, cache, console, models, outputs, tasks, vllm_backend
from iswcli.errors import IswtError, raise_first_failure
from iswcli.generation import Generation, SamplingParams, batch_seed


@dataclass(frozen=True)
class SampleConfig:
    out: str
    model: str = models.DEFAULT_MODEL
    adapter: str | None = None
    task: str | None = None
    prompts: str | None = None
    split: str | None = None
    limit: int | None = None
    n: int = 8
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0
    batch_size: int = 32
    backend: str = "hf"
    dtype: str = "float32"  # the reference's dtype (score --ref-model, train): q's numbers are pi_ref's
    tensor_parallel_size: int = 1  # vLLM only
    gpu_memory_utilization: float = vllm_backend.DEFAULT_GPU_MEMORY_UTILIZATION  # vLLM only
    max_model_len: int | None = None  # vLLM only; None: the model's
    shard: str | None = None
    chat_template: bool = True
    device: str = "auto"
    force: bool = False

    @property
    def sampling(self) -> SamplingParams:
        return SamplingParams(self.max_new_tokens, self.temperature, self.top_p, self.top_k)

    @property
    def engine(self) -> vllm_backend.EngineOptions:
        return vllm_backend.EngineOptions(
            self.dtype, self.tensor_parallel_size, self.gpu_memory_utilization, self.max_model_len
        )


@dataclass(frozen=True)
class Row:
    """One sequence to generate: which prompt, which of its K samples."""

    prompt_index: int
    sample_idx: int


def validate(config: SampleConfig) -> None:
    checks = [
        (config.n >= 1, f"--n {config.n}: must be at least 1"),
        (config.max_new_tokens >= 1, f"--max-new-tokens {config.max_new_tokens}: must be at least 1"),
        (config.temperature >= 0, f"--temperature {config.temperature}: must be >= 0"),
        (0 < config.top_p <= 1, f"--top-p {config.top_p}: must be in (0, 1]"),
        (config.top_k >= 0, f"--top-k {config.top_k}: must be >= 0 (0 turns it off)"),
        (config.batch_size >= 1, f"--batch-size {config.batch_size}: must be at least 1"),
        (config.backend in ("hf", "vllm"), f"--backend {config.backend}: must be hf or vllm"),
        ((config.task is None) != (config.prompts is None), "give exactly one of --task or --prompts"),
    ]
    raise_first_failure(checks)
    if config.shard is not None:
        tasks.parse_shard(config.shard)
    artifacts.check_output_path(config.out)
    models.check_adapter(config.adapter)
    models.check_device(config.device)
    vllm_backend.check_backend_flags(config.backend, config.engine, config.temperature, config.adapter)


def plan_batches(n_prompts: int, n: int, batch_size: int) -> list[list[Row]]:
    """Fixed batches over (prompt, sample) rows in order; a prompt's samples stay together where they fit."""
    rows = [Row(p, s) for p in range(n_prompts) for s in range(n)]
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


def run(config: SampleConfig) -> dict:
    validate(config)
    with outputs.claim(config.out, {"--prompts": config.prompts}):
        shard = tasks.parse_shard(config.shard) if config.shard else None
        prompts = tasks.shard_filter(tasks.load_prompts(config.task, config.prompts, config.split, config.limit), shard)
        if not prompts:
            raise IswtError(f"--shard {config.shard}: no prompts fall in this shard")
        ref = models.resolve_model(config.model)

        path = models.local_path(ref)
        identity = models.model_identity(ref, path, config.adapter)
        source = tasks.source_description(config.task, config.prompts, config.split, config.limit)
        cached = cache.up_to_date(config.out, "sample", asdict(config), {"prompts": source}, identity)
        if cached:
            return cached
        tokenizer = models.load_tokenizer(path)
        rendered = [models.render_prompt(tokenizer, tasks.messages_of(p), config.chat_template) for p in prompts]
        check_lengths(prompts, rendered, models.context_length(path), config.max_new_tokens)
        backend, stop_ids = _make_backend(config, path, tokenizer)

        writer = artifacts.PartWriter(config.out, artifacts.SAMPLES, {**asdict(config), "model_identity": identity})
        batches = plan_batches(len(prompts), config.n, config.batch_size)
        already = writer.open()
        if already:
            console.warn(f"resuming {config.out}: {already} of {len(batches)} batches already done")

        started, new_tokens = time.perf_counter(), 0
        with console.progress(len(prompts) * config.n, "sampling") as bar:
            bar.advance(sum(len(batches[i]) for i in writer.done if i < len(batches)))
            for index, batch in enumerate(batches):
                if index in writer.done:
                    continue
                first = prompts[batch[0].prompt_index]
                seed = batch_seed(config.seed, f"{first.prompt_id}/{batch[0].sample_idx}")
                generations = backend.generate([rendered[r.prompt_index][1] for r in batch], config.sampling, seed)
                writer.write_part(index, _to_table(batch, generations, prompts, rendered, tokenizer))
                new_tokens += sum(len(g.response_token_ids) for g in generations)
                bar.advance(len(batch), rate=new_tokens / (time.perf_counter() - started))

        provenance = artifacts.make_provenance(
            "sample",
            asdict(config),
            inputs={"prompts": source},
            model=identity,
            seed=config.seed,
            sampling={
                "untruncated": config.sampling.untruncated,
                "stop_token_ids": stop_ids,
                "chat_template": bool(config.chat_template and tokenizer.chat_template),
                **backend.provenance(),  # backend, dtype, engine: what estimate-z needs to trust q
            },
        )
        sha = writer.finish(provenance)
        return _summary(config, sha, new_tokens, time.perf_counter() - started)


def check_lengths(prompts, rendered, context: int | None, max_new_tokens: int) -> None:
    """Every prompt and its longest response fit the model's positions; past them the model is not defined."""
    if context is None:
        return
    for prompt, (_, ids) in zip(prompts, rendered):
        if len(ids) + max_new_tokens > context:
            raise IswtError(
                f"prompt {prompt.prompt_id!r}: {len(ids)} prompt tokens + --max-new-tokens {max_new_tokens} "
                f"exceed the model's context of {context} positions; shorten the prompt or lower --max-new-tokens"
            )


def _make_backend(config: SampleConfig, path: str, tokenizer):
    if config.backend == "vllm":
        stop_ids = vllm_backend.stop_ids_from_files(path, tokenizer)
        return vllm_backend.VLLMBackend(path, config.seed, stop_ids, config.engine, config.adapter), stop_ids
    from iswcli.generation import HFBackend

    device = models.pick_device(config.device)
    model = models.load_model(path, config.adapter, device, dtype=config.dtype)
    stop_ids = models.stop_token_ids(model, tokenizer)
    return HFBackend(model, tokenizer.pad_token_id, stop_ids, config.dtype), stop_ids


def _to_table(batch: list[Row], generations: list[Generation], prompts, rendered, tokenizer) -> pa.Table:
    columns: dict[str, list] = {name: [] for name in artifacts.SAMPLES.columns}
    for row, gen in zip(batch, generations):
        prompt = prompts[row.prompt_index]
        text, ids = rendered[row.prompt_index]
        values = {
            "prompt_id": prompt.prompt_id,
            "sample_idx": row.sample_idx,
            "task": prompt.task,
            "prompt": prompt.prompt if isinstance(prompt.prompt, str) else json.dumps(list(prompt.prompt)),
            "task_fields": json.dumps(prompt.fields, default=str),
            "prompt_text": text,
            "response": tokenizer.decode(gen.response_token_ids, skip_special_tokens=True),
            "prompt_token_ids": ids,
            "response_token_ids": gen.response_token_ids,
            "token_logprobs_q": gen.token_logprobs_q,
            "logprob_q": float(sum(gen.token_logprobs_q)),
            "token_logprobs_model": gen.token_logprobs_model,
            "logprob_model": float(sum(gen.token_logprobs_model)),
            "n_tokens": len(gen.response_token_ids),
            "finish_reason": gen.finish_reason,
        }
        for name, value in values.items():
            columns[name].append(value)
    return pa.table(columns, schema=artifacts.SAMPLES.schema)


def _summary(config: SampleConfig, sha: str, new_tokens: int, seconds: float) -> dict:
    table = artifacts.read_artifact(config.out, artifacts.SAMPLES, columns=["n_tokens", "finish_reason"]).table
    lengths = table.column("n_tokens").to_pylist()
    reasons: dict[str, int] = {}
    for reason in table.column("finish_reason").to_pylist():
        reasons[reason] = reasons.get(reason, 0) + 1
    return {
        "output": config.out,
        "sha256": sha[:16],
        "prompts": len(set(table.column("prompt_id").to_pylist())),
        "samples": table.num_rows,
        "mean length (tokens)": sum(lengths) / max(len(lengths), 1),
        "tokens/s (this run)": new_tokens / seconds if seconds > 0 else 0.0,
        "finish reasons": reasons,
    }
