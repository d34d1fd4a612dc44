"""Training curves against the exact target: pi* measured on answer-set prompts while `iswt train` runs.

On prompts that list their rewarded answers, p_valid, kl_set (KL(pi* ||
policy)), tv_set and eff_answers are exact (teacher forcing, as `evaluate
--target-beta`; see `iswcli.exact_targets`). `iswt train --eval-target-every
N` measures them on the training prompts (read from the samples artifact)
and on held-out prompts (`--eval-prompts`) every N steps and after the last
update, so a user sees kl_set fall or rise while training, not after.

pi* is built from the policy at step 0, which the step-0 check has shown to
be the reference; its per-answer log-probs are kept in the run directory so
that a resumed run measures against the same target. Per-prompt values go to
the run's target_curves.parquet, so that studies can pair prompts across runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from iswcli import exact_targets, outputs
from iswcli.errors import IswtError

CURVE_METRICS = ("p_valid", "kl_set", "tv_set", "eff_answers")
CURVE_GROUPS = ("train_", "heldout_")  # the log's column prefixes: training prompts, --eval-prompts
REFERENCE_FILE = "target_reference.json"
PER_PROMPT_FILE = "target_curves.parquet"  # step, group, prompt_id and each metric, one row per prompt measured


@dataclass(frozen=True)
class SetPrompt:
    """One answer-set prompt as the model sees it: its token ids, each answer's token ids and reward."""

    prompt_id: str
    prompt_ids: list[int]
    answer_ids: list[tuple[int, ...]]
    rewards: list[float]


def training_prompts(samples_path: str, tokenizer) -> tuple[list[SetPrompt], list[int] | None, bool]:
    """The samples' prompts with their answers, the sampler's stop ids and whether it used a chat template."""
    prompts, stops, _, art = exact_targets.prompt_answers(samples_path)
    chat_template = bool((art.provenance.get("sampling") or {}).get("chat_template", True))
    return [_set_prompt(pid, ids, answers, tokenizer) for pid, (ids, answers) in prompts.items()], stops, chat_template


def heldout_prompts(spec: str, tokenizer, chat_template: bool, stops: list[int] | None = None) -> list[SetPrompt]:
    """--eval-prompts: a prompts file (JSONL, ...) or TASK:SPLIT (e.g. sets:test), rendered as sample renders them.

    An answer holding one of the sampler's stop tokens is refused, as score and evaluate refuse it: no
    response can be it. (Its length is not: these prompts were never sampled, and teacher forcing measures
    the policy's probability of any length.)
    """
    from iswcli import models, tasks

    if os.path.exists(spec):
        loaded = tasks.load_prompts(prompts=spec)
    else:
        task, colon, split = spec.rpartition(":")
        if not colon or split not in ("train", "test"):
            raise IswtError(f"--eval-prompts {spec}: no such file, and not TASK:SPLIT (e.g. sets:test)")
        loaded = tasks.load_prompts(task=task, split=split)
    out = []
    for p in loaded:
        raw = (p.fields or {}).get("answers")
        if raw is None:
            raise IswtError(f"--eval-prompts {spec}: prompt {p.prompt_id!r} has no task field 'answers'")
        where = f"--eval-prompts {spec}: prompt {p.prompt_id!r}"
        answers = exact_targets.parse_answers(raw, where)
        _, ids = models.render_prompt(tokenizer, tasks.messages_of(p), chat_template)
        prompt = _set_prompt(p.prompt_id, ids, answers, tokenizer)
        if stops is not None:
            exact_targets.check_reachable(dict(zip(answers, prompt.answer_ids)), stops, None, where)
        out.append(prompt)
    return out


def _set_prompt(prompt_id: str, prompt_ids, answers: dict[str, float], tokenizer) -> SetPrompt:
    answer_ids = exact_targets.tokenize_answers(tokenizer, answers, f"prompt {prompt_id!r}")
    return SetPrompt(prompt_id, list(prompt_ids), list(answer_ids.values()), [answers[a] for a in answer_ids])


class TargetCurves:
    """Measures a policy against pi* on named groups of prompts ('train', 'heldout').

    Each measure's per-prompt values go to PER_PROMPT_FILE in the run directory (rewritten whole, atomically),
    so a study can pair prompts across runs; the log gets each group's mean.
    """

    def __init__(self, groups: dict[str, list[SetPrompt]], stops: list[int], pad_id: int, r0: float, beta: float):
        self.groups, self.stops, self.pad_id, self.r0, self.beta = groups, stops, pad_id, r0, beta
        self.reference: dict[str, dict[str, list[float]]] = {}
        self.rows: list[dict] = []
        self.run: Path | None = None

    def fix_reference(self, model, run: Path, start_step: int) -> None:
        """pi_ref's per-answer log-probs: from the run directory, else from ``model`` (the step-0 policy).

        A resumed run (start_step > 0) keeps the per-prompt rows measured before its checkpoint.
        """
        self.run = run
        path = run / REFERENCE_FILE
        if path.exists():
            self.reference = json.loads(path.read_text())
            if start_step and (run / PER_PROMPT_FILE).exists():
                kept = pq.read_table(run / PER_PROMPT_FILE).to_pylist()
                self.rows = [r for r in kept if r["step"] < start_step]
            return
        self.reference = {
            group: {p.prompt_id: self._answer_logprobs(model, p).tolist() for p in prompts}
            for group, prompts in self.groups.items()
        }
        outputs.write_atomically(path, json.dumps(self.reference))

    def measure(self, model, step: int) -> dict[str, float]:
        """Each group's mean of every curve metric: {'train_kl_set': ..., 'heldout_kl_set': ...}.

        model None: the reference itself (step 0 of a fresh run), without another pass.
        """
        if model is not None:
            was_training = model.training
            model.eval()
        row = {}
        for group, prompts in self.groups.items():
            per_prompt = []
            for p in prompts:
                reference = np.asarray(self.reference[group][p.prompt_id])
                policy = reference if model is None else self._answer_logprobs(model, p)
                measured = exact_targets.measures(policy, reference, p.rewards, self.r0, self.beta).as_row()
                per_prompt.append({m: measured[m] for m in CURVE_METRICS})
                self.rows.append({"step": step, "group": group, "prompt_id": p.prompt_id, **per_prompt[-1]})
            for metric in CURVE_METRICS:
                row[f"{group}_{metric}"] = float(np.mean([m[metric] for m in per_prompt]))
        if model is not None:
            model.train(was_training)
        tmp = self.run / f".{PER_PROMPT_FILE}.tmp"
        pq.write_table(pa.Table.from_pylist(self.rows), tmp)
        os.replace(tmp, self.run / PER_PROMPT_FILE)
        return row

    def _answer_logprobs(self, model, p: SetPrompt) -> np.ndarray:
        return exact_targets.answer_logprobs(model, p.prompt_ids, p.answer_ids, self.stops, self.pad_id)


def set_reward_default(scores_provenance: dict, scores_path: str) -> float:
    """r_0 of the set reward the scores were made with; the exact target needs that reward."""
    reward = scores_provenance.get("reward") or {}
    if reward.get("name") != "set":
        raise IswtError(
            f"--eval-target-every: {scores_path} was scored with reward {reward.get('spec')!r}; the exact target "
            "needs --reward set (answer-set prompts)"
        )
    return float(reward.get("default", 0.0))


def read_ends(run: Path) -> dict[str, dict[str, dict[str, float]]] | None:
    """A finished run's per-prompt curves at step 0 and after its last update, from its PER_PROMPT_FILE:
    {group: {prompt_id: {metric: last value, 'base_' + metric: step-0 value}}}; None without curves.

    A file that cannot be read, holds no rows, lacks a column or step 0, or a prompt measured at one end
    only, is an IswtError naming the file, so that a reader can skip that run with a note.
    """
    from iswcli import artifacts

    path = Path(run) / PER_PROMPT_FILE
    if not (Path(run) / "manifest.json").exists() or not path.exists():
        return None
    with artifacts.readable(str(path)):
        rows = pq.read_table(path).to_pylist()
    needed = ("step", "group", "prompt_id", *CURVE_METRICS)
    missing = [c for c in needed if rows and c not in rows[0]]
    if not rows or missing:
        raise IswtError(f"{path}: {'holds no rows' if not rows else 'has no column ' + repr(missing[0])}")
    if not any(r["step"] == 0 for r in rows):
        raise IswtError(f"{path}: has no step-0 rows, so the change from the base model is unknown")
    last = max(r["step"] for r in rows)
    ends: dict[str, dict[str, dict[str, float]]] = {}
    for r in rows:
        if r["step"] in (0, last):
            entry = ends.setdefault(r["group"], {}).setdefault(r["prompt_id"], {})
            for m in CURVE_METRICS:
                entry[m if r["step"] == last else f"base_{m}"] = r[m]
    for group, per_prompt in ends.items():
        for prompt_id, entry in per_prompt.items():
            if len(entry) != 2 * len(CURVE_METRICS):
                raise IswtError(f"{path}: prompt {prompt_id!r} ({group}) is not measured at both step 0 and {last}")
    return ends
