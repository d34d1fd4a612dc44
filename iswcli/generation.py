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
    """Batched sampling with a KV cache and left padding on a transformers model."""

    name = "hf"

    def __init__(self, model, pad_id: int, stop_ids: list[int], dtype: str = "float32"):
        self.model = model
        self.pad_id = pad_id
        self.stop_ids = stop_ids
        self.dtype = dtype

    def provenance(self) -> dict:
        device = next(self.model.parameters()).device
        return {"backend": "hf", "dtype": self.dtype, "engine": {"device": str(device)}}

    def generate(self, prompts: list[list[int]], params: SamplingParams, seed: int) -> list[Generation]:
        import torch

        from iswcli.logprobs import pad_left, positions, processed_logprobs

        device = next(self.model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(seed)
        ids, mask = pad_left(prompts, self.pad_id, device)
        pos = positions(mask)
        stop = torch.tensor(self.stop_ids, device=device)
        rows = len(prompts)
        tokens, lp_q, lp_model = [], [], []
        done = torch.zeros(rows, dtype=torch.bool, device=device)
        steps_alive = torch.zeros(rows, dtype=torch.long, device=device)

        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
            for _ in range(params.max_new_tokens):
                logits = out.logits[:, -1, :].float()
                q = processed_logprobs(logits, params.temperature, params.top_k, params.top_p)
                if params.temperature == 0:
                    nxt = q.argmax(-1)
                else:
                    nxt = torch.multinomial(q.exp(), 1, generator=generator).squeeze(-1)
                nxt = nxt.masked_fill(done, self.pad_id)
                tokens.append(nxt)
                lp_q.append(q.gather(-1, nxt[:, None]).squeeze(-1))
                lp_model.append(logits.log_softmax(-1).gather(-1, nxt[:, None]).squeeze(-1))
                steps_alive += (~done).long()
                done = done | torch.isin(nxt, stop)
                if bool(done.all()):
                    break
                mask = torch.cat([mask, torch.ones((rows, 1), dtype=mask.dtype, device=device)], dim=1)
                pos = pos[:, -1:] + 1
                out = self.model(
                    input_ids=nxt[:, None],
                    attention_mask=mask,
                    position_ids=pos,
                    past_key_values=out.past_key_values,
                    use_cache=True,
                )

        tokens_t = torch.stack(tokens, 1).cpu()
        lp_q_t = torch.stack(lp_q, 1).cpu()
        lp_model_t = torch.stack(lp_model, 1).cpu()
        stopped = done.cpu()
        results = []
        for row in range(rows):
            n = int(steps_alive[row])
            results.append(
                Generation(
                    response_token_ids=tokens_t[row, :n].tolist(),
                    token_logprobs_q=lp_q_t[row, :n].tolist(),
                    token_logprobs_model=lp_model_t[row, :n].tolist(),
                    finish_reason="stop" if bool(stopped[row]) else "length",
                )
            )
        return results
