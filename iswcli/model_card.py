"""The model card `iswt train` leaves in a run directory (README.md), in place of peft's empty template.

It says what was trained: the base model (by its hub id, with the path it
resolved to as provenance), the objective and its fixed point, beta and
where log Z came from, the data's hashes and sizes, the final training
metrics and exact-target curves, the command that reproduces the run, the
library versions and the papers. `adapter_config.json` is rewritten to name
the base by the same hub id, so that the adapter finds its base on another
machine (peft's own `AutoPeftModelForCausalLM` reads that field).
"""

from __future__ import annotations

import json
import math
import os
import shlex
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from iswcli import models, outputs
from iswcli.target_curves import CURVE_GROUPS

# The hub model each embedded alias is a copy of.
HUB_IDS = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}

OBJECTIVES = {
    "tb": "trajectory balance: mean over samples of (log Z(x) + log pi_theta(y|x) - log pi_ref(y|x) - beta r)^2 "
    "with sequence sums; fixed point pi* = pi_ref exp(beta r) / Z",
    "dpg": "forward KL by importance-weighted likelihood: -mean(w log pi_theta(y|x)), "
    "w = exp(beta r + log pi_ref - log q - log Z); minimizes KL(pi* || pi_theta), fixed point pi*",
    "sigmoid": "weighted DPO: -log sigmoid(h), h = beta [(log pi_theta - log pi_ref)(y_w) - (same)(y_l)], "
    "pair weights summed per prompt; with hard labels no finite optimum (margins grow without bound)",
    "hinge": "weighted hinge on pairs: max(0, 1 - h); any margin past 1/beta is optimal",
    "ipo": "weighted IPO on pairs: (h/beta - 1/(2 beta))^2; fixed point: every log-ratio margin at 1/(2 beta)",
    "grpo": "GRPO: per-token clipped ratio against the sampler q, group z-scored rewards; maximizes reward "
    "(no distributional fixed point: without a KL term it ends on the best reward)",
    "gspo": "GSPO: one length-normalized clipped ratio per sequence, group z-scored rewards; maximizes reward",
    "sft": "SFT: maximum likelihood on the selected samples; fixed point: their empirical distribution",
}

CITATIONS = """\
- DISA: *DISA: Offline Importance Sampling for Distribution-Matching LLM-RL*
  (Decoupled Importance-Sampled Anchoring): estimate-z and `--loss tb` with a
  frozen log Z.
- ISO: *Importance Sampling Optimization Improves On-line Preference Learning*
  (under double-blind review): weight-pairs `--method iso` and the weighted
  pair losses.
- dpg: Khalifa, Elsahar and Dymetman, *A Distributional Approach to Controlled
  Text Generation* (ICLR 2021); the baseline pi_theta/q of Korbak et al. (2022)."""


def base_id(identity: dict[str, Any]) -> str:
    """The name another machine knows the base model by: the hub id of an alias or hub model, else its path."""
    if identity.get("kind") == "alias":
        return HUB_IDS.get(identity["spec"], identity["spec"])
    if identity.get("kind") == "hub":
        return identity["spec"]
    return identity.get("path") or identity["spec"]


def write(out: Path, manifest: dict[str, Any], inputs: dict, log_rows: list[dict]) -> None:
    """README.md in the run directory, and the base model's hub id in adapter_config.json."""
    name_base(out, base_id(manifest["model"]))
    outputs.write_atomically(out / "README.md", render(manifest, inputs, log_rows))


def name_base(out: Path, model_id: str) -> None:
    config_path = out / "adapter_config.json"
    if config_path.exists():  # none after --full
        config = json.loads(config_path.read_text())
        config["base_model_name_or_path"] = model_id
        outputs.write_atomically(config_path, json.dumps(config, indent=2, sort_keys=True))


def render(manifest: dict[str, Any], inputs: dict, log_rows: list[dict]) -> str:
    config, model = manifest["config"], manifest["model"]
    hub_id = base_id(model)
    tags = ["iswt", config["loss"], "full-fine-tune" if config.get("full") else "lora"]
    sections = [
        "---",
        *([f"base_model: {hub_id}"] if model.get("kind") in ("alias", "hub") else []),
        "library_name: " + ("transformers" if config.get("full") else "peft"),
        "tags:",
        *[f"- {t}" for t in tags],
        "---",
        "",
        f"# {config['loss']} on {hub_id}",
        "",
        f"Trained by `iswt train` (iswt {manifest['iswt_version']}) on {manifest['created_at']}; "
        f"weights: {manifest['weights']}.",
        "",
        "## Base model",
        "",
        *_base(model, hub_id),
        "",
        "## Objective",
        "",
        f"- {_objective(config)}",
        *_beta_and_z(config, inputs),
        "",
        "## Data",
        "",
        *_data(inputs),
        "",
        "## Training",
        "",
        *_training(config, manifest, log_rows),
        "",
        *_curves(log_rows),
        "## Reproduce",
        "",
        f"From `{os.getcwd()}`, with the same input files:",
        "",
        "```sh",
        reproduce_command(config),
        "```",
        "",
        "The run's full config is `iswt_config.json`; its inputs' hashes and every diagnostic are in "
        "`manifest.json`; one row per optimizer step in `train_log.parquet`.",
        "",
        "## Libraries",
        "",
        ", ".join(f"{k} {v}" for k, v in manifest["libraries"].items()),
        "",
        "## Citations",
        "",
        CITATIONS,
        "",
    ]
    return "\n".join(sections)


def _base(model: dict, hub_id: str) -> list[str]:
    lines = [f"- `{hub_id}`"]
    if model.get("kind") == "alias" and model["spec"] in models.GGUF_ALIASES:
        _, filename, pip_spec = models.GGUF_ALIASES[model["spec"]]
        lines.append(
            f"- as the iswt alias `{model['spec']}`: `{filename}` from `{pip_spec}`, dequantized to float32; "
            "the adapter was trained on those weights, which differ from the hub's by that quantization"
        )
    lines.append(f"- resolved to `{model.get('path')}` (weights sha256 `{model.get('weights_sha256')}`)")
    if model.get("adapter"):
        lines.append(f"- continued from the adapter `{model['adapter']['path']}`")
    return lines


def _objective(config: dict) -> str:
    text = f"`--loss {config['loss']}`, {OBJECTIVES.get(config['loss'], config['loss'])}"
    if config["loss"] == "tb" and config.get("length_normalize"):
        text += " (length-normalized here: approximate, the fixed point is not exactly pi*)"
    if config.get("kl_coef"):
        text += f"; plus {config['kl_coef']:g} x KL to the reference"
    return text


def _beta_and_z(config: dict, inputs: dict) -> list[str]:
    beta = config.get("beta")
    if config["loss"] in ("tb", "dpg") and config.get("z_mode") == "learned":
        return [f"- beta {beta:g}; log Z learned jointly, one scalar per prompt (lr {config['z_lr']:g})"]
    if "z" in inputs:
        z = inputs["z"]
        zc = z.provenance.get("config") or {}
        est = ", ".join(f"{k} {zc[k]}" for k in ("beta", "bootstrap", "reward_transform") if k in zc)
        return [
            f"- beta {beta:g}, from the z artifact; log Z frozen, estimated offline by importance sampling: "
            f"`iswt estimate-z` ({est}) in `{z.path}` (sha256 `{z.sha256}`)"
        ]
    if "pairs" in inputs:
        pc = inputs["pairs"].provenance.get("config") or {}
        how = ", ".join(f"{k} {pc[k]}" for k in ("method", "gamma", "beta", "pairing") if pc.get(k) is not None)
        return [f"- DPO beta {beta:g}; pairs from `iswt weight-pairs` ({how or 'made outside iswt'})"]
    return [f"- beta {beta:g}" if beta is not None else "- no beta"]


def _data(inputs: dict) -> list[str]:
    lines = ["| input | path | sha256 | rows | bytes |", "|---|---|---|---|---|"]
    for role, art in inputs.items():
        # from the files' footers: the stages read samples and scores out of core, so art.table may hold no rows
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in art.files)
        size = sum(os.path.getsize(f) for f in art.files)
        lines.append(f"| {role} | `{art.path}` | `{art.sha256}` | {rows} | {size} |")
    sampling = (inputs["samples"].provenance.get("config") or {}) if "samples" in inputs else {}
    drawn = [f"{k} {sampling[k]}" for k in ("model", "n", "temperature", "top_p", "top_k") if k in sampling]
    if drawn:
        lines += ["", f"The samples were drawn by `iswt sample` ({', '.join(drawn)})."]
    return lines


def _training(config: dict, manifest: dict, log_rows: list[dict]) -> list[str]:
    steps = [r for r in log_rows if "loss" in r]
    first, last = steps[0], steps[-1]
    how = (
        f"{manifest['steps']} optimizer steps, lr {config['lr']:g} ({config['schedule']}), batch "
        f"{config['batch_size']} x {config['grad_accum']} accumulation, {config['precision']}, seed {config['seed']}"
    )
    if not config.get("full"):
        how += f", LoRA r {config['lora_r']} alpha {config['lora_alpha']} on {config['target_modules']}"
    lines = [how + ".", "", f"| metric | step {first['step']} | step {last['step']} |", "|---|---|---|"]
    keys = [k for k in last if k not in ("step", "seconds", "response_tokens") and _number(last[k])]
    lines += [f"| {k} | {_fmt(first.get(k))} | {_fmt(last[k])} |" for k in keys]
    diverged = manifest.get("diverged_at_step")
    lines += ["", f"Diverged (train's rule): {'at step ' + str(diverged) if diverged is not None else 'no'}."]
    return lines


def _curves(log_rows: list[dict]) -> list[str]:
    measured = [r for r in log_rows if any(k.startswith(CURVE_GROUPS) for k in r)]
    if not measured:
        return []
    keys = [k for k in measured[-1] if k.startswith(CURVE_GROUPS)]
    lines = [
        "## Against the exact target",
        "",
        "Measured exactly by teacher forcing during training (per prompt in `target_curves.parquet`):",
        "",
        "| step | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    lines += ["| " + " | ".join([str(r["step"]), *(_fmt(r.get(k)) for k in keys)]) + " |" for r in measured]
    return lines + [""]


def reproduce_command(config: dict) -> str:
    """`iswt train` with every flag whose value is not the CLI's default, as the CLI itself names them."""
    from typer.main import get_command

    from iswcli.cli import app

    command = get_command(app).commands["train"]
    args = ["iswt", "train"]
    for param in command.params:
        if param.name not in config or param.name in ("resume", "force"):
            continue
        value = config[param.name]
        if value == param.default and not param.required:
            continue
        if getattr(param, "is_bool_flag", False):
            args.append(param.opts[0] if value else param.secondary_opts[0])
        else:
            args += [param.opts[0], str(value)]
    return shlex.join(args)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(value) -> str:
    if not _number(value) or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4g}"
