"""Exact targets on answer sets, checked against brute-force enumeration.

A tiny random Llama with a 6-token vocabulary (two of them stop tokens) has
few enough short responses that pi over all of them is enumerated by
teacher forcing: every quantity of iswcli.exact_targets must agree with the
direct sums over that enumeration.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from iswcli import exact_targets as E
from iswcli import target_eval
from iswcli.errors import IswtError

VOCAB, STOPS, PAD = 6, [0, 1], 0
WORDS = [2, 3, 4, 5]
PROMPT = [2, 3, 4, 5, 3]
L = 4  # responses of at most L tokens, the stop token included


@pytest.fixture(scope="module")
def tiny_vocab_model():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        bos_token_id=2,
        eos_token_id=STOPS,
        pad_token_id=PAD,
    )
    torch.manual_seed(3)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # sharpen the random logits so that the distribution is far from uniform
        model.lm_head.weight.mul_(8.0)
    return model


def sequence_logprobs(model, responses):
    import torch

    from iswcli.logprobs import teacher_forced_logprobs

    with torch.no_grad():
        out = teacher_forced_logprobs(model, [PROMPT] * len(responses), responses, PAD)
    return np.array([float(t.double().sum()) for t in out])


@pytest.fixture(scope="module")
def enumerated(tiny_vocab_model):
    """pi(y|x) of every response of at most L tokens that ends in a stop token, and of every unstopped L-prefix."""
    stopped = [list(body) + [s] for n in range(L) for body in itertools.product(WORDS, repeat=n) for s in STOPS]
    open_ended = [list(body) for body in itertools.product(WORDS, repeat=L)]
    lp_stopped = sequence_logprobs(tiny_vocab_model, stopped)
    lp_open = sequence_logprobs(tiny_vocab_model, open_ended)
    return {tuple(y): lp for y, lp in zip(stopped, lp_stopped)}, lp_open


ANSWERS = {(2,): 1.0, (3, 4): 2.0, (5, 5, 2): 0.5, (4,): 1.0}  # token ids -> reward
R0, BETA = -0.25, 1.7


def brute(enumerated_stopped, answers, r0, beta):
    """pi(a), Z and pi* by direct sums over the enumerated responses."""
    p_answer = np.array([sum(math.exp(enumerated_stopped[tuple(a) + (s,)]) for s in STOPS) for a in answers])
    enumerated_mass = sum(math.exp(v) for v in enumerated_stopped.values())
    z = 0.0
    for y, lp in enumerated_stopped.items():
        reward = answers.get(tuple(y[:-1]), r0)
        z += math.exp(lp + beta * reward)
    z += (1.0 - enumerated_mass) * math.exp(beta * r0)  # every longer response earns r0
    rewards = np.array(list(answers.values()))
    target = np.append(p_answer * np.exp(beta * rewards), (1 - p_answer.sum()) * math.exp(beta * r0)) / z
    return p_answer, z, target


def test_enumeration_is_a_distribution(enumerated):
    """Sanity of the enumeration itself: stopped responses plus unstopped L-prefixes carry all the mass."""
    stopped, lp_open = enumerated
    total = sum(math.exp(v) for v in stopped.values()) + np.exp(lp_open).sum()
    assert total == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_answer_logprobs_match_enumeration(tiny_vocab_model, enumerated, shared_prefix):
    stopped, _ = enumerated
    got = E.answer_logprobs(
        tiny_vocab_model, PROMPT, list(ANSWERS), STOPS, PAD, batch_size=3, shared_prefix=shared_prefix
    )
    p_answer, _, _ = brute(stopped, ANSWERS, R0, BETA)
    np.testing.assert_allclose(np.exp(got), p_answer, rtol=1e-5, atol=1e-9)
    assert 1e-4 < p_answer.sum() < 0.9  # a non-trivial case: real mass inside and outside the set


def test_log_z_and_target_match_enumeration(tiny_vocab_model, enumerated):
    stopped, _ = enumerated
    lp = E.answer_logprobs(tiny_vocab_model, PROMPT, list(ANSWERS), STOPS, PAD)
    rewards = list(ANSWERS.values())
    p_answer, z, target = brute(stopped, ANSWERS, R0, BETA)
    assert E.log_z(lp, rewards, R0, BETA) == pytest.approx(math.log(z), abs=1e-5)
    np.testing.assert_allclose(E.target_probs(lp, rewards, R0, BETA), target, rtol=1e-5, atol=1e-9)
    # and the formula of the design: sum_a pi(a) e^{beta r_a} + (1 - pi(A)) e^{beta r_0}
    formula = (p_answer * np.exp(BETA * np.array(rewards))).sum() + (1 - p_answer.sum()) * math.exp(BETA * R0)
    assert math.log(formula) == pytest.approx(math.log(z), abs=1e-6)


def test_measures_against_direct_sums(tiny_vocab_model, enumerated):
    """kl_set, tv_set, p_valid and eff_answers of a policy that differs from the reference (a second model)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    stopped, _ = enumerated
    config = tiny_vocab_model.config
    torch.manual_seed(11)
    other = LlamaForCausalLM(LlamaConfig(**config.to_dict())).eval()
    lp_ref = E.answer_logprobs(tiny_vocab_model, PROMPT, list(ANSWERS), STOPS, PAD)
    lp_pol = E.answer_logprobs(other, PROMPT, list(ANSWERS), STOPS, PAD)
    rewards = list(ANSWERS.values())
    m = E.measures(lp_pol, lp_ref, rewards, R0, BETA)

    _, z, target = brute(stopped, ANSWERS, R0, BETA)
    policy = np.append(np.exp(lp_pol), 1 - np.exp(lp_pol).sum())
    assert m.log_z_exact == pytest.approx(math.log(z), abs=1e-5)
    assert m.p_valid == pytest.approx(policy[:-1].sum(), rel=1e-9)
    assert m.p_valid_target == pytest.approx(target[:-1].sum(), rel=1e-5)
    assert m.kl_set == pytest.approx(float(np.sum(target * np.log(target / policy))), rel=1e-4, abs=1e-8)
    assert m.tv_set == pytest.approx(0.5 * np.abs(target - policy).sum(), rel=1e-4, abs=1e-8)
    within = policy[:-1] / policy[:-1].sum()
    assert m.eff_answers == pytest.approx(math.exp(-np.sum(within * np.log(within))), rel=1e-9)
    assert 1.0 <= m.eff_answers <= len(ANSWERS)
    # the reference against its own target: KL 0 only when beta = 0
    assert E.measures(lp_ref, lp_ref, rewards, R0, 0.0).kl_set == pytest.approx(0.0, abs=1e-12)
    assert E.measures(lp_ref, lp_ref, rewards, R0, BETA).kl_set > 0


def test_importance_sampling_estimate_converges_to_exact_log_z(enumerated):
    """Sampling the enumerated distribution (pi_ref as proposal): the IS log Z approaches the exact one."""
    from iswcli import estimators

    stopped, lp_open = enumerated
    outcomes = list(stopped) + ["open"] * len(lp_open)
    probs = np.exp(np.append(np.array(list(stopped.values())), lp_open))
    probs /= probs.sum()
    rng = np.random.default_rng(0)
    draws = rng.choice(len(outcomes), size=200_000, p=probs)
    rewards = np.array([ANSWERS.get(tuple(outcomes[i][:-1]), R0) if outcomes[i] != "open" else R0 for i in draws])
    lw = BETA * rewards  # q = pi_ref: the log-ratio is 0
    _, z, _ = brute(stopped, ANSWERS, R0, BETA)
    log_z = estimators.estimate_groups(np.zeros(lw.size, dtype=np.int64), lw).log_z[0]
    assert log_z == pytest.approx(math.log(z), abs=0.01)


def test_pure_functions_edge_cases():
    assert E.eff_answers([0.5, 0.5, 0.0]) == pytest.approx(2.0)
    assert math.isnan(E.eff_answers([0.0, 0.0]))
    assert E.kl([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert E.kl([1.0, 0.0], [0.0, 1.0]) > 600  # q's zero floored, not an infinity or a NaN
    # all mass on the answers: the "other" outcome is 0, not negative
    assert E.outcome_probs(np.log([0.5, 0.5]))[-1] == 0.0
    assert np.isfinite(E.log_z(np.log([0.5, 0.5]), [1.0, 2.0], 0.0, 3.0))


def test_match_answer_is_on_token_ids():
    answer_ids = {"Monday": (10,), "Mon day": (11, 12)}
    assert E.match_answer([10, 2], answer_ids, [2]) == "Monday"
    assert E.match_answer([11, 12, 2], answer_ids, [2]) == "Mon day"
    assert E.match_answer([10], answer_ids, [2]) is None  # no stop token
    assert E.match_answer([10, 10, 2], answer_ids, [2]) is None
    assert E.match_answer([11, 2], answer_ids, [2]) is None  # a prefix of an answer
    assert E.match_answer([], answer_ids, [2]) is None


def test_parse_answers_rejects_bad_fields():
    assert E.parse_answers('{"a": 1, "b": 2.5}', "x") == {"a": 1.0, "b": 2.5}
    for bad in ("[1]", "{}", '{"a": "high"}', '{"": 1}', "not json", '{"a": true}'):
        with pytest.raises(IswtError, match="x: "):
            E.parse_answers(bad, "x")


def test_tokenize_answers_refuses_ambiguous_sets(smollm_dir):
    from iswcli import models

    tokenizer = models.load_tokenizer(smollm_dir)
    ids = E.tokenize_answers(tokenizer, {"Monday": 1.0, "North America": 2.0}, "p")
    assert ids["Monday"] == tuple(tokenizer("Monday", add_special_tokens=False)["input_ids"])
    assert len(ids["North America"]) >= 2
    with pytest.raises(IswtError, match="same tokenization"):
        E.tokenize_answers(_DupTokenizer(), {"x": 1.0, "y": 1.0}, "p")


class _DupTokenizer:
    """Tokenizes every text to the same ids: two answers can then not be told apart."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [7]}


def test_set_default_and_flags():
    assert target_eval.set_default("set") == 0.0 and target_eval.set_default("set:-1.5") == -1.5
    with pytest.raises(IswtError, match="--target-beta: needs --reward set"):
        target_eval.set_default("math")
    with pytest.raises(IswtError, match="give --target-beta too"):
        target_eval.check_target_flags(None, "z.parquet", None, "set")
    with pytest.raises(IswtError, match="must be a finite number > 0"):
        target_eval.check_target_flags(0.0, None, None, "set")
    with pytest.raises(IswtError, match="--z missing.parquet: no such file"):
        target_eval.check_target_flags(1.0, "missing.parquet", None, "set")
    assert json.loads(json.dumps(target_eval.SUMMARY_METRICS))
