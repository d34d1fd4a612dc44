"""Training losses as pure functions of sequence or token log-probs.

All take log-probs already computed by `logprobs.teacher_forced_logprobs`
(the policy with gradients, the reference without) and return a scalar loss
plus named parts for the training log.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PAIR_LOSSES = ("sigmoid", "hinge", "ipo")


def tb_delta(
    log_z: torch.Tensor,
    logp: torch.Tensor,
    logp_ref: torch.Tensor,
    reward: torch.Tensor,
    beta: float,
    lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Trajectory-balance residual log Z + log pi_theta - log pi_ref - beta r.

    With sequence sums its zero set is pi_theta = pi_ref exp(beta r) / Z; the
    length-normalized variant (lengths given) divides the log-ratio by the
    response length and only approximates that fixed point.
    """
    log_ratio = logp - logp_ref
    if lengths is not None:
        log_ratio = log_ratio / lengths.clamp(min=1)
    return log_z + log_ratio - beta * reward


def tb_loss(delta: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    loss = delta.pow(2).mean()
    d = delta.detach()
    return loss, {"delta_mean": d.mean().item(), "delta_abs_max": d.abs().max().item()}


def tb_step0_residuals(log_z: np.ndarray, reward: np.ndarray, beta: float, prompt_index: np.ndarray) -> np.ndarray:
    """Each prompt's mean trajectory-balance residual before any update (pi_theta = pi_ref): mean(log Z - beta r).

    With log Z estimated by importance sampling from the same K samples at q = pi_ref it is
    log mean e^{beta r} - mean beta r >= 0 (Jensen). Its constant part multiplies the gradient
    of the samples' log-likelihood, so every epoch pushes the sampled responses down.
    """
    residual = log_z[prompt_index] - beta * reward
    counts = np.bincount(prompt_index, minlength=log_z.size)
    return np.bincount(prompt_index, weights=residual, minlength=log_z.size) / np.maximum(counts, 1)


def dpg_loss(
    logp: torch.Tensor,
    logp_ref: torch.Tensor,
    logp_q: torch.Tensor,
    reward: torch.Tensor,
    log_z: torch.Tensor,
    beta: float,
    baseline: bool = True,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Distributional policy gradient: importance-weighted maximum likelihood toward pi* (forward KL).

    Per sample y ~ q, w = exp(beta r + log pi_ref - log q - log Z): pi*(y) / q(y), mean 1 under q
    when Z is exact, so -mean(w log pi_theta) estimates the cross-entropy of pi* to pi_theta, which
    KL(pi* || pi_theta) differs from by a constant. The value returned is that estimate; with the
    baseline (Korbak et al. 2022) the gradient is that of -mean((w - pi_theta/q) log pi_theta): the
    extra term is 0 in expectation under q (sum_y grad pi_theta(y) = 0), and at pi_theta = pi* each
    sample's gradient vanishes (w = pi_theta/q), not only their mean.
    """
    w = (beta * reward + logp_ref - logp_q - log_z).exp()
    loss = -(w * logp).mean()
    if baseline:
        b = (logp.detach() - logp_q).exp()
        surrogate = (b * logp).mean()
        loss = loss + surrogate - surrogate.detach()  # the gradient's baseline; the value stays the estimate
    return loss, {"weight_mean": float(w.mean()), "weight_max": float(w.max())}


def pair_margin(
    logp_w: torch.Tensor, ref_w: torch.Tensor, logp_l: torch.Tensor, ref_l: torch.Tensor, beta: float
) -> torch.Tensor:
    """h = beta * [(log pi_theta - log pi_ref)(y_w) - (log pi_theta - log pi_ref)(y_l)]."""
    return beta * ((logp_w - ref_w) - (logp_l - ref_l))


def pair_loss(kind: str, h: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-pair loss: sigmoid -log sigmoid(h), hinge max(0, 1 - h), IPO (h/beta - 1/(2 beta))^2."""
    if kind == "sigmoid":
        return -F.logsigmoid(h)
    if kind == "hinge":
        return torch.relu(1 - h)
    if kind == "ipo":
        return (h / beta - 1 / (2 * beta)).pow(2)
    raise ValueError(f"unknown pair loss {kind!r}; expected one of {PAIR_LOSSES}")


def weighted_pair_loss(per_pair: torch.Tensor, weight: torch.Tensor, mean_weight: float | None = None) -> torch.Tensor:
    """sum_pairs w * loss / (n_pairs * mean_weight).

    Pair weights sum to 1 per prompt, so over all pairs this is the
    per-prompt weighted sum averaged over prompts; with unit weights it is the
    plain mean. On a micro-batch, pass the mean weight over the whole pairs
    artifact: the batch loss is then an unbiased estimate of that objective
    whatever prompts the batch mixes (normalizing by the batch's own weights
    would cancel them, e.g. at one pair per batch).
    """
    scale = weight.mean() if mean_weight is None else mean_weight
    return (weight * per_pair).sum() / (per_pair.numel() * scale)


def clipped_policy_loss(
    token_logp: torch.Tensor,
    token_logq: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    clip_eps: float,
    level: str = "token",
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO-style clipped surrogate against the sampler q (rows: sequences, columns: tokens).

    level='token' (GRPO): a ratio per token, averaged over each sequence's
    tokens. level='sequence' (GSPO): one length-normalized ratio per sequence,
    exp(mean_t(log pi_theta - log q)).
    """
    lengths = mask.sum(-1).clamp(min=1)
    log_ratio = (token_logp - token_logq) * mask
    if level == "sequence":
        ratio = (log_ratio.sum(-1) / lengths).exp()
        clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps)
        objective = torch.minimum(ratio * advantages, clipped * advantages)
        clip_frac = ((ratio - clipped).abs() > 0).float().mean()
    else:
        ratio = log_ratio.exp()
        clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps)
        adv = advantages[:, None]
        per_token = torch.minimum(ratio * adv, clipped * adv) * mask
        objective = per_token.sum(-1) / lengths
        clip_frac = (((ratio - clipped).abs() > 0).float() * mask).sum() / mask.sum().clamp(min=1)
    return -objective.mean(), {"clip_frac": clip_frac.item()}


def kl_to_reference(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """Sequence-level k3 estimate of KL(pi_theta || pi_ref) from samples: exp(d) - d - 1, d = ref - theta."""
    d = logp_ref - logp
    return (d.exp() - d - 1).mean()


def sft_loss(token_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Token-mean negative log-likelihood over the selected responses."""
    return -(token_logp * mask).sum() / mask.sum().clamp(min=1)
