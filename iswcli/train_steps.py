"""The loss of one training micro-batch, for each objective `iswt train` offers.

The training loop (`stages/train.py`) draws micro-batches of example rows;
`StepLoss` turns one into (loss, named parts for the log, response tokens):
teacher-forced log-probs of the policy (each distinct prompt run once),
the reference's from the precomputed array, and the objective's pure
function from `iswcli.losses`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from iswcli import losses

FROZEN_Z_LOSSES = ("tb", "dpg")  # the objectives that read log Z (tb may learn it instead)


@dataclass(frozen=True)
class Objective:
    """What a step optimizes: the loss and the settings its pure function takes."""

    loss: str
    beta: float
    clip_eps: float = 0.2
    kl_coef: float = 0.0
    length_normalize: bool = False
    dpg_baseline: bool = True


def _like(values: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """Per-row values as a tensor of the log-probs' dtype and device."""
    return torch.tensor(values, dtype=like.dtype, device=like.device)


class StepLoss:
    """Loss of one micro-batch for the configured objective: (loss, parts, response tokens)."""

    def __init__(self, objective: Objective, data, logp_ref: np.ndarray, pad_id: int):
        self.o, self.data, self.logp_ref, self.pad_id = objective, data, logp_ref, pad_id

    def __call__(self, module, example_rows):
        o, data = self.o, self.data
        if o.loss in losses.PAIR_LOSSES:
            pairs = data.examples[example_rows]
            rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
        else:
            rows = data.examples[example_rows]
        token_lp = self._token_logprobs(module, rows)
        device = token_lp[0].device if token_lp else "cpu"
        seq = torch.stack([t.sum() for t in token_lp])
        ref = _like(self.logp_ref[rows], seq)
        n_tok = int(sum(len(t) for t in token_lp))
        parts = {"log_ratio_mean": float((seq - ref).detach().mean())}

        if o.loss == "tb":
            loss, extra = self._tb(module, rows, seq, ref, device)
        elif o.loss == "dpg":
            loss, extra = losses.dpg_loss(
                seq,
                ref,
                _like(data.logprob_q[rows], seq),
                _like(data.reward[rows], seq),
                _like(data.log_z[data.prompt_index[rows]], seq),
                o.beta,
                o.dpg_baseline,
            )
        elif o.loss in losses.PAIR_LOSSES:
            half = len(example_rows)
            h = losses.pair_margin(seq[:half], ref[:half], seq[half:], ref[half:], o.beta)
            weight = _like(data.pair_weight[example_rows], seq)
            per_pair = losses.pair_loss(o.loss, h, o.beta)
            loss = losses.weighted_pair_loss(per_pair, weight, float(data.pair_weight.mean()))
            extra = {"margin_mean": float(h.detach().mean()), "pair_acc": float((h > 0).float().mean())}
        elif o.loss in ("grpo", "gspo"):
            token_pad, token_q, mask = self._padded(token_lp, rows, device)
            adv = _like(data.advantage[rows], seq)
            level = "token" if o.loss == "grpo" else "sequence"
            loss, extra = losses.clipped_policy_loss(token_pad, token_q, mask, adv, o.clip_eps, level)
        else:
            token_pad, _, mask = self._padded(token_lp, rows, device)
            loss, extra = losses.sft_loss(token_pad, mask), {}
        if o.kl_coef and o.loss in ("grpo", "gspo", "dpg"):
            kl = losses.kl_to_reference(seq, ref)
            loss = loss + o.kl_coef * kl
            extra["kl"] = float(kl.detach())
        return loss, {**parts, **extra}, n_tok

    def _token_logprobs(self, module, rows):
        """Per-token log-probs of the rows, each distinct prompt run once (see PolicyWithZ.forward)."""
        d = self.data
        prompts, responses = [d.prompt_tokens[r] for r in rows], [d.response_tokens[r] for r in rows]
        return module(teacher_forced={"prompts": prompts, "responses": responses, "pad_id": self.pad_id})

    def _tb(self, module, rows, seq, ref, device):
        data = self.data
        reward = _like(data.reward[rows], seq)
        prompt = torch.tensor(data.prompt_index[rows], device=device)
        unwrapped = module.module if hasattr(module, "module") else module
        if unwrapped.log_z is not None:
            log_z = unwrapped.log_z[prompt]
        else:
            log_z = _like(data.log_z[data.prompt_index[rows]], seq)
        lengths = _like(data.n_tokens[rows], seq) if self.o.length_normalize else None
        return losses.tb_loss(losses.tb_delta(log_z, seq, ref, reward, self.o.beta, lengths))

    def _padded(self, token_lp, rows, device):
        """Right-padded [sequences, tokens] policy and sampler log-probs with a mask."""
        width = max(1, max(len(t) for t in token_lp))
        pad = torch.nn.functional.pad
        token_pad = torch.stack([pad(t, (0, width - len(t))) for t in token_lp])
        token_q = torch.stack(
            [
                pad(torch.tensor(self.data.token_logq[r], device=device), (0, width - len(t)))
                for t, r in zip(token_lp, rows)
            ]
        )
        mask = torch.stack([pad(torch.ones(len(t), device=device), (0, width - len(t))) for t in token_lp])
        return token_pad, token_q, mask


# --------------------------------------------------------------------------- divergence

NONNEGATIVE_LOSSES = ("tb", "dpg", "sigmoid", "hinge", "ipo", "sft")  # grpo/gspo's surrogate has no sign
DIVERGENCE_WINDOW = 20  # steps averaged at the start and at the end: batches of one prompt each vary several-fold
DIVERGENCE_FACTOR = 3.0
EXPLOSION_WINDOW = 5
EXPLOSION_FACTOR = 100.0  # the last few steps against step 0 (before any update): a run that blows up at once
DIVERGENCE_FLOOR = 0.05  # a start near 0 (a target already met) is not multiplied into a hair trigger


def diverging(loss_history: list[float]) -> bool:
    """Whether the loss stopped being finite, or its last EXPLOSION_WINDOW steps average EXPLOSION_FACTOR times
    step 0's loss, or its last DIVERGENCE_WINDOW steps DIVERGENCE_FACTOR times its first DIVERGENCE_WINDOW.

    Batches hold one prompt's examples (--batch-order by-prompt), so single batch losses differ several-fold
    between prompts (dpg's by more than 10x on the sets task at lr 1e-4, a run that halved kl_set): only
    long windows or a jump of orders of magnitude say the run diverges.
    """
    if loss_history and not np.isfinite(loss_history[-1]):
        return True
    if len(loss_history) < EXPLOSION_WINDOW:
        return False
    recent = float(np.mean(loss_history[-EXPLOSION_WINDOW:]))
    if recent > EXPLOSION_FACTOR * max(loss_history[0], DIVERGENCE_FLOOR):
        return True
    w = DIVERGENCE_WINDOW
    if len(loss_history) < 2 * w:
        return False
    start, recent = float(np.mean(loss_history[:w])), float(np.mean(loss_history[-w:]))
    return recent > DIVERGENCE_FACTOR * max(start, DIVERGENCE_FLOOR)
