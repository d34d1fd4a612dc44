"""`iswt train`: one training loop for every loss, from the offline artifacts.

Read top to bottom: validate flags, claim the run directory, read and join
the artifacts with `iswcli.chain` (failing before anything is created),
decide from what the directory holds whether to start or resume, load the
policy (LoRA by default), get the reference log-probs (from scores, or
computed once with the initial policy by the same teacher-forced function),
check that the policy equals the reference at step 0, then optimize. Each optimizer step uses a fixed slice
of seeded micro-batches, so runs under `accelerate launch` and resumed runs
see exactly the data an uninterrupted single-process run would.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from accelerate import Accelerator

from iswcli import artifacts, cache, chain, console, losses, model_card, models, outputs, run_dir, tracking, train_data
from iswcli.errors import IswtError, raise_first_failure
from iswcli.results import StageResult
from iswcli.target_curves import (
    CURVE_GROUPS,
    REFERENCE_FILE,
    TargetCurves,
    heldout_prompts,
    set_reward_default,
    training_prompts,
)
from iswcli.train_policy import (
    PolicyWithZ,
    load_policy,
    param_groups,
    reference_logprobs,
    sampled_from,
    sequence_logprobs,
)
from iswcli.train_steps import (
    DIVERGENCE_WINDOW,
    FROZEN_Z_LOSSES,
    NONNEGATIVE_LOSSES,
    Objective,
    StepLoss,
    diverging,
)

LOSSES = ("tb", "dpg", "sigmoid", "hinge", "ipo", "grpo", "gspo", "sft")
STEP0_TOLERANCE = 1e-4


BATCH_ORDERS = ("by-prompt", "shuffled")


@dataclass(frozen=True)
class TrainConfig:
    out: str
    samples: str
    scores: str
    loss: str
    model: str = models.DEFAULT_MODEL
    adapter: str | None = None  # an adapter to start from
    z: str | None = None
    pairs: str | None = None
    beta: float | None = None  # None: the --z artifact's beta for tb with a frozen z, else 1
    z_mode: str = "frozen"  # frozen: read from --z; learned: one trainable scalar per prompt
    z_lr: float = 1e-2
    length_normalize: bool = False
    clip_eps: float = 0.2
    kl_coef: float = 0.0  # KL to the reference for grpo, gspo and dpg
    dpg_baseline: bool = True  # dpg: subtract pi_theta / q from the importance weight (Korbak et al. 2022)
    sft_select: str = "best"
    full: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: str = "all-linear"
    lr: float = 1e-4
    warmup_steps: int | None = None  # None: a tenth of the steps
    schedule: str = "constant"
    weight_decay: float = 0.0
    batch_size: int = 8
    batch_order: str = "by-prompt"  # by-prompt: a prompt's samples (or pairs) in the same micro-batch; shuffled
    grad_accum: int = 1
    max_grad_norm: float = 1.0  # 0: no clipping (HF Trainer's and TRL's meaning)
    epochs: int = 1
    max_steps: int | None = None
    precision: str = "fp32"
    gradient_checkpointing: bool = False
    save_every: int = 0
    resume: bool = False
    seed: int = 0
    device: str = "auto"
    eval_target_every: int = 0  # measure the policy against the exact pi* every N steps and at the end (0: never)
    eval_prompts: str | None = None  # held-out answer-set prompts for those curves: a prompts file or TASK:SPLIT
    eval_target_beta: float | None = None  # the target's beta; None: --beta for tb and dpg
    report_to: str = "none"  # also log each step to tensorboard, trackio or wandb
    force: bool = False  # retrain even when the run directory is up to date


@dataclass(frozen=True, kw_only=True)
class TrainResult(StageResult):
    """output is the run directory."""

    loss: str | None = None
    examples: int | None = None  # samples (or pairs) trained on
    steps: int | None = None
    loss_first: float | None = None  # the loss at the first logged step
    loss_last: float | None = None
    log_ratio_mean_last: float | None = None  # NaN for losses that log none
    tokens_per_s_mean: float | None = None
    diverged_at_step: int | None = None  # the step where the loss grew past a multiple of its start
    step0_residual_mean: float | None = None  # tb, frozen z: the prompts' mean residual before any update
    step0_residual_max: float | None = None
    target_first: dict | None = None  # --eval-target-every: the curves' first and last measures
    target_last: dict | None = None

    def rows(self) -> dict:
        extra = {}
        if self.diverged_at_step is not None:
            extra["diverged at step"] = self.diverged_at_step
        if self.step0_residual_mean is not None:
            extra["step-0 residual (mean, max)"] = f"{self.step0_residual_mean:.4g}, {self.step0_residual_max:.4g}"
        for key in self.target_first or {}:
            if key != "step":
                extra[f"{key} first → last"] = f"{self.target_first[key]:.4g} → {self.target_last[key]:.4g}"
        return {
            "run": self.output,
            "loss": self.loss,
            "examples": self.examples,
            "steps": self.steps,
            "loss first → last": f"{self.loss_first:.4g} → {self.loss_last:.4g}",
            "mean log-ratio (last)": self.log_ratio_mean_last,
            "tokens/s (mean)": self.tokens_per_s_mean,
            **extra,
        }


def validate(c: TrainConfig) -> None:
    checks = [
        (c.loss in LOSSES, f"--loss {c.loss}: must be one of {', '.join(LOSSES)}"),
        (c.beta is None or (math.isfinite(c.beta) and c.beta > 0), f"--beta {c.beta}: must be a finite number > 0"),
        (c.z_mode in ("frozen", "learned"), f"--z-mode {c.z_mode}: must be frozen or learned"),
        (
            not (c.loss == "tb" and c.z_mode == "frozen" and c.z is None),
            "--loss tb needs --z Z.parquet (from iswt estimate-z), or --z-mode learned",
        ),
        (
            not (c.loss == "dpg" and (c.z is None or c.z_mode != "frozen")),
            "--loss dpg needs --z Z.parquet (from iswt estimate-z): its importance weights divide by the frozen Z",
        ),
        (c.warmup_steps is None or c.warmup_steps >= 0, f"--warmup-steps {c.warmup_steps}: must be at least 0"),
        (
            not (c.loss in losses.PAIR_LOSSES and c.pairs is None),
            f"--loss {c.loss} needs --pairs PAIRS.parquet (from iswt weight-pairs)",
        ),
        (c.sft_select in ("best", "correct", "all"), f"--sft-select {c.sft_select}: must be best, correct or all"),
        (c.schedule in ("constant", "cosine"), f"--schedule {c.schedule}: must be constant or cosine"),
        (
            c.batch_order in BATCH_ORDERS,
            f"--batch-order {c.batch_order}: must be one of {', '.join(BATCH_ORDERS)}",
        ),
        (c.precision in ("fp32", "bf16"), f"--precision {c.precision}: must be fp32 or bf16"),
        (c.batch_size >= 1, f"--batch-size {c.batch_size}: must be at least 1"),
        (c.grad_accum >= 1, f"--grad-accum {c.grad_accum}: must be at least 1"),
        (c.lr > 0, f"--lr {c.lr}: must be > 0"),
        (c.weight_decay >= 0, f"--weight-decay {c.weight_decay}: must be a number >= 0"),  # AdamW's, before loading
        (c.epochs >= 1, f"--epochs {c.epochs}: must be at least 1"),
        (c.max_steps is None or c.max_steps >= 1, f"--max-steps {c.max_steps}: must be at least 1"),
        (0 <= c.lora_dropout < 1, f"--lora-dropout {c.lora_dropout}: must be in [0, 1)"),
        (c.lora_r >= 1, f"--lora-r {c.lora_r}: must be at least 1"),
        (c.lora_alpha > 0, f"--lora-alpha {c.lora_alpha}: must be > 0"),
        (c.clip_eps > 0, f"--clip-eps {c.clip_eps}: must be > 0"),
        (c.eval_target_every >= 0, f"--eval-target-every {c.eval_target_every}: must be at least 0"),
        (
            c.eval_target_every or (c.eval_prompts is None and c.eval_target_beta is None),
            "--eval-prompts and --eval-target-beta belong to the exact-target curves: give --eval-target-every too",
        ),
        (
            not c.eval_target_every or c.eval_target_beta is not None or c.loss in FROZEN_Z_LOSSES,
            f"--eval-target-every with --loss {c.loss}: give --eval-target-beta, the beta of the target pi* "
            "(its --beta is the loss's own)",
        ),
        (
            c.eval_target_beta is None or (math.isfinite(c.eval_target_beta) and c.eval_target_beta > 0),
            f"--eval-target-beta {c.eval_target_beta}: must be a finite number > 0",
        ),
        *_other_losses_flags(c),
    ]
    raise_first_failure(checks)
    models.check_device(c.device)
    tracking.check(c.report_to)
    if Path(c.out).exists() and not Path(c.out).is_dir():
        raise IswtError(f"--out {c.out}: is a file; a run directory is expected")
    artifacts.check_parent_writable(c.out, "--out", directory=True)  # a read-only run directory, even with --force
    models.check_adapter(c.adapter)


# Flags that only some losses read, and those losses: given to another loss, one would be ignored without a word.
KL_LOSSES = ("grpo", "gspo", "dpg")


def _other_losses_flags(c: TrainConfig) -> list[tuple[bool, str]]:
    """A refusal for each flag set away from its default that --loss does not read."""
    owned = [
        ("--pairs", c.pairs is not None, losses.PAIR_LOSSES),
        (f"--kl-coef {c.kl_coef:g}", c.kl_coef != 0, KL_LOSSES),
        ("--z-mode learned", c.z_mode == "learned", ("tb",)),
    ]
    return [
        (not given or c.loss in readers, f"{flag}: --loss {c.loss} does not read it (only {', '.join(readers)} do)")
        for flag, given, readers in owned
    ]


def _frozen_z(c: TrainConfig) -> bool:
    """Whether the objective reads log Z from the --z artifact."""
    return c.loss in FROZEN_Z_LOSSES and c.z_mode == "frozen"


def _input_flags(c: TrainConfig) -> dict[str, str | None]:
    return {"--samples": c.samples, "--scores": c.scores, "--z": c.z, "--pairs": c.pairs, "--adapter": c.adapter}


def resolve_beta(c: TrainConfig) -> TrainConfig:
    """tb and dpg against a frozen z take the z's beta: another one trains toward the wrong fixed point."""
    if not _frozen_z(c):
        return c if c.beta is not None else replace(c, beta=1.0)
    z_beta = chain.z_beta(c.z)
    if z_beta is None:  # an empty z: reading it with the samples says which prompts it lacks
        return c if c.beta is not None else replace(c, beta=1.0)
    if c.beta is not None and c.beta != z_beta:
        raise IswtError(
            f"--beta {c.beta}: --z {c.z} was estimated at beta {z_beta:g}, and --loss {c.loss} against it "
            "needs the same beta; omit --beta to take it from the z, or estimate Z at this beta"
        )
    if c.eval_target_beta is not None and c.eval_target_beta != z_beta:
        raise IswtError(
            f"--eval-target-beta {c.eval_target_beta:g}: --loss {c.loss} trains toward pi* at the beta of --z "
            f"{c.z} ({z_beta:g}); curves against another pi* measure another target (omit --eval-target-beta)"
        )
    return replace(c, beta=z_beta)


def _up_to_date(c: TrainConfig) -> TrainResult | None:
    """A finished run from this config, these inputs and this model needs no retraining."""
    if c.resume or not (Path(c.out) / "manifest.json").exists():
        return None
    named = {"samples": c.samples, "scores": c.scores}
    if _frozen_z(c):
        named["z"] = c.z
    if c.loss in losses.PAIR_LOSSES:
        named["pairs"] = c.pairs
    inputs = {role: cache.input_ref(path) for role, path in named.items() if path is not None}
    ref = models.resolve_model(c.model)
    identity = models.model_identity(ref, models.local_path(ref), c.adapter)
    return cache.up_to_date(c.out, "train", asdict(c), inputs, identity, result=TrainResult)


def read_inputs(c: TrainConfig) -> tuple[train_data.TrainData, dict[str, artifacts.Artifact]]:
    """The samples joined with their scores, z and pairs, each checked to belong to the others."""
    data, scored = train_data.load(c.samples, c.scores)
    inputs = {"samples": scored.samples, "scores": scored.scores}
    if _frozen_z(c):
        z = chain.load_z(c.z, scored)
        train_data.attach_z(data, z, scored, weights_need_q=c.loss == "dpg")
        inputs["z"] = z.artifact
    if c.loss in losses.PAIR_LOSSES:
        pairs = chain.load_pairs(c.pairs, scored)
        train_data.attach_pairs(data, pairs)
        inputs["pairs"] = pairs.artifact
    else:
        train_data.select_samples(data, c.loss, c.sft_select)
    return data, inputs


def _warn_no_signal(c: TrainConfig, data) -> None:
    if c.loss in ("tb", "grpo", "gspo") and train_data.prompts_with_equal_rewards(data) == len(data.prompt_names):
        # tb's target is then pi_ref itself and grpo's advantages are all 0: an optimizer step could only follow
        # float noise (AdamW scales even 1e-7 gradients to full learning-rate steps)
        console.warn(
            f"--loss {c.loss}: every prompt's samples have the same reward in {c.scores}: there is no reward "
            "signal to learn from"
        )


def run(c: TrainConfig) -> TrainResult:
    validate(c)
    # every process of an `accelerate launch` runs this; the main one holds the run directory
    with outputs.claim(c.out, _input_flags(c)) if _is_main_launch_process() else nullcontext():
        return _train(resolve_beta(c))


def _is_main_launch_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _train(c: TrainConfig) -> TrainResult:
    cached = _up_to_date(c)
    if cached:
        return cached
    with console.held_warnings():  # a refusal up to the resume decision is the only line printed
        data, inputs = read_inputs(c)
        ref = models.resolve_model(c.model)
        path = models.local_path(ref)
        identity = models.model_identity(ref, path, c.adapter)
        tokenizer = models.load_tokenizer(path)
        curves = _target_curves(c, tokenizer, inputs) if c.eval_target_every else None
        fingerprint = run_dir.fingerprint(asdict(c), inputs)
        resume = run_dir.resume_or_start(c.out, fingerprint, resume=c.resume, force=c.force)
        if resume:
            _check_resumable(c, Path(c.out))
        _warn_no_signal(c, data)

    accelerator = Accelerator(mixed_precision="bf16" if c.precision == "bf16" else "no", cpu=c.device == "cpu")
    run_dir.seed_everything(c.seed + accelerator.process_index)
    lora = {
        "r": c.lora_r,
        "lora_alpha": c.lora_alpha,
        "lora_dropout": c.lora_dropout,
        "target_modules": c.target_modules,
    }
    policy = load_policy(
        path,
        accelerator.device,
        adapter=c.adapter,
        full=c.full,
        lora=lora,
        gradient_checkpointing=c.gradient_checkpointing,
    )
    pad_id = tokenizer.pad_token_id

    out = Path(c.out)
    if accelerator.is_main_process:
        if not resume:
            run_dir.start_over(out)
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        outputs.write_atomically(out / "checkpoints" / "run.json", json.dumps(fingerprint, indent=2))
    accelerator.wait_for_everyone()
    own = c.adapter is None and sampled_from(inputs["samples"].provenance, identity)
    logp_ref = reference_logprobs(data, policy, pad_id, out, accelerator.is_main_process, c.batch_size, own)
    _step0_check(data, policy, logp_ref, pad_id, c)

    module = PolicyWithZ(policy, len(data.prompt_names) if c.z_mode == "learned" and c.loss == "tb" else 0)
    optimizer = torch.optim.AdamW(param_groups(module, c.z_lr), lr=c.lr, weight_decay=c.weight_decay)
    batches_per_epoch = math.ceil(len(data.examples) / c.batch_size)
    per_step = c.grad_accum * accelerator.num_processes
    total_steps = c.max_steps or max(1, (batches_per_epoch * c.epochs) // per_step)
    warmup = c.warmup_steps if c.warmup_steps is not None else math.ceil(total_steps / 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(c, total_steps, warmup))
    module, optimizer = accelerator.prepare(module, optimizer)
    module.train()

    log_rows: list[dict] = []
    start = run_dir.load_checkpoint(out, accelerator, module, optimizer, scheduler, log_rows) if resume else 0
    if curves and accelerator.is_main_process:
        curves.fix_reference(accelerator.unwrap_model(module).lm, out, start)
    batch_stream = training_batches(data, c, per_step)
    if accelerator.is_main_process and c.max_steps is not None:
        _warn_unseen_prompts(data, c, batch_stream[: total_steps * per_step])
    objective = Objective(c.loss, c.beta, c.clip_eps, c.kl_coef, c.length_normalize, c.dpg_baseline)
    step_loss = StepLoss(objective, data, logp_ref, pad_id)

    tracker = tracking.Tracker(c.report_to, out, artifacts.jsonable(asdict(c))) if accelerator.is_main_process else None
    measure_now = lambda step: curves is not None and accelerator.is_main_process and step % c.eval_target_every == 0
    diverged_at = None
    with console.progress(total_steps, "training", rate_unit="tok/s") as bar:
        bar.advance(start)
        for step in range(start, total_steps):
            target = curves.measure(_policy_or_reference(module, step, accelerator), step) if measure_now(step) else {}
            began = time.perf_counter()
            micro = _my_micro_batches(batch_stream, step, per_step, accelerator)
            totals, tokens = {}, 0
            for i, rows in enumerate(micro):
                sync = i == len(micro) - 1
                ctx = accelerator.no_sync(module) if not sync else nullcontext()
                with ctx, accelerator.autocast():
                    loss, parts, n_tok = step_loss(module, rows)
                    accelerator.backward(loss / len(micro))
                for k, v in {"loss": loss.item(), **parts}.items():
                    totals[k] = totals.get(k, 0.0) + v / len(micro)
                tokens += n_tok
            # 0 means no clipping, as in HF Trainer and TRL; the norm is still measured and logged
            grad_norm = accelerator.clip_grad_norm_(module.parameters(), c.max_grad_norm or math.inf)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            row = _log_row(step, totals, lr, grad_norm, tokens, time.perf_counter() - began, accelerator)
            log_rows.append({**row, **target})
            if tracker:
                tracker.log(log_rows[-1])
            if diverged_at is None and c.loss in NONNEGATIVE_LOSSES and diverging([r["loss"] for r in log_rows]):
                diverged_at = step
                _warn_divergence(c, log_rows, step)
            bar.advance(1, rate=row["tokens_per_s"])
            if c.save_every and (step + 1) % c.save_every == 0 and step + 1 < total_steps:
                run_dir.save_checkpoint(out, step + 1, accelerator, module, optimizer, scheduler, log_rows)

    if curves and accelerator.is_main_process:  # after the last update: a row of its own, step = total_steps
        log_rows.append({"step": total_steps, **curves.measure(accelerator.unwrap_model(module).lm, total_steps)})
        if tracker:
            tracker.log(log_rows[-1])
    if tracker:
        tracker.close()
    accelerator.wait_for_everyone()
    diagnostics = _diagnostics(c, data, log_rows, diverged_at)
    if accelerator.is_main_process:
        _save_run(c, out, accelerator.unwrap_model(module), tokenizer, log_rows, inputs, identity, data, diagnostics)
    accelerator.wait_for_everyone()
    return _summary(c, log_rows, total_steps, data, diagnostics)


def _check_resumable(c: TrainConfig, out: Path) -> None:
    """What a resume reads from the run directory, checked before the model loads: the latest checkpoint is
    whole (torch saves a zip archive; a truncated one lacks its directory), and a run measuring curves still
    has the pi* it measured them against (rebuilt from the trained policy, it would be another target)."""
    import zipfile

    done = sorted(p for p in (out / "checkpoints").glob("step-*") if (p / "state.pt").exists())
    state = done[-1] / "state.pt"
    try:
        with zipfile.ZipFile(state) as archive:
            broken = archive.testzip()
    except (zipfile.BadZipFile, OSError):
        broken = state.name
    if broken is not None:
        raise IswtError(
            f"--resume: {state} is not a readable checkpoint (truncated or corrupt); remove {done[-1]} to "
            "resume from the checkpoint before it, or --force to start over"
        )
    if c.eval_target_every and not (out / REFERENCE_FILE).exists():
        raise IswtError(
            f"--resume: {out / REFERENCE_FILE} is gone, so the curves cannot be measured against the pi* of "
            "their earlier rows; --force to start over"
        )


def _policy_or_reference(module, step: int, accelerator):
    """The policy to measure; None at step 0, where it is the reference (the step-0 check says so)."""
    return None if step == 0 else accelerator.unwrap_model(module).lm


def _target_curves(c: TrainConfig, tokenizer, inputs: dict) -> TargetCurves:
    """The exact-target curves' prompts (training, and --eval-prompts), checked before any heavy work."""
    prompts, stops, chat_template = training_prompts(c.samples, tokenizer)
    if not stops:
        raise IswtError(f"--eval-target-every: {c.samples} records no stop tokens, so no response is an exact answer")
    groups = {"train": prompts}
    if c.eval_prompts is not None:
        groups["heldout"] = heldout_prompts(c.eval_prompts, tokenizer, chat_template, stops)
    r0 = set_reward_default(inputs["scores"].provenance, c.scores)
    return TargetCurves(groups, stops, tokenizer.pad_token_id, r0, c.eval_target_beta or c.beta)


def _schedule(c: TrainConfig, total_steps: int, warmup: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if c.schedule == "cosine":
            progress = (step - warmup) / max(1, total_steps - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor


def _step0_check(data, policy, logp_ref, pad_id, c: TrainConfig) -> None:
    """Before any update the policy is the reference: their log-ratio must vanish."""
    rows = np.unique(data.examples.reshape(-1))[: c.batch_size]
    theta = sequence_logprobs(policy, data, rows, pad_id, c.batch_size)
    gap = float(np.mean(np.abs(theta - logp_ref[rows])))
    if not gap < STEP0_TOLERANCE:
        raise IswtError(
            f"step-0 check: mean |log pi_theta - log pi_ref| = {gap:.3g} on the first batch (must be < "
            f"{STEP0_TOLERANCE}); the reference log-probs in {c.scores} do not come from --model {c.model} "
            "on these token ids (another model or adapter, a chat-template or tokenization mismatch, or bf16)"
        )


# --------------------------------------------------------------------------- steps


def training_batches(data, c: TrainConfig, per_step: int):
    """All micro-batches in training order, epoch after epoch (seeded; see epoch_batches)."""
    pairs = c.loss in losses.PAIR_LOSSES
    n_examples = len(data.examples)
    prompt_of = length_of = None
    if c.batch_order == "by-prompt":
        prompt_of = train_data.example_prompts(data)
        length_of = train_data.example_lengths(data, pairs)
    stream = []
    for epoch in range(c.epochs if c.max_steps is None else 10**6):
        stream.extend(train_data.epoch_batches(n_examples, c.batch_size, epoch, c.seed, prompt_of, length_of))
        if c.max_steps is not None and len(stream) >= c.max_steps * per_step:
            break
    return stream


def _warn_unseen_prompts(data, c: TrainConfig, batches: list[np.ndarray]) -> None:
    """--max-steps can end training before every prompt had a batch: by-prompt batches hold one prompt's
    examples, so 48 steps of 8 over 16 prompts x 32 samples train on 12 prompts and never see the other 4."""
    prompts = train_data.example_prompts(data)
    seen, total = len(np.unique(prompts[np.concatenate(batches)])), len(np.unique(prompts))
    if seen < total:
        hint = "; --batch-order shuffled spreads the steps over every prompt" if c.batch_order == "by-prompt" else ""
        console.warn(f"--max-steps {c.max_steps}: training sees examples of {seen} of its {total} prompts{hint}")


def _my_micro_batches(stream, step: int, per_step: int, accelerator) -> list[np.ndarray]:
    """This process's share of the step's micro-batches: every num_processes-th one."""
    window = stream[step * per_step : (step + 1) * per_step]
    return window[accelerator.process_index :: accelerator.num_processes]


def _log_row(step, totals, lr, grad_norm, tokens, seconds, accelerator) -> dict:
    reduced = {}
    for key, value in totals.items():
        t = torch.tensor(value, device=accelerator.device)
        reduced[key] = float(accelerator.reduce(t, reduction="mean"))
    all_tokens = int(accelerator.reduce(torch.tensor(tokens, device=accelerator.device), reduction="sum"))
    return {
        "step": step,
        "lr": lr,
        "grad_norm": float(grad_norm),
        "tokens_per_s": all_tokens / seconds if seconds > 0 else 0.0,
        "response_tokens": all_tokens,
        "seconds": seconds,
        **reduced,
    }


# --------------------------------------------------------------------------- outputs


def _save_run(c, out: Path, module, tokenizer, log_rows, inputs, identity, data, diagnostics) -> None:
    """Weights, tokenizer, config, log and manifest; the manifest last, as the mark of a finished run."""
    module.lm.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "iswt_config.json").write_text(json.dumps(artifacts.jsonable(asdict(c)), indent=2))
    if module.log_z is not None:
        learned = pa.table({"prompt_id": data.prompt_names, "log_z": module.log_z.detach().cpu().numpy()})
        pq.write_table(learned, out / "learned_log_z.parquet")
    provenance = artifacts.make_provenance("train", asdict(c), inputs=inputs, model=identity, seed=c.seed)
    artifacts.write_artifact(_log_table(log_rows), str(out / "train_log.parquet"), artifacts.TRAIN_LOG, provenance)
    manifest = {
        **provenance,
        "objective": _objective_note(c),
        "reward_transform": (inputs["z"].provenance.get("reward_transform") if "z" in inputs else None),
        "weights": "adapter (peft)" if not c.full else "full model",
        "z_sha256": inputs["z"].sha256 if "z" in inputs else None,
        "steps": len(_step_rows(log_rows)),
        **diagnostics,
    }
    model_card.write(out, manifest, inputs, log_rows)  # README.md and the base model's hub id
    outputs.write_atomically(out / "manifest.json", json.dumps(manifest, indent=2, default=str))


def _objective_note(c: TrainConfig) -> str:
    if c.loss != "tb":
        return c.loss
    note = f"trajectory balance, {c.z_mode} log Z"
    if c.length_normalize:
        note += ", length-normalized (approximate: the fixed point is not exactly pi_ref exp(beta r) / Z)"
    return note


def _log_table(rows: list[dict]) -> pa.Table:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return pa.table({k: [r.get(k, float("nan")) for r in rows] for k in keys})


def _step_rows(log_rows: list[dict]) -> list[dict]:
    """The optimizer steps' rows (the curves' closing row, after the last update, has no loss)."""
    return [r for r in log_rows if "loss" in r]


def _diagnostics(c: TrainConfig, data, log_rows: list[dict], diverged_at: int | None) -> dict:
    """What the summary and the manifest say beyond the losses: step-0 residuals, divergence, the final curves."""
    out: dict = {"diverged_at_step": diverged_at}
    if c.loss == "tb" and data.log_z is not None:
        residual = losses.tb_step0_residuals(data.log_z, data.reward, c.beta, data.prompt_index)
        out["step0_residuals"] = dict(zip(data.prompt_names, residual.tolist()))
    if c.eval_target_every:
        measured = [r for r in log_rows if any(k.startswith(CURVE_GROUPS) for k in r)]
        out["target_curve"] = {"first": _curve_values(measured[0]), "last": _curve_values(measured[-1])}
    return out


def _curve_values(row: dict) -> dict:
    return {k: v for k, v in row.items() if k.startswith(CURVE_GROUPS)} | {"step": row["step"]}


def _warn_divergence(c: TrainConfig, log_rows: list[dict], step: int) -> None:
    first = max(0, step - DIVERGENCE_WINDOW + 1)
    recent = np.mean([r["loss"] for r in log_rows[first:]])
    console.warn(
        f"--loss {c.loss}: the loss diverges at step {step}: {recent:.4g} on average over steps {first}-{step}, "
        f"against {log_rows[0]['loss']:.4g} at step 0; lower --lr (now {c.lr:g}) or lengthen --warmup-steps"
    )


def _summary(c, log_rows, total_steps, data, diagnostics: dict) -> TrainResult:
    steps = _step_rows(log_rows)
    first, last = steps[0], steps[-1]
    residuals = list((diagnostics.get("step0_residuals") or {}).values())
    curve = diagnostics.get("target_curve") or {}
    return TrainResult(
        output=c.out,
        loss=c.loss,
        examples=len(data.examples),
        steps=total_steps,
        loss_first=first["loss"],
        loss_last=last["loss"],
        log_ratio_mean_last=last.get("log_ratio_mean", float("nan")),
        tokens_per_s_mean=float(np.mean([r["tokens_per_s"] for r in steps])),
        diverged_at_step=diagnostics["diverged_at_step"],
        step0_residual_mean=float(np.mean(residuals)) if residuals else None,
        step0_residual_max=float(np.max(residuals)) if residuals else None,
        target_first=curve.get("first"),
        target_last=curve.get("last"),
    )
