"""Shared-prompt passes: the sampler's prefill-once cache and train's prompt-once teacher forcing.

Both must give what the unshared computation gives: the sampler's log-prob
columns equal teacher forcing, and the shared-prompt training pass equals the
per-sequence pass in per-token log-probs and in gradients (LoRA and full).
"""

from __future__ import annotations

import pytest
import torch

from iswcli import models
from iswcli.generation import HFBackend, SamplingParams
from iswcli.logprobs import shared_prompt_logprobs, teacher_forced_logprobs

PROMPTS = [[1, 50, 51, 52, 53, 54, 55], [1, 60, 61], [1, 70, 71, 72, 73]]


def batch(k: int = 3):
    """K responses per prompt of differing lengths (1 token included), prompts interleaved, one prompt twice apart."""
    g = torch.Generator().manual_seed(0)
    prompts, responses = [], []
    for j in range(k):
        for i, p in enumerate(PROMPTS):
            n = 1 + (i + 2 * j) % 5
            prompts.append(p)
            responses.append(torch.randint(100, 400, (n,), generator=g).tolist())
    return prompts, responses


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return models.load_model(tiny_model_dir), models.load_tokenizer(tiny_model_dir).pad_token_id


def _grads(model, lps, weights) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss = sum((w * lp.sum()) ** 2 for w, lp in zip(weights, lps))  # nonlinear in each sequence's sum
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


@pytest.mark.parametrize("kind", ["lora", "full"])
def test_shared_prompt_pass_equals_per_sequence_pass_values_and_gradients(tiny, kind):
    base, pad = tiny
    torch.manual_seed(1)
    if kind == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(models.load_model(base.name_or_path), LoraConfig(r=4, target_modules="all-linear"))
        for n, p in model.named_parameters():  # LoRA B starts at zero: give it values so every path carries gradient
            if "lora_B" in n:
                p.data.normal_(0, 0.05)
    else:
        model = models.load_model(base.name_or_path)
    model.train()
    prompts, responses = batch()
    weights = torch.linspace(0.5, 1.5, len(prompts)).tolist()
    shared = shared_prompt_logprobs(model, prompts, responses, pad)
    unshared = teacher_forced_logprobs(model, prompts, responses, pad)
    assert [len(t) for t in shared] == [len(r) for r in responses]
    for a, b in zip(shared, unshared):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    g_shared, g_unshared = _grads(model, shared, weights), _grads(model, unshared, weights)
    assert g_shared.keys() == g_unshared.keys() and len(g_shared) > 0
    if kind == "lora":
        assert all("lora_" in n for n in g_shared)
    for name in g_shared:
        scale = g_unshared[name].abs().max().clamp(min=1e-8)
        torch.testing.assert_close(g_shared[name] / scale, g_unshared[name] / scale, atol=1e-4, rtol=0)


def test_shared_prompt_pass_with_sampler_processing_and_no_sharing(tiny):
    model, pad = tiny
    prompts, responses = batch(k=2)
    with torch.no_grad():
        for settings in [(0.7, 20, 0.9), (1.0, 0, 1.0)]:
            shared = shared_prompt_logprobs(model, prompts, responses, pad, *settings)
            unshared = teacher_forced_logprobs(model, prompts, responses, pad, *settings)
            for a, b in zip(shared, unshared):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        distinct = shared_prompt_logprobs(model, PROMPTS, [[5], [6, 7], [8, 9, 10]], pad)  # nothing to share
        for a, b in zip(distinct, teacher_forced_logprobs(model, PROMPTS, [[5], [6, 7], [8, 9, 10]], pad)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_shared_prompt_pass_under_activation_checkpointing_is_the_unshared_pass(tiny_model_dir, tiny):
    _, pad = tiny
    model = models.load_model(tiny_model_dir)
    model.gradient_checkpointing_enable()
    model.train()
    prompts, responses = batch()
    for a, b in zip(
        shared_prompt_logprobs(model, prompts, responses, pad), teacher_forced_logprobs(model, prompts, responses, pad)
    ):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("stops", ["eos", "many"])
@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.8, 50, 0.8), (0.0, 0, 1.0)])
def test_prefill_once_sampler_logprobs_equal_teacher_forcing(tiny, temperature, top_k, top_p, stops):
    """Duplicated and interleaved prompts of different lengths in one batch; each row scored on its own.

    With "many" stop tokens (every 7th id) rows stop at different steps, so stopped rows leave the cache
    mid-batch; what the others draw and record must not change meaning.
    """
    model, pad = tiny
    prompts = [PROMPTS[i] for i in (0, 1, 0, 2, 1, 0, 2, 1, 1, 0, 2, 0)]
    stop_ids = [2] if stops == "eos" else list(range(0, model.config.vocab_size, 7))
    backend = HFBackend(model, pad, stop_ids=stop_ids)
    gens = backend.generate(prompts, SamplingParams(9, temperature, top_p, top_k), seed=5)
    assert gens == backend.generate(prompts, SamplingParams(9, temperature, top_p, top_k), seed=5)
    if stops == "many" and temperature > 0:
        assert len({len(g.response_token_ids) for g in gens}) > 2  # rows stopped at different steps
    with torch.no_grad():
        for prompt, gen in zip(prompts, gens):
            ids = gen.response_token_ids
            if gen.finish_reason == "length":
                assert len(ids) == 9 and not set(ids) & set(stop_ids)
            else:
                assert ids[-1] in stop_ids and not set(ids[:-1]) & set(stop_ids)
            q = teacher_forced_logprobs(model, [prompt], [gen.response_token_ids], pad, temperature, top_k, top_p)[0]
            raw = teacher_forced_logprobs(model, [prompt], [gen.response_token_ids], pad)[0]
            torch.testing.assert_close(torch.tensor(gen.token_logprobs_q), q, atol=1e-5, rtol=0)
            torch.testing.assert_close(torch.tensor(gen.token_logprobs_model), raw, atol=1e-5, rtol=0)
    if temperature == 0:  # greedy: a prompt's rows agree
        by_prompt = {}
        for prompt, gen in zip(prompts, gens):
            by_prompt.setdefault(tuple(prompt), set()).add(tuple(gen.response_token_ids))
        assert all(len(v) == 1 for v in by_prompt.values())


@pytest.mark.slow
def test_shared_prompt_pass_on_the_embedded_model_stays_within_the_step0_tolerance(smollm_dir):
    """30 layers: the shared pass's sequence sums stay within train's step-0 tolerance of score's unshared pass."""
    from iswcli import tasks

    model, tokenizer = models.load_model(smollm_dir), models.load_tokenizer(smollm_dir)
    pad = tokenizer.pad_token_id
    ids = [models.render_prompt(tokenizer, tasks.messages_of(p))[1] for p in tasks.load_prompts("arith", limit=2)]
    prompts = [i for i in ids for _ in range(3)]
    backend = HFBackend(model, pad, models.stop_token_ids(model, tokenizer))
    responses = [g.response_token_ids for g in backend.generate(prompts, SamplingParams(32), seed=0)]
    with torch.no_grad():
        shared = shared_prompt_logprobs(model, prompts, responses, pad)
        unshared = teacher_forced_logprobs(model, prompts, responses, pad)
    gaps = [abs(float(a.sum() - b.sum())) for a, b in zip(shared, unshared)]
    assert sum(gaps) / len(gaps) < 1e-4 / 4, gaps  # STEP0_TOLERANCE with room for batch-composition noise
