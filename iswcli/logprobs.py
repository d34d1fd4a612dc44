"""Token log-probabilities: the sampler's processed distribution and teacher forcing.

`processed_logprobs` is the distribution a sampler with temperature, top-k and
top-p actually draws from. `teacher_forced_logprobs` scores given responses in
one forward pass; score and train use it so that reference and policy
log-probs come from one code path.
"""

from __future__ import annotations

import inspect

import torch


def processed_logprobs(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Log-probs after temperature, then top-k, then top-p (HF generate's order).

    Tokens outside the kept set get -inf. Temperature 0 is greedy: all mass
    on the argmax.
    """
    logits = logits.float()
    if temperature == 0:
        greedy = torch.full_like(logits, float("-inf"))
        return greedy.scatter(-1, logits.argmax(-1, keepdim=True), 0.0)
    scores = logits / temperature
    vocab = scores.shape[-1]
    if 0 < top_k < vocab:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, order = scores.sort(dim=-1, descending=True)
        probs = sorted_scores.softmax(-1)
        mass_before = probs.cumsum(-1) - probs
        drop_sorted = mass_before >= top_p
        drop_sorted[..., 0] = False  # always keep the most likely token
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        scores = scores.masked_fill(drop, float("-inf"))
    return scores.log_softmax(-1)


def pad_left(sequences: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask, so every row ends at the last column."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq) :] = 1
    return ids.to(device), mask.to(device)


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def teacher_forced_logprobs(
    model,
    prompts: list[list[int]],
    responses: list[list[int]],
    pad_id: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> list[torch.Tensor]:
    """Per-token log-probs of each response given its prompt, one forward pass.

    Gradients flow when the caller has them enabled (training); the returned
    tensors are float32 of length len(response). When the model takes
    `logits_to_keep`, the LM head runs only on the last columns, those that
    predict response tokens (the values are the same as with every column).
    """
    device = next(model.parameters()).device
    full = [p + r for p, r in zip(prompts, responses)]
    ids, mask = pad_left(full, pad_id, device)
    # Left padding: every row ends at the last column, and logits at column t predict
    # token t+1, so the response predictors all lie in the last `longest + 1` columns.
    keep = max(len(r) for r in responses) + 1
    extra = {"logits_to_keep": keep} if keep < ids.shape[1] and _takes_logits_to_keep(model) else {}
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask), **extra).logits
    width = logits.shape[1]  # `keep`, or the whole width
    out = []
    for row, response in enumerate(responses):
        n = len(response)
        # the response's predictors end one before the last column
        step_logits = logits[row, width - n - 1 : width - 1]
        lp = processed_logprobs(step_logits, temperature, top_k, top_p)
        target = torch.tensor(response, dtype=torch.long, device=device)
        out.append(lp.gather(-1, target[:, None]).squeeze(-1))
    return out


def _takes_logits_to_keep(model) -> bool:
    """Whether the transformers model inside any wrappers (peft, DDP, ...) accepts `logits_to_keep`."""
    from transformers import PreTrainedModel

    inner = next((m for m in model.modules() if isinstance(m, PreTrainedModel)), None)
    return inner is not None and "logits_to_keep" in inspect.signature(inner.forward).parameters


def shared_prompt_logprobs(
    model,
    prompts: list[list[int]],
    responses: list[list[int]],
    pad_id: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> list[torch.Tensor]:
    """`teacher_forced_logprobs` with each distinct prompt run once, its responses continuing from its cache.

    The distinct prompts run left-padded with a KV cache; the cache is copied
    to every response of its prompt by a row gather (so the gradients of all
    of them flow back into the one prompt pass: LoRA adapts the prompt
    positions too), and the responses, right-padded, run once on top of it,
    their positions continuing from their prompt's. The last prompt position
    predicts the first response token; a response's last token is never an
    input. The values equal the unshared pass's up to float rounding (tests
    check values and gradients). With activation checkpointing in training,
    where transformers turns the cache off, it is the unshared pass.
    """
    if _checkpointing(model) and torch.is_grad_enabled():
        return teacher_forced_logprobs(model, prompts, responses, pad_id, temperature, top_k, top_p)
    device = next(model.parameters()).device
    first: dict[tuple[int, ...], int] = {}
    which = torch.tensor([first.setdefault(tuple(p), len(first)) for p in prompts], device=device)
    ids, prompt_mask = pad_left([list(p) for p in first], pad_id, device)
    prompt_pos = positions(prompt_mask)
    extra = {"logits_to_keep": 1} if _takes_logits_to_keep(model) else {}
    out = model(input_ids=ids, attention_mask=prompt_mask, position_ids=prompt_pos, use_cache=True, **extra)
    first_logits = out.logits[:, -1:, :].index_select(0, which)  # predicts each response's first token
    longest = max(len(r) for r in responses)
    if longest > 1:
        cache = out.cache
        cache.batch_select_indices(which)  # a gather per layer: differentiable, one prompt's rows share its grads
        inputs = torch.full((len(responses), longest - 1), pad_id, dtype=torch.long)
        response_mask = torch.zeros((len(responses), longest - 1), dtype=prompt_mask.dtype)
        for row, response in enumerate(responses):
            inputs[row, : max(len(response) - 1, 0)] = torch.tensor(response[:-1], dtype=torch.long)
            response_mask[row, : max(len(response) - 1, 0)] = 1
        inputs, response_mask = inputs.to(device), response_mask.to(device)
        mask = torch.cat([prompt_mask.index_select(0, which), response_mask], dim=1)
        pos = prompt_pos[:, -1:].index_select(0, which) + 1 + torch.arange(longest - 1, device=device)
        rest = model(input_ids=inputs, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True).logits
        logits = torch.cat([first_logits, rest], dim=1)
    else:
        logits = first_logits
    targets = torch.full((len(responses), longest), 0, dtype=torch.long)
    for row, response in enumerate(responses):
        targets[row, : len(response)] = torch.tensor(response, dtype=torch.long)
    targets = targets.to(device)[..., None]
    # log_softmax as in the unshared pass: x - logsumexp(x) drifts from it by ~1e-5 per token on a 30-layer
    # model, enough to fail the step-0 check against scores' logprob_ref
    token_lp = processed_logprobs(logits, temperature, top_k, top_p).gather(-1, targets).squeeze(-1)
    return [token_lp[row, : len(response)] for row, response in enumerate(responses)]


def _checkpointing(model) -> bool:
    """Whether activation checkpointing is on in training (transformers then runs without a cache)."""
    return model.training and any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
