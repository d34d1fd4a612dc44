"""The `iswt` command: one small function per subcommand.

Each command parses its flags (those several share: iswcli/options.py) into
the stage's frozen config, calls the stage's run(), and prints the typed
result it returns (iswcli/render.py). Domain errors become one line on
stderr and exit code 2 (a traceback only with --debug; iswcli/cli_errors.py). Heavy libraries are
imported inside the stages, so `iswt --help` stays instant.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from iswcli import __version__, console, render
from iswcli.cli_errors import domain_errors
from iswcli.cli_help import IswtApp, IswtGroup
from iswcli.domains import (
    COUNT,
    COUNT_OR_ZERO,
    DROPOUT,
    FRACTION,
    KL_COEF,
    LEARNING_RATE,
    NON_NEGATIVE,
    POSITIVE,
    SECONDS,
    WEIGHT_DECAY,
)
from iswcli.errors import IswtError
from iswcli.options import (
    ENGINE,
    INPUTS,
    RUN,
    SAMPLING,
    AdapterOpt,
    BackendOpt,
    CompareOpt,
    ConfigOpt,
    DeviceOpt,
    DtypeOpt,
    ForceOpt,
    GpuMemoryOpt,
    LimitOpt,
    MaxModelLenOpt,
    ModelOpt,
    OutOpt,
    PlotOpt,
    PromptsOpt,
    RunsArg,
    SeedOpt,
    ShardOpt,
    SplitOpt,
    TaskOpt,
    TensorParallelOpt,
)

app = IswtApp(
    name="iswt",
    cls=IswtGroup,
    help="Importance-sampled LLM post-training: sample, score, estimate Z, weight pairs, train, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"iswt {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    console.settings.debug = debug
    console.settings.quiet = quiet
    console.settings.json = json_output


@app.command()
def sample(
    out: OutOpt,
    model: ModelOpt = "smollm2-135m",
    adapter: AdapterOpt = None,
    task: TaskOpt = None,
    prompts: PromptsOpt = None,
    split: SplitOpt = None,
    limit: LimitOpt = None,
    chat_template: Annotated[
        bool,
        typer.Option(
            "--chat-template/--no-chat-template", help="Apply the tokenizer's chat template.", rich_help_panel=INPUTS
        ),
    ] = True,
    n: Annotated[
        int, typer.Option("--n", callback=COUNT.check, help="Samples per prompt (K).", rich_help_panel=SAMPLING)
    ] = 8,
    max_new_tokens: Annotated[
        int,
        typer.Option(
            "--max-new-tokens", callback=COUNT.check, help="Longest response, in tokens.", rich_help_panel=SAMPLING
        ),
    ] = 256,
    temperature: Annotated[
        float, typer.Option("--temperature", callback=NON_NEGATIVE.check, help="0 is greedy.", rich_help_panel=SAMPLING)
    ] = 1.0,
    top_p: Annotated[
        float,
        typer.Option("--top-p", callback=FRACTION.check, help="Nucleus sampling (1: off).", rich_help_panel=SAMPLING),
    ] = 1.0,
    top_k: Annotated[
        int,
        typer.Option("--top-k", callback=COUNT_OR_ZERO.check, help="0 turns top-k off.", rich_help_panel=SAMPLING),
    ] = 0,
    seed: SeedOpt = 0,
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", callback=COUNT.check, help="Sequences per forward pass.", rich_help_panel=ENGINE),
    ] = 32,
    backend: BackendOpt = "hf",
    dtype: DtypeOpt = "float32",
    tensor_parallel_size: TensorParallelOpt = 1,
    gpu_memory_utilization: GpuMemoryOpt = 0.9,
    max_model_len: MaxModelLenOpt = None,
    shard: ShardOpt = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    config_file: ConfigOpt = None,
) -> None:
    """Draw K responses per prompt with per-token log-probs under q and under the raw model."""
    from stages.sample import SampleConfig, run

    if task is None and prompts is None:
        task = "arith"
    config = SampleConfig(
        out=out,
        model=model,
        adapter=adapter,
        task=task,
        prompts=prompts,
        split=split,
        limit=limit,
        n=n,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=seed,
        batch_size=batch_size,
        backend=backend,
        dtype=dtype,
        tensor_parallel_size=tensor_parallel_size,
        gpu_memory_utilization=gpu_memory_utilization,
        max_model_len=max_model_len,
        shard=shard,
        chat_template=chat_template,
        device=device,
        force=force,
    )
    with domain_errors():
        render.show_result("iswt sample", run(config))


REWARD, REFERENCE = "Reward", "Reference log-probs"


@app.command()
def score(
    samples: Annotated[
        str,
        typer.Option(
            "--samples",
            metavar="PATH",
            help="Samples artifact: a .parquet file, directory or glob.",
            rich_help_panel=INPUTS,
        ),
    ],
    reward: Annotated[
        str,
        typer.Option(
            "--reward", help="math, code, rm:PATH, pairwise:PATH or python:MODULE:FUNCTION.", rich_help_panel=REWARD
        ),
    ],
    out: OutOpt,
    ref_model: Annotated[
        Optional[str],
        typer.Option(
            "--ref-model", help="Adds logprob_ref: teacher-forced under this model.", rich_help_panel=REFERENCE
        ),
    ] = None,
    ref_adapter: Annotated[
        Optional[str],
        typer.Option(
            "--ref-adapter", metavar="PATH", help="A peft adapter on the reference.", rich_help_panel=REFERENCE
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            callback=COUNT.check,
            help="Sandboxed programs at a time (code reward).",
            rich_help_panel=REWARD,
        ),
    ] = 4,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            callback=SECONDS.check,
            help="Seconds per program (code) or check (math).",
            rich_help_panel=REWARD,
        ),
    ] = 10.0,
    baseline: Annotated[
        Optional[str],
        typer.Option(
            "--baseline",
            help="pairwise: a sample_idx, or a file with one response per prompt.",
            rich_help_panel=REWARD,
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            callback=COUNT.check,
            help="Samples per part and per forward pass.",
            rich_help_panel=REFERENCE,
        ),
    ] = 32,
    shard: ShardOpt = None,
    on_error: Annotated[
        str,
        typer.Option(
            "--on-error", help="fail (default) or skip samples whose reward is NaN/inf.", rich_help_panel=REWARD
        ),
    ] = "fail",
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    config_file: ConfigOpt = None,
) -> None:
    """Reward every sample (and add reference log-probs with --ref-model)."""
    from stages.score import ScoreConfig, run

    config = ScoreConfig(
        samples=samples,
        reward=reward,
        out=out,
        ref_model=ref_model,
        ref_adapter=ref_adapter,
        workers=workers,
        timeout=timeout,
        baseline=baseline,
        batch_size=batch_size,
        shard=shard,
        on_error=on_error,
        seed=seed,
        device=device,
        force=force,
    )
    with domain_errors():
        render.show_result("iswt score", run(config))


ESTIMATE, DIAGNOSTICS = "Estimate", "Diagnostics"


@app.command("estimate-z")
def estimate_z(
    proposal: Annotated[
        str,
        typer.Option(
            "--proposal", metavar="PATH", help="Samples artifact drawn from the proposal q.", rich_help_panel=INPUTS
        ),
    ],
    scores: Annotated[
        str,
        typer.Option("--scores", metavar="PATH", help="Scores artifact of those samples.", rich_help_panel=INPUTS),
    ],
    beta: Annotated[
        float,
        typer.Option(
            "--beta",
            callback=POSITIVE.check,
            help="Inverse temperature: Z = E_ref[exp(beta * r)].",
            rich_help_panel=ESTIMATE,
        ),
    ],
    out: OutOpt,
    bootstrap: Annotated[
        int,
        typer.Option(
            "--bootstrap",
            callback=COUNT_OR_ZERO.check,
            help="Resamples for a percentile interval of log Z (0: none).",
            rich_help_panel=ESTIMATE,
        ),
    ] = 0,
    seed: SeedOpt = 0,
    reward_transform: Annotated[
        str,
        typer.Option("--reward-transform", help="none or group-zscore (changes the target).", rich_help_panel=ESTIMATE),
    ] = "none",
    estimator: Annotated[
        str,
        typer.Option(
            "--estimator",
            help="snis (self-normalized), cv (control variate) or is (plain); all equal when q is pi_ref.",
            rich_help_panel=ESTIMATE,
        ),
    ] = "snis",
    low_ess: Annotated[
        Optional[float],
        typer.Option(
            "--low-ess",
            callback=FRACTION.check,
            help="Flag low_ess below this ESS/K (default 0.1).",
            rich_help_panel=DIAGNOSTICS,
        ),
    ] = None,
    plot: PlotOpt = None,
    shard: ShardOpt = None,
    mismatch_threshold: Annotated[
        Optional[float],
        typer.Option(
            "--mismatch-threshold",
            callback=POSITIVE.check,
            help="Flag sampler_mismatch where |logprob_model - logprob_ref| of a sample exceeds this (nats; 0.05).",
            rich_help_panel=DIAGNOSTICS,
        ),
    ] = None,
    force: ForceOpt = False,
    config_file: ConfigOpt = None,
) -> None:
    """Estimate each prompt's log Z by importance sampling, with ESS, k-hat and flags."""
    from stages.estimate_z import EstimateZConfig, run

    optional = {"low_ess": low_ess} if low_ess is not None else {}
    if mismatch_threshold is not None:
        optional["mismatch_threshold"] = mismatch_threshold
    config = EstimateZConfig(
        proposal=proposal,
        scores=scores,
        beta=beta,
        out=out,
        bootstrap=bootstrap,
        seed=seed,
        reward_transform=reward_transform,
        estimator=estimator,
        plot=plot,
        shard=shard,
        **optional,
        force=force,
    )
    with domain_errors():
        render.show_result("iswt estimate-z", run(config))


PAIRS = "Pairs"


@app.command("weight-pairs")
def weight_pairs(
    samples: Annotated[
        str, typer.Option("--samples", metavar="PATH", help="Samples artifact.", rich_help_panel=INPUTS)
    ],
    scores: Annotated[
        str,
        typer.Option("--scores", metavar="PATH", help="Scores artifact of those samples.", rich_help_panel=INPUTS),
    ],
    method: Annotated[
        str,
        typer.Option("--method", help="iso (importance weights), rso or direct (uniform).", rich_help_panel=PAIRS),
    ],
    out: OutOpt,
    gamma: Annotated[
        Optional[float],
        typer.Option("--gamma", callback=POSITIVE.check, help="iso: reward temperature.", rich_help_panel=PAIRS),
    ] = None,
    beta: Annotated[
        Optional[float],
        typer.Option("--beta", callback=POSITIVE.check, help="rso: acceptance temperature.", rich_help_panel=PAIRS),
    ] = None,
    num_accept: Annotated[
        Optional[int],
        typer.Option(
            "--num-accept",
            callback=COUNT.check,
            help="rso: samples to accept per prompt (default: all).",
            rich_help_panel=PAIRS,
        ),
    ] = None,
    pairing: Annotated[
        Optional[str],
        typer.Option(
            "--pairing",
            help="all, first-round or tournament (default: all; first-round for rso).",
            rich_help_panel=PAIRS,
        ),
    ] = None,
    max_pairs_per_prompt: Annotated[
        Optional[int],
        typer.Option(
            "--max-pairs-per-prompt",
            callback=COUNT.check,
            help="Keep the highest-weighted pairs.",
            rich_help_panel=PAIRS,
        ),
    ] = None,
    seed: SeedOpt = 0,
    plot: PlotOpt = None,
    shard: ShardOpt = None,
    force: ForceOpt = False,
    config_file: ConfigOpt = None,
) -> None:
    """Form preference pairs per prompt and weight them (sums to 1 per prompt)."""
    from stages.weight_pairs import WeightPairsConfig, run

    config = WeightPairsConfig(
        samples=samples,
        scores=scores,
        method=method,
        out=out,
        gamma=gamma,
        beta=beta,
        num_accept=num_accept,
        pairing=pairing,
        max_pairs_per_prompt=max_pairs_per_prompt,
        seed=seed,
        plot=plot,
        shard=shard,
        force=force,
    )
    with domain_errors():
        render.show_result("iswt weight-pairs", run(config))


OBJECTIVE, LORA, OPTIMIZATION = "Objective", "LoRA", "Optimization"
EVAL_DURING, TRACKING = "Evaluation during training", "Tracking and checkpoints"


@app.command()
def train(
    out: Annotated[
        str,
        typer.Option(
            "--out",
            metavar="PATH",
            help="Run directory; an unfinished run there with this config is resumed.",
            rich_help_panel=RUN,
        ),
    ],
    samples: Annotated[
        str,
        typer.Option(
            "--samples", metavar="PATH", help="Samples artifact (the offline trajectories).", rich_help_panel=INPUTS
        ),
    ],
    scores: Annotated[
        str,
        typer.Option("--scores", metavar="PATH", help="Scores artifact for those samples.", rich_help_panel=INPUTS),
    ],
    loss: Annotated[
        str,
        typer.Option("--loss", help="tb, dpg, sigmoid, hinge, ipo, grpo, gspo or sft.", rich_help_panel=OBJECTIVE),
    ],
    model: ModelOpt = "smollm2-135m",
    adapter: Annotated[
        Optional[str],
        typer.Option("--adapter", metavar="PATH", help="Adapter to continue training.", rich_help_panel=INPUTS),
    ] = None,
    z: Annotated[
        Optional[str],
        typer.Option(
            "--z",
            metavar="PATH",
            help="Frozen log Z (from estimate-z), for --loss tb and dpg.",
            rich_help_panel=INPUTS,
        ),
    ] = None,
    pairs: Annotated[
        Optional[str],
        typer.Option("--pairs", metavar="PATH", help="Weighted pairs, for pair losses.", rich_help_panel=INPUTS),
    ] = None,
    beta: Annotated[
        Optional[float],
        typer.Option(
            "--beta",
            callback=POSITIVE.check,
            help="Inverse temperature / DPO beta (default: the --z artifact's beta for tb/dpg, else 1).",
            rich_help_panel=OBJECTIVE,
        ),
    ] = None,
    z_mode: Annotated[
        str, typer.Option("--z-mode", help="frozen (from --z) or learned jointly.", rich_help_panel=OBJECTIVE)
    ] = "frozen",
    z_lr: Annotated[
        float,
        typer.Option(
            "--z-lr",
            callback=LEARNING_RATE.check,
            help="Learning rate of the learned log Z.",
            rich_help_panel=OBJECTIVE,
        ),
    ] = 1e-2,
    length_normalize: Annotated[
        bool, typer.Option("--length-normalize", help="Approximate tb variant.", rich_help_panel=OBJECTIVE)
    ] = False,
    clip_eps: Annotated[
        float,
        typer.Option(
            "--clip-eps", callback=POSITIVE.check, help="Ratio clip for grpo/gspo.", rich_help_panel=OBJECTIVE
        ),
    ] = 0.2,
    kl_coef: Annotated[
        float,
        typer.Option(
            "--kl-coef",
            callback=KL_COEF.check,
            help="KL to the reference for grpo, gspo and dpg.",
            rich_help_panel=OBJECTIVE,
        ),
    ] = 0.0,
    dpg_baseline: Annotated[
        bool,
        typer.Option(
            "--dpg-baseline/--no-dpg-baseline",
            help="dpg: subtract pi_theta/q from the weight.",
            rich_help_panel=OBJECTIVE,
        ),
    ] = True,
    sft_select: Annotated[
        str,
        typer.Option("--sft-select", help="best, correct (reward >= 1) or all.", rich_help_panel=OBJECTIVE),
    ] = "best",
    full: Annotated[
        bool, typer.Option("--full", help="Full fine-tuning instead of LoRA.", rich_help_panel=LORA)
    ] = False,
    lora_r: Annotated[
        int, typer.Option("--lora-r", callback=COUNT.check, help="LoRA rank.", rich_help_panel=LORA)
    ] = 16,
    lora_alpha: Annotated[
        int,
        typer.Option(
            "--lora-alpha", callback=COUNT.check, help="LoRA alpha: updates scale by alpha / r.", rich_help_panel=LORA
        ),
    ] = 32,
    lora_dropout: Annotated[
        float, typer.Option("--lora-dropout", callback=DROPOUT.check, help="LoRA dropout.", rich_help_panel=LORA)
    ] = 0.0,
    target_modules: Annotated[
        str, typer.Option("--target-modules", help="all-linear or a,b,c.", rich_help_panel=LORA)
    ] = "all-linear",
    lr: Annotated[
        float,
        typer.Option(
            "--lr", callback=LEARNING_RATE.check, help="Learning rate (after warm-up).", rich_help_panel=OPTIMIZATION
        ),
    ] = 1e-4,
    warmup_steps: Annotated[
        Optional[int],
        typer.Option(
            "--warmup-steps",
            callback=COUNT_OR_ZERO.check,
            help="Linear warm-up steps (default: a tenth of the steps).",
            rich_help_panel=OPTIMIZATION,
        ),
    ] = None,
    weight_decay: Annotated[
        float,
        typer.Option(
            "--weight-decay",
            callback=WEIGHT_DECAY.check,
            help="AdamW weight decay (LoRA weights only).",
            rich_help_panel=OPTIMIZATION,
        ),
    ] = 0.0,
    schedule: Annotated[
        str, typer.Option("--schedule", help="constant or cosine after warmup.", rich_help_panel=OPTIMIZATION)
    ] = "constant",
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            callback=COUNT.check,
            help="Samples (or pairs) per micro-batch.",
            rich_help_panel=OPTIMIZATION,
        ),
    ] = 8,
    batch_order: Annotated[
        str, typer.Option("--batch-order", help="by-prompt or shuffled.", rich_help_panel=OPTIMIZATION)
    ] = "by-prompt",
    grad_accum: Annotated[
        int,
        typer.Option(
            "--grad-accum",
            callback=COUNT.check,
            help="Micro-batches per optimizer step.",
            rich_help_panel=OPTIMIZATION,
        ),
    ] = 1,
    max_grad_norm: Annotated[
        float,
        typer.Option(
            "--max-grad-norm",
            callback=NON_NEGATIVE.check,
            help="Clip the gradient's norm to this.",
            rich_help_panel=OPTIMIZATION,
        ),
    ] = 1.0,
    epochs: Annotated[
        int,
        typer.Option("--epochs", callback=COUNT.check, help="Passes over the data.", rich_help_panel=OPTIMIZATION),
    ] = 1,
    max_steps: Annotated[
        Optional[int],
        typer.Option("--max-steps", callback=COUNT.check, help="Overrides --epochs.", rich_help_panel=OPTIMIZATION),
    ] = None,
    precision: Annotated[str, typer.Option("--precision", help="fp32 or bf16.", rich_help_panel=OPTIMIZATION)] = "fp32",
    gradient_checkpointing: Annotated[
        bool,
        typer.Option(
            "--gradient-checkpointing",
            help="Recompute activations in the backward pass: less memory, more time.",
            rich_help_panel=OPTIMIZATION,
        ),
    ] = False,
    eval_target_every: Annotated[
        int,
        typer.Option(
            "--eval-target-every",
            callback=COUNT_OR_ZERO.check,
            help="Measure kl_set etc. against the exact pi* every N steps (0: off).",
            rich_help_panel=EVAL_DURING,
        ),
    ] = 0,
    eval_prompts: Annotated[
        Optional[str],
        typer.Option(
            "--eval-prompts",
            help="Held-out answer-set prompts for those curves: a file or TASK:SPLIT.",
            rich_help_panel=EVAL_DURING,
        ),
    ] = None,
    eval_target_beta: Annotated[
        Optional[float],
        typer.Option(
            "--eval-target-beta",
            callback=POSITIVE.check,
            help="The target's beta (default: --beta for tb/dpg).",
            rich_help_panel=EVAL_DURING,
        ),
    ] = None,
    save_every: Annotated[
        int,
        typer.Option(
            "--save-every",
            callback=COUNT_OR_ZERO.check,
            help="Checkpoint every N steps (0: never).",
            rich_help_panel=TRACKING,
        ),
    ] = 0,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Require a checkpoint in --out to continue from (the same config).",
            rich_help_panel=TRACKING,
        ),
    ] = False,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    report_to: Annotated[
        str,
        typer.Option(
            "--report-to",
            help="Also log each step to none, tensorboard, trackio or wandb (offline).",
            rich_help_panel=TRACKING,
        ),
    ] = "none",
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Start over: retrain even when --out holds this run, finished or not.",
            rich_help_panel=RUN,
        ),
    ] = False,
    config_file: ConfigOpt = None,
) -> None:
    """Train the policy: trajectory balance with frozen log Z, weighted pair losses, GRPO/GSPO or SFT."""
    from stages.train import TrainConfig, run

    config = TrainConfig(
        out=out,
        samples=samples,
        scores=scores,
        loss=loss,
        model=model,
        adapter=adapter,
        z=z,
        pairs=pairs,
        beta=beta,
        z_mode=z_mode,
        z_lr=z_lr,
        length_normalize=length_normalize,
        clip_eps=clip_eps,
        kl_coef=kl_coef,
        dpg_baseline=dpg_baseline,
        sft_select=sft_select,
        full=full,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=target_modules,
        lr=lr,
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
        schedule=schedule,
        batch_size=batch_size,
        batch_order=batch_order,
        grad_accum=grad_accum,
        max_grad_norm=max_grad_norm,
        epochs=epochs,
        max_steps=max_steps,
        precision=precision,
        gradient_checkpointing=gradient_checkpointing,
        save_every=save_every,
        resume=resume,
        seed=seed,
        device=device,
        eval_target_every=eval_target_every,
        eval_prompts=eval_prompts,
        eval_target_beta=eval_target_beta,
        report_to=report_to,
        force=force,
    )
    with domain_errors():
        render.show_result("iswt train", run(config))


PAGE = "Report"


@app.command()
def report(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="PATHS",
            help="Artifacts, shard directories, train run directories, or directories holding them.",
        ),
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out",
            metavar="PATH",
            help="The .html file; its PNGs go to <stem>_figures/ beside it.",
            rich_help_panel=RUN,
        ),
    ],
    title: Annotated[str, typer.Option("--title", help="Heading of the page.", rich_help_panel=PAGE)] = "iswt report",
    gammas: Annotated[
        str,
        typer.Option(
            "--gammas", help="Comma-separated gammas at which to recompute iso pair weights.", rich_help_panel=PAGE
        ),
    ] = "0.5,1,2,4",
    bootstrap: Annotated[
        int,
        typer.Option(
            "--bootstrap", callback=COUNT.check, help="Resamples for the confidence intervals.", rich_help_panel=PAGE
        ),
    ] = 2000,
    seed: SeedOpt = 0,
    config_file: ConfigOpt = None,
) -> None:
    """Write one self-contained HTML report (figures embedded) of rewards, weights, training, eval and diversity."""
    from stages.report import ReportConfig, run

    with domain_errors():
        try:
            gamma_values = tuple(float(g) for g in gammas.split(",") if g.strip())
        except ValueError:
            raise IswtError(f"--gammas {gammas}: expected comma-separated numbers, e.g. 0.5,1,2,4") from None
        config = ReportConfig(
            inputs=tuple(inputs), out=out, title=title, gammas=gamma_values, bootstrap=bootstrap, seed=seed
        )
        render.show_result("iswt report", run(config))


def _is_compare(compare: bool, runs: Optional[list[str]], out: Optional[str]) -> bool:
    """--compare takes the files as arguments and writes nothing; without it --out is needed."""
    if compare and out is not None:
        raise IswtError("--compare prints a comparison and writes nothing; drop --out")
    if not compare and runs:
        raise IswtError(f"unexpected argument {runs[0]!r}: give --compare to compare files")
    if not compare and out is None:
        raise IswtError("--out: required (the .parquet file to write)")
    return compare


SCORING, EXACT = "Scoring", "Exact target (answer sets)"


@app.command()
def evaluate(
    runs: RunsArg = None,
    compare: CompareOpt = False,
    out: Annotated[
        Optional[str],
        typer.Option(
            "--out",
            metavar="PATH",
            help="Eval .parquet to write; samples, scores and summary land beside it.",
            rich_help_panel=RUN,
        ),
    ] = None,
    model: ModelOpt = "smollm2-135m",
    adapter: AdapterOpt = None,
    task: TaskOpt = None,
    prompts: PromptsOpt = None,
    split: Annotated[
        Optional[str], typer.Option("--split", help="Default: test (held out) for arith.", rich_help_panel=INPUTS)
    ] = None,
    limit: LimitOpt = None,
    n: Annotated[
        Optional[int],
        typer.Option(
            "--n",
            callback=COUNT.check,
            help="Samples per prompt (default 8); with --compare, the k to compare at.",
            rich_help_panel=SAMPLING,
        ),
    ] = None,
    reward: Annotated[
        Optional[str],
        typer.Option(
            "--reward",
            help="math, code, rm:PATH or python:MODULE:FUNCTION (default: math/code by task).",
            rich_help_panel=SCORING,
        ),
    ] = None,
    max_new_tokens: Annotated[
        int,
        typer.Option(
            "--max-new-tokens", callback=COUNT.check, help="Longest response, in tokens.", rich_help_panel=SAMPLING
        ),
    ] = 256,
    temperature: Annotated[
        float,
        typer.Option("--temperature", callback=NON_NEGATIVE.check, help="0 is greedy.", rich_help_panel=SAMPLING),
    ] = 1.0,
    top_p: Annotated[
        float,
        typer.Option("--top-p", callback=FRACTION.check, help="Nucleus sampling (1: off).", rich_help_panel=SAMPLING),
    ] = 1.0,
    seed: SeedOpt = 0,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            callback=COUNT.check,
            help="Sequences per forward pass, samples per part.",
            rich_help_panel=ENGINE,
        ),
    ] = 32,
    backend: BackendOpt = "hf",
    dtype: DtypeOpt = "float32",
    tensor_parallel_size: TensorParallelOpt = 1,
    gpu_memory_utilization: GpuMemoryOpt = 0.9,
    max_model_len: MaxModelLenOpt = None,
    baseline: Annotated[
        Optional[str],
        typer.Option(
            "--baseline",
            metavar="PATH",
            help="Eval artifact of the reference (same prompts, sample indices).",
            rich_help_panel=SCORING,
        ),
    ] = None,
    judge: Annotated[
        Optional[str],
        typer.Option("--judge", help="rm:PATH or pairwise:PATH: who wins against --baseline.", rich_help_panel=SCORING),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            callback=COUNT.check,
            help="Sandboxed programs at a time (code reward).",
            rich_help_panel=SCORING,
        ),
    ] = 4,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            callback=SECONDS.check,
            help="Seconds per program (code) or check (math).",
            rich_help_panel=SCORING,
        ),
    ] = 10.0,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    target_beta: Annotated[
        Optional[float],
        typer.Option(
            "--target-beta",
            callback=POSITIVE.check,
            help="Answer sets (--reward set): exact Z, pi* and KL into OUT.target.parquet.",
            rich_help_panel=EXACT,
        ),
    ] = None,
    z: Annotated[
        Optional[str],
        typer.Option(
            "--z",
            metavar="PATH",
            help="With --target-beta: an estimate-z artifact, scored against exact log Z.",
            rich_help_panel=EXACT,
        ),
    ] = None,
    ref_model: Annotated[
        Optional[str],
        typer.Option(
            "--ref-model", help="With --target-beta: pi*'s reference (default: --model).", rich_help_panel=EXACT
        ),
    ] = None,
    train_samples: Annotated[
        Optional[str],
        typer.Option(
            "--train-samples",
            metavar="PATH",
            help="With --target-beta: split the error by answers these samples hold.",
            rich_help_panel=EXACT,
        ),
    ] = None,
    config_file: ConfigOpt = None,
) -> None:
    """Generate, score and measure: Mean@k, pass@k, maj@k, mean reward, win rate; or --compare eval files."""
    from stages import evaluate as stage

    with domain_errors():
        if _is_compare(compare, runs, out):
            render.show_comparison("iswt evaluate --compare", stage.compare(runs or [], n, seed))
            return
        config = stage.EvaluateConfig(
            out=out,
            reward=reward,
            model=model,
            adapter=adapter,
            task=task,
            prompts=prompts,
            split=split,
            limit=limit,
            n=8 if n is None else n,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            batch_size=batch_size,
            baseline=baseline,
            judge=judge,
            workers=workers,
            timeout=timeout,
            device=device,
            backend=backend,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            force=force,
            target_beta=target_beta,
            z=z,
            ref_model=ref_model,
            train_samples=train_samples,
        )
        render.show_result("iswt evaluate", stage.run(config))


JUDGE = "Judge and embeddings"


@app.command("judge-diversity")
def judge_diversity(
    runs: RunsArg = None,
    compare: CompareOpt = False,
    samples: Annotated[
        Optional[str],
        typer.Option(
            "--samples",
            metavar="PATH",
            help="Eval artifact (or samples) whose responses to judge.",
            rich_help_panel=INPUTS,
        ),
    ] = None,
    out: Annotated[
        Optional[str], typer.Option("--out", metavar="PATH", help="Diversity .parquet to write.", rich_help_panel=RUN)
    ] = None,
    judge: Annotated[
        str, typer.Option("--judge", help="Judge: alias, local HF chat model or hub id.", rich_help_panel=JUDGE)
    ] = "smollm2-135m",
    correct_only: Annotated[
        bool, typer.Option("--correct-only", help="Only the correct responses.", rich_help_panel=INPUTS)
    ] = False,
    template: Annotated[
        Optional[str],
        typer.Option(
            "--template",
            metavar="PATH",
            help="Judge prompt file with {problem} and {solutions}.",
            rich_help_panel=JUDGE,
        ),
    ] = None,
    max_new_tokens: Annotated[
        int,
        typer.Option(
            "--max-new-tokens", callback=COUNT.check, help="Length of the judge's answer.", rich_help_panel=JUDGE
        ),
    ] = 256,
    embed_model: Annotated[
        Optional[str],
        typer.Option(
            "--embed-model",
            metavar="PATH",
            help="Sentence-embedding model directory (default MiniLM).",
            rich_help_panel=JUDGE,
        ),
    ] = None,
    n: Annotated[
        Optional[int],
        typer.Option(
            "--n",
            callback=COUNT.check,
            help="Use each prompt's first N responses by sample_idx.",
            rich_help_panel=INPUTS,
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size", callback=COUNT.check, help="Prompts per judge forward pass.", rich_help_panel=JUDGE
        ),
    ] = 8,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    config_file: ConfigOpt = None,
) -> None:
    """Per prompt: strategies counted by an LLM judge, distinct-n, self-BLEU, embedding dispersion."""
    from stages import judge_diversity as stage

    with domain_errors():
        if _is_compare(compare, runs, out):
            render.show_comparison("iswt judge-diversity --compare", stage.compare(runs or [], seed))
            return
        if samples is None:
            raise IswtError("--samples: required (the eval artifact whose responses to judge)")
        config = stage.JudgeDiversityConfig(
            samples=samples,
            out=out,
            judge=judge,
            correct_only=correct_only,
            template=template,
            max_new_tokens=max_new_tokens,
            embed_model=embed_model,
            n=n,
            batch_size=batch_size,
            device=device,
            force=force,
        )
        render.show_result("iswt judge-diversity", stage.run(config))


@app.command()
def info(
    path: Annotated[str, typer.Argument(metavar="PATH", help="A .parquet file, a directory of shards, or a glob.")],
) -> None:
    """Show an artifact's provenance, schema, row count and a summary of each column."""
    from iswcli.info import describe

    with domain_errors():
        described = describe(path)
    render.show_description(described)


# Pairs to and from TRL's preference format (stages/export_pairs.py, stages/import_pairs.py).
@app.command("export-pairs")
def export_pairs(
    pairs: Annotated[
        str, typer.Option("--pairs", metavar="PATH", help="Pairs artifact (weight-pairs).", rich_help_panel=INPUTS)
    ],
    samples: Annotated[
        str, typer.Option("--samples", metavar="PATH", help="The samples it was made from.", rich_help_panel=INPUTS)
    ],
    scores: Annotated[
        str,
        typer.Option("--scores", metavar="PATH", help="Their scores (logprob_ref, if any).", rich_help_panel=INPUTS),
    ],
    out: Annotated[
        str, typer.Option("--out", metavar="PATH", help="TRL dataset: .parquet or .jsonl.", rich_help_panel=RUN)
    ],
    config_file: ConfigOpt = None,
) -> None:
    """Write pairs as a TRL preference dataset: prompt, chosen, rejected, weight, ref_*_logps."""
    from stages.export_pairs import ExportPairsConfig, run

    with domain_errors():
        render.show_result("iswt export-pairs", run(ExportPairsConfig(pairs, samples, scores, out)))


@app.command("import-pairs")
def import_pairs(
    data: Annotated[
        str,
        typer.Option(
            "--data", metavar="PATH", help="TRL preference data: .parquet, .jsonl, .json.", rich_help_panel=INPUTS
        ),
    ],
    out_dir: Annotated[
        str,
        typer.Option("--out-dir", metavar="PATH", help="Gets samples, scores, pairs .parquet.", rich_help_panel=RUN),
    ],
    model: ModelOpt = "smollm2-135m",
    config_file: ConfigOpt = None,
) -> None:
    """Read a TRL preference dataset as samples, scores and pairs that iswt train takes."""
    from stages.import_pairs import ImportPairsConfig, run

    with domain_errors():
        render.show_result("iswt import-pairs", run(ImportPairsConfig(data, out_dir, model)))


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
