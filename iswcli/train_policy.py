"""The policy `iswt train` updates and the reference it starts from.

`PolicyWithZ` wraps the language model (LoRA by default, full fine-tuning,
or a given adapter to continue) and, for tb with a learned Z, one log Z per
prompt. The reference's sequence log-probs come from the scores when they
hold them, from the samples when they were drawn from this very model at
temperature 1 without truncation, and otherwise from one teacher-forced pass
of the step-0 policy, cached in the run directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from iswcli import models, proposal
from iswcli.errors import IswtError
from iswcli.logprobs import shared_prompt_logprobs


class PolicyWithZ(torch.nn.Module):
    """The language model plus, for --z-mode learned, one log Z scalar per prompt.

    One module, so that DDP synchronizes the log Z gradients with the rest.
    """

    def __init__(self, lm, n_prompts: int):
        super().__init__()
        self.lm = lm
        self.log_z = torch.nn.Parameter(torch.zeros(n_prompts)) if n_prompts else None

    def forward(self, teacher_forced: dict | None = None, **kwargs):
        """The LM's forward; with teacher_forced (prompts, responses, pad_id), their per-token log-probs.

        The shared-prompt pass makes two LM calls (prompts, then responses on
        their cache); inside one forward of this module, DDP sees one.
        """
        if teacher_forced is not None:
            return shared_prompt_logprobs(self.lm, **teacher_forced)
        return self.lm(**kwargs)


def load_policy(path: str, device, *, adapter: str | None, full: bool, lora: dict, gradient_checkpointing: bool):
    """The model to train: ADAPTER's LoRA weights trainable, all weights (full), or a new LoRA (lora: r,
    lora_alpha, lora_dropout, target_modules as --target-modules gives it)."""
    policy = models.load_model(path, adapter, device="cpu")
    if adapter is not None:
        # continue training the given adapter
        for name, param in policy.named_parameters():
            param.requires_grad = "lora_" in name
    elif not full:
        from peft import LoraConfig, get_peft_model

        targets = lora["target_modules"]
        targets = targets if targets == "all-linear" else module_names(policy, targets)
        config = LoraConfig(
            r=lora["r"],
            lora_alpha=lora["lora_alpha"],
            lora_dropout=lora["lora_dropout"],
            target_modules=targets,
            task_type="CAUSAL_LM",
        )
        policy = get_peft_model(policy, config)
    if gradient_checkpointing:
        policy.gradient_checkpointing_enable()
        if hasattr(policy, "enable_input_require_grads"):
            policy.enable_input_require_grads()
    return policy.to(device)


def module_names(model, flag: str) -> list[str]:
    """--target-modules a,b,c: each must name a linear layer of the model (by its last name part)."""
    names = [n.strip() for n in flag.split(",") if n.strip()]
    linear = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    unknown = [n for n in names if n not in linear]
    if not names or unknown:
        raise IswtError(
            f"--target-modules {flag}: {', '.join(unknown) or 'no name given'} is not a linear layer of the model "
            f"(it has {', '.join(sorted(linear))}; or all-linear)"
        )
    return names


def param_groups(module: PolicyWithZ, z_lr: float) -> list[dict]:
    """The trainable LM weights; a learned log Z has its own learning rate and no weight decay."""
    groups = [{"params": [p for n, p in module.lm.named_parameters() if p.requires_grad]}]
    if module.log_z is not None:
        groups.append({"params": [module.log_z], "lr": z_lr, "weight_decay": 0.0})
    return groups


# --------------------------------------------------------------------------- reference


def reference_logprobs(data, policy, pad_id, out: Path, is_main: bool, batch_size: int, own_logprobs: bool):
    """log pi_ref per sample: scores' logprob_ref; the samples' own when own_logprobs (see `sampled_from`,
    a pass over every sample saved); else the initial policy's, cached in the run. The step-0 check then
    confirms them on a batch."""
    if data.logprob_ref is not None:
        return data.logprob_ref
    if own_logprobs:
        return data.logprob_model
    cache = out / "ref_logprobs.npy"
    if cache.exists():
        return np.load(cache)
    values = sequence_logprobs(policy, data, np.arange(len(data.prompt_ids)), pad_id, batch_size)
    if is_main:
        tmp = out / ".ref_logprobs.tmp.npy"
        np.save(tmp, values)
        os.replace(tmp, cache)
    return values


def sampled_from(samples_provenance: dict, identity: dict) -> bool:
    """Whether the samples' log-probs are this model's own: its weights, no adapter, temperature 1, untruncated."""
    same, _ = proposal.same_model(samples_provenance, {"model": identity})
    return same and proposal.describe(samples_provenance)["zero_log_ratio"]


def sequence_logprobs(model, data, rows, pad_id, batch_size) -> np.ndarray:
    """Sequence log-probs by the training step's own teacher-forced pass (each distinct prompt run once)."""
    was_training = model.training
    model.eval()
    values = []
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            chunk = rows[i : i + batch_size]
            lps = shared_prompt_logprobs(
                model, [data.prompt_tokens[r] for r in chunk], [data.response_tokens[r] for r in chunk], pad_id
            )
            values.extend(float(lp.sum()) for lp in lps)
    model.train(was_training)
    return np.asarray(values)
