"""Exact targets on answer sets: pi(a|x), Z(x) and pi* by enumeration, not by sampling.

A prompt that lists its rewarded responses (an answer set A with rewards
r_a; every other response earns r_0) has an enumerable rewarded support: a
response y earns r_a exactly when its token ids are the tokenization of a
followed by one of the model's stop tokens. So, by teacher forcing,

    pi(a|x)   = sum over stop tokens s of pi(tok(a) + [s] | x)
    pi(A|x)   = sum_a pi(a|x);  everything else ("other") has 1 - pi(A|x)
    Z(x)      = sum_a pi_ref(a) e^{beta r_a} + (1 - pi_ref(A)) e^{beta r_0}
    pi*(a)    = pi_ref(a) e^{beta r_a} / Z,  pi*(other) = (1 - pi_ref(A)) e^{beta r_0} / Z

over the |A| + 1 outcomes (the |A| answers and "anything else"). KL, TV and
the effective number of answers compare any policy with pi* on those
outcomes. Everything runs in log space; the pure functions take log-probs
per answer and never touch a model, `answer_logprobs` does the teacher
forcing through the same code path as score and train
(:func:`iswcli.logprobs.teacher_forced_logprobs`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from iswcli.errors import IswtError

TINY = 1e-300  # floor for probabilities that float error drove to (or below) 0


# --------------------------------------------------------------------------- answers and tokens


def parse_answers(value, where: str) -> dict[str, float]:
    """A prompt's `answers` field ({answer: reward}, or its JSON text) checked: non-empty strings, finite rewards."""
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            raise IswtError(f"{where}: task field 'answers' is not a JSON object") from None
    if not isinstance(value, dict) or not value:
        raise IswtError(f"{where}: task field 'answers' must be a non-empty object mapping answer -> reward")
    out = {}
    for answer, reward in value.items():
        if not isinstance(answer, str) or not answer:
            raise IswtError(f"{where}: task field 'answers' has an empty answer")
        if isinstance(reward, bool) or not isinstance(reward, (int, float)) or not math.isfinite(reward):
            raise IswtError(f"{where}: answer {answer!r} has reward {reward!r}; rewards must be finite numbers")
        out[answer] = float(reward)
    return out


def tokenize_answers(tokenizer, answers: dict[str, float], where: str) -> dict[str, tuple[int, ...]]:
    """Each answer's token ids (no special tokens); two answers with one tokenization are ambiguous."""
    seen: dict[tuple[int, ...], str] = {}
    out = {}
    for answer in answers:
        ids = tuple(tokenizer(answer, add_special_tokens=False)["input_ids"])
        if not ids:
            raise IswtError(f"{where}: answer {answer!r} tokenizes to nothing")
        if ids in seen:
            raise IswtError(f"{where}: answers {seen[ids]!r} and {answer!r} have the same tokenization")
        seen[ids] = answer
        out[answer] = ids
    return out


def check_reachable(answer_ids: dict[str, tuple[int, ...]], stop_ids, max_new_tokens: int | None, where: str) -> None:
    """Refuse an answer no sample can be: one holding a stop token, or longer than the samples may run."""
    stops = set(stop_ids)
    for answer, ids in answer_ids.items():
        if stops & set(ids):
            raise IswtError(
                f"{where}: answer {answer!r} contains a stop token, where every sample ends; none can match it"
            )
        if max_new_tokens is not None and len(ids) + 1 > max_new_tokens:
            raise IswtError(
                f"{where}: answer {answer!r} is {len(ids)} tokens and a stop token, more than --max-new-tokens "
                f"{max_new_tokens} of the samples; none can match it"
            )


def match_answer(response_ids, answer_ids: dict[str, tuple[int, ...]], stop_ids) -> str | None:
    """The answer whose tokenization followed by a stop token the response is, else None."""
    ids = list(response_ids)
    if not ids or ids[-1] not in set(stop_ids):
        return None
    body = tuple(ids[:-1])
    for answer, tokens in answer_ids.items():
        if tokens == body:
            return answer
    return None


def prompt_answers(samples_path: str):
    """Per prompt (first sample's row): prompt token ids and answers; plus the stop ids and model path."""
    import json

    from iswcli import artifacts

    art = artifacts.read_artifact(samples_path, artifacts.SAMPLES, columns=["prompt_token_ids", "task_fields"])
    seen: dict[str, tuple[list[int], dict[str, float]]] = {}
    for pid, ids, fields in zip(
        *(art.table.column(c).to_pylist() for c in ("prompt_id", "prompt_token_ids", "task_fields"))
    ):
        if pid in seen:
            continue
        raw = json.loads(fields or "{}").get("answers")
        if raw is None:
            raise IswtError(
                f"{samples_path}: prompt {pid!r} has no task field 'answers'; exact targets need "
                f"answer sets (--task sets, or prompts with an 'answers' column)"
            )
        seen[pid] = (ids, parse_answers(raw, f"{samples_path}: prompt {pid!r}"))
    stops = (art.provenance.get("sampling") or {}).get("stop_token_ids")
    path = (art.provenance.get("model") or {}).get("path")
    return seen, stops, path, art


# --------------------------------------------------------------------------- pure functions


def logsumexp(values) -> float:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return float("-inf")
    top = arr.max()
    if not np.isfinite(top):
        return float(top)
    return float(top + np.log(np.exp(arr - top).sum()))


def log_other(logp_answers) -> float:
    """log(1 - pi(A)): the mass of every response outside the answer set."""
    total = math.exp(logsumexp(logp_answers))
    return math.log(max(1.0 - total, TINY))


def outcome_probs(logp_answers) -> np.ndarray:
    """Probabilities of the |A| + 1 outcomes: each answer, then "anything else"."""
    p = np.exp(np.asarray(logp_answers, dtype=float))
    return np.append(p, max(1.0 - p.sum(), 0.0))


def log_z(logp_ref, rewards, r0: float, beta: float) -> float:
    """Exact log Z = log(sum_a pi_ref(a) e^{beta r_a} + (1 - pi_ref(A)) e^{beta r_0})."""
    lw = np.asarray(logp_ref, dtype=float) + beta * np.asarray(rewards, dtype=float)
    return logsumexp(np.append(lw, log_other(logp_ref) + beta * r0))


def target_probs(logp_ref, rewards, r0: float, beta: float) -> np.ndarray:
    """pi* over the |A| + 1 outcomes: pi_ref e^{beta r} / Z."""
    lw = np.append(
        np.asarray(logp_ref, dtype=float) + beta * np.asarray(rewards, dtype=float), log_other(logp_ref) + beta * r0
    )
    p = np.exp(lw - logsumexp(lw))
    return p / p.sum()


def kl(p, q) -> float:
    """KL(p || q) over the same outcomes; q's zeros floored at TINY."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    keep = p > 0
    return float(np.sum(p[keep] * (np.log(p[keep]) - np.log(np.maximum(q[keep], TINY)))))


def tv(p, q) -> float:
    return float(0.5 * np.abs(np.asarray(p, dtype=float) - np.asarray(q, dtype=float)).sum())


def eff_answers(p_answers) -> float:
    """exp of the entropy of the distribution within the answer set (1 = one answer, |A| = uniform); NaN on no mass."""
    p = np.asarray(p_answers, dtype=float)
    total = p.sum()
    if not total > 0:
        return float("nan")
    p = p[p > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


@dataclass(frozen=True)
class SetMeasures:
    """One prompt's exact quantities (policy pi_theta against the target built from pi_ref)."""

    log_z_exact: float
    p_valid: float
    p_valid_target: float
    kl_set: float
    tv_set: float
    eff_answers: float
    eff_answers_target: float
    p_valid_ref: float

    def as_row(self) -> dict[str, float]:
        return dict(self.__dict__)


def measures(logp_policy, logp_ref, rewards, r0: float, beta: float) -> SetMeasures:
    """Every exact quantity of one prompt from the per-answer log-probs of the policy and the reference."""
    target = target_probs(logp_ref, rewards, r0, beta)
    policy = outcome_probs(logp_policy)
    return SetMeasures(
        log_z_exact=log_z(logp_ref, rewards, r0, beta),
        p_valid=float(policy[:-1].sum()),
        p_valid_target=float(target[:-1].sum()),
        kl_set=kl(target, policy),
        tv_set=tv(target, policy),
        eff_answers=eff_answers(policy[:-1]),
        eff_answers_target=eff_answers(target[:-1]),
        p_valid_ref=float(outcome_probs(logp_ref)[:-1].sum()),
    )


# --------------------------------------------------------------------------- teacher forcing


def answer_logprobs(
    model,
    prompt_ids: list[int],
    answer_ids: list[tuple[int, ...]],
    stop_ids: list[int],
    pad_id: int,
    batch_size: int = 64,
    shared_prefix: bool = True,
) -> np.ndarray:
    """log pi(a|x) for each answer: logsumexp over stop tokens of log pi(tok(a) + [s] | x).

    shared_prefix: run the prompt once and the |A| x |stops| short continuations on its
    key-value cache (what makes this cheap: the prompt is most of every sequence);
    False: one full teacher-forced pass per sequence through
    :func:`iswcli.logprobs.teacher_forced_logprobs`, the code path of score and
    train. The two agree to float error (tested).
    """
    import torch

    if not stop_ids:
        raise IswtError("the model has no stop token, so no response is an exact answer")
    responses = [list(ids) + [s] for ids in answer_ids for s in stop_ids]
    with torch.no_grad():
        if shared_prefix:
            sums = _prefix_cached_sums(model, list(prompt_ids), responses, pad_id, batch_size)
        else:
            from iswcli.logprobs import teacher_forced_logprobs

            sums = []
            for i in range(0, len(responses), batch_size):
                part = responses[i : i + batch_size]
                out = teacher_forced_logprobs(model, [list(prompt_ids)] * len(part), part, pad_id)
                sums.extend(float(t.double().sum()) for t in out)
    per = np.array(sums).reshape(len(answer_ids), len(stop_ids))
    return np.array([logsumexp(row) for row in per])


def _prefix_cached_sums(
    model, prompt: list[int], responses: list[list[int]], pad_id: int, batch_size: int
) -> list[float]:
    """Sequence log-probs of responses after one prompt: the prompt's cache repeated over right-padded continuations."""
    import copy
    import warnings

    import torch

    device = next(model.parameters()).device
    head = model(input_ids=torch.tensor([prompt], device=device), use_cache=True)
    first = head.logits[0, -1].float().log_softmax(-1)
    sums: list[float] = []
    for i in range(0, len(responses), batch_size):
        part = responses[i : i + batch_size]
        width = max(len(r) for r in part)
        total = [float(first[r[0]]) for r in part]
        if width > 1:
            ids = torch.full((len(part), width - 1), pad_id, dtype=torch.long)
            mask = torch.zeros((len(part), len(prompt) + width - 1), dtype=torch.long)
            mask[:, : len(prompt)] = 1
            for row, r in enumerate(part):
                ids[row, : len(r) - 1] = torch.tensor(r[:-1], dtype=torch.long)
                mask[row, len(prompt) : len(prompt) + len(r) - 1] = 1
            past = copy.deepcopy(head.past_key_values)
            past.batch_repeat_interleave(len(part))
            with warnings.catch_warnings():  # transformers renames past_key_values; both spellings work here
                warnings.simplefilter("ignore", FutureWarning)
                logits = (
                    model(
                        input_ids=ids.to(device), attention_mask=mask.to(device), past_key_values=past, use_cache=True
                    )
                    .logits.float()
                    .log_softmax(-1)
                )
            for row, r in enumerate(part):
                for j in range(1, len(r)):
                    total[row] += float(logits[row, j - 1, r[j]])
        sums.extend(total)
    return sums
